# x402_hold_max_size bounds what x402_settle after holds of a response's
# body (memory + temporary file). Until it, a body past
# x402_hold_buffer_size went to a temporary file without a bound: an
# endless upstream stream (SSE, long polling) paid for with a verified
# authorization that is never settled (nothing is, before the last byte)
# grew it until the disk was full. Past the bound the response is refused
# as a broken one: nothing of it sent, nothing settled, the reservation
# released (the payment buys a complete response afterwards), the client's
# connection closed at once (HTTP/2: the stream reset), the upstream's
# connection closed, the temporary file gone, one error-log line naming the
# bound, the bytes held and the fix. A body under the bound is served and
# settled; "x402_hold_max_size 0" keeps a body in memory only. A static
# file held as a file (sendfile on) takes no new space and does not count.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Digest::MD5 qw(md5_hex);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

# an upstream, a process per connection: /endless streams 8 KB chunks
# (chunked) every 5 ms until its client goes, then notes how many bytes
# it wrote in $closed; /size/N sends N bytes with a Content-Length
sub upstream {
    my ($closed) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 16, ReuseAddr => 1) or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{CHLD} = 'IGNORE';
        $SIG{PIPE} = 'IGNORE';
        while (my $c = $l->accept) {
            my $kid = fork // die "fork: $!";
            if ($kid) { close $c; next; }
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                sysread($c, $req, 4096, length $req) or last;
            }
            my ($path) = $req =~ m{^GET (\S+)};
            $path //= '';
            if ($path =~ m{^/size/(\d+)}) {
                my $n = $1;
                my $body = substr(('0123456789abcdef' x (($n >> 4) + 1)), 0, $n);
                print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       . "Content-Length: $n\r\nConnection: close\r\n\r\n$body";
            } else {
                my $head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
                my $chunk = sprintf("%x\r\n%s\r\n", 8192, 'data: 0123456789 tick tock ..' x 282
                                                          . 'x' x (8192 - 29 * 282));
                my $sent = 0;
                my $t0 = time;
                syswrite($c, $head) or last;
                # 60 s at most: the old code holds the stream for ever
                while (time - $t0 < 60) {
                    my $w = syswrite($c, $chunk);
                    last unless defined $w && $w > 0;
                    $sent += $w;
                    sleep 0.005;
                }
                if (open my $fh, '>>', $closed) {
                    printf $fh "%s %d %.2f\n", $path, $sent, time - $t0;
                    close $fh;
                }
            }
            close $c;
            exit 0;
        }
        exit 0;
    }
    my $port = $l->sockport;
    close $l;
    return ($pid, $port);
}

