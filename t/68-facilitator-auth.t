# x402_facilitator_auth cdp (issue 12 item 4): Coinbase's hosted
# facilitator wants `Authorization: Bearer <JWT>` on every call. A gate
# standing in for it (js/jwt-check/cdp-gate.mjs: jose from npm verifies
# signature, iss, sub, nbf/exp, kid, nonce and the uris claim "<METHOD>
# api.cdp.coinbase.com/platform/v2/x402/<call>"; 401 otherwise) sits in
# front of the fake facilitator. nginx pays through it under sync, after
# and async, with an Ed25519 and an ES256 key; a key the gate does not
# know is refused: 502, nothing served, the refusal in the log. A client
# that reaches a non-internal facilitator location is never signed for.
# Configuration errors name the file, the line and the value.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use POSIX ();
use Time::HiRes qw(sleep time);
use IO::Socket::INET;

plan skip_all => 'module not built' unless -f module_path();

my $ROOT = repo_root();
my $DATA = "$ROOT/src/core/tests/data/cdp";
my $KEY_ID = 'organizations/test/apiKeys/gate';
my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

plan skip_all => 'js/jwt-check/node_modules missing (npm ci there)'
    unless -d "$ROOT/js/jwt-check/node_modules/jose";

my @GATES;
END { kill 'TERM', $_ for @GATES }

# the gate, checking tokens against the key in $key_file; its log: one
# JSON line per request
sub start_gate {
    my ($fac, $key_file) = @_;
    my $port = free_port();
    my $log = servroot() . "/gate-$port.jsonl";
    my $pid = fork // die $!;
    if (!$pid) {
        open STDOUT, '>', $log or POSIX::_exit(111);
        open STDERR, '>', "$log.err";
        exec('node', "$ROOT/js/jwt-check/cdp-gate.mjs", 'serve',
             '--port', $port, '--upstream', 'http://127.0.0.1:' . $fac->port,
             '--key-id', $KEY_ID, '--key-file', $key_file)
            or POSIX::_exit(112);
    }
    push @GATES, $pid;
    my $end = time + 15;
    until (IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")) {
        die "cdp-gate did not start\n" if time > $end;
        sleep 0.1;
    }
    return { pid => $pid, port => $port, log => $log };
}

