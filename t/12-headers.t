# Headers of paid responses and of payments:
# - every response released for a payment (sync, after, async, a grant
#   reuse, HEAD) is `Cache-Control: private`, merged with what the content
#   set (an upstream's "public, max-age=60" -> "private, max-age=60",
#   "no-store" kept, expires and add_header too), one header line;
# - PAYMENT-SIGNATURE and X-PAYMENT both present: PAYMENT-SIGNATURE is used
#   (as the official v2 server does); one of them repeated is refused;
# - x402_resource_url sets resource.url of the 402 (header and v1 body) and
#   of the facilitator request (behind a TLS-terminating proxy).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

# an upstream that says its responses may be cached by anyone
my $PORT2 = free_port();
my $HTTP = <<"EOH";
    server {
        listen 127.0.0.1:$PORT2;
        location /pub/  { add_header Cache-Control "public, max-age=60, s-maxage=30"; return 200 "public body\n"; }
        location /two/  { add_header Cache-Control "public"; add_header Cache-Control 'no-cache="Set-Cookie, X-A"'; return 200 "two\n"; }
        location /nost/ { add_header Cache-Control "no-store"; return 200 "no-store body\n"; }
    }
EOH

sub conf {
    my ($fac, $extra) = @_;
    my $fp = $fac->port;
    $extra //= '';
    my $http = $HTTP;
    return (http_config => $http, config => <<"EOC",
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
$extra
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
location /up/ {
    proxy_pass http://127.0.0.1:$PORT2/;
}
location /exp/ { expires 1h; }
location /addh/ { add_header Cache-Control "public, max-age=60"; }
location /after/ { x402_settle after; }
location /async/ { x402_settle async; }
location /grant/ { x402_grant 10m; }
EOC
        user_files => ">>> doc.txt\npaid\n>>> exp/doc.txt\nexp\n>>> addh/doc.txt\naddh\n"
                    . ">>> after/doc.txt\nafter\n>>> async/doc.txt\nasync\n"
                    . ">>> grant/doc.txt\ngrant\n");
}

sub cc {
    my ($r) = @_;
    my $v = $r->{headers}{'cache-control'} // [];
    return join(' | ', @$v);
}

sub pay { scalar sign_payment(amount => '1000') }

{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(conf($fac));

    my $r = $ng->get('/doc.txt');
    is($r->{status}, 402, 'unpaid: 402');
    is(cc($r), 'no-store', 'unpaid: no-store, as before');

    my @cases = (
        [ 'sync, static file', '/doc.txt', 'private' ],
        [ 'sync, expires', '/exp/doc.txt', 'private, max-age=3600' ],
        [ 'sync, add_header public', '/addh/doc.txt', 'private, max-age=60' ],
        [ 'sync, upstream public', '/up/pub/x', 'private, max-age=60, s-maxage=30' ],
        [ 'sync, upstream two lines', '/up/two/x', 'private, no-cache="Set-Cookie, X-A"' ],
        [ 'sync, upstream no-store', '/up/nost/x', 'private, no-store' ],
        [ 'after', '/after/doc.txt', 'private' ],
        [ 'async', '/async/doc.txt', 'private' ],
        [ 'grant, first', '/grant/doc.txt', 'private' ],
    );
    for my $c (@cases) {
        my ($name, $uri, $want) = @$c;
        $r = $ng->get($uri, { 'PAYMENT-SIGNATURE' => pay() });
        is($r->{status}, 200, "$name: 200");
        is(cc($r), $want, "$name: Cache-Control");
        ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE')
           || $uri =~ /async/, "$name: paid");
    }

    # a grant reuse: the same authorization again
    my $h = pay();
    $r = $ng->get('/grant/doc.txt', { 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 200, 'grant: paid');
    $r = $ng->get('/grant/doc.txt', { 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 200, 'grant: reused');
    is($r->{body}, "grant\n", 'grant: reused body');
    is(cc($r), 'private', 'grant reuse: Cache-Control private');

    # HEAD
    $r = $ng->request("HEAD /up/pub/x", "PAYMENT-SIGNATURE: " . pay());
    is($r->{status}, 200, 'HEAD: 200');
    is(cc($r), 'private, max-age=60, s-maxage=30', 'HEAD: Cache-Control private');
    is($r->{body}, '', 'HEAD: no body');

    # both headers: PAYMENT-SIGNATURE wins over a junk X-PAYMENT
    $r = $ng->request("GET /doc.txt",
                      "X-PAYMENT: junk\nPAYMENT-SIGNATURE: " . pay());
    is($r->{status}, 200, 'both headers: PAYMENT-SIGNATURE used');
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'),
       'both headers: v2 PAYMENT-RESPONSE');
    ok(!defined X402::HTTP::header($r, 'X-PAYMENT-RESPONSE'),
       'both headers: no v1 answer');

    # ... whichever comes first
    $r = $ng->request("GET /doc.txt",
                      "PAYMENT-SIGNATURE: " . pay() . "\nX-PAYMENT: junk");
    is($r->{status}, 200, 'both headers, v2 first: PAYMENT-SIGNATURE used');

    # ... and a junk PAYMENT-SIGNATURE is not rescued by a valid X-PAYMENT
    $r = $ng->request("GET /doc.txt",
                      "PAYMENT-SIGNATURE: junk\nX-PAYMENT: " . pay());
    is($r->{status}, 402, 'both headers: a bad PAYMENT-SIGNATURE is refused');

    # one of them repeated stays ambiguous
    my $p = pay();
    $r = $ng->request("GET /doc.txt",
                      "PAYMENT-SIGNATURE: $p\nPayment-Signature: $p");
    is($r->{status}, 402, 'repeated PAYMENT-SIGNATURE: 402');

    $ng->stop;
    unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'no errors');
    $fac->stop;
}

