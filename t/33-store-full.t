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

done_testing();
