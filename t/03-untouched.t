# Nothing else changes (issue 2, item 4): with the module loaded and a
# priced location in the server, every request that is not for a priced
# location gets byte for byte the response plain nginx gives (Date aside):
# static files (GET, HEAD, ranges, conditional requests, redirects, 404s),
# proxy_pass upstreams (also chunked and POST bodies), other content
# handlers, gzip, and `x402 off` inside a priced prefix. Then: a paid
# request that nginx redirects internally or that includes subrequests is
# charged once (where the payment matches the offers reached: t/26).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

my $files = <<'EOF';
>>> index.html
<h1>home</h1>
>>> static/a.txt
0123456789abcdefghijklmnopqrstuvwxyz
>>> static/big.txt
EOF
$files .= ('x' x 100 . "\n") x 2000;
$files .= <<'EOF';
>>> static/sub/index.html
sub index
>>> paid/free/open.txt
free inside a paid prefix
>>> paid/doc.txt
paid doc
EOF

# $x402 marks where the module's directives go; plain nginx gets nothing
sub make_conf {
    my ($with, $upstream_port, $fac_port) = @_;
    my $srv = $with ? <<"EOX" : '';
    x402_pay_to      $PAY_TO;
    x402_network     base-sepolia;
    x402_facilitator /_x402/;
EOX
    my $paid = $with ? 'x402_price 0.001;' : '';
    my $off  = $with ? 'x402 off;' : '';
    return <<"EOC";
    $srv
    location / { }
    location /static/ {
        gzip on;
        gzip_types text/plain;
        gzip_min_length 10;
    }
    location /paid/ {
        $paid
        location /paid/free/ {
            $off
        }
    }
    location /proxy/ {
        proxy_pass http://127.0.0.1:$upstream_port/;
    }
    location /proxy-chunked/ {
        proxy_pass http://127.0.0.1:$upstream_port/chunked/;
        proxy_http_version 1.1;
    }
    location = /gif { empty_gif; }
    location = /redirect { return 302 /static/a.txt; }
    location = /status { return 418 "teapot\\n"; }
    location /_x402/ {
        internal;
        proxy_pass http://127.0.0.1:$fac_port/;
    }
EOC
}

sub make_http {
    my ($upstream_port) = @_;
    return <<"EOH";
    server {
        listen 127.0.0.1:$upstream_port;
        location / {
            add_header X-Upstream yes;
            return 200 "upstream \$request_method \$request_uri \$http_x_test \$content_length\\n";
        }
        location /chunked/ {
            sub_filter 'x' 'y';
            sub_filter_types *;
            sub_filter_once off;
            root html;
            rewrite ^/chunked/(.*)\$ /static/\$1 break;
        }
    }
EOH
}

my $fac = start_facilitator();
my %ng;
for my $with (0, 1) {
    my $up = free_port();
    $ng{$with} = start_nginx(name => $with ? 'with-module' : 'plain',
                             module => $with, user_files => $files,
                             http_config => make_http($up),
                             config => make_conf($with, $up, $fac->port));
    # same mtimes in both: Last-Modified and ETag must match too
    my @f = map { $ng{$with}->html_dir . "/$_" }
            qw(index.html static/a.txt static/big.txt static/sub/index.html
               paid/free/open.txt paid/doc.txt);
    utime 1700000000, 1700000000, @f;
}

my @requests = (
    ['GET /'],
    ['GET /static/a.txt'],
    ['HEAD /static/a.txt'],
    ['GET /static/a.txt', "Range: bytes=5-9"],
    ['GET /static/a.txt', "Range: bytes=0-1,5-6"],
    ['GET /static/a.txt', "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT"],
    ['GET /static/a.txt', 'If-None-Match: "6553f100-25"'],
    ['GET /static/big.txt', "Accept-Encoding: gzip"],
    ['GET /static/big.txt'],
    ['GET /static/sub'],
    ['GET /static/sub/'],
    ['GET /static/missing.txt'],
    ['GET /static/a.txt?x402=1&payment=0'],
    ['GET /paid/free/open.txt'],
    ['GET /paid/free/missing'],
    ['GET /proxy/some/path?q=1', "X-Test: hello"],
    ["POST /proxy/post\n" . ('p' x 3000), "X-Test: body"],
    ['GET /proxy-chunked/a.txt'],
    ['GET /gif'],
    ['GET /redirect'],
    ['GET /status'],
    ['OPTIONS /static/a.txt'],
    ['GET /static/a.txt', 'PAYMENT-SIGNATURE: eyJub3QiOiJwYWlkIn0='],
    ['GET /static/a.txt', 'X-PAYMENT: garbage'],
    ['GET /static/../../etc/passwd'],
);

