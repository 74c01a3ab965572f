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

# ---- an owed /settle retried through the wrong server ----
# The retry ran in the server block at the index recorded when the
# payment was queued. A reload that puts another block first (the zone,
# the spool and Redis carry what is owed across configurations) made it
# another server, whose facilitator location of the same name reaches
# another facilitator: the signed payment went there. Now the retry runs
# in a block whose priced locations use the facilitator the payment is
# owed to (the same prefix, in a block of the same server_name); none
# left: kept, said once, sent nowhere else.
sub owed_server {
    my ($fp, %a) = @_;
    my $name = $a{name} // 'localhost';
    my $prefix = $a{prefix} // '/_x402/';
    my $listen = $a{listen} ? "listen 127.0.0.1:$a{listen};" : '';
    return <<"EOC";
    $listen
    server_name $name;
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator $prefix;
    x402_settle async;
    x402_verify local;
    location /paid/ { x402_price 0.001; empty_gif; }
    location = /pending { return 200 \$x402_pending; }
    location $prefix { internal; proxy_pass http://127.0.0.1:$fp/; }
EOC
}

sub settled_nonces {
    my ($fac, $since) = @_;
    my %n;
    $n{$_->{json}{paymentPayload}{payload}{authorization}{nonce}} = 1
        for grep { $_->{endpoint} eq 'settle' && $_->{t} >= $since } $fac->requests(all => 1);
    return \%n;
}

for my $case (['another block first, the same facilitator prefix', name => 'b.example'],
              ['another block first, of the same name', prefix => '/_x402_b/'])
{
    my ($what, %b) = @$case;
    my $down = "verify: default\nsettle: 500 {\"error\":\"down\"}\n";
    my $facA = start_facilitator(script => $down);
    my $facB = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(http_config => "x402_async_drain 1s;\n",
                         config => owed_server($facA->port));
    my @p = payments_for($ng, 2);
    my $served = grep { $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $_->[0] })->{status} == 200 } @p;
    is($served, 2, "$what: 2 served on credit, the facilitator refusing");
    ok(wait_for(8, sub { n_of($facA, 'settle') >= 4 }), "$what: retried while it refuses");

    my $port2 = free_port();
    $ng->reload(http_config => "x402_async_drain 1s;\n    server {\n"
                               . owed_server($facB->port, listen => $port2, %b) . "    }\n");
    is($ng->get('/pending')->{body}, 2, "$what: 2 still owed after the reload");
    my $since = Time::HiRes::time();
    $facA->set_script("verify: default\nsettle: default\n");
    ok(wait_for(20, sub { ($ng->get('/pending')->{body} // -1) == 0 }),
       "$what: nothing owed in the end");
    my $at_a = settled_nonces($facA, $since);
    my $ok = grep { $at_a->{decode_b64_json($_->[0])->{payload}{authorization}{nonce}} } @p;
    is($ok, 2, "$what: both settled at the facilitator they were paid through");
    is(n_of($facB, 'settle'), 0, "$what: the other facilitator never saw a /settle");
    is(crashed($ng), '', "$what: no worker crashed");
    $ng->stop;
    $facA->stop;
    $facB->stop;
}

# no block uses the facilitator any more: kept, said once, then settled
# where it belongs once a reload brings the block back. Each attempt
# doubles the backoff: the reloads come early, so that the last wait
# stays short.
{
    my $facA = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");
    my $facB = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(http_config => "x402_async_drain 1s;\n",
                         config => owed_server($facA->port));
    my @p = payments_for($ng, 1);
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
       'facilitator gone: served on credit');
    # the facilitator location keeps its name, reaching another facilitator,
    # but no priced location uses it (the old workers' drain, with the old
    # configuration, is over when reload returns)
    $ng->reload(config => owed_server($facB->port, prefix => '/_x402_b/')
                          . "    location /_x402/ { internal; proxy_pass http://127.0.0.1:"
                          . $facB->port . "/; }\n");
    $facA->set_script("verify: default\nsettle: default\n");
    my $since = Time::HiRes::time();
    ok(wait_for(10, sub { $ng->error_log =~ /owed through the facilitator "\/_x402\/" of a server block that no priced location/ }),
       'facilitator gone: said at error');
    is($ng->get('/pending')->{body}, 1, 'facilitator gone: still owed');
    is(n_of($facB, 'settle'), 0, 'facilitator gone: nothing sent to the other facilitator');
    is(scalar keys %{settled_nonces($facA, $since)}, 0, 'facilitator gone: nor to its own meanwhile');

    # the old worker tries once more as it drains: not said again
    $ng->reload(config => owed_server($facA->port));
    ok(wait_for(20, sub { ($ng->get('/pending')->{body} // -1) == 0 }),
       'facilitator back: nothing owed in the end');
    my $log = $ng->error_log;
    # twice in the same worker, unless a new worker took it before the
    # old one drained
    cmp_ok(scalar(() = $log =~ /failed \(attempt \d+: no server uses its facilitator\)/g), '>=', 1,
           'facilitator gone: tried meanwhile');
    is(() = $log =~ /no priced location of this configuration uses/g, 1, 'facilitator gone: said once');
    my $nonce = decode_b64_json($p[0][0])->{payload}{authorization}{nonce};
    ok(settled_nonces($facA, $since)->{$nonce}, 'facilitator back: settled at its facilitator');
    is(n_of($facB, 'settle'), 0, 'facilitator back: the other one never saw it');
    $ng->stop;
    $facA->stop;
    $facB->stop;
}

# ---- try_files into an unpriced named location, under after ----
# `location /premium/ { x402_price ...; try_files $uri @app; }`: the
# priced location's access phase asked for the payment, then @app (no
# price of its own) made the content, and the header filter saw a
# location other than the one paid for: served free, the payment
# released, and the same payment bought it again and again. A named
# location is reached only through the location that sent the request
# there: its response is that location's content, settled as such;
# `x402 off` there keeps it free.
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $fp = $fac->port;
    my $ng = start_nginx(config => <<"EOC", user_files => ">>> premium/file.txt\nstatic paid\n");
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    x402_settle after;
    location /premium/ {
        x402_price 0.001;
        try_files \$uri \@app;
    }
    location \@app { return 200 "app content\\n"; }
    location /optout/ {
        x402_price 0.001;
        try_files \$uri \@free;
    }
    location \@free { x402 off; return 200 "free fallback\\n"; }
    location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }
EOC
    is($ng->get('/premium/report')->{status}, 402, 'named fallback: no payment, 402');
    my $p = sign_payment(amount => '1000');
    my $r = $ng->get('/premium/report', { 'PAYMENT-SIGNATURE' => $p });
    is($r->{status}, 200, 'named fallback: paid, 200');
    is($r->{body}, "app content\n", "named fallback: the named location's content");
    ok(X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'named fallback: with the settlement header');
    is(n_of($fac, 'settle'), 1, 'named fallback: settled');
    $r = $ng->get('/premium/report', { 'PAYMENT-SIGNATURE' => $p });
    is($r->{status}, 402, 'named fallback: the same payment again, 402');
    unlike($r->{body} // '', qr/app content/, 'named fallback: not served again');
    is(n_of($fac, 'settle'), 1, 'named fallback: settled once');

    $r = $ng->get('/premium/file.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{body}, "static paid\n", 'named fallback: a file of the location itself');
    is(n_of($fac, 'settle'), 2, 'named fallback: a file of the location itself, settled');

    my $q = sign_payment(amount => '1000');
    $r = $ng->get('/optout/x', { 'PAYMENT-SIGNATURE' => $q });
    is($r->{body}, "free fallback\n", 'x402 off in the named location: served');
    is(X402::HTTP::header($r, 'PAYMENT-RESPONSE'), undef, 'x402 off in the named location: no settlement header');
    is(n_of($fac, 'settle'), 2, 'x402 off in the named location: not settled');
    $ng->stop;
    $fac->stop;
}

# ---- the per-option metrics table filled by failed settlements ----
# x402_option_settlements_total keeps up to 64 (network, asset, payTo)
# rows. The labels are the offer's, but payTo may come from a variable,
# and one fed by the request lets a client pick it: signed payments to 64
# addresses of its choice (no funds needed under x402_verify local), each
# refused at /settle, took every row, and the revenue of an option paid
# later was no longer tracked. Failed settlements now take rows only in
# the first half of the table.
{
    my $fac = start_facilitator(script => "verify: default\n"
        . "settle: 200 {\"success\":false,\"errorReason\":\"insufficient_funds\",\"transaction\":\"\",\"network\":\"{{network}}\"}\n");
    my $ng = start_nginx(config => <<"EOC");
    x402_pay_to \$arg_to;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    x402_settle sync;
    x402_verify local;
    location /paid/ { x402_price 0.001; empty_gif; }
    location = /metrics { x402_metrics; }
    location /_x402/ { internal; proxy_pass http://127.0.0.1:${\ $fac->port }/; }
EOC
    my @to = map { sprintf('0x%040d', $_) } 1 .. 65;
    my @p = sign_payments(scalar @to, pay_to_each => join(',', @to));
    my $refused = 0;
    for my $i (0 .. 63) {
        $refused++ if $ng->get("/paid/?to=$to[$i]", { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status} == 402;
    }
    is($refused, 64, 'metrics table: 64 payments to 64 addresses, refused at /settle');
    $fac->set_script("verify: default\nsettle: default\n");
    my $r = $ng->get("/paid/?to=$to[64]", { 'PAYMENT-SIGNATURE' => $p[64][0] });
    is($r->{status}, 200, 'metrics table: then one paid');
    my $m = $ng->get('/metrics')->{body} // '';
    like($m, qr/^x402_option_settlements_total\{network="eip155:84532",asset="[^"]+",pay_to="$to[64]",result="ok"\} 1$/mi,
         'metrics table: the paid option has its row');
    like($m, qr/^x402_revenue_atomic_total\{network="eip155:84532",asset="[^"]+",pay_to="$to[64]"\} 1000$/mi,
         'metrics table: and its revenue');
    is(() = $m =~ /^x402_option_settlements_total\{[^}]*result="failed"\} 1$/mg, 32,
       'metrics table: failed settlements took half the rows');
    $ng->stop;
    $fac->stop;
}

done_testing();
