# Browser conventions and the early $x402_status:
# - a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)
#   is never charged: it reaches the location's own handling; a plain
#   OPTIONS is charged like any method;
# - a 402 reached through error_page keeps status 402 (an error_page 404
#   to a priced URI, with and without "=", for agents and browsers);
# - $x402_status before the access phase is "invalid" for a payment header
#   failing the local checks, which run once per request.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

our $PAY = <<'EOC';
    x402_price 0.001;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    location /_x402/ {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/;
    }
EOC

# the application answers preflights itself (here nginx's own if/return,
# in a location that is reached after the rewrite phase: a named one via
# error_page 405 would do too; an upstream is the common case)
our $CORS = <<'EOC';
    location /api/ {
        error_page 405 = @preflight;
        add_header Access-Control-Expose-Headers "PAYMENT-REQUIRED, PAYMENT-RESPONSE" always;
    }
    location @preflight {
        x402 off;
        add_header Access-Control-Allow-Origin "*" always;
        add_header Access-Control-Allow-Methods "GET, OPTIONS" always;
        add_header Access-Control-Allow-Headers "PAYMENT-SIGNATURE, X-PAYMENT" always;
        return 204;
    }
EOC

our $LOG = <<'EOH';
    log_format x402 '$request_method $uri $status $x402_status $x402_reason';
    map $x402_status $early { default $x402_status; }
    log_format early '$early';
EOH

run_tests();
done_testing();

__DATA__

=== TEST 1: a CORS preflight is not charged: the location answers it
--- config eval
"$main::PAY$main::CORS"
--- user_files
>>> api/doc.txt
paid
--- more_headers
Origin: https://app.example
Access-Control-Request-Method: GET
Access-Control-Request-Headers: payment-signature
--- request
OPTIONS /api/doc.txt
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: *
Access-Control-Allow-Headers: PAYMENT-SIGNATURE, X-PAYMENT
!PAYMENT-REQUIRED



=== TEST 2: a preflight through a static location: its own 405, not a 402
--- config eval
"$main::PAY\nlocation /s/ { }\n"
--- user_files
>>> s/doc.txt
paid
--- more_headers
Origin: https://app.example
Access-Control-Request-Method: GET
--- request
OPTIONS /s/doc.txt
--- error_code: 405
--- response_headers
!PAYMENT-REQUIRED



=== TEST 3: OPTIONS without Access-Control-Request-Method is no preflight: charged
--- config eval
"$main::PAY$main::CORS"
--- user_files
>>> api/doc.txt
paid
--- more_headers
Origin: https://app.example
--- request
OPTIONS /api/doc.txt
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ



=== TEST 4: the cross-origin GET itself pays, and its 402 exposes the headers
--- config eval
"$main::PAY$main::CORS"
--- user_files
>>> api/doc.txt
paid
--- more_headers
Origin: https://app.example
--- request
GET /api/doc.txt
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
Access-Control-Expose-Headers: PAYMENT-REQUIRED



=== TEST 5: $x402_status of a preflight is none
--- http_config eval
$main::LOG
--- config eval
"access_log logs/x402.log x402;\n$main::PAY$main::CORS"
--- perl
my $r = $ng->request("OPTIONS /api/doc.txt",
    "Origin: https://app.example\nAccess-Control-Request-Method: GET");
is($r->{status}, 204, 'preflight: 204');
my $l = do { local $/; open my $fh, '<', $ng->prefix . '/logs/x402.log'; <$fh> };
like($l, qr{^OPTIONS /api/doc.txt 204 none}m, 'preflight logged as none');



=== TEST 6: error_page 404 to a priced URI, unpaid: status 402, not 404
--- config eval
"$main::PAY\nlocation / { x402 off; error_page 404 /premium/report.html; }\nlocation /premium/ { }\n"
--- user_files
>>> premium/report.html
report
--- request
GET /missing.html
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
Content-Type: application/json
--- response_body_like: "x402Version":1
--- error_log
No such file or directory



=== TEST 7: error_page 404 =200 to a priced URI, unpaid: still 402
--- config eval
"$main::PAY\nlocation / { x402 off; error_page 404 =200 /premium/report.html; }\nlocation /premium/ { }\n"
--- user_files
>>> premium/report.html
report
--- request
GET /missing.html
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
--- response_body_like: "x402Version":1
--- error_log
No such file or directory



