# The 402 of an unpaid request to a priced location (issue 2, item 3;
# coinbase/x402 specs/transports-v2/http.md and transports-v1/http.md,
# "Payment Required Signaling"; specs/x402-specification-v2.md 5.1):
# status, the v2 PAYMENT-REQUIRED
# header (standard padded base64 of compact JSON, exact fields), the v1 JSON
# body (v1 field names), Content-Type, Cache-Control, CORS exposure, the
# absolute resource URL with port and query, and escaping of what the
# operator and the client put in.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use MIME::Base64 qw(decode_base64);

plan skip_all => "module not built" unless -f module_path();
binmode(Test::More->builder->$_, ":encoding(UTF-8)") for qw(output failure_output todo_output);

my $PAY_TO_LC  = '0x209693bc6afc0c5328ba36faf03c514ef312287c';
my $PAY_TO     = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';    # EIP-55
my $USDC_BS    = '0x036CbD53842c5426634e7929541eC2318f3dCF7e';
my $USDC_BASE  = '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913';
my $TOKEN      = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
my $DESC       = q{A "quoted" <b>report</b> & \ back, caf} . "\xc3\xa9 \xe2\x9c\x93 </script>";
(my $DESC_CONF = $DESC) =~ s/(["\\])/\\$1/g;

my $fac = start_facilitator();
my $fport = $fac->port;

# static content: `return` would answer in the rewrite phase, before any
# access-phase module (x402 as auth_basic) runs
my $ng = start_nginx(name => '402', user_files => <<'EOF', config => <<"EOC");
>>> paid
content
>>> described
content
>>> base
content
>>> token
content
>>> var
free or paid
EOF
    x402_facilitator /_x402/;
    x402_pay_to      $PAY_TO_LC;

    location /paid {
        x402_price   0.001;
        x402_network base-sepolia;
    }
    location /described {
        x402_price       \$0.001;
        x402_network     base-sepolia;
        x402_description "$DESC_CONF";
        x402_mime_type   "text/csv; charset=utf-8";
    }
    location /base {
        x402_price   \$0.25;
        x402_network eip155:8453;
    }
    location /token {
        x402_price       1.5;
        x402_network     base-sepolia;
        x402_asset       $TOKEN "name=Test Token" version=7 decimals=18;
        x402_max_timeout 60;
    }
    location /var {
        x402_price   \$arg_p;
        x402_network base-sepolia;
    }
    location /_x402/ {
        internal;
        proxy_pass http://127.0.0.1:$fport/;
    }
EOC
my $port = $ng->port;

# compact JSON: no whitespace outside strings
sub compact_ok {
    my ($json, $name) = @_;
    (my $bare = $json) =~ s/"(?:[^"\\]|\\.)*"/""/g;
    unlike($bare, qr/\s/, "$name: compact JSON");
}

sub keys_are {
    my ($h, $want, $name) = @_;
    is(join(',', sort keys %$h), join(',', sort @$want), "$name: exactly the fields @$want");
}

# common checks of every 402; returns (v2 PaymentRequired, v1 body)
sub check_402 {
    my ($r, $name) = @_;
    is($r->{status}, 402, "$name: status 402") or diag($r->{raw});
    is(X402::HTTP::header($r, 'Content-Type'), 'application/json', "$name: Content-Type");
    is(X402::HTTP::header($r, 'Cache-Control'), 'no-store', "$name: Cache-Control");
    my $aceh = X402::HTTP::header($r, 'Access-Control-Expose-Headers') // '';
    my %exposed = map { lc($_) => 1 } split /\s*,\s*/, $aceh;
    ok($exposed{'payment-required'} && $exposed{'payment-response'},
       "$name: Access-Control-Expose-Headers names PAYMENT-REQUIRED and PAYMENT-RESPONSE")
        or diag($aceh);
    my @pr = @{ $r->{headers}{'payment-required'} || [] };
    is(scalar @pr, 1, "$name: one PAYMENT-REQUIRED header");
    my $b64 = $pr[0] // '';
    like($b64, qr{^[A-Za-z0-9+/]+={0,2}$}, "$name: standard base64 alphabet");
    is(length($b64) % 4, 0, "$name: padded");
    my $json = decode_base64($b64);
    compact_ok($json, "$name v2");
    my $v2 = eval { json_decode($json) };
    ok($v2, "$name: PAYMENT-REQUIRED is JSON") or diag($@);
    like($json, qr/"x402Version":2[,}]/, "$name: x402Version is the number 2");
    compact_ok($r->{body}, "$name v1") if $r->{body} ne '';
    my $v1 = eval { json_decode($r->{body}) };
    ok($v1, "$name: body is JSON") or diag($r->{body});
    like($r->{body}, qr/"x402Version":1[,}]/, "$name: body x402Version is the number 1");
    return ($v2 || {}, $v1 || {});
}

