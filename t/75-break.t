# Breaker pass: a stranger's attacks on the real nginx. Each part is a
# hole found; it fails on the code before its fix (or is TODO, open).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Time::HiRes ();

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $USDC = '0x036CbD53842c5426634e7929541eC2318f3dCF7e';

# runs its sub when it goes out of scope (an unmount, also when a test dies)
package Brk::Guard {
    sub new { my ($c, $f) = @_; bless { f => $f }, $c }
    sub DESTROY { $_[0]{f}->() }
}

sub n_of { my ($fac, $e) = @_; scalar grep { $_->{endpoint} eq $e } $fac->requests }

sub paid_conf {
    my ($fac, $mode, $extra) = @_;
    my $fp = $fac->port;
    $extra //= '';
    return <<"EOC";
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle $mode;
$extra
location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }
EOC
}

# ---- one payload, two authorizations ----
# The replay key is taken from payload.authorization (EIP-3009), but the
# client's payload goes to the facilitator as it came, and the official
# facilitator (@x402/evm exact, isPermit2Payload: `"permit2Authorization"
# in payload`) verifies and settles payload.permit2Authorization whenever
# it is there, authorization or not. One Permit2 authorization, wrapped
# in EIP-3009 authorizations with fresh nonces (a smart-wallet-length
# signature skips the local signer check), is a fresh payment to the
# store each time: served once per wrapper under async (each /verify
# passes until the first settlement lands; the rest are refused later).
# A payload with both is refused before any facilitator call.
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(workers => 2, config => paid_conf($fac, 'async'),
                         user_files => ">>> doc.txt\npaid content\n");
    my $now = time;
    my $permit2 = {
        from => '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266',
        permitted => { token => $USDC, amount => '1000' },
        spender => '0x4020615294c913F045dc10f0a5cdEbd86c280001',
        nonce => '12345678901234567890',
        deadline => '' . ($now + 300),
        witness => { to => $PAY_TO, validAfter => '' . ($now - 60), extra => '0x' },
    };
    # an ERC-6492-wrapped signature: not 65 bytes, left to /verify
    my $wrapped = '0x' . ('ab' x 160) . ('6492' x 16);
    my @st;
    for my $i (1 .. 3) {
        my $j = decode_b64_json(scalar sign_payment(amount => '1000'));
        $j->{payload}{permit2Authorization} = $permit2;
        $j->{payload}{signature} = $wrapped;
        my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => encode_b64_json($j) });
        push @st, $r->{status};
        unlike($r->{body} // '', qr/paid content/, "permit2 wrapper $i: nothing served");
    }
    is("@st", '402 402 402', 'permit2 wrappers: all refused');
    is(n_of($fac, 'verify') + n_of($fac, 'settle'), 0,
       'permit2 wrappers: the facilitator saw none of them');

    # also with an ordinary, locally checked EIP-3009 signature
    my $j = decode_b64_json(scalar sign_payment(amount => '1000'));
    $j->{payload}{permit2Authorization} = $permit2;
    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => encode_b64_json($j) });
    is($r->{status}, 402, 'both authorizations, signed EIP-3009: 402');
    my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED') // 'e30=');
    is($pr->{error}, 'invalid_payload', 'both authorizations: invalid_payload');
    $ng->stop;
    $fac->stop;
}

