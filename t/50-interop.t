#!/usr/bin/perl
# Real money flow end to end (issue 5): the official x402 clients pay
# through nginx + the module, the official facilitator settles on a local
# chain (anvil, chain id 84532, our EIP-3009 token at the Base Sepolia USDC
# address), and the balances read from the chain move by exactly the price.
#
#   - @x402/fetch (v2) and x402-fetch (v1), unmodified, pay static and
#     proxied content under x402_settle sync, after and async;
#   - under `after`, a 404 (static or upstream) costs nothing;
#   - negative paths against the real facilitator: insufficient balance, a
#     reused authorization after settlement, an expired authorization: 402,
#     no content, no tokens move;
#   - the conformance vectors (js/interop/vectors.mjs) against the official
#     facilitator's /verify and nginx: every payment the facilitator calls
#     invalid for a reason visible locally, nginx refuses locally too.
#
# Takes about a minute; needs the module built and js/node_modules.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use X402::Test;
use X402::Interop;
use Time::HiRes qw(time sleep);
use JSON::PP ();

my $PRICE = $X402::Interop::PRICE;    # 0.001 USDC in atomic units

plan skip_all => 'module not built (scripts/build-module.sh or X402_MODULE)'
    unless -f module_path();
plan skip_all => 'js/node_modules missing (npm ci in js/)'
    unless X402::Interop::available();

my %T;    # timings of each part, seconds
my $t_all = time;

my $t = time;
my $ix = X402::Interop->start;
my ($run, $chain, $fac) = ($ix->run_dir, $ix->chain, $ix->fac);
$T{start_chain_facilitator} = time - $t;
ok($chain->{pid} && $fac->{pid}, "anvil ($chain->{rpcUrl}) and the official "
   . "facilitator ($fac->{url}) are running");
is($chain->{token}{domainSeparator},
   '0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818',
   'the token presents the Base Sepolia USDC EIP-712 domain');

my $pay_to = $chain->{payTo};
my $fac_port = $fac->{port};
my $up_port = free_port();

# ---- nginx ----

my @modes = qw(sync after async);
my $locations = '';
for my $m (@modes) {
    $locations .= <<"EOC";
        location /$m/static/ {
            x402_price 0.001;
            x402_settle $m;
        }
        location /$m/api/ {
            x402_price 0.001;
            x402_settle $m;
            proxy_pass http://app/api/;
        }
EOC
}

my $files = '';
for my $d (qw(sync after async local local-after local-async)) {
    $files .= ">>> $d/static/doc.json\n{\"doc\":\"$d\",\"paid\":true}\n";
}

$t = time;
my $ng = start_nginx(
    name => 'interop',
    http_config => <<"EOC",
    upstream app {
        server 127.0.0.1:$up_port;
        keepalive 4;
    }
    server {
        listen 127.0.0.1:$up_port;
        location = /api/ok {
            default_type application/json;
            return 200 '{"from":"upstream"}';
        }
        location = /api/boom {
            return 503 '{"from":"upstream","error":"down"}';
        }
        location / {
            return 404;
        }
    }
EOC
    config => <<"EOC",
        large_client_header_buffers 4 16k;
        x402_pay_to $pay_to;
        x402_network base-sepolia;
        x402_facilitator /_x402/;

        location /_x402/ {
            internal;
            proxy_pass http://127.0.0.1:$fac_port/;
        }
$locations
        location /local/static/ {
            x402_price 0.001;
            x402_verify local;
        }
        location /local-async/static/ {
            x402_price 0.001;
            x402_verify local;
            x402_settle async;
        }
        location /local-after/static/ {
            x402_price 0.001;
            x402_verify local;
            x402_settle after;
        }
EOC
    user_files => $files,
);
$T{start_nginx} = time - $t;
my $base = 'http://127.0.0.1:' . $ng->port;

# ---- helpers (X402::Interop) ----

