# x402_settle async, first attempts listed per worker (retry.c): one that is
# never sent from the list (the bound kept it waiting past 10 s, or its
# worker stops past x402_async_drain) is owed as any other, due at once. It
# stayed leased to its worker, up to 90 s: after a reload the new workers
# could not retry it, and a payment whose validBefore came first was given
# up unsettled, though served.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::HTTP qw(keepalive_get);
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $N = 40;

sub wait_for {
    my ($secs, $cond) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return 0;
}


sub nonce_of { decode_b64_json($_[0])->{payload}{authorization}{nonce} }

# /settle requests by nonce
sub settles {
    my ($fac) = @_;
    my %n;
    $n{ $_->{json}{paymentPayload}{payload}{authorization}{nonce} }++
        for grep { $_->{endpoint} eq 'settle' } $fac->requests;
    return \%n;
}

# nginx with 8 first attempts in flight at most (worker_connections 64)
sub bounded_nginx {
    my ($name, $fp, $read_timeout) = @_;
    my $ng = X402::Nginx->new(name => $name,
        http_config => "    x402_async_drain 1s;\n", config => <<"EOC",
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle async;
x402_verify local;
location /_x402/ {
    internal;
    proxy_read_timeout $read_timeout;
    proxy_pass http://127.0.0.1:$fp/;
}
location = /pending {
    x402 off;
    return 200 "\$x402_pending\\n";
}
EOC
        user_files => ">>> doc.txt\nasync content\n");
    my $conf = $ng->conf_text;
    $conf =~ s/worker_connections 1024;/worker_connections 64;/ or die 'no events';
    open my $fh, '>', $ng->conf_path or die $!;
    print $fh $conf;
    close $fh;
    return $ng->start;
}

# $N payments valid 40 s (a lease is 90 s), served on one connection
sub serve_all {
    my ($ng, $what) = @_;
    my @pay = map { $_->[0] } sign_payments($N, amount => '1000', valid_for => 40);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
        or die "connect: $!";
    binmode $s;
    $s->autoflush(1);
    my $ok = grep { (keepalive_get($s, '/doc.txt', $_)->{status} // 0) == 200 } @pay;
    close $s;
    is($ok, $N, "$what: $N paid requests served on credit");
    return @pay;
}

sub all_settled_once {
    my ($ng, $fac, $pay, $what) = @_;
    ok(wait_for(20, sub { ($ng->get('/pending')->{body} // '') eq "0\n" }),
       "$what: nothing owed after 20 s (not 90 s: a lease)")
        or diag('pending: ' . ($ng->get('/pending')->{body} // ''));
    my @ok = $ng->error_log =~ /async settlement of payment \w+ settled after/g;
    is(scalar @ok, $N, "$what: each settled");
    unlike($ng->error_log, qr/GIVEN UP/, "$what: none given up");
}

# ---- a reload while first attempts are listed: the old worker's drain
# ends (1 s) before the facilitator answers (3 s), the new workers settle
# what it never sent ----
{
    my $fac = start_facilitator(script => "verify: default\nsettle: hang\n");
    my $ng = bounded_nginx('reload', $fac->port, '3s');
    my @pay = serve_all($ng, 'reload');
    sleep 0.3;
    my $sent = () = grep { $_->{endpoint} eq 'settle' } $fac->requests;
    cmp_ok($sent, '<=', 8, "reload: $sent sent, the others listed");
    $ng->reload;
    $fac->set_script("verify: default\nsettle: default\n");
    all_settled_once($ng, $fac, \@pay, 'reload');
    my $n = settles($fac);
    is(scalar(grep { $n->{nonce_of($_)} } @pay), $N, 'reload: a /settle for each');
    $ng->stop;
    $fac->stop;
}

# ---- the bound: 8 attempts take 11 s, the 32 listed behind them waited
# past 10 s: retried at once, not when their lease runs out ----
{
    my $fac = start_facilitator(script => "verify: default\n"
        . ("settle: delay=11000 default\n" x 8) . "settle: default\n");
    my $ng = bounded_nginx('waited', $fac->port, '30s');
    my @pay = serve_all($ng, 'waited');
    all_settled_once($ng, $fac, \@pay, 'waited');
    my $n = settles($fac);
    is_deeply([ map { $n->{nonce_of($_)} // 0 } @pay ], [ (1) x $N ],
              'waited: one /settle each');
    $ng->stop;
    unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'waited: clean error log');
    $fac->stop;
}

# ---- the first attempt's log lines say which request paid, as the client
# request's own settlement said (they had no context at all) ----
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n"
        . 'settle: 402 {"success":false,"errorReason":"insufficient_funds",'
        . '"transaction":"","network":"{{network}}"}' . "\n");
    my $ng = bounded_nginx('context', $fac->port, '5s');
    my @pay = map { $_->[0] } sign_payments(2, amount => '1000');
    is($ng->get('/doc.txt?one', { 'PAYMENT-SIGNATURE' => $pay[0] })->{status}, 200,
       'context: first served');
    ok(wait_for(5, sub { $ng->error_log =~ /settled after 1 attempt/ }), 'context: settled');
    is($ng->get('/doc.txt?two', { 'PAYMENT-SIGNATURE' => $pay[1] })->{status}, 200,
       'context: second served');
    ok(wait_for(5, sub { $ng->error_log =~ /refused by the facilitator/ }), 'context: refused');
    my $ctx = qr/, client: 127\.0\.0\.1, server: localhost, request: "GET \/doc\.txt\?%s HTTP\/1\.1", host: "localhost"$/m;
    my $log = $ng->error_log;
    like($log, qr/x402: settled 1000 from 0x\w+ on eip155:84532, tx 0x\w+, asset 0x\w+, in \d+ms@{[ sprintf $ctx, 'one' ]}/,
         'context: the settled line names its request');
    like($log, qr/settled after 1 attempt\(s\): 0x\w+@{[ sprintf $ctx, 'one' ]}/,
         'context: and the queue\'s line');
    like($log, qr/x402: settlement of 1000 from 0x\w+ refused: insufficient_funds@{[ sprintf $ctx, 'two' ]}/,
         'context: the refusal names its request');
    $ng->stop;
    $fac->stop;
}

done_testing();
