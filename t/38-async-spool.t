# Owed settlements are durable (x402_settle async, issue 14): an async
# settlement not yet made is appended to the spool (x402_spool) before the
# response goes out; a graceful stop first tries to finish what is owed
# within x402_async_drain, then leaves the rest there; the next start
# replays the spool and settles them. A hard stop (TERM, KILL) loses nothing
# that was written. A settlement the facilitator refuses is final (issue 14:
# not retried until validBefore): it leaves the queue and the spool at once,
# counted as refused, and is logged with everything needed to settle it by
# hand.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);
use MIME::Base64 qw(decode_base64);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => <<'EOS');
verify: default
settle: 500 {"error":"down"}
EOS
my $fport = $fac->port;

# settle requests answered with success (sent after $ok_since), by nonce
my $ok_since = 9e9;
sub settled_nonces {
    my %n;
    for my $q (grep { $_->{endpoint} eq 'settle' } $fac->requests) {
        next unless $q->{t} >= $ok_since;
        $n{$q->{json}{paymentPayload}{payload}{authorization}{nonce}}++;
    }
    return \%n;
}

my $status_loc = <<'EOC';
    location = /store {
        return 200 "$x402_pending $x402_settle_lost $x402_settle_refused\n";
    }
    location = /metrics {
        x402_metrics;
    }
EOC

sub counters {
    my ($ng) = @_;
    my $b = $ng->get('/store')->{body} // '';
    return [split ' ', $b];
}

sub nonce_of {
    my ($hdr) = @_;
    my $p = decode_b64_json($hdr);
    return $p->{payload}{authorization}{nonce};
}

my %cfg = (
    workers => 2,
    http_config => store_http_config("    x402_async_drain 1s;\n"),
    config => store_server_config($fport, settle => 'async',
                                  extra => $status_loc),
);

# one round: three owed, a stop of the given kind, a start that settles them
sub round {
    my ($how) = @_;
    $fac->set_script("verify: default\nsettle: 500 {\"error\":\"down\"}\n");
    $ok_since = 9e9;
    my $ng = start_nginx(%cfg, name => "spool-$how");
    my @p = payments_for($ng, 3);
    for my $i (0 .. 2) {
        is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
           200, "$how: payment $i served on credit");
    }
    ok(wait_for(5, sub { (counters($ng)->[0] // 0) == 3 }),
       "$how: three settlements owed");
    ok(-s $ng->prefix . '/x402_spool/settlements',
       "$how: in the spool, by default under the prefix");

    my $t = time;
    if ($how eq 'quit') {
        $ng->stop;
        ok(time - $t < 4, sprintf('quit: bounded drain (%.1f s)', time - $t));
        like($ng->error_log,
             qr/3 async settlement\(s\) still owed, left in the spool/,
             'quit: what is left is logged at exit');
    } elsif ($how eq 'term') {
        my $pid = $ng->pid;
        kill 'TERM', $pid;
        wait_for(5, sub { !X402::Nginx::pid_alive($pid) });
        $ng->{pid} = undef;
    } else {
        my $pid = $ng->pid;
        my @w = $ng->worker_pids;
        kill 'KILL', $pid, @w;
        wait_for(5, sub { !grep { X402::Nginx::pid_alive($_) } $pid, @w });
        $ng->{pid} = undef;
    }
    is_deeply([grep { $_ } map { settled_nonces()->{nonce_of($_->[0])} } @p],
              [], "$how: none settled while the facilitator fails");

    $ok_since = time;
    $fac->set_script("verify: default\nsettle: default\n");
    $ng->start;
    ok(wait_for(10, sub {
           my $s = settled_nonces();
           3 == grep { $s->{nonce_of($_->[0])} } @p }),
       "$how: a start resumes them: all three settled");
    ok(wait_for(3, sub { (counters($ng)->[0] // -1) == 0 }),
       "$how: nothing owed any more");
    like($ng->error_log, qr/resumed 3 async settlement\(s\) from the spool/,
         "$how: the resume is logged");
    sleep 1.5;
    my $s = settled_nonces();
    is_deeply([map { $s->{nonce_of($_->[0])} } @p], [1, 1, 1],
              "$how: each settled exactly once");
    for my $i (0 .. 2) {
        is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
           402, "$how: payment $i not served again");
    }
    $ng->stop;

    # a start after everything is settled resumes nothing
    $ng->start;
    sleep 1;
    is(counters($ng)->[0], 0, "$how: a second start owes nothing");
    $ng->stop;
    my @resumed = $ng->error_log =~ /resumed (\d+) async settlement/g;
    is_deeply([grep { $_ } @resumed], [3], "$how: resumed only once");
}

round($_) for qw(quit term kill);

# ---- refused: final at the first refusal, logged with its body ----

# the /settle body logged for a payment, reassembled from its parts
sub logged_body {
    my ($log, $hex) = @_;
    my %part;
    while ($log =~ /payment $hex: POST (\S+) with the body \[(\d+)\/(\d+)\]: (.*?)(?: while [a-z ]+)?(?:, client: |\n)/g) {
        $part{$2} = $4;
    }
    return join '', map { $part{$_} } sort { $a <=> $b } keys %part;
}

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $fac->requests }

$fac->set_script(<<'EOS');
verify: default
settle: 200 {"success":false,"errorReason":"insufficient_funds","transaction":"","network":"{{network}}"}
EOS
my $ng = start_nginx(%cfg, name => 'spool-refused');
my ($short) = payments_for($ng, 1);
my $before = settles();
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $short->[0] })->{status},
   200, 'served on credit');