# ---- a reload that moves the spool ----
# x402_spool names another directory at a reload (or a reload that also
# resizes the zone): the queue goes on in shared memory, but what it owes
# was written only in the old file, and the next start reads the new one.
# Settlements still owed at a stop were lost.
for my $zone ('', 'x402_zone x402:2m;') {
    use X402::StoreTest;
    my $what = $zone ? 'moved and resized' : 'moved';
    my $fac = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");
    my $http = sub { store_http_config("    x402_async_drain 1s;\n    $_[0]\n") };
    my $ng = start_nginx(http_config => $http->('x402_spool spool_a;'),
                         config => store_server_config($fac->port, settle => 'async',
                             extra => "location = /pending { return 200 \$x402_pending; }\n"));
    my @p = payments_for($ng, 3);
    my $served = grep { $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $_->[0] })->{status} == 200 } @p;
    is($served, 3, "spool $what: 3 served on credit, the facilitator down");
    $ng->reload(http_config => $http->("x402_spool spool_b; $zone"));
    is($ng->get('/pending')->{body}, 3, "spool $what: 3 owed after the reload");
    $ng->stop;

    $fac->set_script("verify: default\nsettle: default\n");
    my $since = Time::HiRes::time();
    $ng->start;
    ok(wait_for(8, sub { ($ng->get('/pending')->{body} // -1) == 0 }),
       "spool $what: nothing owed in the end");
    my %settled;
    $settled{$_->{json}{paymentPayload}{payload}{authorization}{nonce}} = 1
        for grep { $_->{endpoint} eq 'settle' && $_->{t} >= $since } $fac->requests;
    my $ok = grep { $settled{decode_b64_json($_->[0])->{payload}{authorization}{nonce}} } @p;
    is($ok, 3, "spool $what: all 3 settled after the restart");
    $ng->stop;
    $fac->stop;
}

# ---- a stranger fills the zone by hanging up during /verify ----
# Any key signs a payment that passes the local checks (no funds needed);
# a client that hangs up while /verify is in flight left an unexpired
# reservation for the whole window (maxTimeoutSeconds + 60 s), which is
# never evicted: a few hundred such requests and every payer got 503
# ("zone is full of unexpired authorizations") for minutes. Nothing was
# settled or served: the reservation now goes with the request.
{
    use X402::StoreTest;
    use IO::Socket::INET;
    my $fac = start_facilitator(script => "verify: delay=300 default\nsettle: default\n");
    my $ng = start_nginx(http_config => store_http_config("    x402_zone x402:32k;\n"),
                         config => store_server_config($fac->port, settle => 'after')
                                   =~ s/x402_verify\s+local;//r);
    my $n = 300;
    my @p = payments_for($ng, $n + 1, key => 'random');
    my @socks;
    for my $i (0 .. $n - 1) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port) or die $!;
        print $s "GET /paid/ HTTP/1.1\r\nHost: localhost\r\n"
               . "PAYMENT-SIGNATURE: $p[$i][0]\r\nConnection: close\r\n\r\n";
        push @socks, $s;
        if (@socks == 50) { Time::HiRes::sleep(0.05); close $_ for @socks; @socks = (); }
    }
    Time::HiRes::sleep(0.05);
    close $_ for @socks;
    # every hang-up ended (logged as its request is freed, with its
    # reservation), however long a loaded machine takes to notice them
    ok(wait_for(30, sub { log_records($ng) >= $n + 1 }),
       "hang-ups in verify: all $n requests ended");
    # and the facilitator took every connection they left in its listen
    # queue: a full queue drops the payer's connect (504, not the zone)
    ok(wait_for(30, sub { $fac->backlog == 0 }),
       'hang-ups in verify: the facilitator accepted them all');
    my $r = $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$n][0] });
    is($r->{status}, 200, "hang-ups in verify: after $n, a payer is served");
    is(n_of($fac, 'settle'), 1, 'hang-ups in verify: only the payer settled');
    $r = $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] });
    is($r->{status}, 200, 'hang-ups in verify: an abandoned payment may be presented again');
    $ng->stop;
    unlike($ng->error_log, qr/zone "x402" is full/, 'hang-ups in verify: the zone never filled');
    $fac->stop;
}

# ---- charged for nginx's own directory redirect (TODO, open) ----
# Under `after` a 3xx is below 400, so it is settled: a paid request for
# a directory without its slash gets nginx's 301 and pays; a client that
# follows it with the same payment header (fetch does, same origin) gets
# 402: charged, no content. Not fixed here: a paid 302 to a download link
# is a delivered product, so which 3xx count is a decision (settle 2xx and
# 304 only, or exempt redirects nginx makes itself).
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(config => paid_conf($fac, 'after', 'location /premium/ { }'),
                         user_files => ">>> premium/sub/index.html\npaid content\n");
    my $p = sign_payment(amount => '1000');
    my $r = $ng->get('/premium/sub', { 'PAYMENT-SIGNATURE' => $p });
    is($r->{status}, 301, 'directory redirect: 301');
    my $followed = $ng->get('/premium/sub/', { 'PAYMENT-SIGNATURE' => $p });
    TODO: {
        local $TODO = 'a 3xx nginx makes itself is settled under after';
        ok(n_of($fac, 'settle') == 0 || $followed->{status} == 200,
           'directory redirect: charged only if the redirect leads to the content');
    }
    $ng->stop;
    $fac->stop;
}

