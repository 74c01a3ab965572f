# x402_accept (issue 12): several ways to pay at one location. The 402 lists
# every option in order (v2 accepts; the v1 body only those with a v1 network
# name); a payment matches one option, is checked under that option's EIP-712
# domain and goes to that option's facilitator; $x402_network and
# $x402_asset name the option paid; duplicates and conflicts are refused at
# configuration time with file and line; options inherit like add_header.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

run_tests();
done_testing();

__DATA__

=== TEST 1: the 402 lists every option in order; v1 body only those with a v1 name
--- config
include x402-paid.conf;
location /w {
    include x402-accept-three.conf;    # USDC 0.01, EURC 0.02, eip155:31338 5000 via /_x402_b/
}
--- request
GET /w
--- error_code: 402
--- perl
my $r = $ng->get('/w');
my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
is(scalar @{$pr->{accepts}}, 3, 'three accepts');
is_deeply([map { "$_->{network} $_->{asset} $_->{amount} $_->{payTo} $_->{maxTimeoutSeconds}" } @{$pr->{accepts}}],
    ['eip155:84532 0x036CbD53842c5426634e7929541eC2318f3dCF7e 10000 0x209693Bc6afc0C5328bA36FaF03C514EF312287C 300',
     'eip155:84532 0x808456652fdb597867f38412077A9182bf77359F 20000 0x209693Bc6afc0C5328bA36FaF03C514EF312287C 300',
     'eip155:31338 0x036CbD53842c5426634e7929541eC2318f3dCF7e 5000 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 60'],
    'network, asset, amount, payTo, maxTimeout per option, in order');
is($pr->{accepts}[1]{extra}{name}, 'EURC', 'EURC domain name');
my $v1 = json_decode($r->{body});
is_deeply([map { "$_->{network} $_->{asset}" } @{$v1->{accepts}}],
    ['base-sepolia 0x036CbD53842c5426634e7929541eC2318f3dCF7e',
     'base-sepolia 0x808456652fdb597867f38412077A9182bf77359F'],
    'v1 body: only the options with a v1 network name');



=== TEST 2: each option is paid (v2), under its own domain, through its own facilitator
--- config
include x402-paid.conf;
include x402-facilitator-b.conf;
location /w {
    x402_settle sync;
    include x402-accept-three.conf;    # USDC 0.01, EURC 0.02, eip155:31338 5000 via /_x402_b/
    add_header X-Paid "$x402_status $x402_network $x402_asset $x402_amount" always;
}
--- user_files
>>> w
paid
--- facilitator
verify: default
settle: default
--- request
GET /w
--- error_code: 402
--- perl
my $r = $ng->get('/w');
my $req = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
my @want = (
    ['eip155:84532 0x036CbD53842c5426634e7929541eC2318f3dCF7e 10000', '/'],
    ['eip155:84532 0x808456652fdb597867f38412077A9182bf77359F 20000', '/'],
    ['eip155:31338 0x036CbD53842c5426634e7929541eC2318f3dCF7e 5000', '/b/'],
);
for my $i (0 .. 2) {
    my $n0 = scalar $fac->requests;
    my $hdr = sign_payment(payment_required => $req, index => $i);
    my $p = $ng->get('/w', { 'PAYMENT-SIGNATURE' => $hdr });
    is($p->{status}, 200, "option $i: paid");
    is(X402::HTTP::header($p, 'X-Paid'), "settled $want[$i][0]",
       "option $i: \$x402_network \$x402_asset \$x402_amount");
    my @seen = ($fac->requests)[$n0 .. scalar($fac->requests) - 1];
    is_deeply([map { $_->{path} } @seen],
              ["$want[$i][1]verify", "$want[$i][1]settle"],
              "option $i: /verify and /settle through its facilitator");
    my ($net, $asset, $amount) = split / /, $want[$i][0];
    is($seen[1]{json}{paymentRequirements}{asset}, $asset,
       "option $i: the facilitator is asked about that option");
    like($ng->error_log, qr/x402: settled $amount from 0x\w+ on $net, tx 0x\w+, asset $asset,/,
         "option $i: the log line names network and asset");
}



