# x402_settle after: the content runs first; below 400 it is held until its
# last byte, /settle runs, then it is released with PAYMENT-RESPONSE; 400 and above
# pass through unsettled (nobody pays for a 404 or an upstream error); a
# refused or failed settlement replaces the response (402 / 502) and not a
# byte of the content leaks. Large bodies (files, buffered and unbuffered
# upstreams) come through intact.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Digest::MD5 qw(md5_hex);
use IO::Socket::INET;
use Time::HiRes qw(time);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

my $big = join '', map { sprintf "%07d the quick brown fox\n", $_ } 1 .. 60000;

sub confs {
    my ($fac, $up) = @_;
    my $fp = $fac->port;
    my $http = <<"EOH";
    log_format x402 '\$x402_status|\$x402_reason|\$x402_tx|\$status';
    server {
        listen 127.0.0.1:$up;
        root html;
        location /up/500 { return 500 "upstream broke"; }
    }
EOH
    my $server = <<"EOC";
access_log logs/x402.log x402;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle after;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
    proxy_read_timeout 2s;
}
location /up/ { proxy_pass http://127.0.0.1:$up; }
location /unbuffered/ {
    proxy_pass http://127.0.0.1:$up/up/;
    proxy_buffering off;
    proxy_buffer_size 4k;
}
location /nosendfile/ { sendfile off; output_buffers 2 4k; }
EOC
    return (http_config => $http, config => $server);
}

my $files = ">>> doc.txt\npaid content\n>>> up/data.txt\n$big"
          . ">>> big.txt\n$big>>> nosendfile/big.txt\n$big";

sub pay { scalar sign_payment(amount => '1000') }

sub x402_log {
    my ($ng) = @_;
    open my $fh, '<', $ng->prefix . '/logs/x402.log' or return ();
    return map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
}

{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $up = free_port();
    my $ng = start_nginx(confs($fac, $up), user_files => $files);

    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => pay() });
    is($r->{status}, 200, 'after: 200');
    is($r->{body}, "paid content\n", 'after: content');
    my $resp = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-RESPONSE') // 'e30=');
    ok($resp->{success}, 'after: PAYMENT-RESPONSE success');
    is(X402::HTTP::header($r, 'Content-Length'), 13, 'after: content length kept');
    is(join(' ', map { $_->{endpoint} } $fac->requests), 'verify settle',
       'after: verify, content, settle');

    $r = $ng->get('/missing.txt', { 'PAYMENT-SIGNATURE' => pay() });
    is($r->{status}, 404, 'after 404: passed through');
    ok(!defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'after 404: no settlement header');
    is(join(' ', map { $_->{endpoint} } $fac->requests), 'verify settle verify',
       'after 404: not settled');

    $r = $ng->get('/up/500', { 'PAYMENT-SIGNATURE' => pay() });
    is($r->{status}, 500, 'after upstream 500: passed through');
    is($r->{body}, 'upstream broke', 'after upstream 500: its body');
    is(scalar(() = grep { $_->{endpoint} eq 'settle' } $fac->requests), 1,
       'after upstream 500: not settled');

    for my $path ('/big.txt', '/nosendfile/big.txt', '/up/data.txt',
                  '/unbuffered/data.txt')
    {
        $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => pay() }, timeout => 20);
        is($r->{status}, 200, "after $path: 200");
        is(length $r->{body}, length $big, "after $path: length");
        is(md5_hex($r->{body}), md5_hex($big), "after $path: intact");
        ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "after $path: settled");
    }

    $r = $ng->request('HEAD /doc.txt', "PAYMENT-SIGNATURE: " . pay());
    is($r->{status}, 200, 'after HEAD: 200');
    is($r->{body}, '', 'after HEAD: no body');
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'after HEAD: settled');

    $ng->stop;
    my @l = x402_log($ng);
    is($l[0][0], 'settled', 'var: settled');
    like($l[0][2], qr/^0x[0-9a-f]{64}$/, 'var: tx after the content ran');
    is($l[1][0], 'verified', 'var: 404 verified, not settled');
    is($l[1][1], 'not_settled', 'var: reason not_settled');
    is($l[1][2], '-', 'var: no tx');
    my $log = $ng->error_log;
    $log =~ s/^.*\[error\].*open\(\) .*missing\.txt.*\n//m;
    unlike($log, qr/\[(error|crit|alert|emerg)\]/, 'after: clean log');
    $fac->stop;
}

