# conf-examples/fleet-redis.conf, run as shipped on two nginx sharing one
# Redis (addresses and paths substituted): a payment is served once across
# the fleet, and a grant bought on one host is honoured by the other.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::Examples qw(example_conf);

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'redis-server not installed'
    unless grep { -x "$_/redis-server" } split /:/, $ENV{PATH};

my $redis = X402::Redis->start;
my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $app = start_nginx(name => 'app', no_module_conf(),
                      config => "location / { return 200 \"app \$uri\\n\"; }");

my @hosts;
for my $name ('a', 'b') {
    my $prefix = servroot() . "/fleet-$name";
    my ($conf, $ports) = example_conf(
        repo_root() . '/conf-examples/fleet-redis.conf',
        prefix => $prefix, fac_port => $fac->port,
        redis_port => $redis->port, app_port => $app->port);
    my $ng = X402::Nginx->new(raw_conf => $conf, prefix => $prefix,
                              name => "fleet-$name");
    $ng->{port} = $ports->[0];
    $ng->start;
    push @hosts, $ng;
}
my ($a, $b) = @hosts;

# one payment, one response, whichever host it is presented to
my $r = $a->get('/api/x');
is($r->{status}, 402, 'host a: 402');
my ($pay) = sign_payment(payment_required => X402::HTTP::header($r, 'PAYMENT-REQUIRED'),
                         network => 'base');
$r = $a->get('/api/x', { 'PAYMENT-SIGNATURE' => $pay });
is($r->{status}, 200, 'host a: paid');
is($r->{body}, "app /api/x\n", 'host a: the application answered');
$r = $b->get('/api/x', { 'PAYMENT-SIGNATURE' => $pay });
is($r->{status}, 402, 'host b: the same payment is refused');
$r = $a->get('/api/x', { 'PAYMENT-SIGNATURE' => $pay });
is($r->{status}, 402, 'host a: and again on a');

# a grant bought on a is honoured on b
$r = $a->get('/reports/q1');
my ($gpay) = sign_payment(payment_required => X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
$r = $a->get('/reports/q1', { 'PAYMENT-SIGNATURE' => $gpay });
is($r->{status}, 200, 'host a: grant bought');
$r = $b->get('/reports/q1', { 'PAYMENT-SIGNATURE' => $gpay });
is($r->{status}, 200, 'host b: the grant is honoured');
is($r->{body}, "app /reports/q1\n", 'host b: the content');

my @seen = map { $_->{endpoint} } $fac->requests;
is(scalar(grep { $_ eq 'settle' } @seen), 2,
   'two settlements for two payments across the fleet');

$_->stop for @hosts;
$app->stop;
$fac->stop;
$redis->stop;
for my $ng (@hosts) {
    unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts');
}

done_testing();
