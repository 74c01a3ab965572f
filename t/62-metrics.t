# x402_metrics: the Prometheus exposition, after 402s, payments, a replay,
# an invalid payment and a facilitator refusal, is accepted by a real
# Prometheus text parser from npm (js/parse-metrics.mjs:
# parse-prometheus-text-format plus a strict check of the 0.0.4 grammar),
# and every counter has the value the requests made. Two workers: the
# counters live in shared memory, whichever worker answered. Revenue is
# exact past 2^64 and 2^128, counters survive a reload, and an async
# settlement retried in the background counts (pending, retries, revenue).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use POSIX ();

plan skip_all => 'module not built' unless -f module_path();

my $ROOT = repo_root();
my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $USDC = '0x036CbD53842c5426634e7929541eC2318f3dCF7e';    # base-sepolia
my $BIG = '340282366920938463463374607431768211457';          # 2^128 + 1

# parse the exposition with node; (exit code, decoded JSON or stderr).
# One `parse-metrics.mjs --serve` answers every scrape of the file (a node
# start each cost more than the parse): a JSON string in, {rc, out} back.
my ($PARSER_PID, $PARSER_IN, $PARSER_OUT);
my $MAIN_PID = $$;
END {
    if ($PARSER_PID && $$ == $MAIN_PID) {
        local $?;
        close $PARSER_IN;    # EOF: it exits
        waitpid $PARSER_PID, 0;
    }
}

sub parse_metrics {
    my ($text) = @_;
    if (!$PARSER_PID) {
        pipe(my $in_r, $PARSER_IN) or die $!;
        pipe($PARSER_OUT, my $out_w) or die $!;
        $PARSER_PID = fork // die $!;
        if (!$PARSER_PID) {
            close $PARSER_IN;
            close $PARSER_OUT;
            open STDIN, '<&', $in_r or POSIX::_exit(111);
            open STDOUT, '>&', $out_w or POSIX::_exit(111);
            exec('node', "$ROOT/js/parse-metrics.mjs", '--serve') or POSIX::_exit(112);
        }
        close $in_r;
        close $out_w;
        $PARSER_IN->autoflush(1);
    }
    local $SIG{PIPE} = 'IGNORE';
    my $chars = $text;
    utf8::decode($chars);    # node reads the bytes as UTF-8 too
    print $PARSER_IN JSON::PP->new->ascii->allow_nonref->encode($chars), "\n";
    my $line = readline($PARSER_OUT);
    my $res = defined $line ? eval { json_decode($line) } : undef;
    return (255, "parse-metrics.mjs --serve gave no answer\n") unless $res;
    my ($rc, $out) = ($res->{rc}, $res->{out});
    return ($rc, $rc == 0 ? json_decode($out) : $out);
}

# value of one sample: name, {labels}
sub sample {
    my ($parsed, $name, %labels) = @_;
    S: for my $s (@{ $parsed->{samples} }) {
        next unless $s->{name} eq $name;
        next unless keys %{ $s->{labels} } == keys %labels;
        for (keys %labels) {
            next S unless defined $s->{labels}{$_}
                       && $s->{labels}{$_} eq $labels{$_};
        }
        return $s->{value};
    }
    return undef;
}

sub scrape {
    my ($ng) = @_;
    my $res = $ng->get('/metrics');
    is($res->{status}, 200, 'metrics: 200');
    like(X402::HTTP::header($res, 'Content-Type') // '',
         qr{^text/plain; version=0\.0\.4}, 'metrics: content type 0.0.4');
    my ($rc, $p) = parse_metrics($res->{body});
    is($rc, 0, 'metrics: the Prometheus parser accepts the exposition')
        or diag($p), diag($res->{body});
    return $rc == 0 ? $p : { samples => [] };
}

my $fac = start_facilitator(script => <<'EOS');
verify: default
settle: default
EOS
my $fport = $fac->port;

# a second facilitator for x402_settle async: the first /settle fails, the
# background retry succeeds
my $fac2 = start_facilitator(script => <<'EOS');
verify: default
settle: 503 {"error":"busy"}
settle: default
EOS
my $f2port = $fac2->port;