# the payments' calls (the background GET /supported comes when it comes)
sub gate_log {
    my ($g, %o) = @_;
    open my $fh, '<', $g->{log} or return ();
    return grep { $o{all} || $_->{method} eq 'POST' }
           map { json_decode($_) } grep { /^\{/ } <$fh>;
}

sub conf {
    my ($gate, $key_file, %o) = @_;
    my $gp = $gate->{port};
    # public: reachable by clients and free (else the client pays first)
    my $internal = $o{public} ? 'x402 off;' : 'internal;';
    return (config => <<"EOC",
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402_cdp/;
location /_x402_cdp/ {
    $internal
    x402_facilitator_auth cdp key_id=$KEY_ID key=$key_file;
    proxy_pass http://127.0.0.1:$gp/platform/v2/x402/;
}
location /after/ { x402_settle after; }
location /async/ { x402_settle async; }
EOC
        user_files => ">>> doc.txt\nsync\n>>> after/doc.txt\nafter\n>>> async/doc.txt\nasync\n");
}

sub wait_for {
    my ($cond, $secs) = @_;
    my $end = time + ($secs // 5);
    sleep 0.05 until $cond->() || time > $end;
    return $cond->();
}

my $ED = "$DATA/ed25519.b64";
my $ES = "$DATA/es256-pkcs8.pem";

for my $case ([ 'EdDSA', $ED ], [ 'ES256', $ES ]) {
    my ($alg, $key) = @$case;
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $gate = start_gate($fac, $key);
    my $ng = start_nginx(conf($gate, $key));

    for my $mode ('sync', 'after', 'async') {
        my $uri = $mode eq 'sync' ? '/doc.txt' : "/$mode/doc.txt";
        my $before = () = gate_log($gate);
        my $r = $ng->get($uri, { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
        is($r->{status}, 200, "$alg $mode: paid through the gate");
        is($r->{body}, "$mode\n", "$alg $mode: content");
        ok(wait_for(sub { (() = gate_log($gate)) >= $before + 2 }),
           "$alg $mode: the gate saw /verify and /settle");
        my @seen = (gate_log($gate))[$before .. $before + 1];
        is_deeply([ map { "$_->{method} $_->{path} $_->{status}" } @seen ],
                  [ 'POST /platform/v2/x402/verify 200',
                    'POST /platform/v2/x402/settle 200' ],
                  "$alg $mode: each call had a token the gate accepted")
            or diag(explain(\@seen));
    }

    ok(wait_for(sub { grep { $_->{method} eq 'GET' } gate_log($gate, all => 1) }),
       "$alg: the background GET /supported went through the gate");
    is_deeply([ map { "$_->{path} $_->{status}" } grep { $_->{method} eq 'GET' } gate_log($gate, all => 1) ],
              [ '/platform/v2/x402/supported 200' ], "$alg: with a GET token the gate accepted");
    my @fac = $fac->requests(all => 1);
    is(scalar(grep { ($_->{headers}{authorization} // '') =~ /^Bearer / } @fac),
       0, "$alg: the token stops at the gate (sanity: the gate forwards none)");
    unlike($ng->error_log, qr/\[(error|alert|crit|emerg)\]/, "$alg: no error logged");
    $ng->stop;
    $fac->stop;
}

# the examples' style: rewrite ... break and proxy_pass with a variable
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $gate = start_gate($fac, $ED);
    my $gp = $gate->{port};
    my $ng = start_nginx(config => <<"EOC", user_files => ">>> doc.txt\nsync\n");
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402_cdp/;
location /_x402_cdp/ {
    internal;
    x402_facilitator_auth cdp key_id=$KEY_ID key=$ED;
    set \$cdp_host 127.0.0.1:$gp;
    rewrite ^/_x402_cdp/(.*)\$ /platform/v2/x402/\$1 break;
    proxy_pass http://\$cdp_host;
}
EOC
    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'rewrite + variable proxy_pass: paid through the gate');
    is_deeply([ map { "$_->{method} $_->{path} $_->{status}" } gate_log($gate) ],
              [ 'POST /platform/v2/x402/verify 200', 'POST /platform/v2/x402/settle 200' ],
              'rewrite + variable proxy_pass: tokens accepted');
    $ng->stop;
    $fac->stop;
}

# every call mints its own token: two calls never share one (nonce, uris)
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(config => <<"EOC", user_files => ">>> doc.txt\nsync\n");
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402_cdp/;
location /_x402_cdp/ {
    internal;
    x402_facilitator_auth cdp key_id=$KEY_ID key=$ED
                          url=https://api.cdp.coinbase.com/platform/v2/x402;
    proxy_pass http://127.0.0.1:@{[ $fac->port ]}/;
}
EOC
    for (1 .. 2) {
        my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
        is($r->{status}, 200, "token check $_: paid");
    }
    my @auth = map { $_->{headers}{authorization} // '' } $fac->requests;
    ok(wait_for(sub { grep { $_->{endpoint} eq 'supported' } $fac->requests(all => 1) }),
       'GET /supported asked');
    my ($sup) = grep { $_->{endpoint} eq 'supported' } $fac->requests(all => 1);
    my $sc = decode_b64url_json((split /[ .]/, $sup->{headers}{authorization} // '')[2] // '');
    is_deeply($sc->{uris}, [ 'GET api.cdp.coinbase.com/platform/v2/x402/supported' ],
              'GET /supported carries its own token');
    is(scalar(@auth), 4, 'four facilitator calls');
    is(scalar(grep { /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/ } @auth), 4, 'each carries a bearer JWT');
    my %distinct = map { $_ => 1 } @auth;
    is(scalar(keys %distinct), 4, 'no token is reused');
    my ($h, $c) = map { decode_b64url_json($_) } (split /[ .]/, $auth[1])[1, 2];
    is($h->{kid}, $KEY_ID, 'header kid is the key id');
    like($h->{nonce} // '', qr/^[0-9a-f]{32}$/, 'header nonce');
    is_deeply($c->{uris}, [ 'POST api.cdp.coinbase.com/platform/v2/x402/settle' ],
              'the uris claim names the call (url= without a final slash)');
    is($c->{exp} - $c->{nbf}, 120, 'two minutes');
    $ng->stop;
    $fac->stop;
}

sub decode_b64url_json {
    my ($s) = @_;
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    require MIME::Base64;
    return json_decode(MIME::Base64::decode_base64($s));
}

# a key the facilitator does not know: refused, 502, nothing served
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $gate = start_gate($fac, $ED);
    my $ng = start_nginx(conf($gate, $ES));
    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 502, 'wrong key: 502');
    unlike($r->{body}, qr/^sync$/m, 'wrong key: nothing served');
    my @seen = gate_log($gate);
    is($seen[0]{status}, 401, 'wrong key: the gate refused the token');
    ok(wait_for(sub { $ng->error_log =~ /GET "\/_x402_cdp\/supported" failed.*status 401/ }),
       'wrong key: GET /supported refused too, warned');
    like($seen[0]{reason} // '', qr/signature|alg/i, 'wrong key: refused for its signature');
    is(scalar(grep { $_->{endpoint} } $fac->requests), 0, 'wrong key: nothing reached the facilitator');
    like($ng->error_log, qr/\[error\].*facilitator "\/_x402_cdp\/verify" failed: status 401/,
         'wrong key: the 401 is logged');
    $ng->stop;
    $fac->stop;
}

# a client that reaches the facilitator location is not signed for
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $gate = start_gate($fac, $ED);
    my $ng = start_nginx(conf($gate, $ED, public => 1));
    my $r = $ng->request("POST /_x402_cdp/settle\n{}");
    is($r->{status}, 401, 'public facilitator location: the client gets no token of ours')
        or diag(explain($r));
    my @seen = gate_log($gate);
    is($seen[0]{reason}, 'no bearer token', 'public facilitator location: no token sent');
    like($ng->error_log, qr/a client request reached "\/_x402_cdp\/settle".*not signed/,
         'public facilitator location: warned');
    $ng->stop;
    $fac->stop;
}

# configuration errors: file, line, value
my $conf_dir = servroot() . '/keys';
mkdir $conf_dir;
{
    open my $fh, '>', "$conf_dir/garbage.pem" or die $!;
    print $fh "not a key\n";
}
for my $case (
    [ "key_id=$KEY_ID key=$conf_dir/missing.pem", qr/cannot open the key file "\Q$conf_dir\E\/missing.pem".*nginx.conf:\d+/ ],
    [ "key_id=$KEY_ID key=$conf_dir/garbage.pem", qr/key file "\Q$conf_dir\E\/garbage.pem" with key_id "\Q$KEY_ID\E": .+ in .*nginx.conf:\d+/ ],
    [ "key_id=$KEY_ID key=$DATA/p384.pem", qr/p384.pem".*P-256.* in .*nginx.conf:\d+/ ],
    [ "key_id=$KEY_ID key=$DATA/rsa.pem", qr/rsa.pem".* in .*nginx.conf:\d+/ ],
    [ "key_id=$KEY_ID key=$DATA/encrypted.pem", qr/encrypted.pem".* in .*nginx.conf:\d+/ ],
    [ "key=$ED", qr/needs key_id=ID and key=FILE .* in .*nginx.conf:\d+/ ],
    [ "key_id=$KEY_ID key=$ED url=ftp://x/", qr/invalid "x402_facilitator_auth" url "ftp:\/\/x\/"/ ],
    [ "key_id=$KEY_ID key=$ED colour=blue", qr/invalid "x402_facilitator_auth" parameter "colour=blue"/ ],
    [ "'key_id=has space' key=$ED", qr/key_id "has space": .* in .*nginx.conf:\d+/ ],
) {
    my ($args, $want) = @$case;
    my $ng = X402::Nginx->new(config => <<"EOC");
location /_x402_cdp/ {
    internal;
    x402_facilitator_auth cdp $args;
    proxy_pass http://127.0.0.1:1/;
}
EOC
    my ($rc, $out) = $ng->test_config;
    isnt($rc, 0, "nginx -t refuses: $args");
    like($out, $want, "the error names what is wrong: $args");
}
{
    my $ng = X402::Nginx->new(config => <<"EOC");
location /_x402_cdp/ {
    x402_facilitator_auth jwt key_id=$KEY_ID key=$ED;
}
EOC
    my ($rc, $out) = $ng->test_config;
    like($out, qr/invalid "x402_facilitator_auth" scheme "jwt"/, 'unknown scheme named');
}

done_testing();
