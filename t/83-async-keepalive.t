# x402_settle async (credit advance) on a keep-alive connection: the
# settlement runs on a request of its own, never on the client's. It was a
# background subrequest of the client's request, and nginx keeps a request
# whose subrequest runs alive: the connection went to keep-alive, and the
# client's next request was read, only once the facilitator had answered
# /settle (2 s here, seconds on chain). The access log line of an async
# request is written when its response is done, before its settlement.
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

sub wait_for {
    my ($cond, $secs) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return 0;
}


my $fac = start_facilitator(script => "verify: default\nsettle: delay=2000 default\n");
my $fp = $fac->port;
my $ng = start_nginx(http_config => <<'EOH', config => <<"EOC",
    log_format x402 '$uri|$x402_status|$x402_tx|$status';
EOH
access_log logs/x402.log x402;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle async;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
location /local/ { x402_verify local; }
EOC
    user_files => ">>> doc.txt\nasync content\n>>> local/doc.txt\nlocal\n");

for my $path ('/doc.txt', '/local/doc.txt') {
    my @pay = map { $_->[0] } sign_payments(2, amount => '1000');
    my $settles = () = grep { $_->{endpoint} eq 'settle' } $fac->requests;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
        or die "connect: $!";
    binmode $s;
    $s->autoflush(1);

    my $r1 = keepalive_get($s, $path, $pay[0]);
    is($r1->{status}, 200, "$path: first paid request served on credit");
    cmp_ok($r1->{elapsed}, '<', 1, "$path: first answered before its settlement");

    my $r2 = keepalive_get($s, $path, $pay[1]);
    is($r2->{status}, 200, "$path: second paid request on the same connection");
    # it waited for the first one's /settle (2 s) before
    cmp_ok($r2->{elapsed}, '<', 1,
           "$path: second answered at once, not after the first settlement")
        or diag("second request took $r2->{elapsed} s");

    # a replay on the same connection while both are being settled
    my $r3 = keepalive_get($s, $path, $pay[0]);
    is($r3->{status}, 402, "$path: the first payment is not served again");
    like($r3->{body}, qr/payment_already_used/, "$path: as a replay");
    cmp_ok($r3->{elapsed}, '<', 1, "$path: the replay answered at once");
    close $s;

    ok(wait_for(sub { (grep { $_->{endpoint} eq 'settle' } $fac->requests)
                      == $settles + 2 }, 10),
       "$path: both payments settled") or diag(scalar $fac->requests);
    ok(wait_for(sub { my @m = $ng->error_log =~ /x402: settled 1000 from 0x\w+ on eip155:84532, tx 0x/g;
                      @m >= ($path eq '/doc.txt' ? 2 : 4) }, 10),
       "$path: both settlements logged");

    # and not reusable once settled either
    my $r4 = $ng->get($path, { 'PAYMENT-SIGNATURE' => $pay[1] });
    is($r4->{status}, 402, "$path: the second payment is not served again");
    like($r4->{body}, qr/payment_already_used/, "$path: settled, a replay");
}

is(scalar(grep { $_->{endpoint} eq 'settle' } $fac->requests), 4,
   'four settlements, one per payment');

# the access log: written with the response, the settlement not known yet
open my $fh, '<', $ng->prefix . '/logs/x402.log' or die;
my @l = map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
my @paid = grep { $_->[3] eq '200' } @l;
is(scalar @paid, 4, 'access log: four paid requests');
is_deeply([ map { $_->[1] } @paid ], [ ('verified') x 4 ],
          'access log: $x402_status verified (served on credit)');
is_deeply([ map { $_->[2] } @paid ], [ ('-') x 4 ],
          'access log: no $x402_tx yet');

$ng->stop;
unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'clean error log');
$fac->stop;

# the bound: first attempts in flight per worker hold two connections each
# (their request's, the facilitator's) and at most a quarter of
# worker_connections together (8 attempts here; 16 before, which with
# worker_connections 32 left no connection to clients); the others wait their turn in the worker's
# list (not dropped, not left to the lease: no retry), each client still
# answered at once
{
    my $N = 40;
    my $fac = start_facilitator(script => "verify: default\nsettle: delay=1500 default\n");
    my $fp = $fac->port;
    my $ng = X402::Nginx->new(name => 'bound', config => <<"EOC",
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle async;
x402_verify local;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
EOC
        user_files => ">>> doc.txt\nasync content\n");
    my $conf = $ng->conf_text;
    $conf =~ s/worker_connections 1024;/worker_connections 64;/ or die 'no events';
    open my $fh, '>', $ng->conf_path or die $!;
    print $fh $conf;
    close $fh;
    $ng->start;

    my @pay = map { $_->[0] } sign_payments($N, amount => '1000');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
        or die "connect: $!";
    binmode $s;
    $s->autoflush(1);
    my ($ok, $slow) = (0, 0);
    for my $p (@pay) {
        my $r = keepalive_get($s, '/doc.txt', $p);
        $ok++ if ($r->{status} // 0) == 200;
        $slow++ if $r->{elapsed} >= 1;
    }
    close $s;
    is($ok, $N, "bound: $N paid requests served on one connection");
    is($slow, 0, 'bound: each answered at once');

    ok(wait_for(sub { (grep { $_->{endpoint} eq 'settle' } $fac->requests) >= $N }, 20),
       "bound: all $N settled") or diag(scalar grep { $_->{endpoint} eq 'settle' } $fac->requests);
    my @t = sort { $a <=> $b } map { $_->{t} } grep { $_->{endpoint} eq 'settle' } $fac->requests;
    my $first = grep { $_ < $t[0] + 1 } @t;    # each takes 1.5 s
    cmp_ok($first, '<=', 8, "bound: at most 8 in flight at first ($first)");
    cmp_ok($first, '>=', 3, "bound: but several at once ($first)");
    ok(wait_for(sub { my @m = $ng->error_log =~ /settled after 1 attempt/g; @m >= $N }, 10),
       'bound: each settled by its first attempt');
    unlike($ng->error_log, qr/retrying async settlement/, 'bound: none left to the lease');
    $ng->stop;
    unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'bound: clean error log');
    $fac->stop;
}

done_testing();
