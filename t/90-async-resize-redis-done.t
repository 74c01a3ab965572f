# x402_redis, after a resizing reload: the new workers read the spool again
# (reconcile, for 4 minutes), each pass the whole file. A "done <id> redis"
# line says Redis holds an entry (its owe confirmed): it ends the entry an
# old worker queued, read from the spool. But it also ended the entries the
# new workers queue themselves and hold (their first attempt under way):
# every pass read their own "done <id> redis" line and took them out of
# the zone. The attempt's end then found nothing: a settled one was not
# removed from Redis (claimed again 2 minutes later), a lost answer was
# not rescheduled there (its retry waited for the claim's lease, 120 s,
# not the backoff's second). Now such a line ends only an entry read from
# the spool, not one that Redis holds for this zone.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'no redis-server' unless `which redis-server` =~ /\S/;

my $redis = X402::Redis->start;
my $rport = $redis->port;

# each first attempt takes 3 s: a reconcile pass (2, 4, 8 s after the
# reload) comes while it is under way
my $fac = start_facilitator(script => "verify: default\nsettle: delay=3000 chain default\n");

my $http = "    x402_redis 127.0.0.1:$rport prefix=t90:;\n"
         . "    x402_async_drain 1s;\n";
my $ng = start_nginx(
    workers => 1,
    config => store_server_config($fac->port, settle => 'async'),
    http_config => store_http_config("    x402_zone x402:1m;\n$http"));
my @p = payments_for($ng, 3);
my @nonces = map { decode_b64_json($_->[0])->{payload}{authorization}{nonce} } @p;

$ng->reload(http_config => store_http_config("    x402_zone x402:2m;\n$http"));
like($ng->error_log, qr/zone "x402" resized/, 'the zone was resized');

# one payment a second, each attempt spanning a pass
for my $p (@p) {
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status}, 200,
       'served on credit');
    sleep 1;
}
my %chain;
ok(wait_for(15, sub {
        %chain = map { lc $_ => 1 } $fac->chain_nonces;
        !grep { !$chain{lc $_} } @nonces }), 'all settled');
ok(wait_for(3, sub { ($redis->cmd('ZCARD', 't90:owed') // 0) == 0 }),
   'and gone from the owed set in redis')
    or diag('owed: ' . join ' ', @{ $redis->cmd('ZRANGE', 't90:owed', 0, -1) });
unlike($ng->error_log, qr/finished but was no longer queued/,
       'every attempt found its entry');
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts');
$ng->stop;
$redis->stop;

done_testing();