sub check_shapes {
    my ($v2, $v1, $name) = @_;
    my @v2top = (qw(x402Version error resource accepts),
                 exists $v2->{extensions} ? 'extensions' : ());
    keys_are($v2, \@v2top, "$name v2");
    ok(!exists $v2->{extensions} || %{ $v2->{extensions} },
       "$name: extensions only when non-empty");
    is($v2->{error}, 'Payment required', "$name: v2 error");
    keys_are($v2->{resource}, [qw(url description mimeType)], "$name v2 resource");
    is(ref $v2->{accepts}, 'ARRAY', "$name: accepts is an array");
    is(scalar @{ $v2->{accepts} }, 1, "$name: one requirement");
    keys_are($v2->{accepts}[0],
             [qw(scheme network amount asset payTo maxTimeoutSeconds extra)],
             "$name v2 requirement");
    keys_are($v2->{accepts}[0]{extra}, [qw(name version)], "$name v2 extra");

    keys_are($v1, [qw(x402Version error accepts)], "$name v1");
    like($v1->{error}, qr/\S/, "$name: v1 error is a message");
    is(scalar @{ $v1->{accepts} || [] }, 1, "$name: v1 one requirement");
    my $a1 = $v1->{accepts}[0] || {};
    keys_are({ map { $_ => 1 } grep { $_ ne 'outputSchema' } keys %$a1 },
             [qw(scheme network maxAmountRequired resource description mimeType
                 payTo maxTimeoutSeconds asset extra)], "$name v1 requirement");

    # the two versions describe the same offer
    my $a2 = $v2->{accepts}[0];
    is($a1->{maxAmountRequired}, $a2->{amount}, "$name: v1 amount = v2 amount");
    is($a1->{$_}, $a2->{$_}, "$name: v1 $_ = v2 $_")
        for qw(scheme asset payTo maxTimeoutSeconds);
    is_deeply($a1->{extra}, $a2->{extra}, "$name: v1 extra = v2 extra");
    is($a1->{resource}, $v2->{resource}{url}, "$name: v1 resource = v2 resource.url");
    is($a1->{description}, $v2->{resource}{description}, "$name: v1 description");
    is($a1->{mimeType}, $v2->{resource}{mimeType}, "$name: v1 mimeType");
}

# 1. the default offer: Base Sepolia USDC, 0.001 -> 1000 atomic units
{
    my $r = $ng->get('/paid?q=a%20b&x=1', { Host => "localhost:$port" });
    my ($v2, $v1) = check_402($r, 'paid');
    check_shapes($v2, $v1, 'paid');
    my $url = "http://localhost:$port/paid?q=a%20b&x=1";
    is($v2->{resource}{url}, $url, 'paid: resource.url absolute, with port and query');
    is($v2->{resource}{description}, '', 'paid: description empty by default');
    is($v2->{resource}{mimeType}, '', 'paid: mimeType empty by default');
    my $a = $v2->{accepts}[0];
    is($a->{scheme}, 'exact', 'paid: scheme');
    is($a->{network}, 'eip155:84532', 'paid: v2 network is CAIP-2');
    is($a->{amount}, '1000', 'paid: amount in atomic units');
    is($a->{asset}, $USDC_BS, 'paid: Base Sepolia USDC');
    is($a->{payTo}, $PAY_TO, 'paid: payTo EIP-55 checksummed');
    is($a->{maxTimeoutSeconds}, 300, 'paid: maxTimeoutSeconds default');
    is_deeply($a->{extra}, { name => 'USDC', version => '2' }, 'paid: EIP-712 domain');
    my $json = decode_base64(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    like($json, qr/"amount":"1000"/, 'paid: amount is a string');
    like($json, qr/"maxTimeoutSeconds":300[,}]/, 'paid: maxTimeoutSeconds is a number');
    like($json, qr/"version":"2"/, 'paid: extra.version is a string');
    my $a1 = $v1->{accepts}[0];
    is($a1->{network}, 'base-sepolia', 'paid: v1 network name');
    is($a1->{resource}, $url, 'paid: v1 resource');
    like($r->{body}, qr/"maxAmountRequired":"1000"/, 'paid: v1 amount is a string');
    is(X402::HTTP::header($r, 'Content-Length'), length($r->{body}),
       'paid: Content-Length');
}

# 2. the URL is the one this request asked for, every time
{
    my $r = $ng->get('/paid');
    my ($v2) = check_402($r, 'no port');
    is($v2->{resource}{url}, 'http://localhost/paid', 'Host without port: no port');

    $r = $ng->get('/paid/deeper/x.json?a=%22%3C&b', { Host => 'example.com:8080' });
    ($v2) = check_402($r, 'other host');
    is($v2->{resource}{url}, 'http://example.com:8080/paid/deeper/x.json?a=%22%3C&b',
       'resource.url follows Host and the request');

    # RFC 9112 3.2.2: in absolute-form the request line's authority wins
    # over Host (nginx's $host agrees)
    $r = $ng->request("GET http://api.example.org/paid?z=9 HTTP/1.1",
                      "Host: ignored.example");
    ($v2) = check_402($r, 'absolute-form');
    is($v2->{resource}{url}, 'http://api.example.org/paid?z=9',
       'absolute-form request line: its host');
}

