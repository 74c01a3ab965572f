# One block per inheritance rule of each directive that shapes the offer:
# set at http and inherited by a location, overridden at server, overridden
# at location; x402 and x402_paywall switched off and on again at each
# level. The 402's v1 JSON body shows what the location ended up with.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

repeat_each(2);
run_tests();
done_testing();

__DATA__

=== TEST 1: x402_price: set at http, a location inherits it
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "maxAmountRequired":"1000"



=== TEST 2: x402_price: set at server, overrides http
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_price 0.002;
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "maxAmountRequired":"2000"



=== TEST 3: x402_price: set at location, overrides server
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_price 0.002;
location / { x402_price 0.003; }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "maxAmountRequired":"3000"



=== TEST 4: x402_pay_to: set at http, a location inherits it
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"



=== TEST 5: x402_pay_to: set at server, overrides http
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_pay_to 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266;
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "payTo":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"



=== TEST 6: x402_pay_to: set at location, overrides server
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_pay_to 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266;
location / { x402_pay_to 0x70997970C51812dc3A010C7d01b50e0d17dc79C8; }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "payTo":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"



=== TEST 7: x402_network: set at http, a location inherits it
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "network":"base-sepolia"



=== TEST 8: x402_network: set at server, overrides http
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_network base;
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "network":"base"



=== TEST 9: x402_network: set at location, overrides server
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_network base;
location / { x402_network polygon; }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "network":"polygon"



=== TEST 10: x402_description: set at http, a location inherits it
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_description "at http";
--- config
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "description":"at http"



=== TEST 11: x402_description: set at server, overrides http
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_description "at http";
--- config
x402_description "at server";
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "description":"at server"



=== TEST 12: x402_description: set at location, overrides server
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_description "at http";
--- config
x402_description "at server";
location / { x402_description "at location"; }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "description":"at location"



=== TEST 13: x402_mime_type: set at http, a location inherits it
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_mime_type text/plain;
--- config
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "mimeType":"text/plain"



=== TEST 14: x402_mime_type: set at server, overrides http
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_mime_type text/plain;
--- config
x402_mime_type application/json;
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "mimeType":"application/json"



=== TEST 15: x402_mime_type: set at location, overrides server
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_mime_type text/plain;
--- config
x402_mime_type application/json;
location / { x402_mime_type image/png; }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "mimeType":"image/png"



=== TEST 16: x402_max_timeout: set at http, a location inherits it
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_max_timeout 60;
--- config
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "maxTimeoutSeconds":60



=== TEST 17: x402_max_timeout: set at server, overrides http
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_max_timeout 60;
--- config
x402_max_timeout 120;
location / { }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "maxTimeoutSeconds":120



=== TEST 18: x402_max_timeout: set at location, overrides server
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_max_timeout 60;
--- config
x402_max_timeout 120;
location / { x402_max_timeout 30; }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "maxTimeoutSeconds":30



=== TEST 19: x402 off at http: a priced location inherits it, free
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402 off;
--- config
location / { }
--- request
GET /index.html
--- error_code: 200
--- response_body_like: ^index$



=== TEST 20: x402 off at server: free
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402 off;
location / { }
--- request
GET /index.html
--- error_code: 200
--- response_body_like: ^index$



=== TEST 21: x402 on at location under off at server: charged
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402 off;
location / { x402 on; }
--- request
GET /index.html
--- error_code: 402
--- response_body_like: "maxAmountRequired":"1000"



=== TEST 22: x402 off at location under a priced server: free
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
location / { x402 off; }
--- request
GET /index.html
--- error_code: 200
--- response_body_like: ^index$



=== TEST 23: x402_paywall: on by default, a browser gets the page
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
location / { }
--- request
GET /index.html
--- more_headers
Accept: text/html
User-Agent: Mozilla/5.0
--- error_code: 402
--- response_body_like: (?i)<html



=== TEST 24: x402_paywall off at http: inherited, a browser gets JSON
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_paywall off;
--- config
location / { }
--- request
GET /index.html
--- more_headers
Accept: text/html
User-Agent: Mozilla/5.0
--- error_code: 402
--- response_body_like: \{"x402Version":1



=== TEST 25: x402_paywall off at server: a browser gets JSON
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_paywall off;
location / { }
--- request
GET /index.html
--- more_headers
Accept: text/html
User-Agent: Mozilla/5.0
--- error_code: 402
--- response_body_like: \{"x402Version":1



=== TEST 26: x402_paywall on at location under off at server: the page
--- http_config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
x402_paywall off;
location / { x402_paywall on; }
--- request
GET /index.html
--- more_headers
Accept: text/html
User-Agent: Mozilla/5.0
--- error_code: 402
--- response_body_like: (?i)<html
