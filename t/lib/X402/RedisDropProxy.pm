package X402::RedisDropProxy;

# A TCP proxy in front of redis-server, for the tests of an owe whose reply
# was lost (t/41, t/87): a forked process passes every connection through
# to Redis; once armed (a file exists), the first write that matches
# `match` (the owe's ZADD of the owed set: its key names the prefix) goes
# to Redis, the proxy waits 0.3 s for Redis to run it, disarms and drops
# both sides of that connection: the commands ran, their replies never
# reach nginx.
#
#   my $px = X402::RedisDropProxy->start(redis_port => $rport,
#       match => qr/ZADD\r\n\$\d+\r\nt41:owed\r\n/);
#   ... x402_redis 127.0.0.1:${\ $px->port} ...
#   $px->arm;  ...  wait_for(5, sub { !$px->armed });  ...  $px->stop;
#
# A child the test leaves running ends with the test's process group
# (X402::Test).

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep);
use X402::Test ();

sub start {
    my ($class, %a) = @_;
    my $rport = $a{redis_port} // die "redis_port\n";
    my $match = $a{match} // die "match\n";
    my $psock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Listen => 16, ReuseAddr => 1)
        or die "listen: $!";
    my $self = bless {
        port => $psock->sockport,
        arm_file => X402::Test::servroot() . '/redis-drop-' . $psock->sockport
                    . '.arm',
    }, $class;
    my $arm = $self->{arm_file};
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $sel = IO::Select->new($psock);
        my %peer;
        while (1) {
            for my $s ($sel->can_read(0.2)) {
                if ($s == $psock) {
                    my $c = $psock->accept or next;
                    my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                                  PeerPort => $rport)
                        or do { close $c; next };
                    $peer{$c} = $u;
                    $peer{$u} = $c;
                    $sel->add($c, $u);
                    next;
                }
                my $o = $peer{$s} or next;
                my $n = sysread($s, my $buf, 65536);
                if (!$n) {
                    $sel->remove($s, $o);
                    delete @peer{$s, $o};
                    close $s;
                    close $o;
                    next;
                }
                syswrite($o, $buf);
                if (-e $arm && $buf =~ $match) {
                    # ran by Redis; its replies never reach the client
                    unlink $arm;
                    sleep 0.3;
                    $sel->remove($s, $o);
                    delete @peer{$s, $o};
                    close $s;
                    close $o;
                }
            }
        }
    }
    close $psock;
    $self->{pid} = $pid;
    return $self;
}

sub port { $_[0]{port} }

# the next matching write is the one whose connection drops
sub arm {
    my ($self) = @_;
    open my $fh, '>', $self->{arm_file} or die "$self->{arm_file}: $!";
    close $fh;
}

# armed until a matching write went through
sub armed { -e $_[0]{arm_file} }

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'KILL', $self->{pid};
    waitpid $self->{pid}, 0;
    $self->{pid} = undef;
}

1;
