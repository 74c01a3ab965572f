# Real clients accept our 402 (issue 2, item 5): the 402 nginx actually
# sends is fed to the official parsers from npm (js/check-402.mjs):
#   v2: @x402/core decodePaymentRequiredHeader + PaymentRequired schema,
#       x402Client requirement selection with the @x402/evm exact scheme,
#       and a payment payload built from it whose `accepted` is the offer;
#   v1: the legacy `x402` package's PaymentRequirementsSchema on every
#       accepts[] entry and its selectPaymentRequirements (what x402-fetch
#       and x402-axios run), and @x402/core's PaymentRequiredV1Schema.
# A deliberately broken 402 must be rejected, so the check can fail.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use MIME::Base64 qw(decode_base64 encode_base64);

plan skip_all => 'module not built' unless -f module_path();
my $root = repo_root();
plan skip_all => 'js/node_modules missing (npm ci in js/)'
    unless -d "$root/js/node_modules/\@x402/core";
my $checker = "$root/js/check-402.mjs";
ok(-f $checker, 'js/check-402.mjs exists') or BAIL_OUT('no checker');

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

my $ng = start_nginx(name => 'parsers', user_files => ">>> index.html\nx\n",
                     config => <<"EOC");
    x402_facilitator /_x402/;
    x402_pay_to      $PAY_TO;

    location /sepolia/ {
        x402_price   0.001;
        x402_network base-sepolia;
    }
    location /base/ {
        x402_price   0.5;
        x402_network eip155:8453;
        x402_description "Market data: \\"daily\\" <csv> & more";
        x402_mime_type   text/csv;
    }
    location /polygon/ {
        x402_price   0.000001;
        x402_network polygon;
        x402_max_timeout 30;
    }
    location /token/ {
        x402_price   0.25;
        x402_network base-sepolia;
        x402_asset   0x5FbDB2315678afecb367f032d93F642f64180aa3 name=TST version=1 decimals=18;
    }
    location /_x402/ {
        internal;
        return 503;
    }
EOC

# check-402.mjs over many {header, body, opts} in one node run (loading the
# parsers is most of a check's time): a list of [exit code, output], each
# what `node check-402.mjs OPTS < {header, body}` exits with and prints
sub check_402_all {
    my (@cases) = @_;
    my $in = JSON::PP->new->utf8->canonical->encode([ map {
        { header => $_->[0], body => $_->[1], opts => $_->[2] // [] } } @cases ]);
    my $tmp = servroot() . "/check-402-in.json";
    open my $fh, '>', $tmp or die $!;
    print $fh $in;
    close $fh;
    my $out = `cd '$root/js' && node check-402.mjs --batch < '$tmp' 2>&1`;
    my @res = map { my $o = eval { json_decode($_) }; $o ? [ $o->{rc}, $o->{out} ] : () }
              grep { /^\{/ } split /\n/, $out;
    is(scalar @res, scalar @cases, 'check-402.mjs --batch answers every case')
        or diag($out);
    return @res;
}

# every 402 first, then one check run, then the assertions in that order
my $port = $ng->port;
my @cases;
my @fine = (['/sepolia/report?id=7', []],
            ['/base/data.csv', []],
            ['/polygon/x', []],
            ['/token/t', ['--any-asset']]);
for my $case (@fine) {
    my ($path, $opts) = @$case;
    my $r = $ng->get($path, { Host => "127.0.0.1:$port" });
    is($r->{status}, 402, "$path: 402");
    push @cases, [ X402::HTTP::header($r, 'PAYMENT-REQUIRED') // '', $r->{body}, $opts ];
}

# the official client with its default spend controls refuses a token that
# is not a default asset: documented behaviour, and proof the check selects
{
    my $r = $ng->get('/token/t');
    push @cases, [ X402::HTTP::header($r, 'PAYMENT-REQUIRED'), $r->{body} ];
}

# negative controls: a broken 402 must fail the check
my (@bad2, @bad1);
{
    my $r = $ng->get('/sepolia/a');
    my $hdr = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
    my $pr = json_decode(decode_base64($hdr));
    my $body = json_decode($r->{body});

    my %bad2 = (
        'amount as a number'   => sub { $_[0]{accepts}[0]{amount} = 1000 },
        'no accepts'           => sub { delete $_[0]{accepts} },
        'x402Version 3'        => sub { $_[0]{x402Version} = 3 },
    );
    for my $name (sort keys %bad2) {
        my $copy = json_decode(json_encode($pr));
        $bad2{$name}->($copy);
        push @bad2, $name;
        push @cases, [ encode_base64(json_encode($copy), ''), $r->{body} ];
    }
    push @cases, [ 'not base64 at all!', $r->{body} ];

    my %bad1 = (
        'no description' => sub { delete $_[0]{accepts}[0]{description} },
        'resource not a URL' => sub { $_[0]{accepts}[0]{resource} = 'nope' },
        'unknown v1 network' => sub { $_[0]{accepts}[0]{network} = 'eip155:84532' },
    );
    for my $name (sort keys %bad1) {
        my $copy = json_decode(json_encode($body));
        $bad1{$name}->($copy);
        push @bad1, $name;
        push @cases, [ $hdr, json_encode($copy) ];
    }
}

my @res = check_402_all(@cases);
for my $case (@fine) {
    my $path = $case->[0];
    my ($rc, $out) = @{ shift(@res) // [] };
    is($rc, 0, "$path: the official v2 and v1 parsers accept our 402") or diag($out);
    my $rep = eval { json_decode((grep { /^\{/ } split /\n/, $out // '')[-1] // '') } || {};
    is($rep->{v2}{url}, "http://127.0.0.1:$port$path", "$path: the client read our resource URL");
    is($rep->{v2}{accepts}, 1, "$path: the v2 client saw one requirement");
    is($rep->{v1}{accepts}, 1, "$path: the legacy client saw one requirement");
}
{
    my ($rc, $out) = @{ shift(@res) // [] };
    isnt($rc // 0, 0, 'custom token: default client spend controls refuse it') or diag($out);
}
for my $name (@bad2) {
    my ($rc, $out) = @{ shift(@res) // [] };
    isnt($rc // 0, 0, "broken v2 header ($name) is rejected");
    like($out // '', qr/v2:/, "broken v2 header ($name): the v2 parser says so");
}
{
    my ($rc, $out) = @{ shift(@res) // [] };
    isnt($rc // 0, 0, 'a header that is not base64 is rejected');
}
for my $name (@bad1) {
    my ($rc, $out) = @{ shift(@res) // [] };
    isnt($rc // 0, 0, "broken v1 body ($name) is rejected");
    like($out // '', qr/v1:/, "broken v1 body ($name): the legacy parser says so");
}

$ng->stop;
unlike($ng->error_log, qr/\[(alert|emerg|crit)\]/, 'no alert in error.log');
done_testing();
