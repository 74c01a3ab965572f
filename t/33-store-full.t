# A full zone: it never forgets an unexpired authorization. New payments are
# refused with 503 (logged, counted in $x402_store_full) while every record
# is unexpired; once records expire, the oldest expired ones are evicted
# (logged) and payments are accepted again, and replays of unexpired
# payments stay refused throughout.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");

my $ng = start_nginx(
    workers => 2,
    http_config => store_http_config("    x402_zone tiny:32k;\n"),
    config => store_server_config($fac->port, extra => <<'EOC'),
    location = /store {
        return 200 "$x402_store_full\n";
    }
EOC
);

# short-lived payments fill the zone; validBefore is taken when signed, so
# a slow signer start on a loaded machine does not eat the window
my @short = payments_for($ng, 150, valid_for => 25);
my ($vb) = sort { $b <=> $a }
           map { $_->[1]{payload}{authorization}{validBefore} } @short;
my @long = payments_for($ng, 3);

my ($ok, $full, $first_full) = (0, 0, undef);
for my $i (0 .. $#short) {
    my $st = $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $short[$i][0] })
             ->{status};
    if ($st == 200) {
        $ok++;
    } elsif ($st == 503) {
        $full++;
        $first_full //= $i;
        last if $full >= 3;
    } else {
        fail("unexpected status $st");
        last;
    }
}
ok($ok > 20, "$ok payments recorded in a 32k zone");
is($full, 3, 'then the zone is full: 503');
is($ng->get('/store')->{body}, "3\n", '$x402_store_full counts them');
like($ng->error_log, qr/zone "tiny" is full of unexpired authorizations/,
     'and the log says so');

# nothing recorded was forgotten
my $replayed = 0;
for my $i (0 .. $ok - 1) {
    $replayed++ if $ng->get('/paid/',
        { 'PAYMENT-SIGNATURE' => $short[$i][0] })->{status} == 402;
}
is($replayed, $ok, 'every recorded payment still refused as a replay');

# after validBefore (+ slack), the expired records make room
my $wait = $vb + 10 + 1.5 - time;
sleep $wait if $wait > 0;

is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $long[0][0] })->{status},
   200, 'after expiry: a new payment is accepted');
like($ng->error_log, qr/zone "tiny" full: evicted \d+ expired/,
     'the eviction is logged');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $long[0][0] })->{status},
   402, 'and recorded');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $long[1][0] })->{status},
   200, 'and the next');
unlike($ng->error_log, qr/exited on signal/, 'no crash');
$ng->stop;

# ---- a reload into a zone too small for what the running one holds ----
# A record left behind would let its payment be served again: the reload is
# refused, and the running zone keeps serving with every record.
{
    my $ng = start_nginx(
        workers => 2,
        http_config => store_http_config("    x402_zone shrink:96k;\n"),
        config => store_server_config($fac->port),
    );
    my @p = payments_for($ng, 130);
    my $served = 0;
    for my $p (@p) {
        $served++ if $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })
                         ->{status} == 200;
    }
    ok($served > 100, "$served payments recorded in a 96k zone");

    my $conf = $ng->prefix . '/conf/nginx.conf';
    open my $fh, '<', $conf or die "$conf: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    $text =~ s/x402_zone shrink:96k;/x402_zone shrink:32k;/ or die "no zone";
    open $fh, '>', $conf or die "$conf: $!";
    print $fh $text;
    close $fh;

    my $before = length $ng->error_log;
    my %old = map { $_ => 1 } $ng->worker_pids;
    kill 'HUP', $ng->pid;
    ok(wait_for(10, sub { substr($ng->error_log, $before) =~ /cannot hold/ }),
       'a reload into a smaller zone that cannot hold the records: refused');
    like(substr($ng->error_log, $before),
         qr/\[emerg\].*x402 zone "shrink" of 32768 bytes cannot hold what the running one holds: \d+ of $served live authorizations/,
         'with an emerg naming the zone, its size and what did not fit');
    sleep 0.5;
    is(scalar(grep { $old{$_} } $ng->worker_pids), 2,
       'the running workers go on');
    my $replayed = 0;
    for my $p (@p[0 .. $served - 1]) {
        $replayed++ if $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })
                           ->{status} == 402;
    }
    is($replayed, $served, 'every recorded payment is still refused as a replay');
    unlike($ng->error_log, qr/resized:/, 'nothing was carried over');
    $ng->stop;
}

# ---- ... but records of refused payments do not hold a smaller zone back ----
# They only spare the facilitator a second refusal, and a full zone evicts
# them first: a reload into a smaller zone carries over what must be kept
# (payments served, queued settlements) and leaves refused ones that do not
# fit behind, said in a warn.
{
    $fac->set_script("verify: default\nsettle: 200 {\"success\":false,"
        . "\"errorReason\":\"insufficient_funds\",\"transaction\":\"\","
        . "\"network\":\"{{network}}\",\"payer\":\"{{payer}}\"}\n");
    my $ng = start_nginx(
        workers => 1,
        http_config => store_http_config("    x402_zone shrink2:96k;\n"),
        config => store_server_config($fac->port),
    );
    my @p = payments_for($ng, 115);
    my $refused = 0;
    for my $p (@p[0 .. 99]) {
        $refused++ if $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })
                          ->{status} == 402;
    }
    is($refused, 100, '100 payments refused by /settle, recorded');
    $fac->set_script("verify: default\nsettle: default\n");
    my $served = 0;
    for my $p (@p[100 .. 114]) {
        $served++ if $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })
                         ->{status} == 200;
    }
    is($served, 15, '15 served');

    my $before = length $ng->error_log;
    ok(eval {
           $ng->reload(http_config =>
                       store_http_config("    x402_zone shrink2:32k;\n"));
           1
       }, 'a reload into a 32k zone goes through')
        or diag(substr($ng->error_log, $before));
    like(substr($ng->error_log, $before),
         qr/\[warn\].*zone "shrink2" resized: \d+ records of payments refused before anything was served did not fit and were left behind/,
         'the refused records left behind are said');
    my $replayed = 0;
    for my $p (@p[100 .. 114]) {
        $replayed++ if $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })
                           ->{status} == 402;
    }
    is($replayed, 15, 'every payment served is still refused as a replay');
    unlike($ng->error_log, qr/exited on signal/, 'no crash');
    $ng->stop;
}

done_testing();
