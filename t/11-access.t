# The access phase: payment runs after every other access check (nobody
# pays for a request auth would deny), "satisfy any" lets another module's
# OK through free, auth_request and SSI subrequests are never charged (and
# served only when the request paid, t/70), and
# internal redirects (try_files, error_page, index) never charge twice.
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

# user "u" password "p"
our $HTPASSWD = "u:{PLAIN}p\n";

repeat_each(2);
run_tests();

# the variables in the main request's access log, after internal redirects
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $conf = $PAY;
    $conf =~ s/\$TEST_NGINX_FAC_PORT/$fac->port/e;
    my $ng = start_nginx(
        http_config => "    log_format x402 '\$uri|\$x402_status|\$x402_tx|\$x402_payer|\$status';\n",
        config => "access_log logs/x402.log x402;\n$conf"
                . "location /p/ { try_files \$uri \@back; }\n"
                . "location \@back { rewrite ^ /b.txt break; }\n"
                . "error_page 402 /paywall.html;\n",
        user_files => ">>> b.txt\nback\n>>> paywall.html\npay\n");
    my $r = $ng->get('/p/x', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'redirect log: paid');
    $r = $ng->get('/p/x', { Accept => 'text/html', 'User-Agent' => 'Mozilla/5.0' });
    is($r->{status}, 402, 'redirect log: paywall');
    $ng->stop;
    open my $fh, '<', $ng->prefix . '/logs/x402.log' or die $!;
    my @l = map { chomp; [ split /\|/ ] } <$fh>;
    is($l[0][0], '/b.txt', 'redirect log: logged after the redirect');
    is($l[0][1], 'settled', 'redirect log: $x402_status survives the redirect');
    like($l[0][2], qr/^0x[0-9a-f]{64}$/, 'redirect log: $x402_tx');
    is($l[0][3], '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266', 'redirect log: $x402_payer');
    is($l[1][0], '/paywall.html', 'redirect log: error_page');
    is($l[1][1], 'required', 'redirect log: required through error_page');
    is($l[1][4], '402', 'redirect log: status 402');
    $fac->stop;
}

done_testing();

__DATA__

=== TEST 1: deny wins under satisfy all: 403, a valid payment is never looked at
--- config
include x402-paid.conf;
location /p/ { deny all; }
--- user_files
>>> p/a.txt
a
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /p/a.txt
--- error_code: 403
--- facilitator_saw
--- error_log
access forbidden by rule



=== TEST 2: satisfy any: an allowed address reads free
--- config
include x402-paid.conf;
location /p/ { satisfy any; allow 127.0.0.1; deny all; }
--- user_files
>>> p/a.txt
a
--- facilitator
verify: default
--- request
GET /p/a.txt
--- response_body
a
--- response_headers
!PAYMENT-REQUIRED
--- facilitator_saw



=== TEST 3: satisfy any: everybody else pays (402, not 403)
--- config
include x402-paid.conf;
location /p/ { satisfy any; allow 10.0.0.0/8; deny all; }
--- user_files
>>> p/a.txt
a
--- request
GET /p/a.txt
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ



=== TEST 4: satisfy any: and a valid payment is let through
--- no_repeat
--- config
include x402-paid.conf;
location /p/ { satisfy any; allow 10.0.0.0/8; deny all; }
--- user_files
>>> p/a.txt
a
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /p/a.txt
--- response_body
a
--- response_headers_like
PAYMENT-RESPONSE: ^eyJ
--- facilitator_saw
verify settle



=== TEST 5: auth_basic first: no credentials is a 401, not a 402
--- config
include x402-paid.conf;
location /p/ { auth_basic realm; auth_basic_user_file htpasswd; }
--- user_files eval
">>> p/a.txt\na\n>>> ../conf/htpasswd\n$main::HTPASSWD"
--- request
GET /p/a.txt
--- error_code: 401
--- response_headers
!PAYMENT-REQUIRED



=== TEST 6: auth_basic passed, then the payment is asked for
--- config
include x402-paid.conf;
location /p/ { auth_basic realm; auth_basic_user_file htpasswd; }
--- user_files eval
">>> p/a.txt\na\n>>> ../conf/htpasswd\n$main::HTPASSWD"
--- more_headers
Authorization: Basic dTpw
--- request
GET /p/a.txt
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ



=== TEST 7: auth_request denies: 403, the facilitator never hears of the payment
--- config
include x402-paid.conf;
location /p/ { auth_request /auth; }
location = /auth { internal; x402 off; return 403; }
--- user_files
>>> p/a.txt
a
--- facilitator
verify: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /p/a.txt
--- error_code: 403
--- facilitator_saw



=== TEST 8: auth_request to a priced location: the subrequest is not charged
--- no_repeat
--- config
include x402-paid.conf;
location /p/ { auth_request /auth/ok.txt; }
location /auth/ { internal; }
--- user_files
>>> p/a.txt
a
>>> auth/ok.txt
ok
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /p/a.txt
--- response_body
a
--- facilitator_saw
verify settle



=== TEST 9: SSI includes of priced parts from a free page are not charged, nor served (t/70)
--- config
include x402-paid.conf;
location = /page.html { x402 off; ssi on; }
--- user_files
>>> page.html
[<!--# include virtual="/part.txt" -->]
>>> part.txt
part
--- facilitator
verify: default
--- request
GET /page.html
--- response_body_like: \A\[(?!part).*402 Payment Required
--- facilitator_saw
--- error_log
to a priced location refused



=== TEST 10: try_files to a named location: paid once
--- no_repeat
--- config
include x402-paid.conf;
location /p/ { try_files $uri @back; }
location @back { rewrite ^ /b.txt break; }
--- user_files
>>> b.txt
back
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /p/missing
--- response_body
back
--- response_headers_like
PAYMENT-RESPONSE: ^eyJ
--- facilitator_saw
verify settle



=== TEST 11: index and error_page redirects after payment: paid once
--- no_repeat
--- config
include x402-paid.conf;
location /p/ { error_page 404 = /p/fallback.txt; }
--- user_files
>>> p/index.html
index
>>> p/fallback.txt
fallback
--- facilitator
verify: default
settle: default
--- more_headers eval
["PAYMENT-SIGNATURE: " . sign_payment(amount => '1000'),
 "PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')]
--- request eval
["GET /p/", "GET /p/nothing"]
--- response_body eval
["index\n", "fallback\n"]
--- facilitator_saw
verify settle verify settle
--- error_log
No such file or directory



=== TEST 12: error_page 402 (a paywall) for browsers: the page, status 402, header kept, not charged again
--- config
include x402-paid.conf;
error_page 402 /paywall.html;
--- user_files
>>> doc.txt
paid content
>>> paywall.html
<h1>pay</h1>
--- more_headers eval
["Accept: text/html\nUser-Agent: Mozilla/5.0", "User-Agent: agent/1.0"]
--- request eval
["GET /doc.txt", "GET /doc.txt"]
--- error_code: 402
--- response_body_like eval
["<h1>pay</h1>", '"x402Version":1']
--- response_headers_like eval
["PAYMENT-REQUIRED: ^eyJ\nContent-Type: text/html", "PAYMENT-REQUIRED: ^eyJ\nContent-Type: application/json"]



=== TEST 13: HEAD is charged like GET, and gets no body
--- config
include x402-paid.conf;
--- user_files
>>> doc.txt
paid content
--- request
HEAD /doc.txt
--- error_code: 402
--- response_body chomp
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
