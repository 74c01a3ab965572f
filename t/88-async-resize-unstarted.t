# A resizing reload: an old worker queues settlements after the zone was
# copied; the new workers reconcile them from the spool leased to it (its
# first attempts may be under way). But an old worker whose first
# attempts wait past their time (FIRST_WAIT, 10 s: too many in flight, a
# quarter of worker_connections) does not start them: a worker of the
# current zone gives such an entry back to its queue, due at once; an old
# one did nothing, and the new zone held it for the whole lease (90 s from
# the reconcile), past a short validBefore: given up, served but never
# paid. Now the old worker writes "free" for it: the new zone's next
# reconcile pass hands it over.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

# worker_connections 32: 4 first attempts at once; the old worker's four
# take 15 s and their answers are lost, the fifth waits; then a chain
my $fac = start_facilitator(script => "verify: default\n"
    . ("settle: delay=15000 502 {}\n" x 4)
    . "settle: chain default\n");

my $server = store_server_config($fac->port, settle => 'async');
$server =~ s/proxy_read_timeout 5s;/proxy_read_timeout 30s;/ or die;

my $http = "    x402_async_drain 10s;\n";
my %cfg = (workers => 1, worker_connections => 32, config => $server);
my $ng = start_nginx(%cfg,
    http_config => store_http_config("    x402_zone x402:1m;\n$http"));
my @p = payments_for($ng, 5);
my @nonces = map { decode_b64_json($_->[0])->{payload}{authorization}{nonce} } @p;

# the requests' headers, all but their end, reach the worker before the
# reload; the rest after: the old worker serves them and queues them in
# the old zone
my @c = unfinished_paid_requests($ng, map { $_->[0] } @p);
my $t0 = time;
my @resp = end_during_reload($ng, \@c, 1,
    http_config => store_http_config("    x402_zone x402:2m;\n$http"));
like($ng->error_log, qr/zone "x402" resized/, 'the zone was resized');
my $served = grep { m{^HTTP/1\.1 200} } @resp;
is($served, 5, 'all five served on credit by the old worker');

# the old attempts end at ~16 s; the reconcile passes at 2, 4, 8, 16, 32 s
my %chain;
ok(wait_for(45 - (time - $t0), sub {
        %chain = map { lc $_ => 1 } $fac->chain_nonces;
        !grep { !$chain{lc $_} } @nonces }),
   'all five settled well within the 90 s lease')
    or diag(scalar(grep { !$chain{lc $_} } @nonces) . ' not settled after '
            . sprintf('%.0f s', time - $t0));
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts');
$ng->stop;

done_testing();
