# The fleet store (x402_redis) with a real redis-server on loopback and two
# nginx instances sharing it: the same payment sent to both at once is
# served exactly once (50 payments); a grant paid at one is honoured by the
# other; Redis stopped mid-run gives the configured fail mode (closed: 503,
# open: the local zone, logged and counted), no worker crashes, and recovery
# once it is back; a stalled Redis (accepts, never answers) costs a bounded
# latency (the command timer), and so does one that never accepts.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use POSIX ();

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'no redis-server' unless `which redis-server` =~ /\S/;

my $fac = start_facilitator(script => <<'EOS');
verify: default
settle: default
EOS
my $fport = $fac->port;

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $fac->requests }

my $redis = X402::Redis->start;
my $rport = $redis->port;

sub fleet {
    my (%a) = @_;
    my $fail = $a{fail} // 'closed';
    my $opts = $a{redis_opts} // "timeout=300ms connect_timeout=300ms";
    my $port = $a{redis_port} // $rport;
    return start_nginx(
        workers => 2,
        name => $a{name},
        http_config => store_http_config(
            "    x402_redis 127.0.0.1:$port prefix=t31: fail=$fail $opts;\n"),
        config => store_server_config($fport, grant => $a{grant}),
    );
}

# no grant here: with a grant, a presentation that reaches the second
# instance after the first settled is a legitimate reuse
my $ng1 = fleet(name => 'one');
my $ng2 = fleet(name => 'two');

# ---- the same payment to both instances at once, 50 times ----

my @pays = payments_for($ng1, 50);
my ($once, $twice, $none) = (0, 0, 0);

for my $p (@pays) {
    my @st = concurrent_gets([$ng1->port, $ng2->port], '/paid/',
                             { 'PAYMENT-SIGNATURE' => $p->[0] });
    my $ok = grep { $_ == 200 } @st;
    $once++ if $ok == 1;
    $twice++ if $ok > 1;
    $none++ if $ok == 0;
    diag("statuses @st") if $ok != 1;
}

is($once, 50, 'two nginx, one redis: each of 50 payments served once');
is($twice, 0, 'no payment served twice');
is($none, 0, 'none refused by both');

my $keys = [ grep { !/:epoch$/ } @{ $redis->cmd('KEYS', 't31:*') } ];
is(scalar @$keys, 50, '50 records in redis');
# a settled record is written after the response (with the next command)
ok(wait_for(5, sub {
       50 == grep { ($redis->cmd('GET', $_) // '') =~ /^S/ } @$keys }),
   'all 50 settled in redis');
my $v = $redis->cmd('GET', $keys->[0]);
like($v, qr/^S\|[0-9a-f]{16}\|\d+\|\d+\|0x[0-9a-f]{64}$/,
     'a settled record with its transaction');
my $ttl = $redis->cmd('PTTL', $keys->[0]);
ok($ttl > 0, "records expire (PTTL $ttl ms)");

my @l = (log_records($ng1), log_records($ng2));
my @served = grep { $_->[0] eq '/paid/' && $_->[1] == 200 } @l;
is((grep { $_->[3] eq 'redis' } @served), 50, '$x402_store redis');

# ---- a grant paid at one instance, reused at the other ----

$ng1->stop;
$ng2->stop;
$ng1 = fleet(name => 'one-grant', grant => '60s');
$ng2 = fleet(name => 'two-grant', grant => '60s');

my ($g) = payments_for($ng1, 1);
my $gh = { 'PAYMENT-SIGNATURE' => $g->[0] };
my $before = settles();
is($ng1->get('/paid/', $gh)->{status}, 200, 'grant: paid at one');
# the settled record is written right after the response
my $gid = (log_records($ng1))[-1][4];
ok(wait_for(5, sub { ($redis->cmd('GET', "t31:$gid") // '') =~ /^S/ }),
   'the grant is settled in redis');
is($ng2->get('/paid/', $gh)->{status}, 200, 'grant: reused at the other');
is($ng2->get('/paid/', $gh)->{status}, 200, 'again (now from its zone)');
is($ng2->get('/other/', $gh)->{status}, 402, 'but not at another location');
is(settles() - $before, 1, 'settled once');
my @l2 = log_records($ng2);
is((grep { $_->[2] eq 'reused' } @l2), 2, 'the other says reused');

# ---- redis stops: fail=closed 503, fail=open zone; then recovery ----

my $open = fleet(name => 'open', fail => 'open');
my @p = payments_for($open, 6);

# a Redis that keeps its data across the restart (an RDB snapshot in its
# dir): one that forgets is t/36
$redis->cmd('SAVE');
$redis->stop;
sleep 0.3;

my $t0 = time;
my $r = $ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] });
is($r->{status}, 503, 'redis down, fail=closed: 503');
ok(time - $t0 < 2, 'quickly');
$r = $open->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] });
is($r->{status}, 200, 'redis down, fail=open: served');
$r = $open->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] });
is($r->{status}, 402, 'and still replay-proof on this host');
my @lo = log_records($open);
is($lo[-2][3], 'zone-fallback', '$x402_store zone-fallback');
like($open->error_log, qr/fail=open/, 'fail=open is logged');
like($ng1->error_log, qr/fail=closed/, 'fail=closed is logged');

