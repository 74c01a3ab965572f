# A resizing reload while an old worker is still first-attempting a
# settlement it queued after the zone was copied (a request whose header
# was still arriving at the reload): the new workers read the spool again
# (reconcile) and find it owed and not in their zone. Until this version
# they queued it due at once and sent a second /settle while the old
# worker's was under way; the facilitator (a fake chain: a nonce settles
# once) refused the second one as "nonce used", logged and counted as a
# refused settlement although the payment had settled. Now it is leased as
# in the old zone: the old worker's "done" ends it, a "free" (its attempt
# failed) or the lease's end gives it to the new workers.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

# each /settle takes 4 s: the old worker's is in flight when the new
# workers reconcile (2 s after the reload, then 4 s, 8 s, ...)
my $fac = start_facilitator(script => "verify: default\nsettle: delay=4000 chain default\n");

my $extra = <<'EOC';
    location = /metrics {
        x402_metrics;
    }
EOC

my %cfg = (
    workers => 1,
    config => store_server_config($fac->port, settle => 'async',
                                  extra => $extra),
);
my $http = "    x402_async_drain 10s;\n";
my $ng = start_nginx(%cfg,
    http_config => store_http_config("    x402_zone x402:1m;\n$http"));
my ($p) = payments_for($ng, 1);
my $nonce = decode_b64_json($p->[0])->{payload}{authorization}{nonce};

# the request's header, all but its end, reaches the worker before the
# reload; the rest after: the old worker serves it and queues the
# settlement in the old zone
my @c = unfinished_paid_requests($ng, $p->[0]);
# the reload returns once the old worker is gone: the header ends 1.5 s in
my ($resp) = end_during_reload($ng, \@c, 1.5,
    http_config => store_http_config("    x402_zone x402:2m;\n$http"));
like($ng->error_log, qr/zone "x402" resized/, 'the zone was resized');
like($resp, qr{^HTTP/1\.1 200}, 'served on credit by the old worker');

ok(wait_for(10, sub { settles_of($fac, $nonce) >= 1 }), 'its first attempt went out');
ok(wait_for(10, sub { grep { lc $_ eq lc $nonce } $fac->chain_nonces }),
   'settled');
# the reconciles at 2, 4, 8, 16 s after the reload
sleep 14;
is(settles_of($fac, $nonce), 1, 'sent to /settle once');
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
