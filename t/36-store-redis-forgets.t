# A Redis that forgets is not a replay window (issue 14, item 3). The
# module keeps an epoch record in Redis ("<prefix>epoch": creation time,
# id, flag); each reservation checks it, and each connect reads it. When
# it is gone or new, Redis lost its data (restart without persistence,
# FLUSHALL, failover to an empty replica): until every record made before
# could have expired (the longest maxTimeoutSeconds + 60 s + 10 s), a
# payment Redis says it never saw is not taken as fresh: fail=closed
# refuses it (503), fail=open has the facilitator verify it (a settled
# payment's nonce is used on chain). Each nginx pushes its own live
# records back to Redis.
#
# And the fail=open resync: records taken during an outage are pushed once
# Redis is back; a push that fails (here: Redis refuses writes, OOM) keeps
# its record marked and is retried, and only confirmed pushes are counted.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'no redis-server' unless `which redis-server` =~ /\S/;

my $USED = 'verify: 200 {"isValid":false,"invalidReason":'
    . '"invalid_exact_evm_nonce_already_used","payer":"{{payer}}"}';
my $fac = start_facilitator(script => "$USED\nsettle: default\n");

sub count { my $e = shift; scalar grep { $_->{endpoint} eq $e } $fac->requests }

my $redis = X402::Redis->start;
my $rport = $redis->port;

sub fleet {
    my (%a) = @_;
    return start_nginx(
        name => $a{name},
        workers => 2,
        http_config => store_http_config(
            "    x402_redis 127.0.0.1:$rport prefix=t36: fail=$a{fail} "
            . "timeout=300ms connect_timeout=300ms;\n"),
        # x402_verify local
        config => store_server_config($fac->port,
                      extra => "location = /metrics { x402_metrics; }"),
    );
}

sub records {
    return grep { !/:epoch$/ } @{ $redis->cmd('KEYS', 't36:*') };
}

# ---- fail=closed, Redis restarted empty ----

my $ng1 = fleet(name => 'one', fail => 'closed');
my $ng2 = fleet(name => 'two', fail => 'closed');

my @p = payments_for($ng1, 3);
is($ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'a payment served by the first nginx');
is($ng2->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 402,
   'refused by the second (redis knows it)');
like($redis->cmd('GET', 't36:epoch'), qr/^\d+\|[0-9a-f]{16}\|f$/,
     'an epoch record, first start');

$redis->stop;
$redis = X402::Redis->start(port => $rport);    # no persistence: empty
sleep 0.3;

my $settles = count('settle');
my $st = 0;
ok(wait_for(5, sub {
    $st = $ng2->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status};
    $st != 503 || $ng2->error_log =~ /redis lost its data/ }),
   'the second nginx notices that redis lost its data');
isnt($st, 200, "the same payment at the second nginx: not served ($st)");
$st = $ng2->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status};
ok($st == 503 || $st == 402,
   "again: $st (402 once the first nginx has pushed its record back)");
is($ng2->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[2][0] })->{status}, 503,
   'fail=closed: a payment redis has not seen is refused (503) while it '
   . 'cannot vouch');
is(count('settle'), $settles, 'no second /settle');
like($redis->cmd('GET', 't36:epoch'), qr/^\d+\|[0-9a-f]{16}\|l$/,
     'the new epoch record says: data lost');
like($ng2->error_log,
     qr/redis lost its data .* until (\d+) s from now/,
     'logged, with how long');
my ($secs) = $ng2->error_log =~ /until (\d+) s from now/;
ok(defined $secs && $secs > 300 && $secs <= 300 + 60 + 10,
   'the longest record life: maxTimeoutSeconds + 60 s + 10 s (' . ($secs // '?') . ')');

my $m = $ng2->get('/metrics')->{body};
like($m, qr/^x402_store_redis_data_lost_total [1-9]/m,
     'metrics: x402_store_redis_data_lost_total');
like($m, qr/^x402_store_redis_unvouched_total [1-9]/m,
     'metrics: x402_store_redis_unvouched_total');

# the first nginx notices at its next reservation, pushes its records back
is($ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 503,
   'the first nginx: a new payment is refused too (fail=closed)');
ok(wait_for(5, sub { grep { $_ } records() }),
   'the first nginx pushed its records back to redis');
is($ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 402,
   'and still refuses the replay itself');

$ng1->stop;
$ng2->stop;

# ---- fail=open, FLUSHALL: the facilitator verifies ----

# (a fleet that starts now would still distrust the young 'l' epoch: this
# part starts from an empty Redis, a first start)
$redis->cmd('FLUSHALL');
my $ng3 = fleet(name => 'three', fail => 'open');
my $ng4 = fleet(name => 'four', fail => 'open');
sleep 0.3;

my @q = payments_for($ng3, 2);
is($ng3->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[0][0] })->{status}, 200,
   'fail=open: a payment served by the third nginx (local checks)');
my $verifies = count('verify');
$settles = count('settle');
$redis->cmd('FLUSHALL');

is($ng4->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[0][0] })->{status}, 402,
   'after FLUSHALL the fourth refuses it: verified by the facilitator');
is(count('verify'), $verifies + 1, 'one /verify (the nonce is used)');
is(count('settle'), $settles, 'no second /settle');
like($ng4->error_log, qr/verified by the facilitator/,
     'the forced verification is logged');

$fac->set_script("verify: default\nsettle: default\n");
is($ng4->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[1][0] })->{status}, 200,
   'a new payment is served (verified by the facilitator)');
is(count('verify'), $verifies + 2, 'through /verify');

$ng3->stop;
$ng4->stop;

# ---- fail=open resync: a failed push is retried, never dropped ----

$redis->cmd('FLUSHALL');
my $ng5 = fleet(name => 'five', fail => 'open');
my $ng6 = fleet(name => 'six', fail => 'open');
my @o = payments_for($ng5, 20);
$redis->cmd('SAVE');     # keep the epoch: this part is about the outage
$redis->stop;
sleep 0.3;
my $served = 0;
for my $x (@o) {
    $served++ if $ng5->get('/paid/', { 'PAYMENT-SIGNATURE' => $x->[0] })
                     ->{status} == 200;
}
is($served, 20, 'redis down, fail=open: 20 payments served locally');

# back, but refusing every write
$redis = X402::Redis->start(port => $rport,
    args => ['--maxmemory', '1', '--maxmemory-policy', 'noeviction']);
ok(wait_for(5, sub { $ng5->error_log =~ /push\(es\) failed/ }),
   'the pushes fail, and that is logged');
unlike($ng5->error_log, qr/\b[1-9]\d* payment record\(s\) taken while/,
       'failed pushes are not counted as pushed');
is(scalar(records()), 0, 'nothing in redis yet');

$redis->cmd('CONFIG', 'SET', 'maxmemory', '0');
ok(wait_for(8, sub { records() == 20 }),
   'once redis takes writes again, all 20 records are pushed');
my $refused = 0;
for my $x (@o) {
    $refused++ if $ng6->get('/paid/', { 'PAYMENT-SIGNATURE' => $x->[0] })
                      ->{status} == 402;
}
is($refused, 20, 'another nginx refuses all 20 payments served in the outage');

for my $ng ($ng5, $ng6) {
    unlike($ng->error_log, qr/exited on signal|\[alert\]/, 'no crash');
}
$ng5->stop;
$ng6->stop;
$redis->stop;
$fac->stop;

done_testing();