# the same port again, with its data
$redis = X402::Redis->start(port => $rport);

my $back = wait_for(5, sub {
    $ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[2][0] })->{status}
        == 200 });
ok($back, 'redis back: fail=closed instance serves again, no restart');
ok(wait_for(5, sub {
    my @x = log_records($open);
    $open->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[3][0] })->{status}
        == 200 && (log_records($open))[-1][3] eq 'redis' }),
   'fail=open instance uses redis again');
like($ng1->error_log, qr/connected again/, 'recovery is logged');

# what fail=open served during the outage is pushed to redis: the other
# instances refuse it now
ok(wait_for(5, sub { $open->error_log =~ /pushed to it/ }),
   'fail=open instance pushed its outage records to redis');
# (/other/: $ng1 has a grant for /paid/, which would rightly reuse it)
is($ng1->get('/other/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 402,
   'a payment served during the outage is refused by the other instance');

for my $ng ($ng1, $ng2, $open) {
    unlike($ng->error_log, qr/exited on signal|\[alert\]/,
           'no worker crashed');
}

$open->stop;

# ---- a stalled redis: accepts, never answers ----

my @st = payments_for($ng1, 3);
# a worker logs Redis going down once a second at most: the stall's timeout
# is only logged in a second after the last line of the outage before
# (while a signer took a second or more, that second had always passed)
{
    my @down = $ng1->error_log =~ m{^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) .*x402: redis \S+: }mg;
    my $last = $down[-1] // '';
    ok(wait_for(5, sub { POSIX::strftime('%Y/%m/%d %H:%M:%S', localtime) gt $last }),
       'a second after the last redis line of the outage');
}
$redis->pause;
my @lat;
for my $i (0 .. 2) {
    my $t = time;
    my $res = $ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $st[$i][0] },
                        timeout => 5);
    push @lat, time - $t;
    is($res->{status}, 503, "stalled redis, fail=closed: 503 ($i)");
}
ok((grep { $_ < 1.5 } @lat) == 3,
   sprintf('bounded latency (%.2f %.2f %.2f s, timeout=300ms)', @lat));
like($ng1->error_log, qr/command timed out|connect timed out/,
     'the timeout is logged');
$redis->resume;
# (a reservation sent before the stall may still land in redis: those
# payments stay refused until they expire, which is the safe side)
my ($fresh) = payments_for($ng1, 1);
ok(wait_for(5, sub {
    $ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $fresh->[0] })->{status}
        == 200 }), 'resumed: a new payment is served');
my $st0 = $ng1->get('/paid/', { 'PAYMENT-SIGNATURE' => $st[0][0] });
ok($st0->{status} == 200 || $st0->{status} == 402,
   "a payment refused during the stall: $st0->{status}, never 5xx now");
diag("payment refused during the stall, presented again: $st0->{status}");

# ---- a black hole: a socket that accepts and never answers ----

my $hole = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                 Listen => 64, ReuseAddr => 1)
    or die "listen: $!";
my $hport = $hole->sockport;
my $ngh = fleet(name => 'hole', redis_port => $hport);
my ($hp) = payments_for($ngh, 1);
my $t = time;
$r = $ngh->get('/paid/', { 'PAYMENT-SIGNATURE' => $hp->[0] }, timeout => 5);
my $el = time - $t;
is($r->{status}, 503, 'silent peer: 503');
ok($el < 1.5, sprintf('within the command timeout (%.2f s)', $el));
unlike($ngh->error_log, qr/exited on signal|\[alert\]/, 'no crash');
$ngh->stop;
close $hole;

$ng1->stop;
$ng2->stop;
$redis->stop;

# ---- password and db; a wrong password is the fail mode, logged ----

my $auth = X402::Redis->start;
my $aport = $auth->port;
$auth->cmd('CONFIG', 'SET', 'requirepass', 'sekret');
my $nga = fleet(name => 'auth', redis_port => $aport,
                redis_opts => 'password=sekret db=3 prefix=auth:');
my $ngb = fleet(name => 'badauth', redis_port => $aport,
                redis_opts => 'password=wrong timeout=300ms');
my @ap = payments_for($nga, 2);
is($nga->get('/paid/', { 'PAYMENT-SIGNATURE' => $ap[0][0] })->{status}, 200,
   'password and db: served');
my $k = `redis-cli -p $aport -a sekret --no-auth-warning -n 3 KEYS 'auth:*'`;
like($k, qr/^auth:[0-9a-f]{64}$/m, 'the record is in db 3 under the prefix');
is($ngb->get('/paid/', { 'PAYMENT-SIGNATURE' => $ap[1][0] })->{status}, 503,
   'wrong password: fail=closed 503');
like($ngb->error_log, qr/AUTH/, 'the AUTH failure is logged');
unlike($ngb->error_log, qr/exited on signal|\[alert\]/, 'no crash');
$nga->stop;
$ngb->stop;
$auth->stop;

done_testing();