=== TEST 3: a v1 payment for the second asset finds its option by the domain it was signed under
--- config
include x402-paid.conf;
location /w {
    x402_settle sync;
    x402_accept network=base-sepolia price=0.01;
    x402_accept network=base-sepolia price=0.01
                asset=0x808456652fdb597867f38412077A9182bf77359F
                name=EURC version=2 decimals=6;
    add_header X-Paid "$x402_status $x402_asset" always;
}
--- user_files
>>> w
paid
--- facilitator
verify: default
settle: default
--- request
GET /w
--- error_code: 402
--- perl
my $r = $ng->get('/w');
for my $i (0, 1) {
    my $hdr = sign_payment(payment_required_body => $r->{body}, index => $i,
                           version => 1);
    my $p = $ng->get('/w', { 'X-PAYMENT' => $hdr });
    is($p->{status}, 200, "v1 option $i: paid");
    like(X402::HTTP::header($p, 'X-Paid'),
         $i ? qr/^settled 0x808456652fdb597867f38412077A9182bf77359F$/
            : qr/^settled 0x036CbD53842c5426634e7929541eC2318f3dCF7e$/,
         "v1 option $i: \$x402_asset");
}



=== TEST 4: a payment for a network the location does not offer: 402 with the reason
--- config
include x402-paid.conf;
location /w {
    x402_accept network=base-sepolia price=0.01;
    x402_accept network=eip155:31338 price=5000 atomic
                asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e
                name=USDC version=2;
    add_header X-Reason $x402_reason always;
}
--- request
GET /w
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(network => 'base', amount => '10000')
--- error_code: 402
--- response_headers
X-Reason: invalid_network
--- facilitator_saw



=== TEST 5: the right amount signed under another option's asset domain: refused
--- config
include x402-paid.conf;
location /w {
    x402_accept network=base-sepolia price=0.01;
    x402_accept network=base-sepolia price=0.02
                asset=0x808456652fdb597867f38412077A9182bf77359F
                name=EURC version=2;
    add_header X-Reason $x402_reason always;
}
--- request
GET /w
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '20000')
--- error_code: 402
--- response_headers
X-Reason: invalid_payment_requirements
--- facilitator_saw



=== TEST 6: the same network and asset twice: refused, naming both lines
--- config
include x402-paid.conf;
location /w {
    x402_accept network=base-sepolia price=0.01;
    x402_accept network=eip155:84532 price=0.02
                asset=0x036cbd53842c5426634e7929541ec2318f3dcf7e;
}
--- must_die
--- error_log eval
[qr/"x402_accept" network=base-sepolia asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e duplicates the option in \S+nginx\.conf:\d+: a location offers each network and asset once in \S+nginx\.conf:\d+/]



=== TEST 7: configuration errors name the value and the line
--- config
include x402-paid.conf;
location /a { x402_accept network=base-sepolia prize=0.01; }
--- must_die
--- error_log eval
[qr/invalid "x402_accept" parameter "prize=0\.01".* in \S+nginx\.conf:\d+/]



=== TEST 8: unknown network
--- config
include x402-paid.conf;
location /a { x402_accept network=basse price=0.01; }
--- must_die
--- error_log eval
[qr/unknown "x402_accept" network "basse".* in \S+nginx\.conf:\d+/]



=== TEST 9: a chain without a default asset needs asset=, name= and version=
--- config
include x402-paid.conf;
location /a { x402_accept network=eip155:31338 price=0.01; }
--- must_die
--- error_log eval
[qr/"x402_accept" network=eip155:31338 needs asset=, name= and version=.* in \S+nginx\.conf:\d+/]



