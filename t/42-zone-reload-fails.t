# A reload that resizes the zone copies its queued settlements over and
# tells the old workers to stop retrying them ("superseded"): the new zone
# owes them now. When that reload then fails after the zone's init (a
# listen that cannot bind, or any later step of the new configuration), the
# running configuration goes on with the old zone: its workers must go on
# retrying what it owes, or an owed settlement is never sent.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use IO::Socket::INET;
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
    return $c[0] // -1;
}

my $ng = start_nginx(
    workers => 1,
    config => store_server_config($fport, settle => 'async', extra => $extra),
    http_config => store_http_config("    x402_zone x402:1m;\n"));
my @p = payments_for($ng, 2);

is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'A served on credit');
ok(wait_for(5, sub { settles() >= 1 && pending($ng) == 1 }), 'A owed');

# a port held by this test: the new configuration cannot listen on it
my $busy = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                 LocalPort => 0, Proto => 'tcp', ReuseAddr => 0)
    or die "listen: $!";
my $bport = $busy->sockport;

my %old = map { $_ => 1 } $ng->worker_pids;
my $before = length $ng->error_log;
$ng->{http_config} = store_http_config("    x402_zone x402:2m;\n"
    . "    server { listen 127.0.0.1:$bport; return 204; }\n");
$ng->_write_files;
kill 'HUP', $ng->pid;
ok(wait_for(15, sub { substr($ng->error_log, $before) =~ /still could not bind|bind\(\) to .* failed/ }),
   'the reload fails after the zone was resized');
like(substr($ng->error_log, $before), qr/zone "x402" resized/,
     'the zone had been carried over before the reload failed');
sleep 3;   # nginx tries to bind 5 times, 500 ms apart
is(scalar(grep { $old{$_} } $ng->worker_pids), 1, 'the running worker goes on');

# the facilitator is back: the running configuration settles what it owes
$fac->set_script("verify: default\nsettle: default\n");
my $n0 = settles();
ok(wait_for(25, sub { pending($ng) == 0 }),
   'A is settled by the running configuration after the failed reload')
    or diag('settle requests since: ' . (settles() - $n0)
            . ', pending ' . pending($ng));

# and a new async payment is retried too
$fac->set_script("verify: default\nsettle: 502 {}\n");
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 200,
   'B served on credit');
ok(wait_for(5, sub { pending($ng) == 1 }), 'B owed');
$fac->set_script("verify: default\nsettle: default\n");
ok(wait_for(25, sub { pending($ng) == 0 }), 'B is retried and settled');

for my $i (0, 1) {
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
       402, "payment $i is not served again");
}
unlike($ng->error_log, qr/exited on signal/, 'no crash');
$ng->stop;
close $busy;

# ---- a reload that renames the zone ----
# nginx gives a zone of another name a new, empty one: the records and the
# queue of the old one are carried over as on a resize (there is one x402
# zone a configuration), or every payment served so far could be presented
# again and be served again on credit, and what the old zone owes would
# only be drained by the old workers as they stop. x402_spool off: the
# spool's replay, which a new zone of another name runs, hides part of it.
{
    $fac->set_script("verify: default\nsettle: default\n");
    my $ng = start_nginx(
        workers => 1,
        config => store_server_config($fport, settle => 'async',
                                      extra => $extra),
        http_config => store_http_config("    x402_zone old:1m;\n    x402_spool off;\n"));
    my @p = payments_for($ng, 3);
    for my $i (0, 1) {
        is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
           200, "payment $i served");
    }
    ok(wait_for(10, sub { pending($ng) == 0 }), 'and settled');

    # one owed when the zone is renamed
    $fac->set_script("verify: default\nsettle: 502 {}\n");
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[2][0] })->{status},
       200, 'payment 2 served on credit');
    # its first attempt over: not leased to an old worker when copied
    ok(wait_for(5, sub { pending($ng) == 1
                         && $ng->error_log =~ /attempt 1: .*retrying in/ }),
       'payment 2 owed');

    $ng->reload(http_config =>
        store_http_config("    x402_zone new:1m;\n    x402_spool off;\n"));
    like($ng->error_log, qr/zone "new" resized: \d+ authorizations and 1 queued settlements carried over/,
         'the renamed zone carried the old one over');
    for my $i (0 .. 2) {
        is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[$i][0] })->{status},
           402, "payment $i is not served again after the rename");
    }
    is(pending($ng), 1, 'payment 2 still owed in the new zone');
    $fac->set_script("verify: default\nsettle: default\n");
    ok(wait_for(25, sub { pending($ng) == 0 }), 'and settled from it');
    unlike($ng->error_log, qr/exited on signal/, 'no crash');
    $ng->stop;
}

done_testing();