# 3. operator text is escaped, survives byte for byte in both versions
{
    my $r = $ng->get('/described', { Host => "localhost:$port" });
    my ($v2, $v1) = check_402($r, 'described');
    check_shapes($v2, $v1, 'described');
    my $want = $DESC;
    utf8::decode($want);
    is($v2->{resource}{description}, $want, 'description: quotes, backslash, <, &, UTF-8 intact (v2)');
    is($v1->{accepts}[0]{description}, $want, 'description intact (v1)');
    is($v2->{resource}{mimeType}, 'text/csv; charset=utf-8', 'mimeType (v2)');
    is($v1->{accepts}[0]{mimeType}, 'text/csv; charset=utf-8', 'mimeType (v1)');
    unlike($r->{body}, qr{</script>|<b>}, 'no raw HTML markup in the JSON body');
    is($v2->{accepts}[0]{amount}, '1000', '$0.001 is 1000 atomic units');
}

# 4. Base mainnet by CAIP-2 id: its USDC and EIP-712 name; the v1 name
{
    my $r = $ng->get('/base');
    my ($v2, $v1) = check_402($r, 'base');
    check_shapes($v2, $v1, 'base');
    my $a = $v2->{accepts}[0];
    is($a->{network}, 'eip155:8453', 'base: network');
    is($a->{amount}, '250000', 'base: $0.25 = 250000');
    is($a->{asset}, $USDC_BASE, 'base: USDC on Base');
    is_deeply($a->{extra}, { name => 'USD Coin', version => '2' }, 'base: EIP-712 domain');
    is($v1->{accepts}[0]{network}, 'base', 'base: v1 network name');
}

# 5. a custom token: its decimals, name and version; max timeout
{
    my $r = $ng->get('/token');
    my ($v2, $v1) = check_402($r, 'token');
    check_shapes($v2, $v1, 'token');
    my $a = $v2->{accepts}[0];
    is($a->{amount}, '1500000000000000000', 'token: 1.5 with 18 decimals, exactly');
    is($a->{asset}, $TOKEN, 'token: asset');
    is_deeply($a->{extra}, { name => 'Test Token', version => '7' }, 'token: EIP-712 domain');
    is($a->{maxTimeoutSeconds}, 60, 'token: x402_max_timeout');
}

# 6. a price from a variable: rendered per request; empty means free
{
    my $r = $ng->get('/var?p=0.002');
    my ($v2) = check_402($r, 'variable price');
    is($v2->{accepts}[0]{amount}, '2000', 'variable price: 0.002 = 2000');
    $r = $ng->get('/var?p=0.5');
    ($v2) = check_402($r, 'variable price 2');
    is($v2->{accepts}[0]{amount}, '500000', 'variable price: per request');
    $r = $ng->get('/var');
    is($r->{status}, 200, 'variable price empty: free');
    is($r->{body}, "free or paid\n", 'variable price empty: content');
    ok(!exists $r->{headers}{'payment-required'}, 'free: no PAYMENT-REQUIRED');
}

# 7. other methods: POST gets the same 402 (its body read and dropped, the
#    connection usable), HEAD gets the headers without a body
{
    my $r = $ng->request("POST /paid\n" . ('x' x 5000), "Content-Type: text/plain");
    my ($v2) = check_402($r, 'POST');
    is($v2->{accepts}[0]{amount}, '1000', 'POST: same offer');

    $r = $ng->request("HEAD /paid");
    is($r->{status}, 402, 'HEAD: 402');
    ok($r->{headers}{'payment-required'}, 'HEAD: PAYMENT-REQUIRED');
    is($r->{body}, '', 'HEAD: no body');
}

# 8. an unpaid request never reaches the facilitator
is(scalar(my @seen = $fac->requests), 0, 'the facilitator saw nothing');

# 9. the README's first example, as shipped (addresses made local by
#    X402::Examples): the documented 402
{
    require X402::Examples;
    my $prefix = servroot() . '/first-paid-location';
    my ($conf, $ports) = X402::Examples::example_conf(
        repo_root() . '/conf-examples/first-paid-location.conf',
        prefix => $prefix, fac_port => $fport, root => "$prefix/html");
    my $ex = X402::Nginx->new(name => 'first-example', prefix => $prefix,
                              port => $ports->[0], raw_conf => $conf)->start;
    my $r = $ex->get('/reports/q3.csv', { Host => 'localhost' });
    my ($v2, $v1) = check_402($r, 'first example');
    check_shapes($v2, $v1, 'first example');
    is($v2->{resource}{url}, 'http://localhost/reports/q3.csv', 'first example: url');
    is($v2->{accepts}[0]{amount}, '1000', 'first example: $0.001');
    is($v2->{resource}{description}, 'Quarterly reports, one file per payment',
       'first example: description');
    my $free = $ex->get('/');
    is($free->{status}, 200, 'first example: the rest stays free');
    ok(!$free->{headers}{'payment-required'}, 'first example: no PAYMENT-REQUIRED when free');
    $ex->stop;
}

$ng->stop;
my $log = $ng->error_log;
unlike($log, qr/\[(alert|emerg|crit)\]/, 'no alert, emerg or crit in error.log');
$fac->stop;

done_testing();