=== TEST 10: name= without asset=
--- config
include x402-paid.conf;
location /a { x402_accept network=base-sepolia price=0.01 name=EURC; }
--- must_die
--- error_log eval
[qr/"x402_accept" name=, version= and decimals= describe asset=.* in \S+nginx\.conf:\d+/]



=== TEST 11: x402_accept and x402_network in one block
--- config
include x402-paid.conf;
location /a {
    x402_network base;
    x402_accept network=base-sepolia price=0.01;
}
--- must_die
--- error_log eval
[qr/"x402_accept" and "x402_network" in one block.* in \S+nginx\.conf:\d+/]



=== TEST 12: an option is never free
--- config
include x402-paid.conf;
location /a { x402_accept network=base-sepolia price=0; }
--- must_die
--- error_log eval
[qr/"x402_accept" price=0: an option is never free.* in \S+nginx\.conf:\d+/]



=== TEST 13: a parameter given twice
--- config
include x402-paid.conf;
location /a { x402_accept network=base-sepolia price=0.01 price=0.02; }
--- must_die
--- error_log eval
[qr/"x402_accept" parameter "price=0\.02" is given twice in \S+nginx\.conf:\d+/]



=== TEST 14: more than 16 options
--- config
include x402-paid.conf;
location /a {
    x402_accept network=base-sepolia; x402_accept network=base; x402_accept network=polygon;
    x402_accept network=polygon-amoy; x402_accept network=avalanche; x402_accept network=avalanche-fuji;
    x402_accept network=eip155:42161; x402_accept network=eip155:421614; x402_accept network=eip155:143;
    x402_accept network=eip155:1 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
    x402_accept network=eip155:2 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
    x402_accept network=eip155:3 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
    x402_accept network=eip155:4 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
    x402_accept network=eip155:5 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
    x402_accept network=eip155:6 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
    x402_accept network=eip155:7 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
    x402_accept network=eip155:8 asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e name=A version=1;
}
--- must_die
--- error_log eval
[qr/too many "x402_accept" options: a location offers at most 16 ways to pay in \S+nginx\.conf:\d+/]



=== TEST 15: inheritance: server options reach a location; x402_price and x402_pay_to fill in
--- config
x402_price 0.001;
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_facilitator /_x402/;
x402_accept network=base-sepolia;
x402_accept network=base price=0.05;
location /a { }
location /b { x402_price 0.002; }
location /c { x402_accept network=polygon; }
location /d { x402_network base; }
location /e { x402_price 0; }
location /f { x402 off; }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /d", "GET /e", "GET /f"]
--- user_files
>>> a
A
>>> b
B
>>> c
C
>>> d
D
>>> e
E
>>> f
F
--- error_code eval
[402, 402, 402, 402, 402, 200]
--- perl
my %want = (
    a => ['eip155:84532 1000', 'eip155:8453 50000'],
    b => ['eip155:84532 2000', 'eip155:8453 50000'],
    c => ['eip155:137 1000'],
    d => ['eip155:8453 1000'],
    e => ['eip155:8453 50000'],   # the option without price= falls back to x402_price 0: left out
);
for my $l (sort keys %want) {
    my $r = $ng->get("/$l");
    my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    is_deeply([map { "$_->{network} $_->{amount}" } @{$pr->{accepts}}],
              $want{$l}, "/$l offers what it inherits and overrides");
}



=== TEST 16: a variable price per option; an option free for this request is left out
--- config
include x402-paid.conf;
location /v {
    x402_accept network=base-sepolia price=$arg_a;
    x402_accept network=base price=$arg_b;
}
--- request eval
["GET /v?a=0.01&b=0.02", "GET /v?a=0&b=0.03", "GET /v?a=0&b=0"]
--- user_files
>>> v
V
--- error_code eval
[402, 402, 200]
--- perl
my $r = $ng->get('/v?a=0.01&b=0.02');
my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
is_deeply([map { "$_->{network} $_->{amount}" } @{$pr->{accepts}}],
          ['eip155:84532 10000', 'eip155:8453 20000'], 'both priced');
