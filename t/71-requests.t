# Adversarial: odd payment headers and odd requests against sync and after.
# Two payment headers (either name, or one name twice) are ambiguous and
# refused before any facilitator call; names match in any case; a HEAD is
# charged like a GET (it answers the same resource, and a client asking
# for the headers of paid content is asking for the paid resource); Range
# (206) and a conditional 304 are below 400 and so settled under "after",
# a 416 is not; keepalive and pipelining never carry a payment over to the
# next request.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use IO::Socket::INET;
use IO::Select;

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

sub conf {
    my ($fac, $mode) = @_;
    my $fp = $fac->port;
    return <<"EOC";
access_log logs/x402.log x402;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle $mode;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
EOC
}

sub pay { scalar sign_payment(amount => '1000', @_) }

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $_[0]->requests }
sub calls   { scalar $_[0]->requests }

sub reason {
    my ($r) = @_;
    my $b = eval { json_decode($r->{body}) } || {};
    return $b->{error} // '';
}

# raw bytes in one write; all the answers until nginx closes
sub raw_exchange {
    my ($port, $bytes) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 10) or die $!;
    binmode $s;
    print $s $bytes;
    my $buf = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(10)) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    return $buf;
}

my $doc = "paid content 0123456789\n";

for my $mode (qw(sync after)) {
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(
        http_config => "    log_format x402 '\$x402_status|\$x402_reason|\$status';\n",
        config => conf($fac, $mode),
        user_files => ">>> doc.txt\n$doc");

    # two payment headers, valid both: PAYMENT-SIGNATURE is the one used
    # (the official v2 server's choice; some wallets send both), settled once
    my $r = $ng->request('GET /doc.txt',
        "PAYMENT-SIGNATURE: " . pay() . "\nX-PAYMENT: " . pay(version => 1));
    is($r->{status}, 200, "$mode both names: 200");
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE')
       && !defined X402::HTTP::header($r, 'X-PAYMENT-RESPONSE'),
       "$mode both names: settled as v2");
    is(settles($fac), 1, "$mode both names: one settlement");
    my $before = calls($fac);

    $r = $ng->request('GET /doc.txt',
        "PAYMENT-SIGNATURE: " . pay() . "\nPAYMENT-SIGNATURE: " . pay());
    is($r->{status}, 402, "$mode PAYMENT-SIGNATURE twice: 402");
    $r = $ng->request('GET /doc.txt',
        "X-PAYMENT: " . pay(version => 1) . "\nx-payment: " . pay(version => 1));
    is($r->{status}, 402, "$mode X-PAYMENT twice: 402");
    my $same = pay();
    $r = $ng->request('GET /doc.txt',
        "PAYMENT-SIGNATURE: $same\nPayment-Signature: $same");
    is($r->{status}, 402, "$mode the same payment twice in one request: 402");
    is(calls($fac), $before, "$mode duplicate headers: no facilitator call");

    # names in odd case
    for my $name ('payment-signature', 'PaYmEnT-SiGnAtUrE') {
        $r = $ng->request('GET /doc.txt', "$name: " . pay());
        is($r->{status}, 200, "$mode $name: 200");
        is($r->{body}, $doc, "$mode $name: content");
    }
    $r = $ng->request('GET /doc.txt', "x-Payment: " . pay(version => 1));
    is($r->{status}, 200, "$mode x-Payment (v1): 200");
    my $n = settles($fac);
    is($n, 4, "$mode odd case: three settlements (and the one above)");

    # a v1 payload under the v2 name and the other way round: never
    # content without a settlement, never a crash
    for my $c (['PAYMENT-SIGNATURE', 1], ['X-PAYMENT', 2]) {
        $r = $ng->request('GET /doc.txt', "$c->[0]: " . pay(version => $c->[1]));
        ok($r->{status} == 402 || $r->{status} == 200,
           "$mode v$c->[1] payload in $c->[0]: 402 or 200 ($r->{status})");
        if ($r->{status} == 200) {
            is(settles($fac), ++$n, "$mode v$c->[1] in $c->[0]: settled");
        } else {
            is(settles($fac), $n, "$mode v$c->[1] in $c->[0]: not settled");
            like($r->{body}, qr/"error"\s*:\s*"\w+"/, "$mode v$c->[1] in $c->[0]: reason");
        }
    }

    # HEAD: unpaid 402, paid charged like GET
    $r = $ng->request('HEAD /doc.txt', '');
    is($r->{status}, 402, "$mode HEAD unpaid: 402");
    $r = $ng->request('HEAD /doc.txt', "PAYMENT-SIGNATURE: " . pay());
    is($r->{status}, 200, "$mode HEAD paid: 200");
    is($r->{body}, '', "$mode HEAD paid: no body");
    is(settles($fac), ++$n, "$mode HEAD paid: settled");
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "$mode HEAD: PAYMENT-RESPONSE");

    # Range under sync: 206 or 416, settled before the content. Under
    # after the range filter (it runs after ours) would turn the settled
    # 200 into a 416 with nothing served: the whole resource is served.
    $r = $ng->request('GET /doc.txt', "Range: bytes=0-3\nPAYMENT-SIGNATURE: " . pay());
    if ($mode eq 'sync') {
        is($r->{status}, 206, "$mode Range: 206");
        is($r->{body}, 'paid', "$mode Range: the range");
    } else {
        is($r->{status}, 200, "$mode Range: 200");
        is($r->{body}, $doc, "$mode Range: the whole resource");
    }
    is(settles($fac), ++$n, "$mode Range: settled");
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "$mode Range: PAYMENT-RESPONSE");
    $r = $ng->request('GET /doc.txt', "Range: bytes=9999-\nPAYMENT-SIGNATURE: " . pay());
    is($r->{status}, $mode eq 'sync' ? 416 : 200, "$mode Range unsatisfiable: answered");
    is($r->{body}, $doc, "$mode Range unsatisfiable: content when settled")
        if $mode eq 'after';
    is(settles($fac), ++$n, "$mode Range unsatisfiable: settled");

    # conditional GET: a 304 is below 400, settled (as the reference does)
    my $etag = X402::HTTP::header($ng->request('GET /doc.txt', "PAYMENT-SIGNATURE: " . pay()), 'ETag');
    $n++;
    ok($etag, "$mode ETag");
    $r = $ng->request('GET /doc.txt', "If-None-Match: $etag\nPAYMENT-SIGNATURE: " . pay());
    is($r->{status}, 304, "$mode If-None-Match: 304");
    is(settles($fac), ++$n, "$mode 304: settled");
    $r = $ng->request('GET /doc.txt', "If-None-Match: $etag");
    is($r->{status}, 402, "$mode If-None-Match unpaid: 402, not 304");

    # HTTP/1.0
    my $p = pay();
    my $raw = raw_exchange($ng->port,
        "GET /doc.txt HTTP/1.0\r\nHost: localhost\r\nPAYMENT-SIGNATURE: $p\r\n\r\n");
    like($raw, qr{\AHTTP/1\.1 200 .*\Q$doc\E\z}s, "$mode HTTP/1.0: 200");
    is(settles($fac), ++$n, "$mode HTTP/1.0: settled");

    # pipelining: paid then unpaid on one connection; then the same payment
    # twice on one connection
    $p = pay();
    $raw = raw_exchange($ng->port,
        "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\nPAYMENT-SIGNATURE: $p\r\n\r\n"
      . "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    my @st = $raw =~ m{^HTTP/1\.1 (\d{3})}mg;
    is("@st", '200 402', "$mode pipelined paid, unpaid: 200 402");
    is(scalar(() = $raw =~ /paid content/g), 1, "$mode pipelined: content once");
    is(settles($fac), ++$n, "$mode pipelined: one settlement");
    $p = pay();
    $raw = raw_exchange($ng->port,
        "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\nPAYMENT-SIGNATURE: $p\r\n\r\n"
      . "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\nPAYMENT-SIGNATURE: $p\r\nConnection: close\r\n\r\n");
    @st = $raw =~ m{^HTTP/1\.1 (\d{3})}mg;
    is("@st", '200 402', "$mode pipelined same payment twice: 200 402");
    is(scalar(() = $raw =~ /paid content/g), 1, "$mode pipelined replay: content once");
    is(settles($fac), ++$n, "$mode pipelined replay: one settlement");

    $ng->stop;
    unlike($ng->error_log, qr/\[(crit|alert|emerg)\]|exited on signal/, "$mode: no crash");
    $fac->stop;
}

done_testing();
