# Facilitator faults in sync mode: refusals are 402s with the facilitator's
# reason; a slow, failing, garbled or unreachable facilitator is a 5xx with
# a JSON body, and nothing is served.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

our $PAY = <<'EOC';
    access_log logs/x402.log x402;
    x402_price 0.001;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    location /_x402/ {
        internal;
        proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/;
        proxy_read_timeout 1s;
    }
EOC

our $LOG = "log_format x402 '\$x402_status|\$x402_reason|\$status';\n";

run_tests();
done_testing();

__DATA__

=== TEST 1: isValid false: 402 with the reason, never settled
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: 200 {"isValid":false,"invalidReason":"insufficient_funds","invalidMessage":"balance 0","payer":"{{payer}}"}
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 402
--- response_body_like: "error":"insufficient_funds"
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
--- facilitator_saw
verify
--- error_log
x402: facilitator refused the payment of 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266: insufficient_funds: balance 0



=== TEST 2: settle success false: 402 with PAYMENT-RESPONSE success false, nothing served
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: default
settle: 200 {"success":false,"errorReason":"invalid_exact_evm_transaction_failed","transaction":"","network":"{{network}}","payer":"{{payer}}"}
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 402
--- response_body_like: "error":"invalid_exact_evm_transaction_failed"
--- response_headers_like
PAYMENT-RESPONSE: ^eyJzdWNjZXNzIjpmYWxzZ
--- facilitator_saw
verify settle
--- error_log
refused: invalid_exact_evm_transaction_failed



=== TEST 3: a facilitator that hangs: 504, nothing served
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: hang
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 504
--- response_body_like: ^\{"error":"facilitator_unavailable","message":"[^"]+"\}$
--- response_headers
Content-Type: application/json
--- timeout: 5
--- error_log
upstream timed out
x402: facilitator "/_x402/verify" failed: status 504



=== TEST 4: a 500 that is not JSON: 502
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: 500 <html>Internal Server Error</html>
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 502
--- response_body_like: "error":"facilitator_unavailable"
--- error_log
x402: facilitator "/_x402/verify" failed: status 500



=== TEST 5: a 503: 503
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: 503 overloaded
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 503
--- response_body_like: "error":"facilitator_unavailable"
--- error_log
status 503



=== TEST 6: garbage with a 200: 502
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: garbage
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 502
--- response_body_like: ^(?!.*content).*facilitator_unavailable
--- error_log
x402: facilitator "/_x402/verify" failed: status 200



=== TEST 7: a 200 with JSON but no isValid: 502
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: 200 {"valid":true}
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 502
--- error_log
failed: status 200



=== TEST 8: connection closed, connection reset: 502
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: close
verify: reset
--- more_headers eval
["PAYMENT-SIGNATURE: " . sign_payment(amount => '1000'), "PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')]
--- request eval
["GET /doc.txt", "GET /doc.txt"]
--- error_code: 502
--- response_body_like: "error":"facilitator_unavailable"
--- error_log
x402: facilitator "/_x402/verify" failed: status 502



=== TEST 9: connection refused: 502
--- http_config eval: $main::LOG
--- config eval
"$main::PAY\nlocation /dead/ { internal; proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT3/; }\nlocation /d/ { x402_facilitator /dead/; }\n"
--- user_files
>>> d/doc.txt
content
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /d/doc.txt
--- error_code: 502
--- response_body_like: "error":"facilitator_unavailable"
--- error_log
Connection refused
x402: facilitator "/dead/verify" failed: status 502



=== TEST 10: no facilitator location at all: 502, not the 404 page
--- http_config eval: $main::LOG
--- config eval
"$main::PAY\nlocation /d/ { x402_facilitator /nowhere/; }\n"
--- user_files
>>> d/doc.txt
content
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /d/doc.txt
--- error_code: 502
--- error_log
x402: facilitator "/nowhere/verify" failed: status 404



=== TEST 11: a settle that hangs after a good verify: 504, nothing served
--- http_config eval: $main::LOG
--- config eval: $main::PAY
--- user_files
>>> doc.txt
content
--- facilitator
verify: default
settle: hang
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- error_code: 504
--- response_body_like: ^(?!.*content).*facilitator_unavailable
--- timeout: 5
--- error_log
x402: settlement of 1000 from 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 failed, facilitator "/_x402/settle" status 504



=== TEST 12: an answer larger than subrequest_output_buffer_size: the request is dropped, nothing served
--- http_config eval: $main::LOG
--- config eval
my $c = $main::PAY; $c =~ s/proxy_read_timeout 1s;/proxy_read_timeout 1s; subrequest_output_buffer_size 64;/; $c
--- user_files
>>> doc.txt
content
--- facilitator
verify: 200 {"isValid":true,"payer":"{{payer}}","padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}
--- perl
my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
ok(!$r->{ok} || $r->{status} >= 500, 'too big: no content');
unlike($r->{body} // '', qr/content/, 'too big: nothing served');
--- error_log
too big subrequest response



=== TEST 13: a facilitator location that is not internal works, with a warning
--- http_config eval: $main::LOG
--- config eval
my $c = $main::PAY; $c =~ s/internal;//; $c
--- user_files
>>> doc.txt
content
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- response_body
content
--- error_log
x402: the facilitator location serving "/_x402/verify" is not "internal"
