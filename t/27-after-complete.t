# x402_settle after charges only complete responses: a response that
# breaks before its last byte (upstream reset or premature close, buffered
# or not, Content-Length or chunked, held in memory or spilled to a file,
# HTTP/1.1 or HTTP/2) is not settled, its reservation is released, and the
# client connection (or h2 stream) is closed at once, as nginx does once a
# header left: the client does not wait for a timeout. Held bodies have a memory bound (x402_hold_buffer_size), past
# which they spill to a temporary file under client_body_temp_path: six
# concurrent 8 MB bodies from keys without funds do not pin tens of MB of
# worker memory. A 304 or 412 keeps the request's payment state.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Digest::MD5 qw(md5_hex);
use IO::Socket::INET;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $REFUSE = "settle: delay=%d 200 {\"success\":false,\"errorReason\":\"insufficient_funds\","
           . "\"transaction\":\"\",\"network\":\"{{network}}\",\"payer\":\"{{payer}}\"}\n";

# a raw upstream: /cl sends "Content-Length: 1000" and 10 bytes, /chunked
# half a chunk, /big 64 KB of a 1 MB Content-Length; then a reset (?rst) or
# a plain close (/stall: past the proxy_read_timeout of /t/; /late: all of
# it a second late)
sub broken_upstream {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 16, ReuseAddr => 1) or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        while (my $c = $l->accept) {
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                my $n = sysread($c, $req, 4096, length $req) or last;
            }
            my ($path) = $req =~ m{^GET (\S+)};
            $path //= '';
            sleep 1 if $path =~ /late/;
            if ($path =~ m{^/big}) {
                print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       . "Content-Length: 1000000\r\n\r\n" . ('0123456789' x 6554);
            } elsif ($path =~ m{^/chunked}) {
                print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       . "Transfer-Encoding: chunked\r\n\r\n3e8\r\n0123456789";
            } else {
                print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       . "Content-Length: 1000\r\n\r\n0123456789";
            }
            $c->flush;
            sleep($path =~ /stall/ ? 1 : 0.2);
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $path =~ /rst/;
            close $c;
        }
        exit 0;
    }
    my $port = $l->sockport;
    close $l;
    return ($pid, $port);
}

sub confs {
    my (%a) = @_;
    my $redis = $a{redis} ? "x402_redis 127.0.0.1:$a{redis} prefix=t27: fail=closed;" : '';
    # h2: a server of its own with the same locations
    my $h2 = $a{h2} ? "server {\n    listen 127.0.0.1:$a{h2} http2;\n    root html;\n"
                      . server_conf(%a) . "}\n" : '';
    my $http = <<"EOH";
    log_format x402 '\$uri|\$status|\$x402_status|\$x402_reason|\$x402_store';
    $redis
    server {
        listen 127.0.0.1:$a{self};
        root html;
    }
    $h2
EOH
    return (http_config => $http, config => server_conf(%a));
}

