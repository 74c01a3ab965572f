# Throttling non-payers with stock limit_req keyed on $x402_status, with
# conf-examples/throttle-non-payers.conf as shipped (30r/m, burst 10,
# nodelay): a client that keeps ignoring its 402s gets 503 from limit_req
# after the burst, while paying clients from the same address are never
# throttled, and free locations are untouched.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::Examples qw(example_conf);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $prefix = servroot() . '/throttle';
my ($conf, $ports) = example_conf(repo_root() . '/conf-examples/throttle-non-payers.conf',
                                  prefix => $prefix, fac_port => $fac->port);
# a free location next to the priced one, same limit_req
$conf =~ s{(location /api/ \{)}{location /free/ {\n            limit_req zone=x402_unpaid burst=10 nodelay;\n        }\n\n        $1};
my $ng = X402::Nginx->new(raw_conf => $conf, prefix => $prefix,
                          name => 'throttle');
$ng->{port} = $ports->[0];
for my $d ('api', 'free') {
    mkdir "$prefix/html/$d";
    open my $fh, '>', "$prefix/html/$d/x" or die $!;
    print $fh "$d\n";
    close $fh;
}
$ng->start;

# every payment is signed before the throttling starts: signing takes
# seconds on a loaded machine, long enough for limit_req to refill a token
my $underpaid = sign_payment(network => 'base', amount => '999',
                             pay_to => '0x209693Bc6afc0C5328bA36FaF03C514EF312287C');
# the requirement is the location's: take it from a 402 of another
# location's twin (the throttled request carries none), i.e. build it
my @pay = sign_payments(12, network => 'base', amount => '1000',
                        pay_to => '0x209693Bc6afc0C5328bA36FaF03C514EF312287C',
                        resource => 'http://127.0.0.1/api/x');

# the ignoring client: 1 + burst 402s, then 503s
my @st;
for (1 .. 15) {
    push @st, $ng->get('/api/x')->{status};
}
is(join(' ', @st[0 .. 10]), join(' ', (402) x 11),
   'unpaid: 402 up to the burst');
is(join(' ', @st[11 .. 14]), join(' ', (503) x 4),
   'unpaid: then 503 from limit_req');

# paying clients, same address, right after: never throttled
my $r402 = $ng->get('/api/x', { 'User-Agent' => 'agent' });
is($r402->{status}, 503, 'still throttled without payment');

# a junk payment header, or one failing the local checks, is no way around
# the limit: $x402_status is "invalid" in preaccess already
is($ng->get('/api/x', { 'X-PAYMENT' => 'junk' })->{status}, 503,
   'junk X-PAYMENT: still throttled');
is($ng->get('/api/x', { 'PAYMENT-SIGNATURE' => 'bm90IGpzb24=' })->{status}, 503,
   'junk PAYMENT-SIGNATURE: still throttled');
is($ng->get('/api/x', { 'PAYMENT-SIGNATURE' => $underpaid })->{status},
   503, 'wrong amount: still throttled');

my @paid;
for my $p (@pay) {
    my $r = $ng->get('/api/x', { 'PAYMENT-SIGNATURE' => $p->[0] });
    push @paid, $r->{status};
}
is(join(' ', @paid), join(' ', (200) x 12), 'paying: 12 x 200, no throttling');

# free locations are not counted at all
my @free = map { $ng->get('/free/x')->{status} } 1 .. 15;
is(join(' ', @free), join(' ', (200) x 15), 'free location untouched');

$ng->stop;
$fac->stop;
my $log = $ng->access_log;
$log = do { local $/; open my $fh, '<', "$prefix/logs/access.log"; <$fh> } // '';
like($log, qr/" 503 x402=required/, 'access log: the throttled were unpaid');
like($log, qr/" 200 x402=settled/, 'access log: the payers settled');
like($log, qr/" 503 x402=invalid reason=invalid_payload/,
     'access log: the junk headers were invalid, with the reason');
unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts');

done_testing();