my $ng = start_nginx(
    workers => 2,
    user_files => ">>> paid/a\npaid\n>>> big/x\nbig\n>>> async/x\nasync\n",
    http_config => <<"EOC",
    x402_zone x402:1m;
EOC
    config => <<"EOC",
    x402_pay_to       $PAY_TO;
    x402_network      base-sepolia;
    x402_facilitator  /_x402/;

    location /paid/ {
        x402_price  0.001;
    }

    location /big/ {
        x402_price  $BIG atomic;
    }

    location /async/ {
        x402_price        0.003;
        x402_settle       async;
        x402_facilitator  /_x402b/;
    }

    location /_x402/ {
        internal;
        proxy_pass http://127.0.0.1:$fport/;
    }

    location /_x402b/ {
        internal;
        proxy_pass http://127.0.0.1:$f2port/;
    }

    location = /metrics {
        x402_metrics;
    }
EOC
);

# before anything: a valid exposition of zeros
my $m = scrape($ng);
is(sample($m, 'x402_payment_required_total', format => 'json'), '0',
   'zero 402s at start');
is(sample($m, 'x402_revenue_atomic_total', network => 'eip155:84532',
          asset => $USDC, pay_to => $PAY_TO), undef, 'no revenue at start');

# three 402s to agents
my $hdr;
for (1 .. 3) {
    my $r = $ng->get('/paid/a');
    is($r->{status}, 402, "unpaid request $_: 402");
    $hdr = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
}
ok($hdr, 'PAYMENT-REQUIRED header');

# one to a browser: the paywall page
my $rb402 = $ng->get('/paid/a', { 'User-Agent' => 'Mozilla/5.0 (X11)',
                                  Accept => 'text/html' });
is($rb402->{status}, 402, 'browser: 402');
like(X402::HTTP::header($rb402, 'Content-Type'), qr{^text/html}, 'browser: HTML');

# two payments, settled
my @pay = sign_payments(2, payment_required => $hdr);
for my $i (0, 1) {
    my $r = $ng->get('/paid/a', { 'PAYMENT-SIGNATURE' => $pay[$i][0] });
    is($r->{status}, 200, "payment $i: 200");
}

# the first one again: replayed
my $r = $ng->get('/paid/a', { 'PAYMENT-SIGNATURE' => $pay[0][0] });
isnt($r->{status}, 200, 'replayed payment not served');
my $replay_status = $r->{status};

# a broken signature: invalid, refused locally
my ($bad) = sign_payment(payment_required => $hdr, high_s => 1);
$r = $ng->get('/paid/a', { 'PAYMENT-SIGNATURE' => $bad });
is($r->{status}, 402, 'invalid payment: 402');

# amounts past 2^128, twice: revenue must be exact
my $rb = $ng->get('/big/x');
is($rb->{status}, 402, 'big: 402');
my @big = sign_payments(2, payment_required =>
                        X402::HTTP::header($rb, 'PAYMENT-REQUIRED'));
for my $i (0, 1) {
    my $res = $ng->get('/big/x', { 'PAYMENT-SIGNATURE' => $big[$i][0] });
    is($res->{status}, 200, "big payment $i: 200");
}

# a facilitator that refuses at /verify
$fac->set_script(<<'EOS');
verify: 200 {"isValid":false,"invalidReason":"invalid_exact_evm_insufficient_balance","payer":"{{payer}}"}
settle: default
EOS
my ($poor) = sign_payment(payment_required => $hdr);
$r = $ng->get('/paid/a', { 'PAYMENT-SIGNATURE' => $poor });
is($r->{status}, 402, 'refused by the facilitator: 402');

# the log phase runs after the response: give it a moment
select(undef, undef, undef, 0.3);

$m = scrape($ng);

# 402s to agents: 3 unpaid, the big one unpaid, the invalid signature,
# the facilitator's refusal, and the replay if the glue answers it with 402
my $json402 = sample($m, 'x402_payment_required_total', format => 'json');
is($json402, 6 + ($replay_status == 402 ? 1 : 0), "402s counted ($json402)");
is(sample($m, 'x402_payment_required_total', format => 'html'), '1',
   'one HTML 402 (the paywall)');

is(sample($m, 'x402_payments_total', outcome => 'settled'), '4',
   'four payments settled');
