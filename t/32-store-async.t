# No settlement lost (x402_settle async): a settlement the facilitator
# cannot make stays queued in the zone and the workers retry it, without any
# client request, until it settles (also after a reload), or until the
# authorization expires (then it is logged and counted as lost). The queue
# is bounded: when full, payments settle synchronously (back-pressure).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

# the first /settle is answered 1.5 s late: a response that came before
# that did not wait for it
my $fac = start_facilitator(script => <<'EOS');
verify: default
settle: delay=1500 502 {"error":"down"}
settle: 502 {"error":"down"}
EOS
my $fport = $fac->port;

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $fac->requests }

# when the facilitator got the n-th /settle (0: the first)
sub settle_t { (grep { $_->{endpoint} eq 'settle' } $fac->requests)[$_[0]]{t} }

my $status_loc = <<'EOC';
    location = /store {
        return 200 "$x402_pending $x402_settle_lost $x402_settle_unknown\n";
    }
EOC

sub counters {
    my ($ng) = @_;
    my $b = $ng->get('/store')->{body} // '';
    return [split ' ', $b];
}

# ---- settles later, with no client around ----

my $ng = start_nginx(
    workers => 2,
    http_config => store_http_config(),
    config => store_server_config($fport, settle => 'async',
                                  extra => $status_loc),
);

my @p = payments_for($ng, 3);

my $r = $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] });
my $got = time;
is($r->{status}, 200, 'async: served before settling');

ok(wait_for(3, sub { settles() >= 1 }), 'the background settle ran');
cmp_ok($got, '<', settle_t(0) + 1.5, 'at once (before the /settle answer)');
# its answer is handled after the facilitator sent it
ok(wait_for(5, sub {
       $ng->error_log =~ /async settlement of payment [0-9a-f]{64} failed/ }),
   'the failure is logged');
is(counters($ng)->[0], 1, '$x402_pending 1 after a failed settle');

# the facilitator comes back; nobody sends a request to /paid/
$fac->set_script("verify: default\nsettle: default\n");
ok(wait_for(6, sub { counters($ng)->[0] == 0 }),
   'retried by a worker timer and settled: $x402_pending 0');
like($ng->error_log, qr/settled after \d attempt\(s\): 0x[0-9a-f]{64}/,
     'the settlement is logged with its transaction');
my $n = settles();
ok($n >= 2, "the facilitator saw $n settle attempts");
sleep 2;
is(settles(), $n, 'and nothing more once settled');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 402,
   'the payment is not served again');

# ---- kept across a reload ----

$fac->set_script("verify: default\nsettle: 502 {}\n");
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 200,
   'served on credit');
ok(wait_for(3, sub { counters($ng)->[0] == 1 }), 'pending');
$ng->reload;
is(counters($ng)->[0], 1, 'still pending after a reload');
$fac->set_script("verify: default\nsettle: default\n");
ok(wait_for(8, sub { counters($ng)->[0] == 0 }),
   'settled by the new workers');

# ---- the authorization expires first: unknown, or given up ----

# a 502 says nothing: the settlement may have happened (issue 14: not "lost")
$fac->set_script("verify: default\nsettle: 502 {}\n");
my ($short) = payments_for($ng, 1, valid_for => 9);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $short->[0] })->{status},
   200, 'served on credit (valid 9 more seconds)');
ok(wait_for(15, sub { (counters($ng)->[2] // 0) == 1 }),
   '$x402_settle_unknown 1 once the authorization expired');
is(counters($ng)->[0], 0, 'no longer pending');
is(counters($ng)->[1], 0, 'not counted as given up');
like($ng->error_log, qr/async settlement of payment [0-9a-f]{64} UNKNOWN/,
     'the unknown fate is logged');

# a refusal is final at once (issue 14): not retried until it expires
$fac->set_script("verify: default\nsettle: 200 {\"success\":false,\"errorReason\":\"insufficient_funds\",\"transaction\":\"\",\"network\":\"{{network}}\"}\n");
($short) = payments_for($ng, 1, valid_for => 9);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $short->[0] })->{status},
   200, 'served on credit (valid 9 more seconds)');
ok(wait_for(3, sub { counters($ng)->[0] == 0 }),
   'refused: no longer pending, before it expires');
like($ng->error_log, qr/async settlement of payment [0-9a-f]{64} refused by the facilitator .*final, not retried/,
     'the refusal is logged as final');
sleep 10;
is(counters($ng)->[1], 0, 'not given up when it expires');
unlike($ng->error_log, qr/GIVEN UP/, 'nothing logged as given up');
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts');
$ng->stop;

# ---- with redis: a retried settlement is recorded there too ----

SKIP: {
    skip 'no redis-server', 3 unless `which redis-server` =~ /\S/;
    my $redis = X402::Redis->start;
    my $rport = $redis->port;
    $fac->set_script("verify: default\nsettle: 502 {}\n");
    my $ngr = start_nginx(
        workers => 2,
        http_config => store_http_config(
            "    x402_redis 127.0.0.1:$rport prefix=t32:;\n"),
        config => store_server_config($fport, settle => 'async',
                                      extra => $status_loc),
    );
    my ($rp) = payments_for($ngr, 1);
    is($ngr->get('/paid/', { 'PAYMENT-SIGNATURE' => $rp->[0] })->{status},
       200, 'redis: served on credit');
    # kept in Redis once its first attempt failed (t/40)
    ok(wait_for(3, sub { ($redis->cmd('ZCARD', 't32:owed') // 0) == 1 }),
       'redis: pending, in redis');
    $fac->set_script("verify: default\nsettle: default\n");
    ok(wait_for(8, sub {
        my $k = [ grep { !/:epoch$|:owed/ } @{ $redis->cmd('KEYS', 't32:*') } ];
        @$k == 1 && ($redis->cmd('GET', $k->[0]) // '') =~ /^S\|/ }),
       'the retried settlement is recorded in redis');
    $ngr->stop;
    $redis->stop;
}

# ---- back-pressure: a full queue settles synchronously ----

$fac->set_script("verify: default\nsettle: delay=1500 default\n");
$ng = start_nginx(
    workers => 1,
    http_config => store_http_config("    x402_async_limit 1;\n"),
    config => store_server_config($fport, settle => 'async',
                                  extra => $status_loc),
);
@p = payments_for($ng, 2);
my $s0 = settles();
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'first: on credit');
$got = time;
ok(wait_for(3, sub { settles() > $s0 }), 'its settlement issued');
cmp_ok($got, '<', settle_t($s0) + 1.5, 'at once (before the /settle answer)');
my $t = time;
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 200,
   'second: queue full');
ok(time - $t >= 1.2, sprintf('settled synchronously (%.2f s)', time - $t));
like($ng->error_log, qr/queue full/, 'back-pressure is logged');
ok(wait_for(5, sub { counters($ng)->[0] == 0 }), 'all settled');
$ng->stop;

done_testing();
