# conf-examples/add-to-existing-site.conf, run as shipped (addresses and
# paths substituted): the site stays free where it was, the premium API is
# paid and settled only when the application answers below 400, paid
# downloads carry a grant, the access log shows who paid, and the metrics
# location answers the monitoring host.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::Examples qw(example_conf);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $app = start_nginx(name => 'app', no_module_conf(), config => <<'EOC');
    location / { return 200 "app $uri\n"; }
    location /api/premium/missing { return 404 "no such thing\n"; }
EOC

my $prefix = servroot() . '/existing-site';
my ($conf, $ports) = example_conf(
    repo_root() . '/conf-examples/add-to-existing-site.conf',
    prefix => $prefix, fac_port => $fac->port, app_port => $app->port);
my $ng = X402::Nginx->new(raw_conf => $conf, prefix => $prefix,
                          name => 'existing-site');
$ng->{port} = $ports->[0];
mkdir "$prefix/html/$_" for qw(static downloads);
for my $f ('index.html', 'static/site.css', 'downloads/report.pdf') {
    open my $fh, '>', "$prefix/html/$f" or die $!;
    print $fh "$f\n";
    close $fh;
}
$ng->start;

# what was free stays free
is($ng->get('/')->{status}, 200, 'home page free');
is($ng->get('/static/site.css')->{body}, "static/site.css\n", 'assets free');
is($ng->get('/api/users')->{body}, "app /api/users\n", 'public API free');

# the premium API: 402, then paid, settled after the application's 200
my $r = $ng->get('/api/premium/quote');
is($r->{status}, 402, 'premium: 402');
my $pr = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
is(decode_b64_json($pr)->{accepts}[0]{amount}, '10000', 'premium: $0.01');
my @pay = sign_payments(2, payment_required => $pr, network => 'base');
$r = $ng->get('/api/premium/quote', { 'PAYMENT-SIGNATURE' => $pay[0][0] });
is($r->{status}, 200, 'premium: paid');
is($r->{body}, "app /api/premium/quote\n", 'premium: the application answered');
ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'premium: PAYMENT-RESPONSE');

# an application error costs nothing
my $settles = grep { $_->{endpoint} eq 'settle' } $fac->requests;
$r = $ng->get('/api/premium/missing', { 'PAYMENT-SIGNATURE' => $pay[1][0] });
is($r->{status}, 404, 'premium: the 404 passes through');
is(scalar(grep { $_->{endpoint} eq 'settle' } $fac->requests), $settles,
   'premium: nothing settled for the 404');

# downloads: pay once, read again under the grant
$r = $ng->get('/downloads/report.pdf');
is($r->{status}, 402, 'download: 402');
my ($dl) = sign_payment(payment_required => X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
is($ng->get('/downloads/report.pdf', { 'PAYMENT-SIGNATURE' => $dl })->{status},
   200, 'download: paid');
is($ng->get('/downloads/report.pdf', { 'PAYMENT-SIGNATURE' => $dl })->{status},
   200, 'download: again under the grant');

# the metrics, for the monitoring host (127.0.0.1 here)
# counted in the log phase, which may still be running for the last request
# when a fast client has already read the response: poll briefly
for (1 .. 20) {
    $r = $ng->get('/x402-metrics');
    last if $r->{body} =~ /^x402_payments_total\{outcome="reused"\} 1$/m;
    select(undef, undef, undef, 0.1);
}
is($r->{status}, 200, 'metrics: 200 for 127.0.0.1');
like($r->{body}, qr/^x402_payments_total\{outcome="settled"\} 2$/m,
     'metrics: two settled (premium, download)');
like($r->{body}, qr/^x402_payments_total\{outcome="reused"\} 1$/m,
     'metrics: one reused (the grant)');

$ng->stop;
$app->stop;
$fac->stop;

open my $fh, '<', "$prefix/logs/access.log" or die $!;
my $log = do { local $/; <$fh> };
like($log, qr{"GET /api/premium/quote HTTP/1.1" 200 \d+ x402=settled reason=- payer=0x[0-9a-fA-F]{40} amount=10000 network=eip155:8453 tx=0x[0-9a-f]+ id=[0-9a-f]{64}},
     'access log: the x402 fields of a paid call');
like($log, qr{"GET /api/users HTTP/1.1" 200 \d+ x402=none}, 'access log: free is none');
unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts');

done_testing();