is(sample($m, 'x402_payments_total', outcome => 'replayed'), '1',
   'one replay');
is(sample($m, 'x402_payments_total', outcome => 'invalid'), '2',
   'two invalid (local signature, facilitator refusal)');
is(sample($m, 'x402_payment_rejections_total', outcome => 'invalid',
          reason => 'invalid_exact_evm_insufficient_balance'), '1',
   'rejection by reason: the facilitator\'s');
my $replay_reason = sample_reason($m, 'replayed');
is(sample($m, 'x402_payment_rejections_total', outcome => 'replayed',
          reason => $replay_reason), '1',
   "rejection of the replay counted (reason \"$replay_reason\")");
isnt($replay_reason, 'other', 'the replay reason is a known label');

is(sample($m, 'x402_settlements_total', result => 'ok'), '4',
   'four settlements ok');
is(sample($m, 'x402_settlements_total', result => 'failed'), '0',
   'no failed settlement');
is(sample($m, 'x402_facilitator_verify_duration_seconds_count'), '5',
   'five verify calls timed (4 paid + 1 refused)');
is(sample($m, 'x402_facilitator_settle_duration_seconds_count'), '4',
   'four settle calls timed');
is(sample($m, 'x402_facilitator_verify_duration_seconds_bucket', le => '+Inf'),
   '5', 'histogram +Inf bucket');
is(sample($m, 'x402_facilitator_errors_total', endpoint => 'verify'), '0',
   'no facilitator errors');

is(sample($m, 'x402_revenue_atomic_total', network => 'eip155:84532',
          asset => $USDC, pay_to => $PAY_TO),
   '680564733841876926926749214863536424914',
   'revenue: exact sum (2000 + 2 * (2^128 + 1))');
is(sample($m, 'x402_option_settlements_total', network => 'eip155:84532',
          asset => $USDC, pay_to => $PAY_TO, result => 'ok'), '4',
   'per option: four settlements ok');
is(sample($m, 'x402_option_settlements_total', network => 'eip155:84532',
          asset => $USDC, pay_to => $PAY_TO, result => 'failed'), '0',
   'per option: none failed');

# many concurrent 402s over both workers: every one counted, none twice
{
    my $base = sample($m, 'x402_payment_required_total', format => 'json');
    my ($procs, $each) = (8, 50);
    my @kids;
    for (1 .. $procs) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $bad = 0;
            for (1 .. $each) {
                my $res = $ng->get('/paid/a');
                $bad++ unless $res->{ok} && $res->{status} == 402;
            }
            POSIX::_exit($bad ? 1 : 0);
        }
        push @kids, $pid;
    }
    my $failed = 0;
    for (@kids) { waitpid $_, 0; $failed++ if $? }
    is($failed, 0, "$procs concurrent clients x $each requests: all 402");
    select(undef, undef, undef, 0.3);
    my $after = scrape($ng);
    is(sample($after, 'x402_payment_required_total', format => 'json') - $base,
       $procs * $each, 'every concurrent 402 counted exactly once');
    $m = $after;
}

# the facilitator goes away: an error, counted
$fac->stop;
my ($lost) = sign_payment(payment_required => $hdr);
$r = $ng->get('/paid/a', { 'PAYMENT-SIGNATURE' => $lost });
ok($r->{status} >= 500, 'facilitator down: 5xx');
select(undef, undef, undef, 0.3);
$m = scrape($ng);
is(sample($m, 'x402_payments_total', outcome => 'error'), '1',
   'payment error counted');
is(sample($m, 'x402_facilitator_errors_total', endpoint => 'verify'), '1',
   'facilitator error counted');

# a reload keeps the counters
$ng->reload;
$m = scrape($ng);
is(sample($m, 'x402_payments_total', outcome => 'settled'), '4',
   'counters survive a reload');

# x402_settle async: served on credit, the first settlement fails (kept for
# a retry: pending), the background retry settles it and the revenue counts
my $ra = $ng->get('/async/x');
is($ra->{status}, 402, 'async: 402');
my ($apay) = sign_payment(payment_required =>
                          X402::HTTP::header($ra, 'PAYMENT-REQUIRED'));
