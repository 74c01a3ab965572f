# A client that goes away while its Redis command is in flight (anti-pattern
# A2: no dangling callback). A slow fake Redis answers every command 600 ms
# late, and holds its replies while the test says so; the client sends a
# paid request and disconnects. nginx notices (499), the request is freed,
# and only then the reply comes: it finds no request, and takes the
# reservation back. No crash, no alert, and the next payments are served
# normally. Then the reply and the hang-up reach nginx in the same event
# batch (the worker stopped while both arrive): the request ends before it
# could act on the reply, and the reservation goes too.
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

# A RESP server that answers every command $delay seconds late, in order
# (nil; an empty list to the owed settlements claim), and holds its replies
# while the hold file exists. The epoch record, read at connect and after
# each reservation, is answered without delay (in order). It counts the
# reservations (SET NX GET) and the releases it got, and the reservations
# it answered: "reserve=N release=N answered=N".
my $delay = 0.6;
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
my $rport = $srv->sockport;
my $count_file = servroot() . "/slow-redis-$rport.count";
my $hold_file = servroot() . "/slow-redis-$rport.hold";

sub command_kind {
    my ($cmd) = @_;
    return 'epoch' if index($cmd, 'if not v then v = ARGV[1]') >= 0
                      || $cmd =~ /^\*2\r\n\$3\r\nGET\r\n.*epoch\r\n$/s;
    return 'reserve' if $cmd =~ /^\*\d+\r\n\$3\r\nSET\r\n.*\r\nNX\r\n/s;
    return 'release' if index($cmd, "return redis.call('DEL', KEYS[1])") >= 0;
    return 'claim' if index($cmd, 'ZRANGEBYSCORE') >= 0;
    return 'other';
}

my $pid = fork // die "fork: $!";
if (!$pid) {
    my $sel = IO::Select->new($srv);
    my (%buf, @due);
    my %n = (reserve => 0, release => 0, answered => 0);
    my $counted = sub {
        # whole batches: a reservation's reply and its epoch's are written
        open my $f, '>', "$count_file.tmp";
        print $f join(' ', map { "$_=$n{$_}" } sort keys %n);
        close $f;
        rename "$count_file.tmp", $count_file;
    };
    $counted->();
    while (1) {
        my $now = time;
        my $hold = -e $hold_file;
        my $answered = $n{answered};
        while (!$hold && @due && $due[0][0] <= $now) {
            my $d = shift @due;
            syswrite($d->[1], $d->[2]);
            $n{answered}++ if $d->[3] eq 'reserve';
        }
        $counted->() if $n{answered} != $answered;
        my $wait = @due && !$hold ? $due[0][0] - $now : 0.05;
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
                my $kind = command_kind($cmd);
                if ($kind eq 'epoch') {
                    push @due, [@due ? $due[-1][0] : time, $s,
                                "\$29\r\n1700000000|0123456789abcdef|f\r\n",
                                $kind];
                    next;
                }
                if (exists $n{$kind}) {
                    $n{$kind}++;
                    $counted->();
                }
                push @due, [time + $delay, $s,
                            $kind eq 'claim' ? "*0\r\n" : "\$-1\r\n", $kind];
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

# the fake's counters: reserve, release, answered
sub counts {
    open my $f, '<', $count_file or return {};
    my %n = map { split /=/ } split ' ', (<$f> // '');
    return \%n;
}
sub reserves { counts()->{reserve} // 0 }
sub releases { counts()->{release} // 0 }
sub answered { counts()->{answered} // 0 }

# the server side of 127.0.0.1:$cport -> :$port got the FIN (CLOSE_WAIT)
sub close_wait {
    my ($port, $cport) = @_;
    my $want = sprintf '0100007F:%04X 0100007F:%04X 08', $port, $cport;
    open my $f, '<', '/proc/net/tcp' or return 0;
    return scalar grep { index($_, $want) >= 0 } <$f>;
}

sub hold { open my $f, '>', $hold_file or die "$hold_file: $!"; close $f }
sub unhold { unlink $hold_file }

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $ng = start_nginx(
    workers => 1,
    http_config => store_http_config(
        "    x402_redis 127.0.0.1:$rport timeout=3s fail=closed;\n"),
    config => store_server_config($fac->port),
);

my @p = payments_for($ng, 4);

# sent, then the client leaves; the reply is held until nginx noticed
hold();
my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $ng->port) or die "$!";
print $c "GET /paid/ HTTP/1.1\r\nHost: localhost\r\n"
       . "PAYMENT-SIGNATURE: $p[0][0]\r\n\r\n";
ok(wait_for(5, sub { reserves() >= 1 }), 'the reservation reached redis');
close $c;

ok(wait_for(5, sub {
       $ng->error_log =~ /client prematurely closed connection/ }),
   'nginx noticed the client leaving');
my @l;
ok(wait_for(5, sub { @l = log_records($ng); @l && $l[-1][1] == 499 }),
   'the request ended with 499') or diag explain \@l;
unhold();    # the late answer comes for a request that is gone
ok(wait_for(5, sub { releases() >= 1 }),
   'the late answer took the abandoned reservation back (release sent)');

# nothing was served: the same payment may be presented again
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'the abandoned payment can be presented again');

# the worker is fine and keeps serving
my $t = time;
my $r = $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] });
is($r->{status}, 200, 'next payment served');
ok(time - $t >= $delay - 0.1, 'after its own (slow) reply');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[2][0] })->{status}, 200,
   'and the next');

# the reply and the hang-up in one event batch: the worker is stopped
# while the reply arrives, then the client leaves; epoll reports both, the
# reply first
hold();
$c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                           PeerPort => $ng->port) or die "$!";
my $n = reserves();
my $released = releases();
my $answered = answered();
print $c "GET /paid/ HTTP/1.1\r\nHost: localhost\r\n"
       . "PAYMENT-SIGNATURE: $p[3][0]\r\n\r\n";
ok(wait_for(5, sub { reserves() > $n }), 'the reservation reached redis');
my @w = $ng->worker_pids;
kill 'STOP', @w;
unhold();
ok(wait_for(5, sub { answered() > $answered }), 'redis answered it');
my $cport = $c->sockport;
close $c;
ok(wait_for(5, sub { close_wait($ng->port, $cport) }),
   "the hang-up reached the stopped worker's socket");
kill 'CONT', @w;
ok(wait_for(5, sub { @l = log_records($ng); @l && $l[-1][1] == 499 }),
   'the request ended with 499 before it used the answer')
    or diag explain \@l;
ok(wait_for(5, sub { releases() > $released }),
   'its reservation taken back (release sent)');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[3][0] })->{status}, 200,
   'and the payment can be presented again');

unlike($ng->error_log, qr/\[alert\]|exited on signal|\[crit\]/,
       'no alert, no crash');
$ng->stop;
like($ng->error_log, qr/exit/, 'stopped');
unlike($ng->error_log, qr/open socket .* left/, 'no socket left at exit');

kill 'KILL', $pid;
waitpid $pid, 0;

done_testing();