sub server_conf {
    my (%a) = @_;
    my $fp = $a{fac}->port;
    my $up = $a{up};
    return <<"EOC";
access_log logs/x402.log x402;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle after;
x402_verify local;
x402_hold_buffer_size 4k;
x402_hold_max_size 64k;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
    proxy_read_timeout 5s;
}
location /b/ { proxy_pass http://127.0.0.1:$up/; }
location /u/ { proxy_pass http://127.0.0.1:$up/; proxy_buffering off; }
location /big/ { proxy_pass http://127.0.0.1:$up/; x402_hold_max_size 2m; }
location /mem/ { proxy_pass http://127.0.0.1:$up/; x402_hold_max_size 0; }
location /sf/ { sendfile on; rewrite ^/sf(/.*)\$ \$1 break; }
EOC
}

sub confs {
    my (%a) = @_;
    my $h2 = "server {\n    listen 127.0.0.1:$a{h2} http2;\n    root html;\n"
             . server_conf(%a) . "}\n";
    my $redis = $a{redis} ? "x402_redis 127.0.0.1:$a{redis} prefix=t28: fail=closed;" : '';
    my $http = <<"EOH";
    log_format x402 '\$uri|\$status|\$x402_status|\$x402_reason';
    $redis
    $h2
EOH
    return (http_config => $http, config => server_conf(%a));
}

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $_[0]->requests }

sub x402_log {
    my ($ng) = @_;
    open my $fh, '<', $ng->prefix . '/logs/x402.log' or return ();
    return map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
}

# the worker's open temporary files of held bodies (unlinked at creation)
sub held_files {
    my ($ng) = @_;
    my $prefix = $ng->prefix;
    my @fds;
    for my $w ($ng->worker_pids) {
        push @fds, grep { m{^\Q$prefix\E/tmp/body/.* \(deleted\)$} }
                   map { readlink($_) // '' } glob("/proc/$w/fd/*");
    }
    push @fds, grep { -f $_ } glob("$prefix/tmp/body/*"), glob("$prefix/tmp/body/*/*/*");
    return scalar @fds;
}

sub closed_lines {
    my ($file) = @_;
    open my $fh, '<', $file or return ();
    return map { chomp; $_ } <$fh>;
}

my $closed = "/tmp/x402-t28-closed.$$";
unlink $closed;
my ($upid, $up) = upstream($closed);
my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $h2 = free_port();
my $MB = substr(('0123456789abcdef' x 65537), 0, 1000000);
my $ng = start_nginx(confs(fac => $fac, up => $up, h2 => $h2),
                     user_files => ">>> doc.txt\npaid content\n>>> big.txt\n$MB");
my $n = 0;
my $refused = 0;
my $endless = 0;

# an endless stream, buffered or not, and bodies past the bound (spilled,
# or in memory only with 0): refused at once, not settled, the payment
# still good
for my $path ('/b/endless', '/u/endless', '/b/size/1000000', '/mem/size/8192') {
    my $pay = sign_payment(amount => '1000');
    my $t0 = time;
    my $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => $pay }, timeout => 15);
    my $took = time - $t0;
    $refused++;
    unlike($r->{error} // '', qr/^timeout/, "$path: the client did not time out");
    cmp_ok($took, '<', 5, sprintf("$path: connection closed after %.1f s", $took));
    is($r->{raw} // '', '', "$path: nothing sent");
    ok(!defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "$path: no settlement header");
    is(settles($fac), $n, "$path: not settled");
    is(held_files($ng), 0, "$path: no temporary file left");
    if ($path =~ /endless/) {
        my $want = ++$endless;
        my $t1 = time;
        my @mine;
        until ((@mine = grep { m{^/endless } } closed_lines($closed)) >= $want
               || time - $t1 > 5) {
            sleep 0.1;
        }
        is(scalar @mine, $want, "$path: the upstream's connection was closed ("
           . ($mine[-1] // 'still streaming') . ")");
    }

    # the reservation was released: the same payment buys a whole response
    $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $pay });
    is($r->{status}, 200, "$path: the payment still buys a complete one");
    is($r->{body}, "paid content\n", "$path: its content");
    $n++;
    is(settles($fac), $n, "$path: settled then");
}

# HTTP/2: the stream is reset at once
{
    my $pay = sign_payment(amount => '1000');
    my $t0 = time;
    my $out = `curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge --max-time 15 -H 'PAYMENT-SIGNATURE: $pay' http://127.0.0.1:$h2/u/endless`;
    my $exit = $? >> 8;
    my $took = time - $t0;
    $refused++;
    cmp_ok($took, '<', 5, sprintf("h2 /u/endless: stream ended after %.1f s", $took));
    is($exit, 92, "h2 /u/endless: the stream was reset (curl exit 92)");
    isnt($out, '200', "h2 /u/endless: no 200");
    is(settles($fac), $n, "h2 /u/endless: not settled");
    is(held_files($ng), 0, "h2 /u/endless: no temporary file left");
    $out = `curl -s --http2-prior-knowledge --max-time 15 -H 'PAYMENT-SIGNATURE: $pay' http://127.0.0.1:$h2/doc.txt`;
    is($out, "paid content\n", "h2 /u/endless: the payment still buys a complete one");
    $n++;
    is(settles($fac), $n, "h2 /u/endless: settled then");
}

# under the bound: served whole and settled (1 MB spilled under 2m; 4 KB
# in memory with 0; 60 KB spilled under 64k)
for my $case (['/big/size/1000000', 1000000], ['/mem/size/4096', 4096],
              ['/b/size/61440', 61440]) {
    my ($path, $size) = @$case;
    my $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') },
                     timeout => 15);
    is($r->{status}, 200, "$path: 200");
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), "$path: settled");
    is(length($r->{body} // ''), $size, "$path: $size bytes");
    is(md5_hex($r->{body} // ''),
       md5_hex(substr(('0123456789abcdef' x (($size >> 4) + 1)), 0, $size)), "$path: intact");
    $n++;
    is(settles($fac), $n, "$path: one settlement more");
}
# a static file under sendfile on is held as it is, a file buffer taking
# no new space: not counted, 1 MB served under the 64k bound; under
# sendfile off (nginx's default) nginx reads it into memory before the
# hold: counted, refused
{
    my $r = $ng->get('/sf/big.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') },
                     timeout => 15);
    is($r->{status}, 200, '/sf/big.txt (static, 1 MB, sendfile on): 200');
    ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), '/sf/big.txt: settled');
    is(md5_hex($r->{body} // ''), md5_hex($MB), '/sf/big.txt: intact');
    $n++;
    is(settles($fac), $n, '/sf/big.txt: one settlement more');

    $r = $ng->get('/big.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') },
                  timeout => 15);
    $refused++;
    is($r->{raw} // '', '', '/big.txt (static, 1 MB, sendfile off): nothing sent');
    is(settles($fac), $n, '/big.txt: not settled');
}
is(held_files($ng), 0, 'no temporary file left');