sub node { X402::Interop::node(@_) }
sub node_json { X402::Interop::node_json(@_) }
sub balances { $ix->balances }
sub tx_ok { $ix->tx_ok(@_) }
sub settles_of { $ix->settles_of(@_) }
sub wait_pay_to { $ix->wait_pay_to(@_) }
sub pay { my ($v, $path, %o) = @_; $ix->pay($v, "$base$path", %o) }
sub nonce_of { X402::Interop::nonce_of(@_) }
sub short { my $s = shift // ''; length $s > 300 ? substr($s, 0, 300) . '...' : $s }

# ---- 1. official clients pay static and proxied content, every mode ----

$t = time;
for my $m (@modes) {
    for my $kind (qw(static api)) {
        my $path = $kind eq 'static' ? "/$m/static/doc.json" : "/$m/api/ok";
        my $want = $kind eq 'static' ? qr/"doc":"$m"/ : qr/"from":"upstream"/;
        for my $v (2, 1) {
            my $name = "v$v $m $kind";
            my $b0 = balances();
            my $r = pay($v, $path);
            is($r->{exchanges}[0]{response}{status}, 402, "$name: unpaid answer is 402");
            is($r->{status}, 200, "$name: paid answer is 200")
                or diag(short($r->{body}) . ' ' . ($r->{error} // ''));
            like($r->{body} // '', $want, "$name: the content");
            my $b1;
            if ($m eq 'async') {
                $b1 = wait_pay_to($b0->{payTo}, $PRICE, 15);
                my ($s) = grep { $_->{response}{success} } settles_of(nonce_of($r));
                ok($s, "$name: the facilitator settled it in the background");
                ok(tx_ok($s && $s->{response}{transaction}),
                   "$name: the settlement transaction exists on chain");
            } else {
                $b1 = balances();
                my $st = $r->{settlement} // {};
                is($r->{settlementHeaderName},
                   $v == 2 ? 'PAYMENT-RESPONSE' : 'X-PAYMENT-RESPONSE',
                   "$name: settlement header name");
                ok($st->{success}, "$name: settlement header says success")
                    or diag(json_encode($st));
                my $tx = tx_ok($st->{transaction});
                ok($tx, "$name: the settlement transaction exists on chain")
                    or diag("tx $st->{transaction}");
                ok($tx && grep({ $_->{value} eq "$PRICE"
                                 && lc $_->{to} eq lc $pay_to } @{ $tx->{transfers} }),
                   "$name: it transferred the price to payTo");
            }
            # the official e2e facilitators insist on this (coinbase/x402
            # e2e/facilitators/typescript/index.ts, the onBeforeSettle hook):
            # /verify with the same paymentPayload before /settle
            my ($s) = grep { $_->{response}{success} } settles_of(nonce_of($r));
            ok($s && $s->{verifiedBefore},
               "$name: /verify of the identical payload preceded /settle");
            is($b0->{payer} - $b1->{payer}, $PRICE, "$name: payer paid exactly the price");
            is($b1->{payTo} - $b0->{payTo}, $PRICE, "$name: payTo got exactly the price");
        }
    }
}
$T{clients_pay} = time - $t;

# ---- 2. under `after`, a 404 or an upstream error costs nothing ----

$t = time;
for my $case (['/after/static/missing.json', 404], ['/after/api/missing', 404],
              ['/after/api/boom', 503]) {
    my ($path, $status) = @$case;
    for my $v (2, 1) {
        my $name = "v$v after $status $path";
        my $b0 = balances();
        my $r = pay($v, $path);
        is($r->{status}, $status, "$name: $status passed through");
        ok(!($r->{settlement} && $r->{settlement}{success}), "$name: no settlement header");
        is(scalar(settles_of(nonce_of($r))), 0, "$name: no settle reached the facilitator");
        my $b1 = balances();
        is($b1->{payer}, $b0->{payer}, "$name: payer balance unchanged");
        is($b1->{payTo}, $b0->{payTo}, "$name: payTo balance unchanged");
    }
}
$T{after_404} = time - $t;

# ---- 3. negative paths against the real facilitator ----

$t = time;
for my $m (@modes) {
    for my $v (2, 1) {
        my $name = "v$v $m insufficient balance";
        my $b0 = balances();
        my $r = pay($v, "/$m/static/doc.json", account => 'poor');
        is($r->{status}, 402, "$name: 402");
        unlike($r->{body} // '', qr/"doc"/, "$name: no content");
        sleep 0.5 if $m eq 'async';
        my $b1 = balances();
        is_deeply($b1, $b0, "$name: no tokens moved");
    }
}

# no /verify first (x402_verify local): the settlement itself fails for lack
# of funds; nothing of the content may leave nginx, under sync or after
for my $loc (qw(local local-after)) {
    for my $v (2, 1) {
        my $name = "v$v $loc insufficient balance, settlement refused";
        my $b0 = balances();
        my $r = pay($v, "/$loc/static/doc.json", account => 'poor');
        is($r->{status}, 402, "$name: 402");
        unlike($r->{body} // '', qr/"doc"/, "$name: no content");
        my @s = settles_of(nonce_of($r));
        ok(@s && !grep({ $_->{response}{success} } @s),
           "$name: the facilitator refused the settlement");
        is_deeply(balances(), $b0, "$name: no tokens moved");
    }
}

# credit advance (x402_verify local + async): the content is served on the
# local checks alone, by design; when the settlement then fails, no tokens
# move and the failure is the operator's risk (PRODUCT.md, Request flow 4)
for my $v (2, 1) {
    my $name = "v$v local-async insufficient balance (credit advance)";
    my $b0 = balances();
    my $r = pay($v, "/local-async/static/doc.json", account => 'poor');
    is($r->{status}, 200, "$name: served on local checks");
    my $deadline = time + 10;
    my @s;
    while (time < $deadline) {
        @s = settles_of(nonce_of($r));
        last if @s;
        sleep 0.2;
    }
    ok(@s && !grep({ $_->{response}{success} } @s),
       "$name: the background settlement was refused by the facilitator");
    is_deeply(balances(), $b0, "$name: no tokens moved");
}

# reused authorizations and expired ones, every mode and version: one node
# process for all (its start-up is the slow part)
my @jobs;
for my $m (@modes) {
    for my $v (2, 1) {
        push @jobs, { url => "$base/$m/static/doc.json", version => $v,
                      vector => 'valid', send => JSON::PP::true, times => 2,
                      name => "v$v $m reused authorization" },
                    { url => "$base/$m/static/doc.json", version => $v,
                      vector => 'expired', send => JSON::PP::true, times => 1,
                      name => "v$v $m expired authorization" };
    }
}
{
    my $b0 = balances();
    my $out = node_json('forge.mjs', '--run-dir', $run, '--batch',
                        json_encode([ map { { %$_, name => undef } } @jobs ]));
    my $reused = 0;
    for my $i (0 .. $#jobs) {
        my ($j, $o) = ($jobs[$i], $out->[$i]);
        my $name = $j->{name};
        my @r = @{ $o->{responses} || [] };
        if ($j->{vector} eq 'valid') {
            $reused++;
            is($r[0]{status}, 200, "$name: first use served");
            is($r[1]{status}, 402, "$name: second use refused")
                or diag(json_encode($r[1]));
            unlike($r[1]{body} // '', qr/"doc"/, "$name: no content the second time");
        } else {
            is($r[0]{status}, 402, "$name: 402") or diag(json_encode($r[0]));
            unlike($r[0]{body} // '', qr/"doc"/, "$name: no content");
            is(scalar(settles_of($o->{payload}{payload}{authorization}{nonce})), 0,
               "$name: never reached /settle");
        }
    }
    # the async ones settle in the background: wait for them, then make
    # sure nothing more arrives
    my $b1 = wait_pay_to($b0->{payTo}, $reused * $PRICE, 15);
    sleep 1;
    $b1 = balances();
    is($b1->{payTo} - $b0->{payTo}, $reused * $PRICE,
       "reused authorizations were paid exactly once each, expired ones never");
    is($b0->{payer} - $b1->{payer}, $reused * $PRICE,
       "the payer paid exactly that");
}
$T{negative} = time - $t;

# ---- 4. conformance vectors: official facilitator /verify vs nginx ----

$t = time;
for my $loc ('/local/static/doc.json', '/sync/static/doc.json') {
    my $out = "$run/conformance-" . ($loc =~ s{\W+}{_}gr) . '.json';
    my ($rc, $stdout) = node('conformance.mjs', '--run-dir', $run,
                             '--url', "$base$loc", '--out', $out);
    my $j = eval { json_decode($stdout) };
    ok($j, "conformance $loc: ran") or do { diag(short($stdout)); next };
    for my $r (@{ $j->{results} }) {
        ok($r->{ok}, "conformance $loc $r->{id} ($r->{kind}): facilitator="
           . "$r->{facilitator} nginx=$r->{target}")
            or diag(join('; ', @{ $r->{failures} }) . ' | nginx error: '
                    . ($r->{targetError} // ''));
    }
    cmp_ok(scalar @{ $j->{results} }, '>=', 50, "conformance $loc: vector count");
}
$T{conformance} = time - $t;

$T{total} = time - $t_all;
note(sprintf "timings (s): %s",
     join ', ', map { sprintf '%s %.1f', $_, $T{$_} } sort keys %T);

done_testing;