ok(wait_for(5, sub { (counters($ng)->[2] // 0) == 1 }),
   '$x402_settle_refused 1 after the first refusal');
is(counters($ng)->[0], 0, 'no longer pending');
is(counters($ng)->[1], 0, 'not counted as given up');
sleep 2.5;
is(settles() - $before, 1, 'not retried');
my ($hex) = $ng->error_log
    =~ /async settlement of payment ([0-9a-f]{64}) refused by the facilitator \(attempt 1: [^)]*\): final, not retried/;
ok($hex, 'the refusal is logged as final');
my $body = eval { json_decode(logged_body($ng->error_log, $hex // 'x')) } || {};
is($body->{paymentPayload}{payload}{authorization}{nonce}, nonce_of($short->[0]),
   'with its whole /settle body: the payment payload');
is($body->{paymentRequirements}{payTo}, $PAY_TO, 'and the requirements');
like($ng->error_log, qr/payment $hex: POST \/_x402\/settle with the body/,
     'and where it goes');
like($ng->get('/metrics')->{body} // '',
     qr/^x402_async_settlements_total\{outcome="refused"\} 1$/m,
     'metrics: outcome refused');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $short->[0] })->{status},
   402, 'its replay is refused');
my $spool = eval { local (@ARGV, $/) = ($ng->prefix . '/x402_spool/settlements'); <> } // '';
like($spool, qr/^done $hex refused$/m, 'the spool says done ... refused');
$ng->stop;
$ng->start;
sleep 1;
is(counters($ng)->[0], 0, 'a refused settlement is not resumed');
$ng->stop;

# ---- the spool's format: the /settle body as JSON, to the end of the
# line; lines of older spools (base64 body) are replayed the same ----

sub spool_text {
    my ($ng) = @_;
    return eval { local (@ARGV, $/) = ($ng->prefix . '/x402_spool/settlements'); <> } // '';
}

$fac->set_script("verify: default\nsettle: 500 {\"error\":\"down\"}\n");
$ng = start_nginx(%cfg, name => 'spool-format');
my ($fp) = payments_for($ng, 1);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $fp->[0] })->{status}, 200,
   'format: served on credit');
