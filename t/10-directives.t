# Directives: nginx -t rejects bad values with the file, line, value and the
# rule broken; settings inherit http -> server -> location; "x402 off" and a
# free price switch a location off; variable prices (map) are evaluated per
# request and a bad one is a 500 with the reason in the log.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

our $PAY = <<'EOC';
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
EOC

run_tests();

# the error of a merge-time check names the line of the directive that
# needs the missing one, not the end of the block
{
    my $ng = X402::Nginx->new(config => <<'EOC');
location /a {
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    x402_price 0.001;
}
EOC
    my ($rc, $out) = $ng->test_config;
    isnt($rc, 0, 'merge error: nginx -t fails');
    my @lines = split /\n/, $ng->conf_text;
    my ($line) = grep { $lines[$_ - 1] =~ /x402_price 0\.001/ } 1 .. @lines;
    like($out, qr/"x402_price" needs "x402_pay_to".* in \S+nginx\.conf:$line\b/,
         "merge error: points at x402_price (line $line)");
}

# inheritance and overrides, checked on the decoded PAYMENT-REQUIRED
{
    my $ng = start_nginx(http_config => <<"EOH", config => <<'EOC',
    x402_price 0.001;
$PAY
    x402_description "http level";
EOH
x402_max_timeout 120s;
location /inherit { }
location /override { x402_price 0.25; x402_description "override"; }
location /atomic { x402_price 7 atomic; }
location /off { x402 off; }
location /free { x402_price 0; }
location /on {
    x402 off;
    location /on/again { x402 on; }
}
location /asset {
    x402_asset 0x1111111111111111111111111111111111111111 name=Token version=1 decimals=18;
    x402_price 0.5;
}
location /usdc-by-address {
    x402_asset 0x036cbd53842c5426634e7929541ec2318f3dcf7e;
}
location /timeout { x402_max_timeout 30; }
EOC
        user_files => ">>> inherit\ni\n>>> override\no\n>>> atomic\na\n"
                    . ">>> off\nfree\n>>> free\nfree\n>>> on/again\nagain\n"
                    . ">>> asset\nx\n>>> usdc-by-address\nx\n>>> timeout\nx\n");

    my $req = sub {
        my $r = $ng->get($_[0]);
        my $h = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
        return ($r, $h ? decode_b64_json($h) : undef);
    };

    my ($r, $pr) = $req->('/inherit');
    is($r->{status}, 402, 'inherit: http-level price charges');
    is($pr->{accepts}[0]{amount}, '1000', 'inherit: 0.001 USDC = 1000');
    is($pr->{accepts}[0]{maxTimeoutSeconds}, 120, 'inherit: server-level max_timeout');
    is($pr->{resource}{description}, 'http level', 'inherit: description');
    is($pr->{accepts}[0]{network}, 'eip155:84532', 'inherit: network as CAIP-2');
    is($pr->{accepts}[0]{asset}, '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
       'inherit: default asset is the network USDC');
    is_deeply($pr->{accepts}[0]{extra}, { name => 'USDC', version => '2' },
              'inherit: USDC EIP-712 domain');

    ($r, $pr) = $req->('/override');
    is($pr->{accepts}[0]{amount}, '250000', 'override: price');
    is($pr->{resource}{description}, 'override', 'override: description');

    ($r, $pr) = $req->('/atomic');
    is($pr->{accepts}[0]{amount}, '7', 'atomic units taken as is');

    $r = $ng->get('/off');
    is($r->{status}, 200, 'x402 off: free');
    is($r->{body}, "free\n", 'x402 off: content');
    ok(!defined X402::HTTP::header($r, 'PAYMENT-REQUIRED'), 'x402 off: no header');

    is($ng->get('/free')->{status}, 200, 'x402_price 0: free');
    is($ng->get('/on/again')->{status}, 402, 'x402 on below x402 off charges');

    ($r, $pr) = $req->('/asset');
    is($pr->{accepts}[0]{amount}, '500000000000000000', 'custom asset: 18 decimals');
    is_deeply($pr->{accepts}[0]{extra}, { name => 'Token', version => '1' },
              'custom asset: domain');

    ($r, $pr) = $req->('/usdc-by-address');
    is($pr->{accepts}[0]{asset}, '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
       'USDC by lower-case address: checksummed');
    is_deeply($pr->{accepts}[0]{extra}, { name => 'USDC', version => '2' },
              'USDC by address: its domain filled in');

    ($r, $pr) = $req->('/timeout');
    is($pr->{accepts}[0]{maxTimeoutSeconds}, 30, 'location max_timeout');

    $ng->stop;
    unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'inheritance: clean log');
}

done_testing();

__DATA__