# after: a settlement refused replaces the held response with a 402 that
# still gets the operator's "add_header ... always" (CORS) and is no-store
{
    my $fac = start_facilitator(script => "verify: default\nsettle: 200 {\"success\":false,\"errorReason\":\"insufficient_funds\",\"transaction\":\"\",\"network\":\"{{network}}\"}\n");
    my %c = conf($fac);
    $c{config} =~ s{location /after/ \{ x402_settle after; \}}
                   {location /after/ { x402_settle after; expires 1h; add_header Access-Control-Allow-Origin "*" always; }};
    my $ng = start_nginx(%c);
    my $r = $ng->get('/after/doc.txt', { 'PAYMENT-SIGNATURE' => pay() });
    is($r->{status}, 402, 'after, refused: 402');
    is(X402::HTTP::header($r, 'Access-Control-Allow-Origin'), '*',
       'after, refused: add_header always reaches the 402');
    is(cc($r), 'no-store', 'after, refused: no-store, the content\'s max-age gone');
    unlike($r->{body}, qr/^after$/m, 'after, refused: content dropped');
    $ng->stop;
    $fac->stop;
}

# x402_resource_url behind a TLS-terminating proxy
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my %c = conf($fac, 'x402_resource_url https://$host$request_uri;');
    my $ng = start_nginx(%c, user_files => ">>> doc.txt\npaid\n>>> own/doc.txt\nown\n",
        config => $c{config} . "location /own/ { x402_resource_url https://shop.example/own\$uri?via=\$host; }\n");

    my $r = $ng->get('/doc.txt?q=1', { Host => 'paid.example' });
    is($r->{status}, 402, 'resource_url: 402');
    my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    is($pr->{resource}{url}, 'https://paid.example/doc.txt?q=1',
       'resource_url: v2 resource.url');
    my $v1 = json_decode($r->{body});
    is($v1->{accepts}[0]{resource}, 'https://paid.example/doc.txt?q=1',
       'resource_url: v1 body resource');

    # v1 payment: the facilitator request carries the resource
    my ($hdr) = sign_payment(payment_required_body => $r->{body});
    $r = $ng->get('/doc.txt?q=1', { Host => 'paid.example', 'X-PAYMENT' => $hdr });
    is($r->{status}, 200, 'resource_url: v1 paid');
    my @seen = $fac->requests;
    is($seen[0]{json}{paymentRequirements}{resource},
       'https://paid.example/doc.txt?q=1',
       'resource_url: in the facilitator request');

    # v2 payment: the payload's resource goes through as the client sent it
    $r = $ng->get('/own/doc.txt', { Host => 'x.example' });
    $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    is($pr->{resource}{url}, 'https://shop.example/own/own/doc.txt?via=x.example',
       'resource_url: per location, variables');

    $ng->stop;
    $fac->stop;
}

done_testing();
