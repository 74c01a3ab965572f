# Owed settlements kept in Redis (x402_settle async with x402_redis, issue
# 14): any nginx of the fleet finishes what another one owes. Two nginx share
# a real redis-server. A owes three settlements (its facilitator fails) and
# is killed with SIGKILL; B, whose facilitator answers, settles all three,
# each exactly once; A started again settles none of them a second time.
# With Redis down when a settlement is owed (fail=open), the spool keeps it
# and the host settles it itself.
#
# Issue 13: an entry is one string written with plain commands (SET PX,
# ZADD), rewritten with its attempts once rescheduled; a removal is ZREM
# and DEL. A's entries are of that format, one is turned into the hash the
# earlier version wrote (an upgrade): B settles both kinds. Paid requests
# that settle at once run no script in Redis and leave no key behind.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'no redis-server' unless `which redis-server` =~ /\S/;

my $redis = X402::Redis->start;
my $rport = $redis->port;

# A's facilitator fails every /settle; B's answers
my $fac_a = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");
my $fac_b = start_facilitator(script => "verify: default\nsettle: default\n");

# successful /settle calls at either facilitator, by nonce
my $a_ok_since = 9e9;
my $b_ok_since = 0;
sub settled_nonces {
    my %n;
    for my $q (grep { $_->{endpoint} eq 'settle' } $fac_a->requests) {
        next unless $q->{t} >= $a_ok_since;
        $n{$q->{json}{paymentPayload}{payload}{authorization}{nonce}}++;
    }
    for my $q (grep { $_->{endpoint} eq 'settle' } $fac_b->requests) {
        next unless $q->{t} >= $b_ok_since;
        $n{$q->{json}{paymentPayload}{payload}{authorization}{nonce}}++;
    }
    return \%n;
}

sub nonce_of { decode_b64_json($_[0])->{payload}{authorization}{nonce} }

my $status_loc = <<'EOC';
    location = /store {
        return 200 "$x402_pending $x402_settle_lost $x402_settle_refused\n";
    }
    location = /metrics {
        x402_metrics;
    }
EOC