ok(wait_for(3, sub { (counters($ng)->[0] // 0) == 1 }), 'format: owed');
my ($line) = grep { /^owe / } split /\n/, spool_text($ng);
# <expire>+<keep>: the record is kept for the window (300 + 60 s) once
# settled, whenever that is
like($line // '', qr/^owe [0-9a-f]{64} \d+ \d+\+360 \d+ \S+ [01] [A-Za-z0-9+\/=]+ \{"x402Version":/,
     'format: the body is written as JSON');
my @f = split / /, $line // '', 9;
# this payment's /settle (its first attempt starts after the response, so
# the owed count can come before the facilitator has seen it)
my $mine = sub {
    [grep { $_->{endpoint} eq 'settle'
            && ($_->{json}{paymentPayload}{payload}{authorization}{nonce} // '')
               eq nonce_of($fp->[0]) } $fac->requests]->[-1]
};
wait_for(5, sub { $mine->() });
my $sent = ($mine->() // {})->{body} // '';
is($f[8], $sent, 'format: the JSON is the /settle body, byte for byte');
{
    my @pids = ($ng->pid, $ng->worker_pids);
    kill 'KILL', @pids;
    wait_for(5, sub { !grep { X402::Nginx::pid_alive($_) } @pids });
    $ng->{pid} = undef;
}

# the same payment as an older spool wrote it (the body in base64), and
# a body with spaces in a line without <keep> (older spools)
use MIME::Base64 qw(encode_base64);
use JSON::PP;
my $spaced = JSON::PP->new->canonical->space_after->encode(JSON::PP->new->decode($f[8]));
my $t = time + 3600;
open my $sfh, '>', $ng->prefix . '/x402_spool/settlements' or die $!;
print $sfh join(' ', @f[0 .. 7], encode_base64($f[8], '')), "\n";
print $sfh join(' ', 'owe', 'ab' x 32, int $t, int $t, 0, 0, 0,
                encode_base64('/_x402/settle', ''), $spaced), "\n";
close $sfh;
$fac->set_script("verify: default\nsettle: default\n");
$ok_since = time;
$ng->start;
ok(wait_for(10, sub { (counters($ng)->[0] // -1) == 0 }), 'format: both settled after a start');
my @bodies = map { $_->{body} } grep { $_->{endpoint} eq 'settle' && $_->{t} >= $ok_since }
             $fac->requests;
ok((grep { $_ eq $f[8] } @bodies), 'format: the base64 line sent its body as it was');
ok((grep { $_ eq $spaced } @bodies), 'format: a JSON body with spaces sent whole');
unlike($ng->error_log, qr/malformed record/, 'format: no line taken for malformed');
$ng->stop;

# ---- x402_spool off: nothing on disk, as before ----

$fac->set_script("verify: default\nsettle: 500 {\"error\":\"down\"}\n");
$ng = start_nginx(%cfg, name => 'spool-off',
    http_config => store_http_config("    x402_spool off;\n"));
my ($q) = payments_for($ng, 1);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $q->[0] })->{status}, 200,
   'off: served on credit');
ok(wait_for(3, sub { (counters($ng)->[0] // 0) == 1 }), 'off: owed');
ok(!-e $ng->prefix . '/x402_spool', 'off: no spool directory');
$ng->stop;
like($ng->error_log, qr/1 async settlement\(s\) still owed, in shared memory only \(x402_spool off\)/,
     'off: a stop says where they are');

# ---- no spool directory where nothing can be owed ----

$ng = start_nginx(name => 'spool-unused',
                  config => "    location / { return 200 \"ok\\n\"; }\n");
is($ng->get('/')->{status}, 200, 'unused: x402 loaded, not configured');
ok(!-e $ng->prefix . '/x402_spool', 'unused: no spool directory');
$ng->stop;

$ng = start_nginx(%cfg, name => 'spool-sync',
    config => store_server_config($fport, settle => 'sync',
                                  extra => $status_loc));
ok(!-e $ng->prefix . '/x402_spool', 'sync only: no spool directory');
$ng->stop;

done_testing();
