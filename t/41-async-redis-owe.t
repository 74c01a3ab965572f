# Owed settlements in Redis (x402_settle async, x402_redis): one
# authorization is never sent to /settle by two hosts.
#
# 1. An owe's score in the owed set (its first attempt's lease) carries the
#    margin for skewed clocks that a claim's does: a host whose clock runs
#    ahead by up to 30 s does not claim an entry while its owner's lease
#    holds. (Until this version the owe's score was the bare lease end: a
#    claim's lease ended for other hosts 30 s after it did for its holder,
#    an owe's at once.)
# 2. An owe that reached Redis but whose reply was lost (the connection
#    dropped after the commands ran): this host keeps it (the spool) and
#    settles it; the entry leaves Redis once the connection is back.
#    Until this version it stayed there, and once its lease had run out
#    another host claimed it and sent a second /settle: here the owner is
#    killed, another host claims what Redis holds, the owner restarted
#    resumes its spool; the facilitator keeps a chain (a nonce settles
#    once): the second /settle was refused ("nonce used") and that host
#    logged and counted a settled payment as refused.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use X402::RedisDropProxy;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'no redis-server' unless `which redis-server` =~ /\S/;

my $redis = X402::Redis->start;
my $rport = $redis->port;

my $fac = start_facilitator(script => "verify: default\nsettle: delay=3000 500 {\"error\":\"down\"}\n");

sub nonce_of { decode_b64_json($_[0])->{payload}{authorization}{nonce} }

my $status_loc = <<'EOC';
    location = /metrics {
        x402_metrics;
    }
EOC

sub node {
    my ($name, $port, $prefix) = @_;
    return (
        name => $name,
        workers => 1,
        http_config => store_http_config(
            "    x402_redis 127.0.0.1:$port prefix=$prefix;\n"
            . "    x402_async_drain 1s;\n"),
        config => store_server_config($fac->port, settle => 'async',
                                      extra => $status_loc),
    );
}

# ---- 1. the owe's score: the lease and the margin a claim has ----

{
    my $ng = start_nginx(node('owe-score', $rport, 't41a:'));
    my ($p) = payments_for($ng, 1);
    my $t0 = time * 1000;
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status}, 200,
       'served on credit');
    my $ids;
    ok(wait_for(2, sub { $ids = $redis->cmd('ZRANGE', 't41a:owed', 0, -1,
                                            'WITHSCORES');
                         @$ids == 2 }),
       'owed in redis while its first attempt runs');
    my $score = $ids->[1] // 0;
    # the first attempt's lease is 90 s, a claim's 120 s (90 + 30 of skew)
    cmp_ok($score - $t0, '>=', 119_000,
           'its score: the lease end and the clock-skew margin')
        or diag(sprintf 'score - now = %.0f ms', $score - $t0);
    cmp_ok($score - $t0, '<=', 121_500, 'no more');
    $ng->stop;
}

# ---- 2. an owe whose reply was lost ----

# A proxy between A and Redis (X402::RedisDropProxy): once armed it forwards
# the ZADD of the owed set to Redis, waits for Redis to run it, and drops
# A's connection without passing the replies on.
my $px = X402::RedisDropProxy->start(redis_port => $rport,
    match => qr/ZADD\r\n\$\d+\r\nt41:owed\r\n/);

$fac->set_script("verify: default\nsettle: 500 {\"error\":\"down\"}\n");
my $a = start_nginx(node('owe-lost', $px->port, 't41:'));
my ($q) = payments_for($a, 1);
my $nonce = nonce_of($q->[0]);
$px->arm;
is($a->get('/paid/', { 'PAYMENT-SIGNATURE' => $q->[0] })->{status}, 200,
   'A: served on credit');
