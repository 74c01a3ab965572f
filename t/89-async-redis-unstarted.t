# x402_redis: a settlement owed in Redis (its owe confirmed) whose first
# attempt waits past its time (FIRST_WAIT, 10 s: too many first attempts
# in flight, a quarter of worker_connections) is not started here. Without
# Redis it goes back to the zone's queue, due at once; kept in Redis it
# was left to its lease there, which runs out 30 s after ours (120 s from
# the payment): that long before any host of the fleet tried it, past a
# short validBefore (served, never paid). Now it is rescheduled in Redis,
# due at once: the next claim (of any host) takes it.
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

# worker_connections 32: 4 first attempts at once; these four take 15 s
# and their answers are lost, the fifth waits; then a chain
my $fac = start_facilitator(script => "verify: default\n"
    . ("settle: delay=15000 502 {}\n" x 4)
    . "settle: chain default\n");

my $server = store_server_config($fac->port, settle => 'async');
$server =~ s/proxy_read_timeout 5s;/proxy_read_timeout 30s;/ or die;

my $ng = start_nginx(
    workers => 1, worker_connections => 32, config => $server,
    http_config => store_http_config(
        "    x402_redis 127.0.0.1:$rport prefix=t89:;\n"
        . "    x402_async_drain 1s;\n"));
my @p = payments_for($ng, 5);
my @nonces = map { decode_b64_json($_->[0])->{payload}{authorization}{nonce} } @p;

my $t0 = time;
my $served = 0;
for my $p (@p) {
    $served++ if $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status} == 200;
}
is($served, 5, 'five served on credit');
ok(wait_for(3, sub { ($redis->cmd('ZCARD', 't89:owed') // 0) == 5 }),
   'owed in redis');

my %chain;
ok(wait_for(45 - (time - $t0), sub {
        %chain = map { lc $_ => 1 } $fac->chain_nonces;
        !grep { !$chain{lc $_} } @nonces }),
   'all five settled long before the 120 s lease in redis ran out')
    or diag(scalar(grep { !$chain{lc $_} } @nonces) . ' not settled after '
            . sprintf('%.0f s', time - $t0));
my %sent;
for my $r (grep { $_->{endpoint} eq 'settle' } $fac->requests) {
    $sent{lc($r->{json}{paymentPayload}{payload}{authorization}{nonce} // '')}++;
}
is($sent{lc $nonces[4]} // 0, 1, 'the fifth sent once');
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts');
$ng->stop;
$redis->stop;

done_testing();