# ---- a full disk cuts a spool line ----
# The spool's disk fills up mid-line: the payment settles synchronously
# (right), and the module tried to end the piece with a newline, which
# does not fit either. Once there is room again, the next owed settlement
# was appended to that piece: at the next start the line was malformed
# and that settlement, served on credit, was not resumed. A tmpfs of 64k
# is the small disk (needs root and mount; skipped otherwise).
SKIP: {
    use X402::StoreTest;
    my $mnt = servroot() . '/brk-tmpfs';
    mkdir $mnt;
    skip 'cannot mount a tmpfs here', 2
        unless $> == 0 && system("mount -t tmpfs -o size=64k tmpfs $mnt 2>/dev/null") == 0;
    my $umount = Brk::Guard->new(sub { system("umount $mnt 2>/dev/null") });
    # leaves room for about 18 owed settlements
    system("head -c 36000 /dev/zero > $mnt/filler");
    my $fac = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");
    my $ng = start_nginx(http_config => store_http_config("    x402_spool $mnt/spool;\n    x402_async_drain 1s;\n"),
                         config => store_server_config($fac->port, settle => 'async',
                             extra => "location = /pending { return 200 \$x402_pending; }\n"));
    my @p = payments_for($ng, 30);
    my @served;
    for my $i (0 .. 29) {
        push @served, $p[$i] if $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status} == 200;
        # room again once the disk was full
        unlink "$mnt/filler" if $i == 24;
    }
    $ng->stop;
    $fac->set_script("verify: default\nsettle: default\n");
    my $since = Time::HiRes::time();
    $ng->start;
    wait_for(10, sub { ($ng->get('/pending')->{body} // -1) == 0 });
    my %settled;
    $settled{$_->{json}{paymentPayload}{payload}{authorization}{nonce}} = 1
        for grep { $_->{endpoint} eq 'settle' && $_->{t} >= $since } $fac->requests;
    my $ok = grep { $settled{decode_b64_json($_->[0])->{payload}{authorization}{nonce}} } @served;
    is($ok, scalar(@served), 'full spool disk: every payment served on credit is settled after the restart');
    $ng->stop;
    unlike($ng->error_log, qr/malformed record/, 'full spool disk: no malformed spool record');
    $fac->stop;
}

# ---- after: the client left before the content was complete ----
# With proxy_ignore_client_abort on (a common http-level setting) nobody
# watches the client while the upstream answers: under `after` the held
# response was settled once complete, for a client that had gone: charged,
# nothing delivered. Now the connection is looked at before /settle.
{
    use IO::Socket::INET;
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $slow = start_facilitator(script => "verify: delay=800 200 slow paid content\n");
    my $sp = $slow->port;
    my $ng = start_nginx(http_config => "proxy_ignore_client_abort on;\n",
                         config => paid_conf($fac, 'after',
                             "location /slow { proxy_pass http://127.0.0.1:$sp/verify; }"));
    my $p = sign_payment(amount => '1000');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port) or die $!;
    print $s "GET /slow HTTP/1.1\r\nHost: localhost\r\nPAYMENT-SIGNATURE: $p\r\n"
           . "Connection: close\r\n\r\n";
    Time::HiRes::sleep(0.3);
    close $s;
    Time::HiRes::sleep(1.2);
    is(n_of($fac, 'settle'), 0, 'client gone under after: not settled');
    my $r = $ng->get('/slow', { 'PAYMENT-SIGNATURE' => $p });
    is($r->{status}, 200, 'client gone under after: the payment is presented again and served');
    is($r->{body}, 'slow paid content', 'client gone under after: the content');
    is(n_of($fac, 'settle'), 1, 'client gone under after: settled once, for the delivery');
    $ng->stop;
    $fac->stop;
    $slow->stop;
}

done_testing();
