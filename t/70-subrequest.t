# Adversarial: subrequests and internal redirects into a priced location.
# Subrequests skip nginx's access phase, so without a check of their own an
# SSI include from a free location would read a priced location free. A
# subrequest into a priced location is served only when its client request
# paid; header-only ones (auth_request, mirror) send no body to the client
# and are let through; redirects (X-Accel-Redirect, error_page to
# a named location) from a free location into a priced one are charged.
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

# an upstream that answers every request with an X-Accel-Redirect
our $ACCEL = <<'EOC';
    server {
        listen 127.0.0.1:$TEST_NGINX_PORT2;
        location / {
            add_header X-Accel-Redirect /secret/doc.txt;
            return 200 "";
        }
    }
EOC

run_tests();
done_testing();

__DATA__

=== TEST 1: SSI include of a priced part from a free page: the part is refused
--- config eval
"$main::PAY\nlocation = /page.html { x402 off; ssi on; }\n"
--- user_files
>>> page.html
[<!--# include virtual="/part.txt" -->]
>>> part.txt
secret part
--- facilitator
verify: default
--- request
GET /page.html
--- response_body_like: \A(?!.*secret part)\[.*402 Payment Required.*\]
--- facilitator_saw
--- error_log
subrequest "/part.txt" to a priced location refused



=== TEST 2: SSI include of a priced part from a paid page: included, paid once
--- config eval
"$main::PAY\nlocation = /page.html { ssi on; }\n"
--- user_files
>>> page.html
[<!--# include virtual="/part.txt" -->]
>>> part.txt
secret part
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /page.html
--- response_body
[secret part
]
--- facilitator_saw
verify settle



=== TEST 3: SSI include of a location whose variable price is free for it: included
--- config eval
"$main::PAY\nlocation = /page.html { x402 off; ssi on; }\n"
. "location /free-part/ { x402_price \$arg_p; }\n"
--- user_files
>>> page.html
[<!--# include virtual="/free-part/a.txt?p=0" -->]
>>> free-part/a.txt
free part
--- facilitator
verify: default
--- request
GET /page.html
--- response_body
[free part
]
--- facilitator_saw



=== TEST 4: X-Accel-Redirect from a free location's upstream into a priced internal location: 402 unpaid
--- http_config eval
$main::ACCEL
--- config eval
"$main::PAY\nlocation /free/ { x402 off; proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT2; }\n"
. "location /secret/ { internal; }\n"
--- user_files
>>> secret/doc.txt
secret doc
--- facilitator
verify: default
--- request
GET /free/x
--- error_code: 402
--- response_body_like: \A(?!.*secret doc)
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
--- facilitator_saw



=== TEST 5: X-Accel-Redirect into a priced location: a valid payment is charged once
--- http_config eval
$main::ACCEL
--- config eval
"$main::PAY\nlocation /free/ { x402 off; proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT2; }\n"
. "location /secret/ { internal; }\n"
--- user_files
>>> secret/doc.txt
secret doc
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /free/x
--- response_body
secret doc
--- response_headers_like
PAYMENT-RESPONSE: ^eyJ
--- facilitator_saw
verify settle



=== TEST 6: auth_request from a free location to a priced one: header only, served, not charged
--- config eval
"$main::PAY\nlocation /p/ { x402 off; auth_request /auth/ok.txt; }\nlocation /auth/ { internal; }\n"
--- user_files
>>> p/a.txt
a
>>> auth/ok.txt
secret ok
--- facilitator
verify: default
--- request
GET /p/a.txt
--- response_body
a
--- facilitator_saw



=== TEST 7: SSI include with a body from a free location via a paid location's try_files: refused
--- config eval
"$main::PAY\nlocation = /page.html { x402 off; ssi on; }\n"
. "location /free/ { x402 off; try_files /nothing /paid/doc.txt; }\n"
--- user_files
>>> page.html
[<!--# include virtual="/free/x" -->]
>>> paid/doc.txt
secret doc
--- facilitator
verify: default
--- request
GET /page.html
--- response_body_like: \A(?!.*secret doc)\[.*402 Payment Required
--- facilitator_saw
--- error_log
subrequest "/paid/doc.txt" to a priced location refused



=== TEST 8: error_page from a free location into a priced named location: charged
--- config eval
"$main::PAY\nlocation /f/ { x402 off; error_page 404 = \@paid; }\n"
. "location \@paid { rewrite ^ /secret.txt break; }\n"
--- user_files
>>> secret.txt
secret
--- facilitator
verify: default
--- request
GET /f/missing
--- error_code: 402
--- response_body_like: \A(?!.*secret)
--- facilitator_saw
--- error_log
No such file or directory



=== TEST 9: a payment header on the facilitator call never matters: own subrequests are not priced
--- config eval
"$main::PAY"
--- user_files
>>> doc.txt
doc
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /doc.txt
--- response_body
doc
--- facilitator_saw
verify settle
