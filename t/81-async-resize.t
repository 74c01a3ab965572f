# The queue of owed settlements survives a reload that resizes the zone
# (issue 14, item 5): nginx gives the new configuration a new zone; the
# entries are copied over, and what the old workers still change after
# that (a background settle that finishes, a settlement they queue) reaches
# the new zone through the spool, so nothing is lost or settled twice.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => "verify: default\nsettle: 502 {}\n");
my $fport = $fac->port;

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $fac->requests }

my $extra = <<'EOC';
    location = /store {
        return 200 "$x402_pending $x402_settle_lost $x402_settle_unknown\n";
    }
EOC

sub pending {
    my ($ng) = @_;
    my @c = split ' ', $ng->get('/store')->{body} // '';
    return $c[0];
}

my %cfg = (
    workers => 1,
    config => store_server_config($fport, settle => 'async', extra => $extra),
);
my $ng = start_nginx(%cfg,
    http_config => store_http_config("    x402_zone x402:1m;\n"));
my @p = payments_for($ng, 2);

# A owed (the facilitator fails)
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'A served on credit');
ok(wait_for(3, sub { settles() >= 1 && pending($ng) == 1 }), 'A owed');

# B's background settle is still running at the old worker when the zone
# is resized; it succeeds after the new zone copied B as owed
$fac->set_script("verify: default\nsettle: delay=2500 default\n");
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 200,
   'B served on credit');
my $t = time;
$ng->reload(http_config => store_http_config("    x402_zone x402:2m;\n"));
like($ng->error_log, qr/zone "x402" resized: \d+ authorizations and 2 queued settlements carried over/,
     'the resize carried both over');

ok(wait_for(20, sub { pending($ng) == 0 }),
   sprintf('nothing owed in the new zone after %.1f s', time - $t));
sleep 2;
my %n;
for my $q (grep { $_->{endpoint} eq 'settle' } $fac->requests) {
    $n{$q->{json}{paymentPayload}{payload}{authorization}{nonce}}++;
}
my $b_nonce = decode_b64_json($p[1][0])->{payload}{authorization}{nonce};
is($n{$b_nonce}, 1, 'B was settled once: the new workers did not send it again');
like($ng->error_log, qr/reconciled|settled after/, 'logged');
for my $i (0, 1) {
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
       402, "payment $i is not served again");
}
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts');
$ng->stop;

done_testing();
