# A resizing reload while the old workers still take payments: a payment
# an old worker takes after the zone was copied is in the old zone only
# (the new one learns it from the spool seconds later), so the same
# payment presented to a new worker meanwhile was served on credit a
# second time. Now, until the old workers are gone, both zones settle
# before serving: the facilitator (here a fake chain: a nonce settles
# once) lets one of the two settle, and the payment is served once; and
# after they are gone, for as long as an authorization they took can be
# valid (maxTimeoutSeconds + 60 s: x402_verify local refuses longer ones),
# as this zone does not know those payments.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => "verify: default\nsettle: delay=1000 chain default\n");

my $extra = <<'EOC';
    location = /metrics {
        x402_metrics;
    }
EOC

my $mt = "    x402_max_timeout 7s;\n";    # valid for 67 s at most
my $ng = start_nginx(
    workers => 1,
    http_config => store_http_config("    x402_zone x402:1m;\n$mt"),
    config => store_server_config($fac->port, settle => 'async',
                                  extra => $extra),
);
my @p = payments_for($ng, 2);

sub status_of { ($_[0] // '') =~ m{^HTTP/1\.1 (\d+)} ? $1 : 0 }

# the request's header, all but its end, reaches the worker before the
# reload
my $c1 = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
    or die "connect: $!";
print $c1 "GET /paid/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "PAYMENT-SIGNATURE: $p[0][0]\r\n";
sleep 0.3;

# a reload that resizes the zone, by hand: the old worker stays while it
# holds the request
my %old = map { $_ => 1 } $ng->worker_pids;
$ng->{http_config} = store_http_config("    x402_zone x402:2m;\n$mt");
$ng->_write_files;
kill 'HUP', $ng->pid;
ok(wait_for(10, sub { grep { !$old{$_} } $ng->worker_pids }),
   'a new worker runs');
sleep 0.5;    # the old worker has closed its listening socket
like($ng->error_log, qr/zone "x402" resized/, 'the zone was resized');
ok(scalar(grep { $old{$_} } $ng->worker_pids), 'the old worker is still there');

# the header ends at the old worker; the same payment goes to a new one
print $c1 "\r\n";
my $c2 = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port)
    or die "connect: $!";
print $c2 "GET /paid/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . "PAYMENT-SIGNATURE: $p[0][0]\r\n\r\n";
my $r1 = do { local $/; <$c1> } // '';
my $r2 = do { local $/; <$c2> } // '';
close $c1;
close $c2;
my @st = (status_of($r1), status_of($r2));
is(scalar(grep { $_ == 200 } @st), 1,
   "served once, by one of the two zones (old worker: $st[0], new: $st[1])");
ok(!grep({ $_ != 200 && $_ != 402 } @st), 'the other answered 402');

# once the old worker is gone, still settled before serving, for as long
# as what it took can be valid; then on credit again
ok(wait_for(15, sub { !grep { $old{$_} } $ng->worker_pids }),
   'the old worker is gone');
sleep 0.3;
my ($q) = payments_for($ng, 1);
my $t0 = time;
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $q->[0] })->{status}, 200,
   'a new payment is served');
ok(time - $t0 >= 0.9, 'after its 1 s /settle');
like($ng->error_log, qr/\[notice\].*the workers of the zone "x402" replaced by the reload are gone: async payments settle before serving for 67 s more/,
     'the log says so, and for how long');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 402,
   'the first payment is not served again');
sleep 68;
($q) = payments_for($ng, 1);
$t0 = time;
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $q->[0] })->{status}, 200,
   'then a new payment is served');
ok(time - $t0 < 0.9, 'on credit (before its 1 s /settle)');
like($ng->error_log, qr/\[notice\].*zone "x402": what the workers replaced by the reload took has expired: async payments are served on credit again/,
     'and the log says so');
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts');
$ng->stop;

done_testing();