$ra = $ng->get('/async/x', { 'PAYMENT-SIGNATURE' => $apay });
is($ra->{status}, 200, 'async: served on credit');
select(undef, undef, undef, 0.3);
$m = scrape($ng);
is(sample($m, 'x402_settlements_total', result => 'pending'), '1',
   'async: the failed first settlement is pending');
is(sample($m, 'x402_settlements_pending'), '1', 'async: one pending now');
my $settled;
for (1 .. 40) {
    select(undef, undef, undef, 0.25);
    $m = scrape($ng);
    last if ($settled = sample($m, 'x402_settlements_pending')) eq '0';
}
is($settled, '0', 'async: settled by the background retry');
ok(sample($m, 'x402_settlement_retries_total') >= 1, 'async: a retry counted');
is(sample($m, 'x402_settlements_total', result => 'ok'), '5',
   'async: the retried settlement counted ok');
is(sample($m, 'x402_revenue_atomic_total', network => 'eip155:84532',
          asset => $USDC, pay_to => $PAY_TO),
   '680564733841876926926749214863536427914',
   'async: its 3000 added to the revenue');
is(sample($m, 'x402_option_settlements_total', network => 'eip155:84532',
          asset => $USDC, pay_to => $PAY_TO, result => 'pending'), '1',
   'per option: the first attempt pending');
is(sample($m, 'x402_option_settlements_total', network => 'eip155:84532',
          asset => $USDC, pay_to => $PAY_TO, result => 'ok'), '5',
   'per option: the retry settled it');

$ng->stop;
$fac2->stop;
unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts');

# the store's trouble: Redis unreachable, fail=open falls back to the
# zone (counted), fail=closed refuses with 503 (counted)
{
    my $dead = free_port();    # nothing listens there
    my $fac3 = start_facilitator(script => "verify: default\nsettle: default\n");
    my $f3 = $fac3->port;
    my $sn = start_nginx(
        name => 'store-trouble',
        user_files => ">>> open/x\nopen\n",
        http_config => "    x402_redis 127.0.0.1:$dead timeout=200ms fail=open;\n",
        config => <<"EOC",
    x402_pay_to       $PAY_TO;
    x402_network      base-sepolia;
    x402_facilitator  /_x402/;
    location /open/ { x402_price 0.001; }
    location /_x402/ { internal; proxy_pass http://127.0.0.1:$f3/; }
    location = /metrics { x402_metrics; }
EOC
    );
    my $q = $sn->get('/open/x');
    is($q->{status}, 402, 'store: 402');
    my ($sp) = sign_payment(payment_required =>
                            X402::HTTP::header($q, 'PAYMENT-REQUIRED'));
    $q = $sn->get('/open/x', { 'PAYMENT-SIGNATURE' => $sp });
    is($q->{status}, 200, 'store: fail=open serves from the zone');
    my $sm = scrape($sn);
    ok(sample($sm, 'x402_store_fallbacks_total') >= 1, 'store: fallback counted');
    # connection refused is a fallback, not a failed command
    is(sample($sm, 'x402_store_errors_total', backend => 'redis'), '0',
       'store: no redis command failed');
    is(sample($sm, 'x402_store_refusals_total'), '0', 'store: no refusal');
    is(sample($sm, 'x402_store_records'), '1', 'store: one record in the zone');
    $sn->stop;
    $fac3->stop;
}

# README's Metrics table names exactly the families served
{
    open my $fh, '<', "$ROOT/README.md" or die $!;
    my $readme = do { local $/; <$fh> };
    my ($section) = $readme =~ /^## Metrics\n(.*?)^## /ms;
    my %doc = map { $_ => 1 } ($section // '') =~ /^\|\s*`(x402_\w+)`/mg;
    my %served = map { $_->{name} => 1 } @{ $m->{families} || [] };
    is(join(' ', sort keys %doc), join(' ', sort keys %served),
       'README documents every metric family, and only those');
}

sub sample_reason {
    my ($p, $outcome) = @_;
    for my $s (@{ $p->{samples} }) {
        return $s->{labels}{reason}
            if $s->{name} eq 'x402_payment_rejections_total'
               && $s->{labels}{outcome} eq $outcome;
    }
    return '';
}

done_testing();