ok(wait_for(5, sub { !$px->armed }), 'the owe reached redis, its reply was lost');
ok(wait_for(5, sub { settles_of($fac, $nonce) >= 1 }), 'A tried it (facilitator down)');
my $spool = sub {
    eval { local (@ARGV, $/) = ($a->prefix . '/x402_spool/settlements'); <> }
    // '' };
unlike($spool->(), qr/^done [0-9a-f]{64} redis$/m,
       "A's spool keeps it: A settles it");
ok(wait_for(10, sub { ($redis->cmd('ZCARD', 't41:owed') // 0) == 0
                      && !@{ $redis->cmd('KEYS', 't41:owed:*') // [] } }),
   'the entry that landed leaves redis once A is connected again')
    or diag('owed: ' . join ' ', @{ $redis->cmd('ZRANGE', 't41:owed', 0, -1,
                                                'WITHSCORES') });

# A dies. Whatever Redis still holds is due (its lease ran out): B claims
# it, with the facilitator back; then A starts again and resumes its spool.
my @w = $a->worker_pids;
kill 'KILL', $a->pid, @w;
ok(wait_for(5, sub { !grep { X402::Nginx::pid_alive($_) } $a->pid, @w }),
   'A killed');
$a->{pid} = undef;
for my $id (@{ $redis->cmd('ZRANGE', 't41:owed', 0, -1) // [] }) {
    $redis->cmd('ZADD', 't41:owed', 0, $id);
}
$fac->set_script("verify: default\nsettle: chain default\n");
my $n0 = settles_of($fac, $nonce);
my $b = start_nginx(node('owe-other', $rport, 't41:'));
wait_for(5, sub { settles_of($fac, $nonce) > $n0 });
$a->start;
ok(wait_for(10, sub { $fac->chain_nonces && grep { lc $_ eq lc $nonce }
                                              $fac->chain_nonces }),
   'settled');
sleep 2;
is(settles_of($fac, $nonce) - $n0, 1, 'sent to /settle once after the facilitator came back');
my $logs = $a->error_log . $b->error_log;
ok($logs !~ /refused by the facilitator/, 'nobody logs it refused');
my $m = $a->get('/metrics')->{body} . $b->get('/metrics')->{body};
ok($m !~ /^x402_async_settlements_total\{outcome="refused"\} [1-9]/m,
   'nor counts it refused');
is(scalar(() = $m =~ /^x402_async_settlements_total\{outcome="settled"\} 1$/mg),
   1, 'counted settled once');
unlike($logs, qr/\[alert\]|exited on signal/, 'no alerts');

$a->stop;
$b->stop;
$px->stop;

# ---- 3. the settled record a retry writes: kept from its settlement ----

# x402_grant 600s, facilitator verification (a validBefore two hours
# ahead): a settled record lives 600 s from its settlement, whether the
# first attempt settled it or a retry did. Until this version a retry
# wrote it with the reservation's expiry (the window: maxTimeoutSeconds +
# 60 s from the reservation): the grant ended there.
{
    my %n = node('grant', $rport, 't41g:');
    $n{config} = store_server_config($fac->port, settle => 'async',
                                     grant => '600s', extra => $status_loc);
    $n{config} =~ s/x402_verify\s+local;/x402_verify facilitator;/
        or die 'no x402_verify';
    $fac->set_script("verify: default\nsettle: default\n");
    my $ng = start_nginx(%n);
    my @g = payments_for($ng, 2, valid_before => int(time) + 7200);
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $g[0][0] })->{status},
       200, 'grant: the first payment served on credit');
    ok(wait_for(5, sub { settles_of($fac, nonce_of($g[0][0])) >= 1 }),
       'settled by its first attempt');
    $fac->set_script("verify: default\nsettle: 500 {\"error\":\"down\"}\n");
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $g[1][0] })->{status},
       200, 'grant: the second served on credit');
    ok(wait_for(5, sub { settles_of($fac, nonce_of($g[1][0])) >= 1 }),
       'its first attempt failed');
    $fac->set_script("verify: default\nsettle: default\n");
    ok(wait_for(15, sub { ($redis->cmd('ZCARD', 't41g:owed') // 1) == 0
                          && settles_of($fac, nonce_of($g[1][0])) >= 2 }),
       'a retry settled it');
    sleep 0.5;
    my @recs = grep { /^t41g:[0-9a-f]{64}$/ }
               @{ $redis->cmd('KEYS', 't41g:*') // [] };
    is(scalar @recs, 2, 'two records');
    for my $k (@recs) {
        like($redis->cmd('GET', $k) // '', qr/^S\|/, 'settled');
        cmp_ok($redis->cmd('PTTL', $k), '>', 590_000,
               'kept for the grant from its settlement');
    }
    for my $i (0, 1) {
        is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $g[$i][0] })->{status},
           200, "the grant serves payment $i again");
    }
    $ng->stop;
}

$redis->stop;

done_testing();
