# Process lifecycle: the cache manager/loader processes (proxy_cache_path)
# run init_process too; 20 reloads under a light load; a graceful shutdown
# with queued async settlements and a Redis connection does not hang;
# master_process off (single mode).
use strict;
use warnings;
use lib 't/lib';
use POSIX ();
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => <<'EOS');
verify: default
settle: 502 {"error":"down"}
EOS
my $fport = $fac->port;

my $redis = X402::Redis->start;
my $rport = $redis->port;

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $fac->requests }

sub bad_lines {
    my ($log) = @_;
    return grep { /\[(alert|crit|emerg)\]|exited on signal|x402 .*LOST/ }
           split /\n/, $log;
}

my $status_loc = <<'EOC';
    location = /store {
        return 200 "$x402_pending\n";
    }
    location /cached/ {
        proxy_cache t80;
        proxy_pass http://127.0.0.1:$TEST_NGINX_PORT/;
    }
EOC

my $http = store_http_config(<<"EOC");
    proxy_cache_path cache levels=1 keys_zone=t80:1m
                     loader_threshold=50ms loader_sleep=10ms
                     loader_files=5 manager_sleep=50ms;
    x402_redis 127.0.0.1:$rport prefix=t80: fail=open
               timeout=300ms connect_timeout=300ms;
EOC

my $ng = start_nginx(
    workers => 2,
    http_config => $http,
    config => store_server_config($fport, settle => 'async',
                                  extra => $status_loc),
);

# the cache manager and loader are children of the master too, and run
# init_process: only the 2 workers may connect to Redis
ok(wait_for(5, sub { $ng->worker_pids >= 4 }),
   'master has ' . scalar($ng->worker_pids)
   . ' children (2 workers + cache manager + loader)');
sub redis_clients {
    # minus the connection asking
    my @c = split /\n/, $redis->cmd('CLIENT', 'LIST');
    return @c - 1;
}
ok(wait_for(3, sub { redis_clients() >= 2 }), 'the workers connect');
sleep 0.5;
is(redis_clients(), 2, 'only the workers connect to Redis');

my @p = payments_for($ng, 24);

my $r = $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] });
is($r->{status}, 200, 'a paid request is served (async settle)');
is($ng->get('/cached/index.html')->{status}, 200, 'the proxy cache works');
ok(wait_for(5, sub { settles() >= 1 }), 'the background settle ran');

$ng->reload;
is($ng->get('/paid/')->{status}, 402, '402 after a reload');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 200,
   'paid request after a reload');

# ---- 20 reloads under a light load ----

my $stop = time + 60;
pipe(my $rd, my $wr) or die "pipe: $!";
my $kid = fork // die "fork: $!";
if (!$kid) {
    close $rd;
    my ($n, $bad) = (0, 0);
    my $end = time + 60;
    local $SIG{TERM} = sub { print $wr "$n $bad\n"; close $wr;
                             POSIX::_exit(0) };
    while (time < $end) {
        my $res = X402::Test::http_get($ng->port, '/paid/');
        $n++;
        $bad++ unless ($res->{status} // 0) == 402;
        sleep 0.02;
    }
    print $wr "$n $bad\n";
    close $wr;
    POSIX::_exit(0);
}
close $wr;

my $reloads = 0;
for my $i (1 .. 20) {
    eval { $ng->reload; $reloads++; 1 } or last;
    # some reloads with a paid request in the middle
    if ($i % 5 == 0) {
        $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1 + $i / 5][0] });
    }
}
is($reloads, 20, '20 reloads completed');
kill 'TERM', $kid;
my $line = <$rd> // '0 0';
close $rd;
waitpid $kid, 0;
my ($n, $bad) = split ' ', $line;
ok($n > 20, "$n requests during the reloads");
is($bad, 0, 'each of them answered 402');
ok($ng->running, 'the master still runs');
is($ng->get('/paid/')->{status}, 402, 'and serves');

# ---- graceful shutdown with queued settlements ----

