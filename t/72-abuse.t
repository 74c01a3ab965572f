# Adversarial: clients that hang up while /verify or /settle is in flight,
# a burst of one payment at two workers under each settle mode, a huge
# facilitator answer, a facilitator location that is not internal, and a
# payment for one location presented at another.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest qw(concurrent_gets wait_for);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

sub conf {
    my ($fac, $mode, $extra) = @_;
    my $fp = $fac->port;
    $extra //= "internal;";
    return <<"EOC";
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle $mode;
location /_x402/ {
    $extra
    proxy_pass http://127.0.0.1:$fp/;
}
location /b/ { }
EOC
}

sub pay { scalar sign_payment(amount => '1000', @_) }
sub n_of { my ($fac, $e) = @_; scalar grep { $_->{endpoint} eq $e } $fac->requests }
sub crashed { $_[0]->error_log =~ /exited on signal|\[(alert|emerg|crit)\]/ }

my $files = ">>> doc.txt\npaid content\n>>> b/doc.txt\nb content\n";

# send a paid request and hang up once the facilitator has the call
# ($ep) in flight: a fixed delay could, on a loaded machine, hang up while
# /verify was still running when the test meant /settle
sub hang_up {
    my ($ng, $p, $fac, $ep) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ng->port, Proto => 'tcp')
        or die $!;
    print $s "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\n"
           . "PAYMENT-SIGNATURE: $p\r\nConnection: close\r\n\r\n";
    wait_for(15, sub { n_of($fac, $ep) >= 1 })
        or diag("hang_up: no /$ep reached the facilitator in 15 s");
    sleep 0.05;
    close $s;
}

# ---- a client hangs up while /verify, then /settle, is in flight ----
for my $mode (qw(sync after async)) {
    for my $ep (qw(verify settle)) {
        my $script = $ep eq 'verify'
            ? "verify: delay=800 default\nsettle: default\n"
            : "verify: default\nsettle: delay=800 default\n";
        my $fac = start_facilitator(script => $script);
        my $ng = start_nginx(config => conf($fac, $mode), user_files => $files);
        my $p = pay();
        hang_up($ng, $p, $fac, $ep);
        sleep 1.5;
        my $settles = n_of($fac, 'settle');
        my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $p });
        ok($settles <= 1, "$mode hang-up in $ep: at most one settlement ($settles)");
        if ($ep eq 'verify') {
            # nothing settled or served: the reservation went with the
            # request (t/75), the payment may be presented again
            is($settles, 0, "$mode hang-up in verify: not charged");
            is($r->{status}, 200, "$mode hang-up in verify: presented again, served");
        } elsif ($settles == 1) {
            is($r->{status}, 402, "$mode hang-up in $ep: settled, so the replay is refused");
        } else {
            # nothing settled, but the authorization stays reserved until
            # it expires: never served twice, re-signing is the way out
            is($r->{status}, 402, "$mode hang-up in $ep: not settled, still reserved");
        }
        unlike($r->{body}, qr/paid content/, "$mode hang-up in $ep: no second serve")
            if $settles == 1;
        $ng->stop;
        ok(!crashed($ng), "$mode hang-up in $ep: no crash");
        $fac->stop;
    }
}

# ---- one payment, a burst of 8 at two workers: exactly one 200 ----
for my $mode (qw(sync after async)) {
    my $fac = start_facilitator(script => "verify: delay=100 default\nsettle: delay=100 default\n");
    my $ng = start_nginx(workers => 2, config => conf($fac, $mode),
                         user_files => $files);
    for my $round (1 .. 3) {
        my $p = pay();
        my @st = concurrent_gets([($ng->port) x 8], '/doc.txt',
                                 { 'PAYMENT-SIGNATURE' => $p });
        is(scalar(grep { $_ == 200 } @st), 1, "$mode burst $round: one 200 (@st)");
        is(scalar(grep { $_ == 402 } @st), 7, "$mode burst $round: seven 402");
    }
    $ng->stop;
    is(n_of($fac, 'settle'), 3, "$mode burst: three settlements");
    ok(!crashed($ng), "$mode burst: no crash");
    $fac->stop;
}

# ---- a huge facilitator answer: bounded, never served unsettled ----
# nginx refuses an in-memory answer over subrequest_output_buffer_size and
# terminates the client's request (no answer at all); the settlement, which
# the facilitator may have made, gets an error-log record, and the payment
# stays reserved: a replay is refused.
{
    my $huge = '{"success":true,"transaction":"0x' . ('ab' x 32)
             . '","network":"eip155:84532","payer":"{{payer}}","pad":"'
             . ('x' x 2_000_000) . '"}';
    for my $mode (qw(sync after)) {
        my $fac = start_facilitator(script => { verify => [{ action => 'default' }],
            settle => [{ status => 200, body => $huge }] });
        my $ng = start_nginx(config => conf($fac, $mode), user_files => $files);
        my $p = pay();
        my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $p }, timeout => 20);
        ok(($r->{status} // 0) != 200, "$mode huge /settle answer: not a 200");
        unlike($r->{body} // '', qr/paid content/, "$mode huge /settle answer: nothing served");
        $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $p });
        is($r->{status}, 402, "$mode huge /settle answer: the replay is refused");
        $ng->stop;
        ok(!crashed($ng), "$mode huge answer: no crash");
        like($ng->error_log, qr/x402: settlement of 1000 from 0x\w+, payment [0-9a-f]{64}: answer lost/,
             "$mode huge answer: the settlement has a record");
        is(n_of($fac, 'settle'), 1, "$mode huge answer: settled once");
        $fac->stop;
    }
}

# ---- a facilitator location that is not internal ----
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(config => conf($fac, 'sync', ''), user_files => $files);
    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => pay() });
    is($r->{status}, 200, 'non-internal facilitator: still works');
    my $before = scalar $fac->requests;
    $r = $ng->request('POST /_x402/settle', "Content-Type: application/json\n\n{}");
    is($r->{status}, 402, 'non-internal facilitator: priced like the server, a client pays to reach it');
    is(scalar $fac->requests, $before, 'non-internal facilitator: the client never reached it');
    $ng->stop;
    like($ng->error_log, qr/x402: .*internal/, 'non-internal facilitator: warned');
    $fac->stop;
}

# ---- a payment for /doc.txt presented at /b/ (same price and payTo) ----
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(config => conf($fac, 'sync'), user_files => $files);
    my $p = pay(resource => "http://localhost/doc.txt");
    my $r = $ng->get('/b/doc.txt', { 'PAYMENT-SIGNATURE' => $p });
    is($r->{status}, 200, 'payment for A at B: a valid payment for B too');
    $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $p });
    is($r->{status}, 402, 'then at A: replayed, 402');
    unlike($r->{body}, qr/paid content/, 'then at A: nothing');
    is(n_of($fac, 'settle'), 1, 'one settlement');
    $ng->stop;
    $fac->stop;
}

done_testing();
