# Breaker pass 2: the background request (retry.c, supported.c) under a
# real server's configuration, owed settlements across a reload that moves
# the servers, and priced locations handing over to unpriced ones. Each
# part fails on the code before its fix.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes ();

plan skip_all => 'module not built' unless -f module_path();

sub n_of { my ($fac, $e) = @_; scalar grep { $_->{endpoint} eq $e } $fac->requests(all => 1) }

sub crashed { my $log = $_[0]->error_log; return $log =~ /exited on signal \d+/ ? $& : '' }

# ---- the background request under limit_req, limit_conn, allow/deny ----
# The fake request of a worker's timer runs the facilitator subrequest
# through its server's phases: limit_req_zone/limit_conn_zone keyed on
# $binary_remote_addr read c->sockaddr, which the fake connection did not
# have: signal 11 at every GET /supported probe and every owed-settlement
# retry. Now the connection says "unix:", and the limits, which count
# clients, let the worker's own calls through (a strict rate would refuse
# or delay them forever: nobody drives that connection's events).
{
    my $fac = start_facilitator(script => "supported: default\nverify: default\n"
                                          . "settle: 500 {\"error\":\"down\"}\n");
    my $fp = $fac->port;
    my $ng = start_nginx(workers => 2, http_config => <<"EOC", config => <<"EOC");
    limit_req_zone \$binary_remote_addr zone=rl:1m rate=1r/m;
    limit_req zone=rl burst=50 nodelay;
    limit_conn_zone \$binary_remote_addr zone=cl:1m;
    limit_conn cl 20;
    log_format fac '[\$remote_addr] [\$binary_remote_addr] [\$server_addr:\$server_port] '
                   '\$request_method \$uri \$status \$limit_req_status';
    x402_async_drain 1s;
EOC
    allow 127.0.0.1;
    deny all;
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    x402_settle async;
    x402_verify local;
    location /paid/ { x402_price 0.001; empty_gif; }
    location = /pending { return 200 \$x402_pending; }
    location /_x402/ {
        internal;
        log_subrequest on;
        access_log logs/fac.log fac;
        proxy_pass http://127.0.0.1:$fp/;
    }
EOC
    ok(wait_for(8, sub { n_of($fac, 'supported') >= 1 }), 'limits: GET /supported reached the facilitator');
    my @p = payments_for($ng, 3);
    my $served = grep { $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $_->[0] })->{status} == 200 } @p;
    is($served, 3, 'limits: 3 served on credit, the facilitator refusing /settle');
    ok(wait_for(8, sub { n_of($fac, 'settle') >= 6 }), 'limits: the owed settlements are retried');
    $fac->set_script("supported: default\nverify: default\nsettle: default\n");
    ok(wait_for(12, sub { ($ng->get('/pending')->{body} // -1) == 0 }),
       'limits: the retries settle everything owed');
    is(crashed($ng), '', 'limits: no worker crashed');
    $ng->stop;
    my $log = do { local $/; open my $fh, '<', $ng->prefix . '/logs/fac.log'; <$fh> // '' };
    like($log, qr{^\[unix:\] \[unix:\] \[unix::\] GET /_x402/supported 200 PASSED$}m,
         'limits: the probe logged with "unix:" as its address, not limited');
    like($log, qr{^\[unix:\] \[unix:\] \[unix::\] POST /_x402/settle 200 PASSED$}m,
         'limits: a retry logged likewise');
    unlike($ng->error_log, qr/limiting (requests|connections)/, 'limits: no background call limited');
    $fac->stop;
}

done_testing();