$r = $ng->get('/v?a=0&b=0.03');
$pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
is_deeply([map { "$_->{network} $_->{amount}" } @{$pr->{accepts}}],
          ['eip155:8453 30000'], 'the free option is left out');



=== TEST 17: failover is plain nginx: the first facilitator refuses connections, the backup answers, one settlement
--- http_config
upstream x402_facilitators {
    server 127.0.0.1:$TEST_NGINX_PORT3;             # down: nothing listens
    server 127.0.0.1:$TEST_NGINX_FAC_PORT backup;
}
--- config
x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
x402_facilitator /_x402/;
location /_x402/ {
    internal;
    proxy_pass http://x402_facilitators/;
    proxy_next_upstream error timeout;    # never non_idempotent: see README
}
location /w {
    x402_settle sync;
    x402_accept network=base-sepolia price=0.001;
    x402_accept network=base price=0.001;
    add_header X-Paid "$x402_status $x402_network" always;
}
--- user_files
>>> w
paid
--- request
GET /w
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- facilitator
verify: default
settle: chain default
--- error_code: 200
--- response_headers
X-Paid: settled eip155:84532
--- facilitator_saw
verify settle
--- error_log
connect() failed (111: Connection refused) while connecting to upstream



=== TEST 18: the default x402_settle is after: a paid request for a missing file is not settled
--- config
include x402-paid.conf;
location /w {
    add_header X-Status $x402_status always;
}
--- request
GET /w/missing.json
--- more_headers eval
"PAYMENT-SIGNATURE: " . sign_payment(amount => '1000')
--- facilitator
verify: default
settle: default
--- error_code: 404
--- facilitator_saw
verify
--- allow_error



=== TEST 19: under the default (after), the option's own facilitator settles once the response exists
--- config
include x402-paid.conf;
include x402-facilitator-b.conf;
location /w {
    x402_accept network=base-sepolia price=0.01;
    x402_accept network=base price=0.01 facilitator=/_x402_b/;
    add_header X-Paid "$x402_status $x402_network" always;
}
--- user_files
>>> w
paid
--- facilitator
verify: default
settle: default
--- request
GET /w
--- error_code: 402
--- perl
my $r = $ng->get('/w');
my $hdr = sign_payment(payment_required => X402::HTTP::header($r, 'PAYMENT-REQUIRED'),
                       index => 1);
my $p = $ng->get('/w', { 'PAYMENT-SIGNATURE' => $hdr });
is($p->{status}, 200, 'paid through the second option');
is(X402::HTTP::header($p, 'X-Paid'), 'settled eip155:8453', 'settled on Base');
is_deeply([map { $_->{path} } $fac->requests], ['/b/verify', '/b/settle'],
          'both calls through the second option\'s facilitator');



=== TEST 20: under async the background settlement goes to the option's facilitator too
--- config
include x402-paid.conf;
include x402-facilitator-b.conf;
location /w {
    x402_settle async;
    x402_accept network=base-sepolia price=0.01;
    x402_accept network=base price=0.01 facilitator=/_x402_b/;
}
--- user_files
>>> w
paid
--- facilitator
verify: default
settle: default
--- request
GET /w
--- error_code: 402
--- perl
my $r = $ng->get('/w');
my $hdr = sign_payment(payment_required => X402::HTTP::header($r, 'PAYMENT-REQUIRED'),
                       index => 1);
is($ng->get('/w', { 'PAYMENT-SIGNATURE' => $hdr })->{status}, 200, 'served on credit');
for (1 .. 50) { last if grep { $_->{endpoint} eq 'settle' } $fac->requests; select undef, undef, undef, 0.1 }
is_deeply([map { $_->{path} } $fac->requests], ['/b/verify', '/b/settle'],
          'verify and the background settle through the second option\'s facilitator');
