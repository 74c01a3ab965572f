# An owe whose reply was lost (the connection to Redis dropped after
# Redis ran it): this host keeps it in its spool and settles it; the entry
# that landed must leave Redis once the connection is back, or another
# host claims it once its lease has run out and sends a second /settle.
# The removal went out only with the next claim of owed entries, and a
# worker claims nothing while its zone holds x402_async_limit settlements
# or more (or while it has many retries in flight): under that load,
# exactly when settlements pile up, the removal waited for as long as the
# facilitator stayed down, well past the lease. Here the limit is 1 and the
# entry itself fills it. Now queued removals go out at every tick of the
# retry timer once Redis answers, whatever the claims do.
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

my $fac = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");

sub nonce_of { decode_b64_json($_[0])->{payload}{authorization}{nonce} }
# between A and Redis: once armed, drops A's connection after the owe's
# ZADD ran, its replies not passed on
my $px = X402::RedisDropProxy->start(redis_port => $rport,
    match => qr/ZADD\r\n\$\d+\r\nt87:owed\r\n/);
my $pport = $px->port;

my $a = start_nginx(
    name => 'owe-lost-full',
    workers => 1,
    http_config => store_http_config(
        "    x402_redis 127.0.0.1:$pport prefix=t87:;\n"
        . "    x402_async_limit 1;\n"
        . "    x402_async_drain 1s;\n"),
    config => store_server_config($fac->port, settle => 'async'),
);
my ($q) = payments_for($a, 1);
my $nonce = nonce_of($q->[0]);
$px->arm;
is($a->get('/paid/', { 'PAYMENT-SIGNATURE' => $q->[0] })->{status}, 200,
   'served on credit');
ok(wait_for(5, sub { !$px->armed }), 'the owe reached redis, its reply was lost');
ok(wait_for(5, sub { settles_of($fac, $nonce) >= 1 }), 'tried (facilitator down)');
my $spool = eval { local (@ARGV, $/) = ($a->prefix . '/x402_spool/settlements'); <> } // '';
like($spool, qr/^owe [0-9a-f]{64} /m, 'the spool keeps it');
unlike($spool, qr/^done [0-9a-f]{64} redis$/m, 'not handed to redis');
ok(wait_for(10, sub { ($redis->cmd('ZCARD', 't87:owed') // 0) == 0
                      && !@{ $redis->cmd('KEYS', 't87:owed:*') // [] } }),
   'the entry that landed leaves redis once connected again, the zone full')
    or diag('owed: ' . join ' ', @{ $redis->cmd('ZRANGE', 't87:owed', 0, -1,
                                                'WITHSCORES') });
$fac->set_script("verify: default\nsettle: chain default\n");
ok(wait_for(15, sub { grep { lc $_ eq lc $nonce } $fac->chain_nonces }),
   'settled by this host once the facilitator is back');
unlike($a->error_log, qr/\[alert\]|exited on signal/, 'no alerts');

$a->stop;
$px->stop;
$redis->stop;

done_testing();
