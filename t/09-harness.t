# The harness itself, against plain nginx (no x402 directives): if these
# fail, no other test result means anything.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

# these blocks test the harness, not the module: keep them independent of
# whether the module builds
$X402::Test::LOAD_MODULE = 0;

run_tests();

# Perl API: two instances, reload, the fake facilitator scripted mid-test
{
    my $fac = start_facilitator(script => "verify: 402 {\"isValid\":false,\"invalidReason\":\"x\"}\n");
    my $conf = "location /f/ { proxy_pass http://127.0.0.1:" . $fac->port . "/; }\n"
             . "location / { return 200 \"one\"; }\n";
    my $a = start_nginx(config => $conf, name => 'api-a');
    my $b = start_nginx(config => "location / { return 200 \"b:\$server_port\"; }",
                        name => 'api-b');
    isnt($a->port, $b->port, 'api: two instances, two ports');
    is($a->get('/')->{body}, 'one', 'api: get');
    is($b->get('/')->{body}, 'b:' . $b->port, 'api: second instance');

    my $r = $a->request("POST /f/verify\n{\"a\":1}", "Content-Type: application/json");
    is($r->{status}, 402, 'api: scripted facilitator status');
    $fac->set_script("verify: default\n");
    $r = $a->request("POST /f/verify\n{\"paymentPayload\":{\"payload\":{\"authorization\":{\"from\":\"0xab\"}}}}");
    is($r->{status}, 200, 'api: rescripted facilitator');
    is(json_decode($r->{body})->{payer}, '0xab', 'api: default verify names the payer');
    my @seen = $fac->requests;
    is(scalar @seen, 2, 'api: facilitator recorded two requests');
    is($seen[0]{json}{a}, 1, 'api: recorded body decoded');
    is($seen[1]{endpoint}, 'verify', 'api: endpoint');

    my @old = $a->worker_pids;
    $a->reload(config => "location / { return 200 \"two\"; }");
    is($a->get('/')->{body}, 'two', 'api: reload applies the new config');
    ok(!grep({ X402::Nginx::pid_alive($_) } @old), 'api: old workers gone after reload');

    my $pid = $a->pid;
    $a->stop;
    $b->stop;
    $fac->stop;
    ok(!X402::Nginx::pid_alive($pid), 'api: stop leaves no master');
}

# sign-payment.mjs reproduces the notes' §9.1 vector byte for byte
{
    my %fixed = (nonce => '0x4c3559acb974151b63af81bf5fe96e3290bc613230d4f93772cec512916faaa0',
                 valid_after => 1700000000, valid_before => 1900000000);
    my ($h, $p) = sign_payment(%fixed, resource => 'http://localhost:4021/protected');
    is($p->{payload}{signature},
       '0xe8edda0fd94ad6e3b51909c2dd12c302e7e5152b9e10d2eb96d6566a250ea8b140f2b91070546d71860212aa90ece66ae8960e9b68dba5664c4e824062e4e6bf1c',
       'sign: §9.1 signature');
    is(length $h, 1020, 'sign: §9.1 v2 header length');
    my ($h1) = sign_payment(%fixed, version => 1);
    is(length $h1, 644, 'sign: §9.1 v1 header length');
    my (undef, $hs) = sign_payment(%fixed, high_s => 1);
    like($hs->{payload}{signature}, qr/bf0d46ef8fab928e79fded556f131993d218ce4b466cfad57383dc4c6d515a821b$/,
         'sign: high-s twin');
    my @many = sign_payments(3, amount => '5000');
    my %n = map { $_->[1]{payload}{authorization}{nonce} => 1 } @many;
    is(scalar keys %n, 3, 'sign: distinct nonces');
    is($many[0][1]{accepted}{amount}, '5000', 'sign: amount');
    my $now = time;
    my $va = $many[0][1]{payload}{authorization}{validAfter};
    ok(abs($va - ($now - 600)) <= 5, 'sign: validAfter = now - 600');
}

done_testing();

__DATA__

=== TEST 1: status, exact body, exact headers, absent header
--- config
location = /t {
    add_header X-One 1;
    add_header X-Multi a;
    add_header X-Multi b;
    return 200 "hello\n";
}
--- request
GET /t
--- response_body
hello
--- response_headers
Content-Type: text/plain
X-One: 1
X-Multi: a, b
!X-None
--- response_headers_like
Server: ^nginx



=== TEST 2: error_code, body regex, [error] expected in the log
--- config
location / { }
--- request
GET /missing.html
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
No such file or directory



=== TEST 3: more_headers and nginx variables survive, $TEST_NGINX_PORT is substituted
--- config
location = /h { return 200 "$http_x_test $server_port"; }
--- more_headers
X-Test: abc
--- request
GET /h
--- response_body eval
"abc $ENV{TEST_NGINX_PORT}"



=== TEST 4: chunked response is de-chunked
--- config
location = /c.txt {
    sub_filter 'world' 'there';
    sub_filter_types *;
}
--- user_files
>>> c.txt
hello world
--- request
GET /c.txt
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
hello there



=== TEST 5: POST body reaches the fake facilitator; it saw exactly verify
--- config
location /fac/ { proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/; }
--- facilitator
verify: 200 {"isValid":true,"payer":"{{payer}}"}
--- request
POST /fac/verify
{"x402Version":2,"paymentPayload":{"payload":{"authorization":{"from":"0x1234"}}}}
--- response_body chomp
{"isValid":true,"payer":"0x1234"}
--- facilitator_saw
verify



=== TEST 6: a facilitator that hangs: nginx's timeout, the request still completes
--- config
location /fac/ {
    proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/;
    proxy_read_timeout 1s;
}
--- facilitator
settle: hang
--- request
POST /fac/settle
{}
--- error_code: 504
--- timeout: 5
--- error_log
upstream timed out



=== TEST 7: facilitator closes the connection / answers garbage (sequence)
--- config
location /fac/ { proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/; }
--- facilitator
verify: close
verify: garbage
--- request eval
["POST /fac/verify\n{}", "POST /fac/verify\n{}", "POST /fac/verify\n{}"]
--- error_code eval
[502, 200, 200]
--- response_body_like eval
[qr/Bad Gateway/, qr/not json/, qr/not json/]
--- facilitator_saw
verify verify verify
--- error_log
upstream prematurely closed



=== TEST 8: nginx -t fails on a bad config
--- config
location / { no_such_directive on; }
--- must_die
--- error_log
unknown directive "no_such_directive"



=== TEST 9: --- perl runs code with the instance; workers and main_config
--- workers: 2
--- main_config
env X402_HARNESS_TEST;
--- config
location / { return 200 "pid"; }
--- perl
my @w = $ng->worker_pids;
is(scalar @w, 2, 'two workers');
my $r = $ng->get('/', { 'X-A' => 1 });
is($r->{status}, 200, 'perl: get');



=== TEST 10: raw request, HEAD has no body
--- config
location / { return 200 "body"; }
--- raw_request eval
"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
--- response_body chomp
--- response_headers
Content-Length: 4



=== TEST 11: a payment header from sign_payment in an eval section
--- config
location = /p { return 200 "$http_payment_signature"; }
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- request
GET /p
--- response_body_like: ^eyJ4NDAyVmVyc2lvbiI6Mi