$ng->stop;
my $log = $ng->error_log;
my @lines = $log =~ /^(.*the response held until its settlement passed.*)$/mg;
is(scalar @lines, $refused, 'one error line per refused response');
like($lines[0] // '', qr/\[error\].*"x402_hold_max_size 65536" of its location at \d+ bytes held and \d+ more, refused \(use "x402_settle sync" for streams, or raise x402_hold_max_size\), payment of 1000 from 0x\w+ not settled/,
     'it names the bound, the bytes held and the fix');
like($log, qr/passed "x402_hold_buffer_size 4096" of its location \("x402_hold_max_size 0": no temporary file\) at \d+ bytes held/,
     'with 0: names the memory bound');
unlike($log, qr/response ended before its last byte/, 'not logged twice');
unlike($log, qr/\[(crit|alert|emerg)\]/, 'no crit, alert or emerg');
for my $l (@lines) {
    my ($h) = $l =~ /at (\d+) bytes held and \d+ more/ or next;
    cmp_ok($h, '<=', 65536, "held $h bytes, within the bound");
}

my @l = grep { $_->[2] ne 'settled' } x402_log($ng);
is(scalar @l, $refused, 'refused responses in the access log');
is($_->[2] . '|' . $_->[3], 'verified|not_settled', "$_->[0]: verified, not_settled") for @l;

$fac->stop;

# Redis keeps the reservations: released there too, the payment good again
{
    my $redis = X402::Redis->start;
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(confs(fac => $fac, up => $up, h2 => free_port(),
                               redis => $redis->port),
                         user_files => ">>> doc.txt\npaid content\n");
    my $n = 0;
    for my $path ('/u/endless', '/b/size/1000000') {
        my $pay = sign_payment(amount => '1000');
        my $t0 = time;
        my $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => $pay }, timeout => 15);
        cmp_ok(time - $t0, '<', 5, "redis $path: connection closed at once");
        is($r->{raw} // '', '', "redis $path: nothing sent");
        is(settles($fac), $n, "redis $path: not settled");
        is(held_files($ng), 0, "redis $path: no temporary file left");
        $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $pay });
        is($r->{status}, 200, "redis $path: the payment still buys a complete one");
        $n++;
        is(settles($fac), $n, "redis $path: settled then");
    }
    $ng->stop;
    my @lines = $ng->error_log =~ /(passed "x402_hold_max_size 65536")/g;
    is(scalar @lines, 2, 'redis: logged once each');
    $fac->stop;
    $redis->stop;
}

kill 'TERM', $upid;
waitpid $upid, 0;
unlink $closed;

done_testing();