# slow settlement: nothing reaches the client before it is done
{
    my $fac = start_facilitator(script => "verify: default\nsettle: delay=1200 default\n");
    my $up = free_port();
    my $ng = start_nginx(confs($fac, $up), user_files => $files);
    for my $path ('/doc.txt', '/up/data.txt', '/unbuffered/data.txt') {
        my $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => pay() }, timeout => 20);
        is($r->{status}, 200, "slow settle $path: 200");
        cmp_ok($r->{elapsed}, '>=', 1.1, "slow settle $path: waited for /settle");
        ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "slow settle $path: header");
        is(md5_hex($r->{body}), md5_hex($path eq '/doc.txt' ? "paid content\n" : $big),
           "slow settle $path: intact");
    }
    $ng->stop;
    $fac->stop;
}

# refused and broken settlements: the content is replaced
{
    my $fac = start_facilitator(script => "verify: default\n"
        . "settle: 200 {\"success\":false,\"errorReason\":\"insufficient_funds\",\"transaction\":\"\",\"network\":\"{{network}}\",\"payer\":\"{{payer}}\"}\n");
    my $up = free_port();
    my $ng = start_nginx(confs($fac, $up), user_files => $files);

    for my $path ('/doc.txt', '/up/data.txt', '/unbuffered/data.txt') {
        my $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => pay() }, timeout => 20);
        is($r->{status}, 402, "refused $path: 402");
        unlike($r->{body}, qr/paid content|quick brown fox/, "refused $path: no content");
        my $resp = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-RESPONSE') // 'e30=');
        ok(exists $resp->{success} && !$resp->{success}, "refused $path: success false");
        is($resp->{errorReason}, 'insufficient_funds', "refused $path: reason");
        my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED') // 'e30=');
        is($pr->{error}, 'insufficient_funds', "refused $path: fresh requirements");
        is(json_decode($r->{body})->{error}, 'insufficient_funds', "refused $path: v1 body");
        like(X402::HTTP::header($r, 'Content-Type'), qr{^application/json},
             "refused $path: JSON");
    }

    # a 500 with a JSON error is how Go facilitators refuse
    # (coinbase/x402 e2e/facilitators/go/main.go)
    $fac->set_script("verify: default\nsettle: 500 {\"error\":\"boom\"}\n");
    my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => pay() });
    is($r->{status}, 402, 'settle 500 with a JSON error: refused');
    is(json_decode($r->{body})->{error}, 'boom', 'settle 500 with a JSON error: reason');

    $fac->set_script("verify: default\nsettle: 500 Internal Server Error\n");
    $r = $ng->get('/up/data.txt', { 'PAYMENT-SIGNATURE' => pay() }, timeout => 20);
    is($r->{status}, 502, 'broken settle: 502');
    unlike($r->{body}, qr/quick brown fox/, 'broken settle: no content');
    like($r->{body}, qr/"error":"facilitator_unavailable"/, 'broken settle: JSON error');

    $fac->set_script("verify: default\nsettle: hang\n");
    $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => pay() }, timeout => 20);
    is($r->{status}, 504, 'settle timeout: 504');
    unlike($r->{body}, qr/paid content/, 'settle timeout: no content');

    $ng->stop;
    my @l = x402_log($ng);
    is($l[0][0], 'invalid', 'var: refused settlement is invalid');
    is($l[0][1], 'insufficient_funds', 'var: its reason');
    is($l[-1][0], 'error', 'var: timeout is error');
    like($ng->error_log, qr/x402: settlement of 1000 from 0x\w+ refused: insufficient_funds/,
         'log: refused settlement');
    $fac->stop;
}

# SSI includes and add_after_body in a held response: their subrequests
# run once the response is released, paid once
{
    my $fac = start_facilitator(script => "verify: default\nsettle: delay=200 default\n");
    my $up = free_port();
    my %c = confs($fac, $up);
    $c{config} .= "location /ssi/ { ssi on; add_after_body /ssi/after.txt; "
                . "addition_types text/plain text/html; }\n";
    my $ng = start_nginx(%c, user_files => ">>> ssi/page.html\n"
        . "[<!--# include virtual=\"/ssi/part.txt\" -->]\n"
        . ">>> ssi/part.txt\npart\n>>> ssi/after.txt\nafter\n");
    my $r = $ng->get('/ssi/page.html', { 'PAYMENT-SIGNATURE' => pay() });
    is($r->{status}, 200, 'ssi: 200');
    is($r->{body}, "[part\n]\nafter\n", 'ssi: includes and addition');
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'ssi: settled');
    is(join(' ', map { $_->{endpoint} } $fac->requests), 'verify settle',
       'ssi: paid once');
    $ng->stop;
    $fac->stop;
}

