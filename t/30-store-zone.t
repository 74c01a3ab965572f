# The shared-memory store (x402_zone, and the implicit default zone): a
# payment is served once; a replay is refused with $x402_status "replayed",
# on the same worker, on another worker, concurrently, and across a reload;
# a refused payment stays refused; a payment whose settlement the
# facilitator could not answer may be presented again; x402_grant lets a
# settled payment be reused for its scope only.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => <<'EOS');
verify: default
settle: default
EOS
my $fport = $fac->port;

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $fac->requests }

# ---- implicit zone, one worker: served once, then replayed ----

{
    my $ng = start_nginx(
        workers => 1,
        http_config => store_http_config(),
        config => store_server_config($fport),
    );

    my ($p) = payments_for($ng, 1);
    my $h = { 'PAYMENT-SIGNATURE' => $p->[0] };

    my $r = $ng->get('/paid/', $h);
    is($r->{status}, 200, 'implicit zone: first presentation served');
    $r = $ng->get('/paid/', $h);
    is($r->{status}, 402, 'second presentation refused');
    $r = $ng->get('/other/', $h);
    isnt($r->{status}, 200, 'not served at another location either');

    wait_for(2, sub { my @x = log_records($ng); @x >= 4 });
    my @l = grep { $_->[0] eq '/paid/' && $_->[4] ne '-' } log_records($ng);
    is(scalar @l, 2, 'two paid presentations logged') or diag explain \@l;
    is($l[1][2], 'replayed', '$x402_status replayed') or diag explain \@l;
    is($l[0][2], 'settled', 'first one settled');
    is($l[0][3], 'zone', '$x402_store zone');
    is(settles(), 1, 'one settlement reached the facilitator');
    like($ng->error_log, qr/payment already settled/,
         'the log says why');
    $ng->stop;
}

# ---- two workers, explicit zone: concurrent presentations ----

{
    my $ng = start_nginx(
        workers => 2,
        http_config => store_http_config("    x402_zone payments:1m;\n"),
        config => store_server_config($fport),
    );

    my @pays = payments_for($ng, 20);
    my ($served, $refused, $other) = (0, 0, 0);

    for my $p (@pays) {
        my @st = concurrent_gets([($ng->port) x 4], '/paid/',
                                 { 'PAYMENT-SIGNATURE' => $p->[0] });
        my $ok = grep { $_ == 200 } @st;
        $served++ if $ok == 1;
        $other++ if $ok > 1;
        $refused += grep { $_ == 402 } @st;
    }

    is($served, 20, 'two workers: each of 20 payments served exactly once');
    is($other, 0, 'never served twice');
    is($refused, 60, 'every other presentation refused with 402');

    my %pids = map { $_ => 1 } $ng->worker_pids;
    is(scalar keys %pids, 2, 'two workers ran');

    # across a reload the records stay
    my ($p) = payments_for($ng, 1);
    my $h = { 'PAYMENT-SIGNATURE' => $p->[0] };
    is($ng->get('/paid/', $h)->{status}, 200, 'paid before the reload');
    $ng->reload;
    is($ng->get('/paid/', $h)->{status}, 402, 'replay after a reload: 402');
    is($pays[0] && $ng->get('/paid/', { 'PAYMENT-SIGNATURE'
                                        => $pays[0][0] })->{status},
       402, 'an older payment too');
    unlike($ng->error_log, qr/\[(alert|emerg|crit)\]/, 'no alerts');

    # a reload that resizes the zone carries the records over
    $ng->reload(http_config => store_http_config(
                                   "    x402_zone payments:2m;\n"));
    like($ng->error_log,
         qr/zone "payments" resized: 2[12] authorizations and 0 queued/,
         'resized: records carried over (logged)');
    is($ng->get('/paid/', $h)->{status}, 402,
       'replay after a resizing reload: 402');
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $pays[5][0] })->{status},
       402, 'an older payment too');
    my ($p2) = payments_for($ng, 1);
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p2->[0] })->{status},
       200, 'new payments are recorded in the new zone');
    $ng->stop;
}

# ---- refused and unanswered settlements ----

{
    my $ng = start_nginx(
        workers => 1,
        http_config => store_http_config(),
        config => store_server_config($fport),
    );

    my @p = payments_for($ng, 2);

    $fac->set_script(<<'EOS');
verify: default
settle: 200 {"success":false,"errorReason":"insufficient_funds","transaction":"","network":"{{network}}","payer":"{{payer}}"}
EOS
    my $h = { 'PAYMENT-SIGNATURE' => $p[0][0] };
    is($ng->get('/paid/', $h)->{status}, 402, 'settlement refused: 402');
    $fac->set_script("verify: default\nsettle: default\n");
    is($ng->get('/paid/', $h)->{status}, 402,
       'a refused payment stays refused');
    like($ng->error_log, qr/insufficient_funds/, 'with its reason');

    $fac->set_script("verify: default\nsettle: 502 {}\n");
    $h = { 'PAYMENT-SIGNATURE' => $p[1][0] };
    my $r = $ng->get('/paid/', $h);
    ok($r->{status} >= 500, "facilitator broken: $r->{status}");
    $fac->set_script("verify: default\nsettle: default\n");
    is($ng->get('/paid/', $h)->{status}, 200,
       'nothing was served or settled: the payment may be presented again');
    is($ng->get('/paid/', $h)->{status}, 402, 'and then it is used');
    $ng->stop;
}

# ---- grants ----

{
    my $ng = start_nginx(
        workers => 2,
        http_config => store_http_config(),
        config => store_server_config($fport, grant => '60s'),
    );

    my $before = settles();
    my ($p) = payments_for($ng, 1);
    my $h = { 'PAYMENT-SIGNATURE' => $p->[0] };

    is($ng->get('/paid/', $h)->{status}, 200, 'grant: paid');
    for (1 .. 5) {
        is($ng->get('/paid/', $h)->{status}, 200, "grant: reused ($_)");
    }
    is(settles() - $before, 1, 'one settlement for six responses');
    is($ng->get('/other/', $h)->{status}, 402,
       'not reusable at another location (scope)');

    my @l = log_records($ng);
    is((grep { $_->[2] eq 'reused' } @l), 5, '$x402_status reused x5');
    $ng->stop;
}

{
    # a short grant ends; a grant never outlives validBefore
    my $ng = start_nginx(
        workers => 1,
        http_config => store_http_config(),
        config => store_server_config($fport, grant => '4s'),
    );
    my ($p) = payments_for($ng, 1);
    my $h = { 'PAYMENT-SIGNATURE' => $p->[0] };
    # whole seconds: a grant of 4s lasts more than 3 s after the settlement
    # (2s could be just over 1 s, less than a loaded machine may take for
    # the next request)
    is($ng->get('/paid/', $h)->{status}, 200, 'short grant: paid');
    is($ng->get('/paid/', $h)->{status}, 200, 'reused within 4s');
    sleep 5;
    is($ng->get('/paid/', $h)->{status}, 402, 'refused after the grant');
    $ng->stop;
}

done_testing();
