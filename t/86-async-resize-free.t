# A resizing reload: an old worker's first attempt of a settlement it queued
# after the zone was copied fails (answer lost); it writes "free <id>" to
# the spool and the new workers, reading the spool again (reconcile), take
# the settlement over and send it. But every reconcile pass reads the whole
# spool: a later pass read the same "free" line again and took the lease
# back from the new worker whose /settle was in flight, so another worker
# (or the same one) sent a second /settle meanwhile: refused as "nonce
# used" (the fake chain: a nonce settles once), logged and counted refused
# although the payment had settled. A "free" ends only a lease the new zone
# holds for an old worker, never one of its own workers' attempts.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

# the old worker's attempt: its answer lost after 1 s; the new workers'
# take 4 s each: one is in flight at a later reconcile pass (they run 2,
# 4, 8, 16 s after the reload)
my $fac = start_facilitator(script => "verify: default\n"
    . "settle: delay=1000 502 {}\n"
    . "settle: delay=4000 chain default\n");

my $extra = <<'EOC';
    location = /metrics {
        x402_metrics;
    }
EOC

my %cfg = (
    workers => 2,
    config => store_server_config($fac->port, settle => 'async',
                                  extra => $extra),
);
my $http = "    x402_async_drain 10s;\n";
my $ng = start_nginx(%cfg,
    http_config => store_http_config("    x402_zone x402:1m;\n$http"));
my ($p) = payments_for($ng, 1);
my $nonce = decode_b64_json($p->[0])->{payload}{authorization}{nonce};

# the request's header, all but its end, reaches a worker before the
# reload; the rest after: the old worker serves it and queues the
# settlement in the old zone
my @c = unfinished_paid_requests($ng, $p->[0]);
my ($resp) = end_during_reload($ng, \@c, 1,
    http_config => store_http_config("    x402_zone x402:2m;\n$http"));
like($ng->error_log, qr/zone "x402" resized/, 'the zone was resized');
like($resp, qr{^HTTP/1\.1 200}, 'served on credit by the old worker');

ok(wait_for(10, sub { grep { lc $_ eq lc $nonce } $fac->chain_nonces }),
   'settled by a new worker');
# the reconciles up to 32 s after the reload
sleep 20;
is(settles_of($fac, $nonce), 2,
   'sent twice: the old worker\'s lost one, then one new worker\'s');
ok($ng->error_log !~ /refused by the facilitator/,
   'not logged as refused');
my $m = $ng->get('/metrics')->{body} // '';
ok($m !~ /^x402_async_settlements_total\{outcome="refused"\} [1-9]/m,
   'not counted as refused');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status}, 402,
   'the payment is not served again');
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts');
$ng->stop;

done_testing();
