# Adversarial: malformed payment headers are a 402 with a reason (never a
# crash, never a facilitator call), and a facilitator whose /settle success
# names another network or payer is trusted (it moves the money), logged
# with what the payment said.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use MIME::Base64 qw(encode_base64);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

sub b64 { encode_base64($_[0], '') }

my $fac = start_facilitator(script => "verify: default\n"
    . "settle: 200 {\"success\":true,\"transaction\":\"0x" . ('cd' x 32)
    . "\",\"network\":\"eip155:1\",\"payer\":\"0x0000000000000000000000000000000000000001\"}\n");
my $fp = $fac->port;
my $ng = start_nginx(config => <<"EOC", user_files => ">>> doc.txt\npaid content\n");
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
EOC

my $deep = ('[' x 5000) . (']' x 5000);
my @bad = (
    [ 'empty', '' ],
    [ 'spaces', '   ' ],
    [ 'not base64', '!!!!****' ],
    [ 'padding only', '====' ],
    [ 'base64 of null', b64('null') ],
    [ 'base64 of an array', b64('[]') ],
    [ 'base64 of a number', b64('1e999999') ],
    [ 'base64 of junk', b64("\x00\xff\xfe garbage") ],
    [ 'deep nesting', b64($deep) ],
    [ 'x402Version 99', b64('{"x402Version":99,"payload":{}}') ],
    [ 'x402Version as string', b64('{"x402Version":"2","payload":{}}') ],
    [ 'payload missing', b64('{"x402Version":2}') ],
    [ 'long', 'A' x 7000 ],
    [ 'base64url', do { my $h = sign_payment(amount => '1000'); $h =~ tr{+/}{-_}; $h =~ s/=+$//; $h } ],
);
for my $c (@bad) {
    for my $name ('PAYMENT-SIGNATURE', 'X-PAYMENT') {
        my $r = $ng->get('/doc.txt', { $name => $c->[1] });
        ok($r->{status} == 402 || $r->{status} == 400 || $r->{status} == 200,
           "$name $c->[0]: an answer ($r->{status})");
        unless ($r->{status} == 200) {
            unlike($r->{body}, qr/paid content/, "$name $c->[0]: no content");
            like($r->{body}, qr/"error"\s*:\s*"[a-z0-9_]+"/, "$name $c->[0]: a reason")
                if $r->{status} == 402;
        }
    }
}
is(scalar(grep { $_->{endpoint} eq 'settle' } $fac->requests),
   scalar(grep { $_->{endpoint} eq 'verify' } $fac->requests),
   'malformed: every verified payment settled, nothing else');

# the facilitator reports a success for another network and payer
my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
is($r->{status}, 200, 'settle answer for another network/payer: trusted, served');
my $resp = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-RESPONSE') // 'e30=');
ok($resp->{success}, 'settle answer for another network/payer: PAYMENT-RESPONSE success');

$ng->stop;
my $log = $ng->error_log;
unlike($log, qr/exited on signal|\[(alert|emerg|crit)\]/, 'no crash');
like($log, qr/x402: settled 1000 from 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 on eip155:84532/,
     'the log names what the payment said');
$fac->stop;

done_testing();
