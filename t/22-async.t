# x402_settle async (credit advance): served as soon as the local checks
# and /verify (unless x402_verify local) pass; /settle runs from a request
# of its own, its outcome is logged in the error log; the client's request
# is logged when its response is done, before the settlement: its access
# log variables say "verified" (served on credit), with no tx (t/83).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Time::HiRes qw(sleep time);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

sub conf {
    my ($fac, $extra) = @_;
    my $fp = $fac->port;
    $extra //= '';
    return (http_config => <<'EOH', config => <<"EOC",
    log_format x402 '$x402_status|$x402_reason|$x402_tx|$status';
EOH
access_log logs/x402.log x402;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle async;
$extra
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
location /local/ { x402_verify local; }
EOC
        user_files => ">>> doc.txt\nasync content\n>>> local/doc.txt\nlocal\n");
}

sub x402_log {
    my ($ng) = @_;
    open my $fh, '<', $ng->prefix . '/logs/x402.log' or return ();
    return map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
}

sub wait_for {
    my ($cond, $secs) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return 0;
}

{
    my $fac = start_facilitator(script => "verify: default\nsettle: delay=1500 default\n");
    my $ng = start_nginx(conf($fac));

    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') },
                     timeout => 10);
    my $got = time;    # the response is in
    is($r->{status}, 200, 'async: served');
    is($r->{body}, "async content\n", 'async: content');
    ok(!defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'),
       'async: no settlement header (not settled yet)');

    ok(wait_for(sub { grep { $_->{endpoint} eq 'settle' } $fac->requests }, 5),
       'async: /settle issued');
    my @seen = $fac->requests;
    # the facilitator answers /settle 1.5 s after it got it: a response that
    # waited for the answer comes later than that (an order, not a speed)
    my ($settle) = grep { $_->{endpoint} eq 'settle' } @seen;
    cmp_ok($got, '<', $settle->{t} + 1.5,
           'async: did not wait for /settle (served before its answer)');
    is($seen[0]{endpoint}, 'verify', 'async: /verify before serving');
    is($seen[0]{body}, $seen[1]{body}, 'async: same bytes to both');

    ok(wait_for(sub { my @l = x402_log($ng); @l >= 1 }, 5),
       'async: logged with the response');
    my @l = x402_log($ng);
    is($l[0][0], 'verified', 'async var: verified (served on credit)');
    is($l[0][2], '-', 'async var: no tx (not settled yet)');
    ok(wait_for(sub { $ng->error_log =~ /x402: settled 1000 from 0x\w+ on eip155:84532, tx 0x/ }, 5),
       'async: outcome logged');

    $r = $ng->get('/local/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'async local: served');
    ok(wait_for(sub { (grep { $_->{endpoint} eq 'settle' } $fac->requests) == 2 }, 5),
       'async local: settled in the background');
    is(scalar(grep { $_->{endpoint} eq 'verify' } $fac->requests), 1,
       'async local: no /verify');

    $ng->stop;
    unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'async: clean log');
    $fac->stop;
}

# a refused /verify is still a 402 before anything is served; a refused
# background settlement is logged (content was already served on credit)
{
    my $fac = start_facilitator(script => "verify: 200 {\"isValid\":false,\"invalidReason\":\"insufficient_funds\",\"payer\":\"{{payer}}\"}\n"
                                        . "settle: 200 {\"success\":false,\"errorReason\":\"invalid_exact_evm_nonce_already_used\",\"transaction\":\"\",\"network\":\"{{network}}\"}\n");
    my $ng = start_nginx(conf($fac));

    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 402, 'async: refused /verify is a 402');
    is(json_decode($r->{body})->{error}, 'insufficient_funds', 'async: its reason');
    unlike($r->{body}, qr/async content/, 'async: nothing served');

    $r = $ng->get('/local/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'async local: served on credit');
    ok(wait_for(sub { $ng->error_log =~ /settlement of 1000 from 0x\w+ refused: invalid_exact_evm_nonce_already_used/ }, 5),
       'async: refused settlement logged');
    ok(wait_for(sub { my @l = x402_log($ng); @l >= 2 }, 5), 'async: logged');
    my @l = x402_log($ng);
    is($l[1][0], 'verified', 'async var: verified (the refusal came later)');
    is($l[1][1], '-', 'async var: no reason then');
    $ng->stop;
    $fac->stop;
}

done_testing();