# the facilitator is down: settlements stay queued and are retried
for my $i (6 .. 9) {
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
       200, "served on credit ($i)");
}
# $x402_pending counts what this nginx holds; an entry whose attempt failed
# once Redis took it lives only in the fleet's queue (README, "Redis"):
# p[0], p[1] and these four at least (p[2..5] paid during the reloads too)
# are all owed there
sub owed_in_redis { $redis->cmd('ZCARD', 't80:owed') // 0 }
ok(wait_for(5, sub { owed_in_redis() >= 6 }),
   'settlements are pending (in the fleet queue)')
    or diag 'ZCARD ' . owed_in_redis() . ', $x402_pending '
            . ($ng->get('/store')->{body} // '?');

my $master = $ng->pid;
my @workers = $ng->worker_pids;
my $t = time;
kill 'QUIT', $master;
my $deadline = time + 10;
while (time < $deadline) {
    last unless grep { X402::Nginx::pid_alive($_) } $master, @workers;
    sleep 0.02;
}
my $took = time - $t;
ok(!grep({ X402::Nginx::pid_alive($_) } $master, @workers),
   sprintf('QUIT: every process gone in %.2fs', $took));
# issue 14: it tries them once more, for at most x402_async_drain (3s)
ok($took < 5, 'a graceful shutdown waits for queued settlements a bounded time');
# what is left is in the spool, or in Redis once it confirmed (t/40)
ok($ng->error_log =~ /exiting with \d+ async settlement\(s\) still owed, left in the spool/
   || ($redis->cmd('ZCARD', 't80:owed') // 0) >= 4,
   'and what it left is in the spool (logged) or in redis');
$ng->stop;

my @badl = bad_lines($ng->error_log);
is(scalar @badl, 0, 'no alert/crit/crash in the log')
    or diag join "\n", @badl[0 .. ($#badl > 9 ? 9 : $#badl)];

# ---- a retried settlement the facilitator holds past lingering_timeout ----

# The retry's own request has a connection nobody polls; nginx puts the
# lingering_timeout timer on it while the settle is in flight (it crashed
# the worker when that timer fired).
$fac->set_script("verify: default\nsettle: 502 {}\n");
my $slow = start_nginx(
    workers => 1,
    name => 'slow',
    http_config => store_http_config(),
    config => store_server_config($fport, settle => 'async',
                                  extra => "lingering_timeout 500ms;\n"
                                           . "location = /store { return "
                                           . "200 \"\$x402_pending\\n\"; }\n"),
);
my @q = payments_for($slow, 1);
is($slow->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[0][0] })->{status}, 200,
   'slow: served on credit');
ok(wait_for(5, sub { $slow->error_log =~ /failed \(attempt 1: / }),
   'slow: the first settle failed, the payment is pending');
$fac->set_script("verify: default\nsettle: delay=20000 default\n");
my $seen = settles();
ok(wait_for(5, sub { settles() > $seen }), 'slow: a retry is in flight');
my ($w1) = $slow->worker_pids;
sleep 1.5;
my ($w2) = $slow->worker_pids;
is($w2, $w1, 'slow: the worker outlives lingering_timeout');
unlike($slow->error_log, qr/exited on signal/, 'slow: no crash');
# QUIT waits for the settle in flight: proxy_read_timeout (5s) bounds it
$master = $slow->pid;
$t = time;
kill 'QUIT', $master;
$deadline = time + 10;
while (time < $deadline) {
    last unless grep { X402::Nginx::pid_alive($_) } $master, $w1;
    sleep 0.02;
}
$took = time - $t;
ok($took < 6, sprintf('slow: QUIT with a settle in flight took %.2fs '
                      . '(proxy_read_timeout 5s)', $took));
$slow->stop;
like($slow->error_log, qr/attempt \d: facilitator \/settle answered HTTP 504/,
     'slow: the timed-out attempt is requeued');
@badl = bad_lines($slow->error_log);
is(scalar @badl, 0, 'slow: no alert/crit/crash') or diag join "\n", @badl;

# ---- single mode: master_process off, daemon on ----

my $mod = module_path();
my $single = start_nginx(
    workers => 2,
    name => 'single',
    http_config => $http,
    config => store_server_config($fport, settle => 'async',
                                  extra => $status_loc),
);
# rewrite the generated nginx.conf for single-process mode
{
    my $path = $single->conf_path;
    open my $fh, '<', $path or die $!;
    local $/;
    my $c = <$fh>;
    close $fh;
    $single->stop;
    $c =~ s/master_process on;/master_process off;/ or die 'no master line';
    open $fh, '>', $path or die $!;
    print $fh $c;
    close $fh;
    my ($rc, $out) = X402::Nginx::_run($single->_cmd);
    is($rc, 0, 'single mode starts') or diag $out;
}
my $spid;
# not started by start(): the harness's END does not know it
END { kill 'KILL', $spid if $spid && X402::Nginx::pid_alive($spid) }
for (1 .. 200) {
    $spid = $single->pid;
    last if $spid && X402::Nginx::pid_alive($spid);
    sleep 0.02;
}
ok($spid, 'single mode wrote its pid');
sleep 0.2;
$single->{pid} = $spid;
is($single->get('/paid/')->{status}, 402, 'single mode: 402');
$fac->set_script("verify: default\nsettle: default\n");
is($single->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[12][0] })->{status},
   200, 'single mode: a paid request');
ok(wait_for(5, sub { ($single->get('/store')->{body} // 1) == 0 }),
   'single mode: the queue drains (the retry timer runs)');
$t = time;
$single->stop;
undef $spid unless X402::Nginx::pid_alive($spid);
ok(time - $t < 3, 'single mode stops at once');
@badl = bad_lines($single->error_log);
is(scalar @badl, 0, 'single mode: no alert/crit/crash')
    or diag join "\n", @badl;

$redis->stop;
$fac->stop;
done_testing();
