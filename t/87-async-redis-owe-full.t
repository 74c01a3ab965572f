# An owe whose reply was lost (the connection to Redis dropped after
# Redis ran it): this host keeps it in its spool and settles it; the entry
# that landed must leave Redis once the connection is back, or another
# host claims it once its lease has run out and sends a second /settle.
# The removal went out only with the next claim of owed entries, and a
# worker claims nothing while its zone holds x402_async_limit settlements
# or more (or while it has many retries in flight): under that load,
# exactly when settlements pile up, the removal waited for as long as the
# facilitator stayed down, well past the lease. Here the limit is 1 and the
# entry itself fills it. Now queued removals go out at every tick of the
# retry timer once Redis answers, whatever the claims do.
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
plan skip_all => 'no redis-server' unless `which redis-server` =~ /\S/;

my $redis = X402::Redis->start;
my $rport = $redis->port;

my $fac = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");

sub nonce_of { decode_b64_json($_[0])->{payload}{authorization}{nonce} }
sub settles_of {
    my ($nonce) = @_;
    return scalar grep {
        $_->{endpoint} eq 'settle'
        && lc($_->{json}{paymentPayload}{payload}{authorization}{nonce} // '')
           eq lc $nonce } $fac->requests;
}

my $arm = X402::Test::servroot() . '/t87-arm';
my $psock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
my $pport = $psock->sockport;
my $ppid = fork // die "fork: $!";
if (!$ppid) {
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
            if (-e $arm && $o != $psock && $buf =~ /ZADD\r\n\$\d+\r\nt87:owed\r\n/) {
                # ran by Redis; its replies never reach A
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

my $a = start_nginx(
    name => 'owe-lost-full',
    workers => 1,
    http_config => store_http_config(
        "    x402_redis 127.0.0.1:$pport prefix=t87:;\n"
        . "    x402_async_limit 1;\n"
        . "    x402_async_drain 1s;\n"),
    config => store_server_config($fac->port, settle => 'async'),
);
my ($q) = payments_for($a, 1);
my $nonce = nonce_of($q->[0]);
open my $fh, '>', $arm or die;
close $fh;
is($a->get('/paid/', { 'PAYMENT-SIGNATURE' => $q->[0] })->{status}, 200,
   'served on credit');
ok(wait_for(5, sub { !-e $arm }), 'the owe reached redis, its reply was lost');
ok(wait_for(5, sub { settles_of($nonce) >= 1 }), 'tried (facilitator down)');
my $spool = eval { local (@ARGV, $/) = ($a->prefix . '/x402_spool/settlements'); <> } // '';
like($spool, qr/^owe [0-9a-f]{64} /m, 'the spool keeps it');
unlike($spool, qr/^done [0-9a-f]{64} redis$/m, 'not handed to redis');
ok(wait_for(10, sub { ($redis->cmd('ZCARD', 't87:owed') // 0) == 0
                      && !@{ $redis->cmd('KEYS', 't87:owed:*') // [] } }),
   'the entry that landed leaves redis once connected again, the zone full')
    or diag('owed: ' . join ' ', @{ $redis->cmd('ZRANGE', 't87:owed', 0, -1,
                                                'WITHSCORES') });
$fac->set_script("verify: default\nsettle: chain default\n");
ok(wait_for(15, sub { grep { lc $_ eq lc $nonce } $fac->chain_nonces }),
   'settled by this host once the facilitator is back');
unlike($a->error_log, qr/\[alert\]|exited on signal/, 'no alerts');

$a->stop;
kill 'KILL', $ppid;
waitpid $ppid, 0;
$redis->stop;

done_testing();