# keepalive: paid, unpaid and paid again on one connection, pipelined
{
    my $fac = start_facilitator(script => "verify: default\nsettle: delay=200 default\n");
    my $up = free_port();
    my $ng = start_nginx(confs($fac, $up), user_files => $files);
    my @pay = map { $_->[0] } sign_payments(2, amount => '1000');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
        or die "connect: $!";
    print $s "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\nPAYMENT-SIGNATURE: $pay[0]\r\n\r\n"
           . "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
           . "GET /big.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
           . "PAYMENT-SIGNATURE: $pay[1]\r\n\r\n";
    my $buf = '';
    $s->blocking(1);
    while (sysread($s, my $chunk, 65536)) { $buf .= $chunk; }
    my @st = $buf =~ m{HTTP/1\.1 (\d{3}) }g;
    is("@st", "200 402 200", "keepalive: paid, unpaid, paid") or diag(substr($buf, 0, 3000));
    my @pr = $buf =~ m{^PAYMENT-RESPONSE: (\S+)}mg;
    is(scalar @pr, 2, 'keepalive: two settlements');
    like($buf, qr/paid content\n.*0060000 the quick brown fox\n\z/s,
         'keepalive: bodies in order, complete');
    is(join(' ', map { $_->{endpoint} } $fac->requests),
       'verify settle verify settle', 'keepalive: facilitator calls');
    # closed first: nginx lingers on a pipelined connection until the client
    # closes it (lingering_timeout, 5 s), and a graceful stop waits for that
    close $s;
    $ng->stop;
    $fac->stop;
}

# a response whose body comes late or streams (an upstream that flushes,
# then sleeps): held until its last byte, settled, then released at once;
# nothing is lost
SKIP: {
    my $echo = '/usr/lib/nginx/modules/ngx_http_echo_module.so';
    # Debian's echo module is built for Debian's nginx only
    skip 'no echo module for this nginx', 9
        unless -f $echo && `@{[nginx_binary()]} -v 2>&1` =~ m{nginx/1\.22\.1\b};
    my $fac = start_facilitator(script => "verify: default\nsettle: delay=300 default\n");
    my $up = free_port();
    my %c = confs($fac, $up);
    $c{http_config} .= "server { listen 127.0.0.1:" . free_port() . "; }\n";
    $c{http_config} =~ s{(location /up/500)}{location /up/late { echo_flush; echo_sleep 0.8; echo "late body"; }\n        location /up/stream { echo "first"; echo_flush; echo_sleep 1.5; echo "second"; }\n        $1};
    my $ng = start_nginx(%c, main_config => "load_module $echo;");

    for my $path ('/up/late', '/unbuffered/late') {
        my $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => pay() });
        is($r->{status}, 200, "late body $path: 200");
        is($r->{body}, "late body\n", "late body $path: nothing lost");
        ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "late body $path: settled");
    }

    # time to the first body byte of a stream
    my $payment = pay();
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
        or die "connect: $!";
    my $t0 = time;
    print $s "GET /unbuffered/stream HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
           . "PAYMENT-SIGNATURE: $payment\r\n\r\n";
    my ($buf, $first) = ('', undef);
    while (sysread($s, my $chunk, 4096)) {
        $buf .= $chunk;
        $first //= time - $t0 if $buf =~ /first/;
    }
    my $total = time - $t0;
    like($buf, qr/^HTTP\/1\.1 200.*PAYMENT-RESPONSE: eyJ.*first.*second/s,
         'stream: settled, whole');
    # only a complete response is settled: nothing leaves before the last
    # byte arrived and the settlement ended
    ok(defined $first && $first >= 1.5, 'stream: held until complete ('
       . sprintf('%.2f', $first // -1) . ' s)');
    cmp_ok($total, '>=', 1.5, 'stream: whole');
    close $s;
    $ng->stop;
    $fac->stop;
}

done_testing();
