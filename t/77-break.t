# Breaker pass 3 (brk3): what pass 2 (t/76) changed, attacked again. Each
# part fails on the code before its fix.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes ();

plan skip_all => 'module not built' unless -f module_path();

sub n_of { my ($fac, $e) = @_; scalar grep { $_->{endpoint} eq $e } $fac->requests(all => 1) }

# ---- priced -> free location -> named location, under after ----
# t/76 made an unpriced named location the content of the priced location
# that sent the request there. It looked only at where the response came
# from: a priced location that hands the request to a free one (the
# README's "priced location -> free location: not settled"), whose own
# fallback is a named location, got the payer charged for the free
# location's content. Only a named location the paid location (or its
# named content) sent the request to is its content.
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $fp = $fac->port;
    my $ng = start_nginx(config => <<"EOC");
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    x402_settle after;
    location /premium/ {
        x402_price 0.001;
        try_files \$uri /free/page;
    }
    location /free/ { try_files \$uri \@site; }
    location \@site { return 200 "free site\\n"; }
    location /premium2/ {
        x402_price 0.001;
        try_files \$uri /free2/page;
    }
    location /free2/ { error_page 418 = \@site; return 418; }
    location /premium3/ {
        x402_price 0.001;
        try_files \$uri \@app;
    }
    location \@app { error_page 418 = \@app2; return 418; }
    location \@app2 { return 200 "app2 content\\n"; }
    location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }
EOC
    is($ng->get('/free/x')->{body}, "free site\n", 'via a free location: free for everybody');
    my $r = $ng->get('/premium/x', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'via a free location (try_files): 200');
    is($r->{body}, "free site\n", 'via a free location (try_files): its content');
    is(X402::HTTP::header($r, 'PAYMENT-RESPONSE'), undef, 'via a free location (try_files): no settlement header');
    is(n_of($fac, 'settle'), 0, 'via a free location (try_files): not settled');

    $r = $ng->get('/premium2/x', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{body}, "free site\n", 'via a free location (error_page after return): its content');
    is(X402::HTTP::header($r, 'PAYMENT-RESPONSE'), undef, 'via a free location (error_page after return): no settlement header');
    is(n_of($fac, 'settle'), 0, 'via a free location (error_page after return): not settled');

    # a named location's own named fallback is still the paid content
    my $p = sign_payment(amount => '1000');
    $r = $ng->get('/premium3/x', { 'PAYMENT-SIGNATURE' => $p });
    is($r->{body}, "app2 content\n", 'named -> named: the content');
    ok(X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'named -> named: settled');
    is(n_of($fac, 'settle'), 1, 'named -> named: one settlement');
    is($ng->get('/premium3/x', { 'PAYMENT-SIGNATURE' => $p })->{status}, 402, 'named -> named: not served again');
    $ng->stop;
    $fac->stop;
}

# ---- a lost answer owed to a facilitator no block uses any more ----
# t/76 keeps an owed settlement whose facilitator no priced location of
# the running configuration uses, and sends it nowhere. But a /settle
# whose answer was lost (x402_rpc) is resolved by the chain, which needs
# no facilitator: it was never asked, and once the authorization expired
# nothing ended the entry (only the chain may, and expiry does not give
# such an entry up): owed for ever, its revenue never counted. Now the
# chain is asked in the block it was paid in; only a /settle waits for a
# block using its facilitator.
{
    my $USED = '0x' . ('0' x 63) . '1';
    my $facA = start_facilitator(script => "verify: default\nsettle: 502 {}\nrpc: 503 {}\n");
    my $facB = start_facilitator(script => "verify: default\nsettle: default\n");
    my ($pa, $pb) = ($facA->port, $facB->port);
    my $server = sub {
        my ($prefix, $fp) = @_;
        return <<"EOC";
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator $prefix;
    x402_settle async;
    x402_verify local;
    location /paid/ { x402_price 0.001; empty_gif; }
    location = /pending { return 200 \$x402_pending; }
    location $prefix { internal; proxy_pass http://127.0.0.1:$fp/; }
    location = /_x402_rpc/eip155:84532 { internal; proxy_pass http://127.0.0.1:$pa/rpc; }
EOC
    };
    my $http = "x402_async_drain 1s;\n    x402_rpc /_x402_rpc/;\n";
    my $ng = start_nginx(http_config => $http, config => $server->('/_x402/', $pa));
    my @p = payments_for($ng, 1);
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
       'lost answer, facilitator gone: served on credit');
    ok(wait_for(5, sub { n_of($facA, 'settle') >= 1 }), 'lost answer, facilitator gone: its /settle answer lost');
    $ng->reload(http_config => $http, config => $server->('/_x402_b/', $pb));
    my $since = Time::HiRes::time();
    $facA->set_script(qq(verify: default\nsettle: default\nrpc: 200 {"jsonrpc":"2.0","id":1,"result":"$USED"}\n));
    ok(wait_for(20, sub { ($ng->get('/pending')->{body} // -1) == 0 }),
       'lost answer, facilitator gone: resolved by the chain');
    cmp_ok(n_of($facA, 'rpc'), '>=', 1, 'lost answer, facilitator gone: the chain was asked');
    is(scalar(grep { $_->{endpoint} eq 'settle' && $_->{t} >= $since } $facA->requests(all => 1)), 0,
       'lost answer, facilitator gone: no /settle sent again');
    is(n_of($facB, 'settle'), 0, 'lost answer, facilitator gone: nothing to the other facilitator');
    like($ng->error_log, qr/says its authorization was used: settled/, 'lost answer, facilitator gone: settled on chain');
    unlike($ng->error_log, qr/exited on signal/, 'lost answer, facilitator gone: no worker crashed');
    $ng->stop;
    $facA->stop;
    $facB->stop;
}

done_testing();