sub pending { (split ' ', $_[0]->get('/store')->{body} // '')[0] }

sub node {
    my ($name, $fport, $redis_args) = @_;
    return (
        name => $name,
        workers => 2,
        http_config => store_http_config(
            "    x402_redis 127.0.0.1:$rport prefix=t40: $redis_args;\n"
            . "    x402_async_drain 1s;\n"),
        config => store_server_config($fport, settle => 'async',
                                      extra => $status_loc),
    );
}

sub owed { $redis->cmd('ZCARD', 't40:owed') }

# INFO commandstats: { command => calls }
sub cmdstats {
    my %c = ($redis->cmd('INFO', 'commandstats')
             =~ /^cmdstat_(\w+):calls=(\d+)/mg);
    return \%c;
}
sub owed_keys { scalar @{ $redis->cmd('KEYS', 't40:owed*') // [] } }

# a string entry: [meta, uri length, attempts, lost, error, uri, body]
sub entry {
    return [] unless $redis->cmd('TYPE', "t40:owed:$_[0]") eq 'string';
    my $v = $redis->cmd('GET', "t40:owed:$_[0]") // return [];
    my ($m, $l, $rest) = $v =~ /\A([^\n]*)\n([^\n]*)\n(.*)\z/s or return [];
    my ($n, $a, $u, $rl) = $l =~ /^(\d+)(?: (\d+) ([01]) (\d+))?$/
        or return [];
    ($a, $u, $rl) = (1, 0, 0) unless defined $a;
    return [$m, $n, $a, $u, substr($rest, 0, $rl), substr($rest, $rl, $n),
            substr($rest, $rl + $n)];
}
sub owed_list { join ' ', map { "$_:" . $redis->cmd('TYPE', $_) }
                          @{ $redis->cmd('KEYS', 't40:owed*') // [] } }

# ---- A owes three, dies; B settles them ----

my $a = start_nginx(node('fleet-a', $fac_a->port, ''));
my @p = payments_for($a, 3);
for my $i (0 .. 2) {
    is($a->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
       200, "A: payment $i served on credit");
}
ok(wait_for(5, sub { (owed() // 0) == 3 }), 'three owed settlements in redis');
ok(wait_for(5, sub { ($fac_a->requests // 0) >= 3 }), 'A tried them');
my $spool = eval { local (@ARGV, $/) = ($a->prefix . '/x402_spool/settlements'); <> } // '';
is(scalar(() = $spool =~ /^done [0-9a-f]{64} redis$/mg), 3,
   "A's spool says redis holds them");

# the entries: strings; A's failed attempts rescheduled them (rewritten)
my @ids = sort @{ $redis->cmd('ZRANGE', 't40:owed', 0, -1) };
is(scalar(grep { $redis->cmd('TYPE', "t40:owed:$_") eq 'string' } @ids), 3,
   'each entry is one string');
ok(wait_for(5, sub { 3 == grep { (entry($_)->[4] // '') eq 'down' } @ids }),
   'rescheduled: each rewritten with its attempts and error')
    or diag(join ' ', map { (entry($_)->[1] ? $redis->cmd('GET', "t40:owed:$_")
                                           : '-') } @ids);
is(join(' ', @{ entry($ids[0]) }[2, 4, 5]), '1 down /_x402/settle',
   'an entry: 1 attempt, the error, the settle location');
like(entry($ids[0])->[6], qr/^\{.*"paymentPayload"/s, 'and the /settle body');
ok(!grep({ $redis->cmd('PTTL', "t40:owed:$_") < 0 } @ids),
   'every entry has a TTL');
is(owed_keys(), 4, 'one key per entry, and the set');

# one turned into what the earlier version wrote: a hash (upgrade)
{
    my $k = "t40:owed:$ids[0]";
    # (already one under the earlier version: the tests below still run)
    my ($m, $n, $a, $u, $r, $uri, $body) = @{ entry($ids[0]) };
    if ($n) {
        $redis->cmd('DEL', $k);
        $redis->cmd('HMSET', $k, m => $m, a => $a, u => $u, r => $r,
                    uri => $uri, b => $body);
        $redis->cmd('PEXPIRE', $k, 86400000);
    }
    is($redis->cmd('TYPE', $k), 'hash', 'one entry in the old hash format');
}

my $pid = $a->pid;
my @w = $a->worker_pids;
kill 'KILL', $pid, @w;
ok(wait_for(5, sub { !grep { X402::Nginx::pid_alive($_) } $pid, @w }),
   'A killed (SIGKILL)');
$a->{pid} = undef;
is_deeply([grep { $_ } map { settled_nonces()->{nonce_of($_->[0])} } @p], [],
          'none settled while A owed them');
is(owed(), 3, 'still owed in redis after A died');

# B logs at debug: the debug line of every timer it arms (the claim's
# included) reads the timer's data, which must point somewhere valid
# B's facilitator fails at first: B claims them, fails, reschedules them in
# Redis (the old hash updated in place, the strings rewritten)
$fac_b->set_script("verify: default\nsettle: 500 {\"error\":\"busy\"}\n");
$b_ok_since = 9e9;
my $b = start_nginx(node('fleet-b', $fac_b->port, ''), log_level => 'debug');
ok(wait_for(30, sub {
       ($redis->cmd('HGET', "t40:owed:$ids[0]", 'a') // '') eq '2'
       && 2 == grep { (entry($_)->[2] // '') eq '2'
                      && entry($_)->[4] =~ /busy/ } @ids[1, 2] }),
   'B rescheduled each after its failed attempt (hash and strings)')
    or diag(join ' ', $redis->cmd('HGET', "t40:owed:$ids[0]", 'a') // '-',
            map { (entry($_)->[1] ? $redis->cmd('GET', "t40:owed:$_")
                                           : '-') } @ids[1, 2]);
like($redis->cmd('HGET', "t40:owed:$ids[0]", 'r') // '', qr/busy/,
     "the hash's last error is B's");
ok(!grep({ $redis->cmd('PTTL', $_) < 0 }
         map { "t40:owed:$_" } @ids),
   'every key still has a TTL');
is(owed(), 3, 'still three owed');
$b_ok_since = time;
$fac_b->set_script("verify: default\nsettle: default\n");
ok(wait_for(40, sub {
       my $s = settled_nonces();
       3 == grep { $s->{nonce_of($_->[0])} } @p }),
   'B settles all three that A owed');
ok(wait_for(5, sub { owed() == 0 }), 'nothing owed in redis any more');
ok(wait_for(5, sub { owed_keys() == 0 }),
   'no entry left (old format included)')
    or diag(owed_list());
like($b->error_log, qr/owed settlement\(s\) claimed from redis/,
     'B logs the claim');
like($b->get('/metrics')->{body} // '',
     qr/^x402_async_settlements_total\{outcome="settled"\} 3$/m,
     'B counts three settled');
for my $i (0 .. 2) {
    is($b->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
       402, "B: payment $i not served again");
}

# B serves and settles at once: plain commands, no script; nothing left
{
    my @q = payments_for($b, 6);
    my $c0 = cmdstats();
    for my $i (0 .. $#q) {
        is($b->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[$i][0] })->{status},
           200, "B: paid request $i served on credit");
    }
    ok(wait_for(10, sub {
           my $s = settled_nonces();
           6 == grep { $s->{nonce_of($_->[0])} } @q }),
       'B settled the six');
    ok(wait_for(5, sub { owed() == 0 && owed_keys() == 0 }),
       'their entries left redis: no owed set, no entry key')
        or diag(owed_list());
    my $c1 = cmdstats();
    my %d = map { $_ => ($c1->{$_} // 0) - ($c0->{$_} // 0) } keys %$c1;
    # every script run was a claim (one ZRANGEBYSCORE each): none per payment
    is($d{eval} // 0, $d{zrangebyscore} // 0,
       'no script ran for them (each EVAL a claim)')
        or diag(join ' ', map { "$_=$d{$_}" } sort keys %d);
    is($d{hmset} // 0, 0, 'no hash written');
    is($d{pexpire} // 0, 0, 'no separate PEXPIRE');
    ok(($d{zadd} // 0) >= 6 && ($d{zrem} // 0) >= 6, 'ZADD and ZREM each');
    # the reserves' epoch check (one GET per write; these come one at a time)
    ok(($d{get} // 0) <= 6, 'the epoch record read once per reserve at most');
}

# A starts again, its facilitator answering now: nothing to settle again
$a_ok_since = time;
$fac_a->set_script("verify: default\nsettle: default\n");
$a->start;
sleep 3;
my $s = settled_nonces();
is_deeply([map { $s->{nonce_of($_->[0])} } @p], [1, 1, 1],
          'each settled exactly once, A restarted included');
is(pending($a), 0, 'A owes nothing after its restart');
unlike($a->error_log, qr/resumed [1-9]\d* async settlement/,
       'A resumed nothing from its spool');
unlike($a->error_log . $b->error_log, qr/\[alert\]|exited on signal/,
       'no alerts');
$a->stop;
$b->stop;

# ---- Redis down when a settlement is owed: the spool keeps it ----

$fac_a->set_script("verify: default\nsettle: 500 {\"error\":\"down\"}\n");
$a_ok_since = 9e9;
my $c = start_nginx(node('fleet-c', $fac_a->port, 'fail=open'));
my ($q) = payments_for($c, 1);
$redis->stop;
is($c->get('/paid/', { 'PAYMENT-SIGNATURE' => $q->[0] })->{status}, 200,
   'redis down (fail=open): served on credit');
ok(wait_for(5, sub { (pending($c) // 0) == 1 }), 'owed here, in the spool');
$spool = eval { local (@ARGV, $/) = ($c->prefix . '/x402_spool/settlements'); <> } // '';
like($spool, qr/^owe /m, 'the spool has it');
unlike($spool, qr/ redis$/m, 'and keeps it');
$c->stop;
$redis = X402::Redis->start(port => $rport);
$a_ok_since = time;
$fac_a->set_script("verify: default\nsettle: default\n");
$c->start;
ok(wait_for(10, sub { settled_nonces()->{nonce_of($q->[0])} }),
   'resumed from the spool and settled');
sleep 1.5;
is(settled_nonces()->{nonce_of($q->[0])}, 1, 'exactly once');
$c->stop;
$redis->stop;

done_testing();
