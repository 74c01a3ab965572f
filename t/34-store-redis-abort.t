# A client that goes away while its Redis command is in flight (anti-pattern
# A2: no dangling callback). A slow fake Redis answers every command 600 ms
# late; the client sends a paid request and disconnects at once. nginx
# notices (499), the request is freed, and the late reply finds no request:
# no crash, no alert, and the next payments are served normally.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

# a RESP server that answers nil to every command, $delay seconds late,
# and counts the commands it got
my $delay = 0.6;
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
my $rport = $srv->sockport;
my $count_file = servroot() . "/slow-redis-$rport.count";

my $pid = fork // die "fork: $!";
if (!$pid) {
    my $sel = IO::Select->new($srv);
    my (%buf, @due, $n);
    $n = 0;
    while (1) {
        my $now = time;
        while (@due && $due[0][0] <= $now) {
            my $d = shift @due;
            syswrite($d->[1], $d->[2] // "\$-1\r\n");
        }
        my $wait = @due ? $due[0][0] - $now : 0.05;
        $wait = 0.001 if $wait < 0.001;
        for my $s ($sel->can_read($wait)) {
            if ($s == $srv) {
                my $c = $srv->accept or next;
                $sel->add($c);
                $buf{$c} = '';
                next;
            }
            my $r = sysread($s, my $chunk, 65536);
            if (!$r) {
                $sel->remove($s);
                @due = grep { $_->[1] != $s } @due;
                close $s;
                next;
            }
            $buf{$s} .= $chunk;
            # whole commands only: *N then N bulk strings
            while (my $len = command_length($buf{$s})) {
                my $cmd = substr($buf{$s}, 0, $len);
                substr($buf{$s}, 0, $len) = '';
                if (index($cmd, 'if not v then v = ARGV[1]') >= 0
                    || $cmd =~ /^\*2\r\n\$3\r\nGET\r\n.*epoch\r\n$/s)
                {
                    # the epoch record, read at connect and after each
                    # reservation: answered without delay (in order), not
                    # counted
                    push @due, [@due ? $due[-1][0] : time, $s,
                                "\$29\r\n1700000000|0123456789abcdef|f\r\n"];
                    next;
                }
                $n++;
                open my $f, '>', $count_file;
                print $f $n;
                close $f;
                push @due, [time + $delay, $s];
            }
        }
    }
}
close $srv;

# length of the first complete RESP command in $b, 0 if incomplete
sub command_length {
    my ($b) = @_;
    return 0 unless $b =~ /^\*(\d+)\r\n/;
    my ($n, $pos) = ($1, length($&));
    for (1 .. $n) {
        return 0 unless substr($b, $pos) =~ /^\$(\d+)\r\n/;
        $pos += length($&) + $1 + 2;
        return 0 if $pos > length $b;
    }
    return $pos;
}

sub commands {
    open my $f, '<', $count_file or return 0;
    my $n = <$f>;
    return $n // 0;
}

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $ng = start_nginx(
    workers => 1,
    http_config => store_http_config(
        "    x402_redis 127.0.0.1:$rport timeout=3s fail=closed;\n"),
    config => store_server_config($fac->port),
);

my @p = payments_for($ng, 3);

# sent, then the client leaves at once
my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $ng->port) or die "$!";
print $c "GET /paid/ HTTP/1.1\r\nHost: localhost\r\n"
       . "PAYMENT-SIGNATURE: $p[0][0]\r\n\r\n";
ok(wait_for(2, sub { commands() >= 1 }), 'the reservation reached redis');
close $c;

sleep $delay + 0.5;    # the late reply arrives for a request that is gone

like($ng->error_log, qr/client prematurely closed connection/,
     'nginx noticed the client leaving');
my @l = log_records($ng);
is($l[-1][1], 499, 'the request ended with 499') or diag explain \@l;
ok(wait_for(2, sub { commands() >= 2 }),
   'the late answer took the abandoned reservation back (release sent)');

# nothing was served: the same payment may be presented again
my $t0 = time;
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'the abandoned payment can be presented again');

# the worker is fine and keeps serving
my $t = time;
my $r = $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] });
is($r->{status}, 200, 'next payment served');
ok(time - $t >= $delay - 0.1, 'after its own (slow) reply');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[2][0] })->{status}, 200,
   'and the next');

unlike($ng->error_log, qr/\[alert\]|exited on signal|\[crit\]/,
       'no alert, no crash');
$ng->stop;
like($ng->error_log, qr/exit/, 'stopped');
unlike($ng->error_log, qr/open socket .* left/, 'no socket left at exit');

kill 'KILL', $pid;
waitpid $pid, 0;

done_testing();