sub server_conf {
    my (%a) = @_;
    my $fp = $a{fac}->port;
    my $up = $a{up} // 1;
    return <<"EOC";
access_log logs/x402.log x402;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle after;
x402_verify local;
@{[ $a{extra} // '' ]}
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
    proxy_read_timeout 5s;
}
location /b/ { proxy_pass http://127.0.0.1:$up/; }
location /u/ { proxy_pass http://127.0.0.1:$up/; proxy_buffering off; }
location /s/ { proxy_pass http://127.0.0.1:$up/; x402_hold_buffer_size 4k; }
location /su/ {
    proxy_pass http://127.0.0.1:$up/; proxy_buffering off; x402_hold_buffer_size 4k;
}
location /t/ { proxy_pass http://127.0.0.1:$up/; proxy_read_timeout 300ms; }
location /self/ { proxy_pass http://127.0.0.1:$a{self}/; proxy_buffering off; }
location /gz/ {
    proxy_pass http://127.0.0.1:$a{self}/;
    gzip on; gzip_types text/plain; gzip_min_length 1;
}
if_modified_since before;
EOC
}

sub x402_log {
    my ($ng) = @_;
    open my $fh, '<', $ng->prefix . '/logs/x402.log' or return ();
    return map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
}

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $_[0]->requests }

# truncated responses are not settled, the payment can be presented again;
# the client sees its connection closed at once (a generous timeout: the
# old hold waited for the client to give up, 10 s each here)
my @TRUNCATED = ('/b/cl', '/b/cl?rst', '/u/cl', '/u/cl?rst',
                 '/b/chunked', '/b/chunked?rst', '/u/chunked?rst',
                 '/s/big', '/s/big?rst', '/su/big?rst', '/t/cl?stall',
                 'keep-alive /b/cl');
for my $store ('zone', 'redis') {
    my $redis = $store eq 'redis' ? X402::Redis->start : undef;
    my ($upid, $up) = broken_upstream();
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $h2 = $store eq 'zone' ? free_port() : undef;
    my $ng = start_nginx(confs(fac => $fac, up => $up, self => free_port(), h2 => $h2,
                               redis => $redis && $redis->port),
                         user_files => ">>> doc.txt\npaid content\n");
    my $n = 0;
    for my $case (@TRUNCATED) {
        my ($ka, $path) = $case =~ /^(keep-alive )?(\S+)$/;
        my $pay = sign_payment(amount => '1000');
        my $t0 = time;
        my $r = $ka ? $ng->request("GET $path", "Connection: keep-alive\nPAYMENT-SIGNATURE: $pay",
                                   timeout => 20)
                    : $ng->get($path, { 'PAYMENT-SIGNATURE' => $pay }, timeout => 20);
        my $took = time - $t0;
        $path = $case;
        unlike($r->{error} // '', qr/^timeout/, "$store $path: the client did not time out");
        cmp_ok($took, '<', 3, sprintf("$store $path: connection closed after %.1f s", $took));
        is($r->{raw} // '', '', "$store $path: nothing sent");
        isnt($r->{status} // 0, 200, "$store $path: no 200");
        ok(!defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "$store $path: no settlement header");
        unlike($r->{body} // '', qr/0123456789/, "$store $path: no byte of it");
        is(settles($fac), $n, "$store $path: not settled");

        # the reservation was released: the same payment buys a whole response
        $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $pay });
        is($r->{status}, 200, "$store $path: the payment still buys a complete one");
        is($r->{body}, "paid content\n", "$store $path: its content");
        $n++;
        is(settles($fac), $n, "$store $path: settled then");
    }
    # the client goes away while its response is held, or before the
    # upstream's header: not settled either, the reservation goes at once
    my %aborted = ('/b/cl?stall' => 'while held', '/u/late' => 'before a header');
    my @aborted = $store eq 'zone' ? sort keys %aborted : ();
    for my $path (@aborted) {
        my $pay = sign_payment(amount => '1000');
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
            or die "connect: $!";
        print $s "GET $path HTTP/1.1\r\nHost: localhost\r\nPAYMENT-SIGNATURE: $pay\r\n\r\n";
        sleep 0.3;
        close $s;
        my ($t0, $r) = (time);
        do {
            sleep 0.1;
            $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $pay });
        } until ($r->{status} // 0) == 200 || time - $t0 > 5;
        is($r->{status}, 200, sprintf("$store $path, client gone $aborted{$path}: the payment "
                                      . "buys a complete one %.1f s later", time - $t0));
        $n++;
        is(settles($fac), $n, "$store $path, client gone $aborted{$path}: settled once, then");
    }
    # a complete response is still kept alive
    {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
            or die "connect: $!";
        my @got;
        for my $i (1, 2) {
            print $s "GET /doc.txt HTTP/1.1\r\nHost: localhost\r\n"
                   . "PAYMENT-SIGNATURE: " . sign_payment(amount => '1000') . "\r\n\r\n";
            my $buf = '';
            while ($buf !~ /\r\n\r\npaid content\n\z/) {
                my $sel = IO::Select->new($s);
                last unless $sel->can_read(10) && sysread($s, $buf, 4096, length $buf);
            }
            push @got, $buf;
            $n++;
        }
        like($got[0], qr{^HTTP/1\.1 200 .*\r\nConnection: keep-alive\r\n.*PAYMENT-RESPONSE: }s,
             "$store keep-alive: a settled response keeps the connection");
        like($got[1], qr{^HTTP/1\.1 200 .*PAYMENT-RESPONSE: .*\r\n\r\npaid content\n\z}s,
             "$store keep-alive: the next request on it settled too");
        is(settles($fac), $n, "$store keep-alive: two settled");
    }
    if ($h2) {
        # HTTP/2: the stream is reset at once, the connection lives on
        my $pay = sign_payment(amount => '1000');
        my $t0 = time;
        my $out = `curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge --max-time 20 -H 'PAYMENT-SIGNATURE: $pay' http://127.0.0.1:$h2/u/cl?rst`;
        my $exit = $? >> 8;
        my $took = time - $t0;
        cmp_ok($took, '<', 3, sprintf("h2 /u/cl?rst: stream ended after %.1f s", $took));
        isnt($exit, 28, "h2 /u/cl?rst: curl did not time out");
        is($exit, 92, "h2 /u/cl?rst: the stream was reset (curl exit 92)");
        isnt($out, '200', "h2 /u/cl?rst: no 200");
        is(settles($fac), $n, "h2 /u/cl?rst: not settled");
        $out = `curl -s --http2-prior-knowledge --max-time 20 -H 'PAYMENT-SIGNATURE: $pay' http://127.0.0.1:$h2/doc.txt`;
        is($out, "paid content\n", "h2 /u/cl?rst: the payment still buys a complete one");
        $n++;
        is(settles($fac), $n, "h2 /u/cl?rst: settled then");
    }
    $ng->stop;
    my @l = grep { $_->[0] ne '/doc.txt' } x402_log($ng);
    is(scalar @l, @TRUNCATED + @aborted + ($h2 ? 1 : 0),
       "$store: truncated responses logged once each");
    is($_->[2] . '|' . $_->[3], 'verified|not_settled', "$store: $_->[0] verified, not_settled")
        for @l;
    my @ended = $ng->error_log =~ /response ended before its last byte, payment of 1000/g;
    is(scalar @ended, @TRUNCATED + @aborted + ($h2 ? 1 : 0), "$store: logged once each");
    like($ng->error_log, qr/a response held until its settlement is buffered to a temporary file/,
         "$store: the big ones spilled to a file");
    my @left = grep { -f $_ } glob($ng->prefix . '/tmp/body/*'),
                                glob($ng->prefix . '/tmp/body/*/*/*');
    is(scalar @left, 0, "$store: no temporary file left");
    kill 'TERM', $upid;
    waitpid $upid, 0;
    $fac->stop;
    $redis->stop if $redis;
}

# six concurrent 8 MB bodies from keys without funds: held on disk past the
# bound, not in worker memory; then refused, not a byte leaks
my $MB8 = join '', map { sprintf "%07d 8 MB of priced body, line by line ..\n", $_ }
          1 .. (8 * 1024 * 1024 / 48);

sub rss_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

for my $case (['refused', sprintf($REFUSE, 2500)], ['settled', "settle: delay=2500 default\n"]) {
    my ($what, $script) = @$case;
    my $self = free_port();
    my $fac = start_facilitator(script => "verify: default\n$script");
    my $ng = start_nginx(confs(fac => $fac, self => $self),
                         user_files => ">>> big.txt\n$MB8");
    my ($worker) = $ng->worker_pids;
    my $r = $ng->get('/doc-none');     # warm up
    my $base = rss_kb($worker);

    my @pay = map { $_->[0] } sign_payments(6, amount => '1000');
    my @s;
    for my $i (0 .. 5) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
            or die "connect: $!";
        print $s "GET /self/big.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
               . "PAYMENT-SIGNATURE: $pay[$i]\r\n\r\n";
        push @s, $s;
    }
    my ($peak, %seen) = (0);
    my $t0 = time;
    # 2.2 s at least; on a loaded machine, until the six were spilled
    while (time - $t0 < 2.2 || (keys %seen < 6 && time - $t0 < 15)) {
        my $rss = rss_kb($worker);
        $peak = $rss if $rss > $peak;
        # unlinked at creation: seen as the worker's open files (each
        # counted once: the first may be settled before the last spills)
        my $prefix = $ng->prefix;
        $seen{$_} = 1
            for grep { m{^\Q$prefix\E/tmp/body/.* \(deleted\)$} }
                map { readlink($_) // '' } glob("/proc/$worker/fd/*");
        sleep 0.1;
    }
    my $files = keys %seen;
    my $growth = ($peak - $base) / 1024;
    cmp_ok($growth, '<', 16, sprintf("$what: worker memory grew %.1f MB holding 6 x 8 MB", $growth));
    is($files, 6, "$what: six held bodies in temporary files");

    my @bodies;
    for my $s (@s) {
        my $buf = '';
        $s->blocking(1);
        while (sysread($s, my $chunk, 1 << 20)) { $buf .= $chunk }
        push @bodies, $buf;
    }
    for my $i (0 .. 5) {
        my ($head, $body) = split /\r\n\r\n/, $bodies[$i], 2;
        if ($what eq 'refused') {
            like($head, qr{^HTTP/1\.1 402 }, "refused $i: 402");
            unlike($body // '', qr/priced body/, "refused $i: nothing of it");
        } else {
            like($head, qr{^HTTP/1\.1 200 .*PAYMENT-RESPONSE: }s, "settled $i: 200, settled");
            is(md5_hex($body // ''), md5_hex($MB8), "settled $i: intact");
        }
    }
    $ng->stop;
    # client_body_temp_path of the harness: tmp/body
    my @left = grep { -f $_ } glob($ng->prefix . '/tmp/body/*'),
                                glob($ng->prefix . '/tmp/body/*/*/*');
    is(scalar @left, 0, "$what: no temporary file left");
    like($ng->error_log, qr/a response held until its settlement is buffered to a temporary file/,
         "$what: spill logged");
    $fac->stop;
}

# a spilled body through filters that need memory (gzip), sendfile off and
# on, and a small bound
for my $sf ('off', 'on') {
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(confs(fac => $fac, self => free_port(),
                               extra => "x402_hold_buffer_size 4k; sendfile $sf;"),
                         user_files => ">>> big.txt\n$MB8");
    my $r = $ng->get('/self/big.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') },
                     timeout => 30);
    is($r->{status}, 200, "sendfile $sf: 200");
    is(md5_hex($r->{body}), md5_hex($MB8), "sendfile $sf: intact");
    $r = $ng->get('/big.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') },
                  timeout => 30);
    is(md5_hex($r->{body}), md5_hex($MB8), "sendfile $sf: a file, intact");
    $r = $ng->request("GET /gz/big.txt",
                      "Accept-Encoding: gzip\nPAYMENT-SIGNATURE: " . sign_payment(amount => '1000'));
    is($r->{status}, 200, "sendfile $sf gzip: 200");
    is(X402::HTTP::header($r, 'Content-Encoding'), 'gzip', "sendfile $sf gzip: gzipped");
    my $plain = '';
    {
        require IO::Uncompress::Gunzip;
        IO::Uncompress::Gunzip::gunzip(\$r->{body}, \$plain);
    }
    is(md5_hex($plain), md5_hex($MB8), "sendfile $sf gzip: intact");
    is(settles($fac), 3, "sendfile $sf: three settled");
    $ng->stop;
    $fac->stop;
}

# 304 and 412 keep the payment state: a 304 is below 400 and settled (as
# the reference does); a 412 (made by nginx's filter finalization, which
# zeroes the modules' contexts) is not settled, the reservation released,
# and the variables still describe the payment
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(confs(fac => $fac, self => free_port()),
                         user_files => ">>> doc.txt\npaid content\n");
    my @pay = map { $_->[0] } sign_payments(2, amount => '1000');
    my $r = $ng->request("GET /doc.txt",
                         "If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\nPAYMENT-SIGNATURE: $pay[0]");
    is($r->{status}, 304, 'If-Modified-Since: 304');
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'If-Modified-Since: settled');
    is(settles($fac), 1, 'If-Modified-Since: one settlement');
    $r = $ng->request("GET /doc.txt",
                      "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:01 GMT\nPAYMENT-SIGNATURE: $pay[1]");
    is($r->{status}, 412, 'If-Unmodified-Since: 412');
    ok(!defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'If-Unmodified-Since: not settled');
    is(settles($fac), 1, 'If-Unmodified-Since: nothing settled');
    $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $pay[1] });
    is($r->{status}, 200, 'the 412 payment then: 200 (reservation released)');
    is($r->{body}, "paid content\n", 'the 412 payment then: content');
    is(settles($fac), 2, 'the 412 payment then: settled');
    $ng->stop;
    my @l = x402_log($ng);
    is(join(',', map { "$_->[1]|$_->[2]|$_->[3]" } @l),
       '304|settled|-,412|verified|not_settled,200|settled|-',
       '$status, $x402_status, $x402_reason');
    $fac->stop;
}

done_testing();