=== TEST 8: error_page 404 to a priced URI, refused payment: 402 with the reason
--- config eval
"$main::PAY\nlocation / { x402 off; error_page 404 /premium/report.html; }\nlocation /premium/ { }\n"
--- user_files
>>> premium/report.html
report
--- more_headers
PAYMENT-SIGNATURE: bm90IGpzb24=
--- request
GET /missing.html
--- error_code: 402
--- response_body_like: "error":"invalid_payload"
--- error_log
No such file or directory



=== TEST 9: error_page 404 to a priced URI, a browser: the paywall, status 402
--- config eval
"$main::PAY\nlocation / { x402 off; error_page 404 /premium/report.html; }\nlocation /premium/ { }\n"
--- user_files
>>> premium/report.html
SECRET-REPORT-BODY
--- more_headers
Accept: text/html
User-Agent: Mozilla/5.0
--- request
GET /missing.html
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
Content-Type: text/html
--- response_body_like: \A(?!.*SECRET-REPORT-BODY)
--- error_log
No such file or directory



=== TEST 10: error_page 402 /pay.html without "=": status 402, the page
--- config eval
"$main::PAY\nlocation /p/ { error_page 402 /pay.html; }\nlocation = /pay.html { x402 off; }\n"
--- user_files
>>> p/doc.txt
paid
>>> pay.html
<h1>pay here</h1>
--- more_headers
Accept: text/html
User-Agent: Mozilla/5.0
--- request
GET /p/doc.txt
--- error_code: 402
--- response_body_like: pay here



=== TEST 11: junk payment header: $x402_status "invalid" before the access phase, and the 402 names the reason
--- http_config eval
$main::LOG
--- config eval
"$main::PAY\nlocation /p/ { access_log logs/early.log early; set \$seen \$x402_status; add_header X-Seen \$seen always; }\n"
--- user_files
>>> p/doc.txt
paid
--- more_headers eval
["X-PAYMENT: junk", "PAYMENT-SIGNATURE: " . sign_payment(amount => '999'), ""]
--- request eval
["GET /p/doc.txt", "GET /p/doc.txt", "GET /p/doc.txt"]
--- error_code: 402
--- response_headers eval
["X-Seen: invalid", "X-Seen: invalid", "X-Seen: required"]
--- response_body_like eval
['"error":"invalid_payload"', '"error":"invalid_payment_requirements"', '"error":"X-PAYMENT header is required"']



=== TEST 12: a valid payment is "" early, settled after; the local checks ran once
--- http_config eval
$main::LOG
--- config eval
"$main::PAY\nlocation /p/ { set \$seen \"[\$x402_status]\"; add_header X-Seen \$seen always; }\n"
--- user_files
>>> p/doc.txt
paid
--- log_level: debug
--- facilitator
verify: default
settle: default
--- perl
my $r = $ng->get('/p/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
is($r->{status}, 200, 'valid: 200');
is(X402::HTTP::header($r, 'X-Seen'), '[]', 'valid: "" before the access phase');
SKIP: {
    my $bin = X402::Test::nginx_binary();
    skip 'nginx without --with-debug', 2 unless `$bin -V 2>&1` =~ /--with-debug/;
    my $log = $ng->error_log;
    my $n = () = $log =~ /x402: local checks passed/g;
    is($n, 1, 'local checks: run once for the early status and the access phase');
    my $d = () = $log =~ /x402: payment header v2/g;
    is($d, 1, 'payment header: decoded once');
}
--- facilitator_saw
verify settle



=== TEST 13: the kept local checks are not reused stale: a payment delayed by limit_req past its validBefore margin is refused
--- http_config
    map $x402_status $x402_key { default $binary_remote_addr; }
    limit_req_zone $x402_key zone=slow:1m rate=20r/m;
--- config eval
"$main::PAY\nlocation /p/ { x402_verify local; x402_settle async; limit_req zone=slow burst=5; }\n"
--- user_files
>>> p/doc.txt
paid
--- facilitator
verify: default
settle: default
--- perl
my $h = sign_payment(amount => '1000', valid_for => 8);
my $r = $ng->get('/p/doc.txt');
is($r->{status}, 402, 'first: 402, takes the slot');
$r = $ng->get('/p/doc.txt', { 'PAYMENT-SIGNATURE' => $h }, timeout => 10);
is($r->{status}, 402, 'delayed 3 s by limit_req: checked again, expired: 402');
like($r->{body}, qr/valid_before/, 'delayed: the reason is validBefore');
--- facilitator_saw
