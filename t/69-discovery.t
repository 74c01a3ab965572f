# x402_discovery bazaar (issue 12 item 5): the 402's `extensions` carries
# the bazaar discovery extension the location declares, and the official
# @x402/extensions accepts it (js/extensions-check/bazaar-check.mjs:
# validateDiscoveryExtensionSpec, validateDiscoveryExtension,
# extractDiscoveryInfo on the client's echo, and byte equality with what
# the official server emits for the same declaration). Query form inline
# and from files, body form, a variable price (the offer made per
# request), inheritance and `off`; a payment echoing the extension is
# served; configuration errors name file, line and value.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use POSIX ();

plan skip_all => 'module not built' unless -f module_path();

my $ROOT = repo_root();
my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

plan skip_all => 'js/extensions-check/node_modules missing (npm ci there)'
    unless -d "$ROOT/js/extensions-check/node_modules/\@x402/extensions";

# [{name, header, config, expect}] -> bazaar-check.mjs: (exit code, output)
sub official_check {
    my (@cases) = @_;
    my $in = servroot() . "/bazaar-cases-$$.json";
    open my $fh, '>', $in or die $!;
    # config keeps its key order: the byte comparison follows it
    print $fh '[' . join(',', map {
        '{"name":' . json_encode($_->{name}) . ',"header":' . json_encode($_->{header})
        . ',"expect":' . json_encode($_->{expect}) . ',"config":' . $_->{config} . '}'
    } @cases) . ']';
    close $fh;
    pipe(my $r, my $w) or die $!;
    my $pid = fork // die $!;
    if (!$pid) {
        close $r;
        open STDIN, '<', $in or POSIX::_exit(111);
        open STDOUT, '>&', $w;
        open STDERR, '>&', $w;
        exec('node', "$ROOT/js/extensions-check/bazaar-check.mjs") or POSIX::_exit(112);
    }
    close $w;
    local $/;
    my $out = <$r> // '';
    close $r;
    waitpid $pid, 0;
    return ($? >> 8, $out);
}

my $QUERY = '{"city":"Paris","units":"metric"}';
my $QSCHEMA = '{"properties":{"city":{"type":"string"},"units":{"type":"string","enum":["metric","imperial"]}},"required":["city"]}';
my $OUT = '{"temperature":21.5,"conditions":"sunny"}';
my $BODY = '{"prompt":"hello","max_tokens":16}';
my $BSCHEMA = '{"type":"object","properties":{"prompt":{"type":"string"},"max_tokens":{"type":"integer"}},"required":["prompt"]}';

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $fp = $fac->port;

my $ng = start_nginx(
    user_files => ">>> weather/today\nsunny\n>>> free/x\nfree\n>>> v/x\nvariable\n"
        . ">>> ask/x\nanswer\n>>> plain/x\nplain\n",
    config => <<"EOC");
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
x402_discovery bazaar method=GET 'query=$QUERY'
               input_schema_file=$ROOT/t/data/discovery/weather-query.schema.json
               output_example_file=$ROOT/t/data/discovery/weather.json;
location /weather/ { }
location /v/ { x402_price \$arg_p; }
location /ask/ {
    x402_discovery bazaar method=POST body_type=json 'body=$BODY'
                   'input_schema=$BSCHEMA' 'output_example={"text":"hi"}';
}
location /plain/ { x402_discovery off; }
EOC

# the declarations the official server would be given (JSON text, in order)
my %CFG = (
    weather => qq({"method":"GET","input":$QUERY,"inputSchema":$QSCHEMA,"output":{"example":$OUT}}),
    ask => qq({"method":"POST","bodyType":"json","input":$BODY,"inputSchema":$BSCHEMA,)
           . qq("output":{"example":{"text":"hi"}}}),
);

my @cases;
for my $c ([ 'query form, files, inherited from server', '/weather/today', 'weather' ],
           [ 'variable price: offer made per request', '/v/x?p=0.002', 'weather' ],
           [ 'body form, inline', '/ask/x', 'ask' ]) {
    my ($name, $uri, $cfg) = @$c;
    my $r = $ng->get($uri);
    is($r->{status}, 402, "$name: 402");
    my $hdr = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
    ok(decode_b64_json($hdr)->{extensions}{bazaar}, "$name: extensions.bazaar present");
    push @cases, { name => $name, header => $hdr, config => $CFG{$cfg}, expect => 'ok' };
}

# the check bites: the declaration of another location does not match
push @cases, { %{ $cases[2] }, name => 'mismatched declaration', config => $CFG{weather},
               expect => 'invalid' };

my ($rc, $out) = official_check(@cases);
is($rc, 0, 'the official @x402/extensions accepts what nginx emits') or diag($out);
like($out, qr/ok query form.*ok variable price.*ok body form.*ok mismatched/s, 'every case ran')
    or diag($out);

my $r = $ng->get('/plain/x');
is($r->{status}, 402, 'x402_discovery off: 402');
ok(!exists decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'))->{extensions},
   'x402_discovery off: no extensions');

# a client echoes the extension in its payment: still served
$r = $ng->get('/weather/today');
my $pr_hdr = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
my ($pay) = sign_payment(payment_required => $pr_hdr,
                         extensions => json_encode(decode_b64_json($pr_hdr)->{extensions}));
my $payload = decode_b64_json($pay);
$r = $ng->get('/weather/today', { 'PAYMENT-SIGNATURE' => $pay });
is($r->{status}, 200, 'a payment that echoes the extension is served');
my ($verify) = grep { $_->{endpoint} eq 'verify' } $fac->requests;
ok($verify && $verify->{json}{paymentPayload}{extensions}{bazaar},
   'the echo reaches the facilitator verbatim')
    or diag(explain($payload));
$ng->stop;

# configuration errors
for my $case (
    [ "x402_discovery bazaar 'query={\"a\":'", qr/invalid "x402_discovery bazaar": .*query.* in .*nginx.conf:\d+/ ],
    [ "x402_discovery bazaar method=BREW", qr/invalid "x402_discovery bazaar": .*BREW|method.* in .*nginx.conf:\d+/ ],
    [ "x402_discovery bazaar colour=blue", qr/invalid "x402_discovery" parameter "colour=blue": .* in .*nginx.conf:\d+/ ],
    [ "x402_discovery bazaar query_file=/nonexistent/q.json", qr/cannot open "\/nonexistent\/q.json".* in .*nginx.conf:\d+/ ],
    [ "x402_discovery bazaar 'query={}' 'query={}'", qr/"query" is given twice/ ],
    [ "x402_discovery openapi", qr/invalid "x402_discovery" extension "openapi"/ ],
    [ "x402_discovery bazaar 'output_example=" . ('{"a":' x 10) . '1' . ('}' x 10) . "'",
      qr/invalid "x402_discovery bazaar": .*output/ ],
) {
    my ($line, $want) = @$case;
    my $t = X402::Nginx->new(config => "location /w/ {\n    x402_price 0.001;\n    x402_pay_to $PAY_TO;\n"
        . "    x402_network base-sepolia;\n    x402_facilitator /_x402/;\n    $line;\n}\n");
    my ($rc, $out) = $t->test_config;
    isnt($rc, 0, "nginx -t refuses: $line");
    like($out, $want, "named: $line") or diag($out);
}

done_testing();