# Date aside, and each instance's own port (in redirects) as PORT
sub normalize {
    my ($r, $port) = @_;
    return "NO RESPONSE: $r->{error}" unless $r->{ok};
    my @h = grep { lc $_->[0] ne 'date' } @{ $r->{header_list} };
    my $text = join("\n", "$r->{status} $r->{reason}",
                    map({ "$_->[0]: $_->[1]" } @h), '', $r->{body});
    $text =~ s/:$port\b/:PORT/g;
    return $text;
}

for my $req (@requests) {
    my ($spec, $more) = @$req;
    (my $name = $spec) =~ s/\n.*//s;
    $name .= " [$more]" if $more;
    my $plain = normalize($ng{0}->request($spec, $more), $ng{0}->port);
    my $with  = normalize($ng{1}->request($spec, $more), $ng{1}->port);
    is($with, $plain, "same response with the module: $name");
}

# the priced location itself does change: a control that the module is on
is($ng{1}->get('/paid/doc.txt')->{status}, 402, 'control: /paid/doc.txt is priced');
is($ng{0}->get('/paid/doc.txt')->{status}, 200, 'control: plain nginx serves it');
is(scalar(my @r = $fac->requests), 0, 'the facilitator saw nothing');

for my $with (0, 1) {
    $ng{$with}->stop;
    unlike($ng{$with}->error_log, qr/\[(alert|emerg|crit)\]/,
           ($with ? 'with module' : 'plain') . ': no alert in error.log');
}
$fac->stop;

# paid once, however nginx routes the request inside
run_tests();
done_testing();

__DATA__

=== TEST 1: index: /paid/ redirects internally to /paid/index.html, one settlement
--- user_files
>>> paid/index.html
paid index
--- config
x402_pay_to      0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network     base-sepolia;
x402_facilitator /_x402/;
location /paid/ { x402_price 0.001; }
location /_x402/ { internal; proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/; }
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment()
--- request
GET /paid/
--- response_body
paid index
--- response_headers_like
PAYMENT-RESPONSE: ^eyJ
--- facilitator_saw
verify settle



=== TEST 2: try_files and error_page to other priced URIs: one settlement
--- user_files
>>> paid/fallback.html
fallback
--- config
x402_pay_to      0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network     base-sepolia;
x402_facilitator /_x402/;
location /paid/ {
    x402_price 0.001;
    try_files $uri /paid/fallback.html;
}
location /_x402/ { internal; proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/; }
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment()
--- request
GET /paid/nothing-here
--- response_body
fallback
--- facilitator_saw
verify settle



=== TEST 3: SSI includes of priced locations with the same offer in a priced page: one settlement
--- user_files
>>> paid/page.html
[<!--# include virtual="/paid/part.html" -->|<!--# include virtual="/also-paid/part.html" -->]
>>> paid/part.html
part
>>> also-paid/part.html
other
--- config
x402_pay_to      0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network     base-sepolia;
x402_facilitator /_x402/;
location /paid/ { x402_price 0.001; ssi on; }
location /also-paid/ { x402_price 0.001; }
location /_x402/ { internal; proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/; }
--- facilitator
verify: default
settle: default
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment()
--- request
GET /paid/page.html
--- response_body
[part
|other
]
--- facilitator_saw
verify settle



=== TEST 4: the unpaid request to a redirecting priced URI: one 402, no facilitator
--- user_files
>>> paid/index.html
paid index
--- config
x402_pay_to      0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_network     base-sepolia;
x402_facilitator /_x402/;
location /paid/ { x402_price 0.001; }
location /_x402/ { internal; proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/; }
--- facilitator
--- request
GET /paid/
--- error_code: 402
--- response_headers_like
PAYMENT-REQUIRED: ^eyJ
--- facilitator_saw
