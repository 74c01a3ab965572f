#!/usr/bin/perl
# x402_grant against the real facilitator and chain: a payment settled once
# may be presented again within the grant, under every settlement mode,
# and the chain shows exactly one transfer; outside its scope (another
# location, another price) or without a grant, the same payment is refused.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use X402::Test;
use X402::Interop;
use JSON::PP ();
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built (scripts/build-module.sh or X402_MODULE)'
    unless -f module_path();
plan skip_all => 'js/node_modules missing (npm ci in js/)'
    unless X402::Interop::available();

my $PRICE = $X402::Interop::PRICE;
my $t0 = time;
my $ix = X402::Interop->start;
my ($pay_to, $fac_port) = ($ix->pay_to, $ix->fac_port);

my $conf = <<"EOC";
        large_client_header_buffers 4 16k;
        x402_pay_to $pay_to;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        location /_x402/ {
            internal;
            proxy_pass http://127.0.0.1:$fac_port/;
        }
        location /nogrant/ {
            x402_price 0.001;
        }
        location /dear/ {
            x402_price 0.002;
            x402_grant 10m;
        }
EOC
for my $m (qw(sync after async)) {
    $conf .= "        location /$m/ {\n            x402_price 0.001;\n"
        . "            x402_settle $m;\n            x402_grant 10m;\n        }\n";
}
my $files = join '', map { ">>> $_/doc.json\n{\"doc\":\"$_\"}\n" }
    qw(sync after async nogrant dear);

my $ng = start_nginx(name => 'grant', config => $conf, user_files => $files);
my $base = 'http://127.0.0.1:' . $ng->port;
# a grant is scoped by the host name too: present again as the client did
my $host = "\nHost: 127.0.0.1:" . $ng->port;

my @modes = qw(sync after async);
my $b0 = $ix->balances;
# pay once (under async the grant starts once the background settlement
# has succeeded: a grant is for a settled authorization)
my @out = $ix->forge(
    (map { { url => "$base/$_/doc.json", version => 2, vector => 'valid',
             send => JSON::PP::true, times => 1 } } @modes),
    { url => "$base/sync/doc.json", version => 1, vector => 'valid',
      send => JSON::PP::true, times => 1 },
    { url => "$base/nogrant/doc.json", version => 2, vector => 'valid',
      send => JSON::PP::true, times => 2 });
$ix->wait_pay_to($b0->{payTo}, 5 * $PRICE, 15);

for my $i (0 .. 3) {
    my $o = $out[$i];
    my $name = $i < 3 ? "v2 $modes[$i]" : 'v1 sync';
    (my $path = $o->{url}) =~ s{^http://[^/]+}{};
    my @r = ($o->{responses}[0],
             map { $ng->get($path, "$o->{headerName}: $o->{header}$host") } 1 .. 2);
    is(join(' ', map { $_->{status} } @r), '200 200 200',
       "$name: paid once, presented three times within the grant")
        or diag(join ' | ', map { "$_->{status} " . ($_->{error} // $_->{body} // '') } @r);
    like($r[2]{body} // '', qr/"doc"/, "$name: the content the third time");
}
{
    my @r = @{ $out[4]{responses} };
    is(join(' ', map { $_->{status} } @r), '200 402',
       'no grant: the second presentation is refused');
}

# the same granted payments, outside their scope
for my $i (0 .. 2) {
    my $o = $out[$i];
    # /dear/ has another price: the payment does not match its requirement
    my $res = $ng->get('/dear/doc.json', "PAYMENT-SIGNATURE: $o->{header}$host");
    is($res->{status}, 402, "v2 $modes[$i] grant does not open another price");
    my $res2 = $ng->get('/nogrant/doc.json', "PAYMENT-SIGNATURE: $o->{header}$host");
    is($res2->{status}, 402, "v2 $modes[$i] grant does not open another location");
}

my $b1 = $ix->wait_pay_to($b0->{payTo}, 5 * $PRICE, 15);
sleep 1;
$b1 = $ix->balances;
is($b1->{payTo} - $b0->{payTo}, 5 * $PRICE,
   'the chain shows one transfer per payment, none per re-presentation');
for my $i (0 .. 4) {
    my @ok = grep { $_->{response}{success} }
        $ix->settles_of(X402::Interop::nonce_of($out[$i]));
    is(scalar @ok, 1, "$out[$i]{id} at $out[$i]{url}: settled exactly once");
}
note(sprintf 'total %.1fs', time - $t0);

done_testing;