=== TEST 1: price without pay_to
--- config
location /a {
    x402_price 0.001;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
}
--- must_die
--- error_log eval
[qr/"x402_price" needs "x402_pay_to".* in \S+nginx\.conf:\d+/]



=== TEST 2: price without network
--- config
location /a {
    x402_price 0.001;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_facilitator /_x402/;
}
--- must_die
--- error_log
"x402_price" needs "x402_network"



=== TEST 3: price without facilitator
--- config
location /a {
    x402_price 0.001;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network base-sepolia;
}
--- must_die
--- error_log
"x402_price" needs "x402_facilitator"



=== TEST 4: inherited price, server without pay_to: still an error
--- http_config
x402_price 0.001;
x402_network base-sepolia;
x402_facilitator /_x402/;
--- config
location /a { }
--- must_die
--- error_log
needs "x402_pay_to"



=== TEST 5: a price that is not a number
--- config
location /a { x402_price abc; }
--- must_die
--- error_log eval
[qr/invalid "x402_price" value "abc": .* in \S+nginx\.conf:\d+/]



=== TEST 6: more fractional digits than the asset has
--- config
location /a {
    x402_price 0.0000001;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
}
--- must_die
--- error_log eval
[qr/invalid "x402_price" value "0\.0000001": .*6.*decimals.* in \S+nginx\.conf:\d+/]



=== TEST 7: atomic units are integers
--- config
location /a { x402_price 1.5 atomic; }
--- must_die
--- error_log
invalid "x402_price" value "1.5"



=== TEST 8: unknown unit
--- config
location /a { x402_price 1 cents; }
--- must_die
--- error_log
invalid "x402_price" unit "cents": only "atomic" may follow the amount



=== TEST 9: negative and scientific prices
--- config
location /a { x402_price -1; }
location /b { x402_price 1e-3; }
--- must_die
--- error_log
invalid "x402_price" value "-1"



=== TEST 10: pay_to too short
--- config
location /a { x402_pay_to 0x1234; }
--- must_die
--- error_log eval
[qr/invalid "x402_pay_to" address "0x1234": .* in \S+nginx\.conf:\d+/]



=== TEST 11: pay_to with a wrong EIP-55 checksum
--- config
location /a { x402_pay_to 0x209693bc6afc0C5328bA36FaF03C514EF312287C; }
--- must_die
--- error_log
invalid "x402_pay_to" address "0x209693bc6afc0C5328bA36FaF03C514EF312287C"



=== TEST 12: unknown network
--- config
location /a { x402_network base-mainnet; }
--- must_die
--- error_log eval
[qr/unknown "x402_network" "base-mainnet": .* in \S+nginx\.conf:\d+/]



=== TEST 13: custom asset without its EIP-712 domain
--- config
location /a {
    x402_price 1;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    x402_asset 0x1111111111111111111111111111111111111111 decimals=18;
}
--- must_die
--- error_log eval
[qr/"x402_asset" "0x1111111111111111111111111111111111111111" needs name= and version=.* in \S+nginx\.conf:\d+/]



=== TEST 14: asset decimals out of range, unknown parameter
--- config
location /a { x402_asset 0x1111111111111111111111111111111111111111 decimals=99; }
--- must_die
--- error_log
invalid "x402_asset" parameter "decimals=99": decimals must be an integer from 0 to 36



=== TEST 15: asset unknown parameter
--- config
location /a { x402_asset 0x1111111111111111111111111111111111111111 symbol=T; }
--- must_die
--- error_log
invalid "x402_asset" parameter "symbol=T"



=== TEST 16: max_timeout too short
--- config
location /a { x402_max_timeout 5s; }
--- must_die
--- error_log eval
[qr/invalid "x402_max_timeout" "5s": .*more than 6 seconds.* in \S+nginx\.conf:\d+/]



=== TEST 17: facilitator is a URI prefix
--- config
location /a { x402_facilitator _x402; }
--- must_die
--- error_log
invalid "x402_facilitator" "_x402": expected the URI prefix of an internal location



=== TEST 18: facilitator without variables
--- config
location /a { x402_facilitator /$host/; }
--- must_die
--- error_log
variables and arguments are not supported



=== TEST 19: unknown settle mode, verify mode, log level
--- config
location /a { x402_settle later; }
--- must_die
--- error_log
invalid value "later"



=== TEST 20: unknown verify mode
--- config
location /a { x402_verify remote; }
--- must_die
--- error_log
invalid value "remote"



=== TEST 21: unknown log level
--- config
location /a { x402_log_level debug; }
--- must_die
--- error_log
invalid value "debug"



=== TEST 22: duplicates
--- config
location /a { x402_price 1; x402_price 2; }
--- must_die
--- error_log
"x402_price" directive is duplicate



