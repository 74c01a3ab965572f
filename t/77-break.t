# Breaker pass 3 (brk3): what pass 2 (t/76) changed, attacked again. Each
# part fails on the code before its fix.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;

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

done_testing();
