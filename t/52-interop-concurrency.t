#!/usr/bin/perl
# Concurrency against the real facilitator and chain (issue 5; the
# verify-serve-settle window of x402-foundation/x402 issues #803, #1169,
# #1805): one payment sent many times at once is served once and settled
# once, on one nginx with several workers and across two nginx sharing a
# Redis; many distinct payments at once are all served and all
# paid, exactly.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use X402::Test;
use X402::Interop;
use JSON::PP ();
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built (scripts/build-module.sh or X402_MODULE)'
    unless -f module_path();
plan skip_all => 'js/node_modules missing (npm ci in js/)'
    unless X402::Interop::available();

my $PRICE = $X402::Interop::PRICE;
my $N = 8;    # simultaneous copies of one payment
my %T;
my $t_all = time;

my $ix = X402::Interop->start;
my $pay_to = $ix->pay_to;
my $fac_port = $ix->fac_port;

sub server_conf {
    my (@modes) = @_;
    my $c = <<"EOC";
        large_client_header_buffers 4 16k;
        x402_pay_to $pay_to;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        location /_x402/ {
            internal;
            proxy_pass http://127.0.0.1:$fac_port/;
        }
EOC
    for my $m (@modes) {
        $c .= "        location /$m/ {\n            x402_price 0.001;\n"
            . "            x402_settle $m;\n        }\n";
    }
    return $c;
}

my $files = join '', map { ">>> $_/doc.json\n{\"doc\":\"$_\"}\n" }
    qw(sync after async);

# ---- 1. one nginx, two workers, the shared-memory store ----

my $t = time;
my $ng = start_nginx(name => 'concurrency', workers => 2,
                     config => server_conf(qw(sync after async)),
                     user_files => $files);
my $base = 'http://127.0.0.1:' . $ng->port;

{
    my @modes = qw(sync after async);
    my $b0 = $ix->balances;
    my @out = $ix->forge(map { { url => "$base/$_/doc.json", version => 2,
                                 vector => 'valid', send => JSON::PP::true,
                                 parallel => JSON::PP::true, times => $N } } @modes);
    for my $i (0 .. $#modes) {
        my $m = $modes[$i];
        my @r = @{ $out[$i]{responses} };
        my @served = grep { $_->{status} >= 200 && $_->{status} < 300 } @r;
        is(scalar @served, 1, "$m: one payment sent $N times at once is served once")
            or diag(join ' ', map { "$_->{status}:" . ($_->{error} // '') } @r);
        ok(!grep({ $_->{status} >= 500 } @r), "$m: the others are refused, not errors")
            or diag(join ' ', map { $_->{status} } @r);
        unlike(join('', map { $_->{status} >= 300 ? $_->{body} // '' : '' } @r),
               qr/"doc"/, "$m: no content in any refusal");
    }
    my $b1 = $ix->wait_pay_to($b0->{payTo}, 3 * $PRICE, 15);
    sleep 1;    # a second settlement of any of them would land now
    $b1 = $ix->balances;
    is($b1->{payTo} - $b0->{payTo}, 3 * $PRICE, "each paid exactly once on chain");
    for my $i (0 .. $#modes) {
        my @ok = grep { $_->{response}{success} }
            $ix->settles_of(X402::Interop::nonce_of($out[$i]));
        is(scalar @ok, 1, "$modes[$i]: exactly one successful settlement");
    }
}
$T{same_payment_one_nginx} = time - $t;

$t = time;
{
    # distinct payments from the official clients, all at once
    my @jobs = map { [ $_ % 2 ? 1 : 2, "$base/sync/doc.json" ] } 1 .. 6;
    my $b0 = $ix->balances;
    my @r = $ix->pay_parallel(@jobs);
    my $b1 = $ix->balances;
    is(scalar(grep { ($_->{status} // 0) == 200 } @r), 6,
       'six official clients paying at once are all served')
        or diag(join ' ', map { ($_->{status} // 'none') . ':' . ($_->{error} // '') } @r);
    is(scalar(grep { $_->{settlement} && $_->{settlement}{success} } @r), 6,
       'all six got a successful settlement header');
    my %tx = map { ($_->{settlement}{transaction} // '') => 1 } @r;
    is(scalar(grep { $ix->tx_ok($_) } keys %tx), 6, 'six distinct transactions on chain');
    is($b1->{payTo} - $b0->{payTo}, 6 * $PRICE, 'payTo got exactly six prices');
    is($b0->{payer} - $b1->{payer}, 6 * $PRICE, 'the payer paid exactly six prices');
}
$T{parallel_clients} = time - $t;
$ng->stop;

# ---- 2. two nginx sharing a Redis ----

$t = time;
my $redis = X402::Redis->start;
my @fleet = map {
    start_nginx(name => "fleet-$_",
                http_config => '    x402_redis 127.0.0.1:' . $redis->port . ";\n",
                config => server_conf(qw(sync async)), user_files => $files)
} qw(a b);
my @bases = map { 'http://127.0.0.1:' . $_->port } @fleet;

{
    my @modes = qw(sync async);
    my $b0 = $ix->balances;
    my @jobs;
    for my $m (@modes) {
        push @jobs, { urls => [ map { "$_/$m/doc.json" } @bases ], url => "$bases[0]/$m/doc.json",
                      version => 2, vector => 'valid', send => JSON::PP::true,
                      parallel => JSON::PP::true, times => $N };
    }
    for my $m (@modes) {
        # pay on A, then present the same payment to B
        push @jobs, { urls => [ map { "$_/$m/doc.json" } @bases ], url => "$bases[0]/$m/doc.json",
                      version => 1, vector => 'valid', send => JSON::PP::true, times => 2 };
    }
    my @out = $ix->forge(@jobs);
    for my $i (0 .. $#modes) {
        my @r = @{ $out[$i]{responses} };
        my @served = grep { $_->{status} >= 200 && $_->{status} < 300 } @r;
        is(scalar @served, 1,
           "fleet $modes[$i]: one payment sent $N times at once to two nginx is served once")
            or diag(join ' ', map { "$_->{status}:" . ($_->{error} // '') } @r);
        ok(!grep({ $_->{status} >= 500 } @r), "fleet $modes[$i]: no errors")
            or diag(join ' ', map { $_->{status} } @r);
    }
    for my $i (0 .. $#modes) {
        my @r = @{ $out[2 + $i]{responses} };
        is($r[0]{status}, 200, "fleet $modes[$i]: v1 payment served by A");
        is($r[1]{status}, 402, "fleet $modes[$i]: the same payment refused by B")
            or diag(X402::Test::json_encode($r[1]));
    }
    my $b1 = $ix->wait_pay_to($b0->{payTo}, 4 * $PRICE, 15);
    sleep 1;
    $b1 = $ix->balances;
    is($b1->{payTo} - $b0->{payTo}, 4 * $PRICE, 'fleet: each payment paid exactly once');
}
$_->stop for @fleet;
$redis->stop;
$T{fleet} = time - $t;

$T{total} = time - $t_all;
note(sprintf "timings (s): %s",
     join ', ', map { sprintf '%s %.1f', $_, $T{$_} } sort keys %T);

done_testing;