=== TEST 23: a complete location passes nginx -t; x402 off needs nothing
--- config eval
"location /a { x402_price \$0.001;\n$main::PAY}\nlocation /b { x402 off; x402_price 1; }\nlocation /_x402/ { internal; return 500; }"
--- user_files
>>> b
free
--- request
GET /b
--- response_body
free



=== TEST 24: map prices crawlers, lets people read free
--- http_config
map $http_user_agent $x402_test_price {
    ~*GPTBot  0.002;
    default   "";
}
--- config eval
"location / {\n    x402_price \$x402_test_price;\n$main::PAY}\n"
--- user_files
>>> doc.html
text
--- request eval
["GET /doc.html", "GET /doc.html", "GET /doc.html"]
--- more_headers eval
["User-Agent: Mozilla/5.0", "User-Agent: GPTBot/1.0", "User-Agent: curl"]
--- error_code eval
[200, 402, 200]
--- response_headers_like eval
["Content-Type: text/html", "PAYMENT-REQUIRED: ^eyJ", "Content-Type: text/html"]



=== TEST 25: a variable price that is not a number: 500, the log says why
--- config eval
"location / {\n    x402_price \$arg_p;\n$main::PAY}\n"
--- user_files
>>> doc
text
--- request eval
["GET /doc?p=lots", "GET /doc?p=0.0000001", "GET /doc?p=", "GET /doc?p=0.01"]
--- error_code eval
[500, 500, 200, 402]
--- error_log eval
[qr/x402: "x402_price" "\$arg_p" gave "lots": /,
 qr/x402: "x402_price" "\$arg_p" gave "0\.0000001": .*6.*decimals/]



=== TEST 26: a variable pay_to that is not an address: 500
--- config
location / {
    x402_price 0.01;
    x402_pay_to $arg_to;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
}
--- user_files
>>> doc
text
--- request eval
["GET /doc?to=0xnothex", "GET /doc?to=0x209693Bc6afc0C5328bA36FaF03C514EF312287C"]
--- error_code eval
[500, 402]
--- error_log eval
[qr/x402: "x402_pay_to" "\$arg_to" gave "0xnothex": /]



=== TEST 27: free locations and proxied upstreams are untouched
--- http_config
server {
    listen 127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;
    location / {
        add_header X-Upstream yes;
        return 200 "upstream $request_uri $http_payment_signature";
    }
}
--- config eval
"x402_price 0.001;\n$main::PAY\nlocation /free/ { x402 off; proxy_pass http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT; }\nlocation /static/ { x402 off; }\n"
--- user_files
>>> static/f.txt
static file
--- request eval
["GET /free/a?b=c", "GET /static/f.txt"]
--- response_body eval
["upstream /free/a?b=c ", "static file\n"]
--- response_headers eval
["X-Upstream: yes\n!PAYMENT-REQUIRED\n!PAYMENT-RESPONSE", "!PAYMENT-REQUIRED\n!Cache-Control"]



=== TEST 28: a chain outside the table has no default asset
--- config
location /a {
    x402_price 0.001;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network eip155:999999;
    x402_facilitator /_x402/;
}
--- must_die
--- error_log eval
[qr/"x402_price" needs "x402_asset": network "eip155:999999" has no default asset in \S+nginx\.conf:\d+/]



=== TEST 29: ... and works with an explicit token
--- config
location /a {
    x402_price 0.5;
    x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network eip155:999999;
    x402_asset 0x1111111111111111111111111111111111111111 name=Token version=1 decimals=2;
    x402_facilitator /_x402/;
}
--- user_files
>>> a
x
--- request
GET /a
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
--- perl
my $r = $ng->get('/a');
my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
is($pr->{accepts}[0]{network}, 'eip155:999999', 'unknown chain: CAIP-2 network');
is($pr->{accepts}[0]{amount}, '50', 'unknown chain: 2 decimals');



=== TEST 30: hold_max_size smaller than hold_buffer_size: names both
--- config
x402_hold_buffer_size 64k;
location /a { x402_hold_max_size 16k; }
--- must_die
--- error_log eval
[qr/"x402_hold_max_size" of 16384 bytes is smaller than "x402_hold_buffer_size" of 65536 bytes: .*0 keeps it in memory only.* in \S+nginx\.conf:\d+/]



=== TEST 31: hold_max_size not a size
--- config
location /a { x402_hold_max_size lots; }
--- must_die
--- error_log eval
[qr/invalid "x402_hold_max_size" "lots": expected a size .* in \S+nginx\.conf:\d+/]



=== TEST 32: hold_max_size 0 (memory only), or equal to the memory bound
--- config
x402_hold_buffer_size 16k;
location /a { x402_hold_max_size 0; return 200 "ok\n"; }
location /b { x402_hold_max_size 16k; return 200 "ok\n"; }
--- request
GET /a
--- error_code: 200
