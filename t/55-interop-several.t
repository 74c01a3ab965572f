#!/usr/bin/perl
# Several ways to pay, with the official stack (issue 12): one nginx
# location offers TestUSDC and TestEURC on chain A (Base Sepolia's id 84532)
# and TestUSDC on chain B (a second anvil, id 31338), each chain settled by
# its own official facilitator behind the option's facilitator= location.
# The official v2 client (@x402/fetch, choosing the option by its policy)
# pays through each option and the legacy v1 client through the option it
# picks from the v1 body; the balances move by exactly that option's price
# on that chain and token, nowhere else (js/interop/several-pay.mjs). The
# location settles under the default `x402_settle` (after).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use X402::Test;
use X402::Interop;
use File::Path qw(make_path);
use Time::HiRes qw(time);

plan skip_all => 'module not built (scripts/build-module.sh or X402_MODULE)'
    unless -f module_path();
plan skip_all => 'js/node_modules missing (npm ci in js/)'
    unless X402::Interop::available();

my $t0 = time;
my ($dir_a, $dir_b) = (servroot() . '/chain-a', servroot() . '/chain-b');
make_path($dir_a, $dir_b);
my @pids;
END { kill 'TERM', grep { $_ } @pids }

my $a = X402::Interop::node_json('chain.mjs', 'start', '--run-dir', $dir_a,
                                 '--fund', '1', '--tokens', 'usdc,eurc');
push @pids, $a->{pid};
my $b = X402::Interop::node_json('chain.mjs', 'start', '--run-dir', $dir_b,
                                 '--fund', '1', '--chain-id', '31338');
push @pids, $b->{pid};
my $fa = X402::Interop::node_json('facilitator.mjs', 'start', '--run-dir', $dir_a);
push @pids, $fa->{pid};
my $fb = X402::Interop::node_json('facilitator.mjs', 'start', '--run-dir', $dir_b);
push @pids, $fb->{pid};
ok($a->{pid} && $b->{pid} && $fa->{pid} && $fb->{pid},
   'two chains and two official facilitators are running');
is($b->{network}, 'eip155:31338', 'chain B is eip155:31338');

my $conf = <<"EOC";
    x402_pay_to $a->{payTo};
    location /_x402_a/ {
        internal;
        proxy_pass http://127.0.0.1:$fa->{port}/;
    }
    location /_x402_b/ {
        internal;
        proxy_pass http://127.0.0.1:$fb->{port}/;
    }
    location /several/ {
        x402_facilitator /_x402_a/;
        x402_accept network=base-sepolia price=0.001;
        x402_accept network=base-sepolia price=0.002
                    asset=0x808456652fdb597867f38412077A9182bf77359F
                    name=EURC version=2 decimals=6;
        x402_accept network=eip155:31338 price=3000 atomic
                    asset=0x036CbD53842c5426634e7929541eC2318f3dCF7e
                    name=USDC version=2 facilitator=/_x402_b/;
        add_header X-Paid "\$x402_network \$x402_asset" always;
    }
EOC
my $ng = start_nginx(name => 'several', config => $conf,
                     user_files => ">>> several/doc.json\n{\"doc\":1}\n");
my $url = 'http://127.0.0.1:' . $ng->port . '/several/doc.json';

open my $fh, '-|', 'node', X402::Interop::js_dir() . '/several-pay.mjs',
    '--url', $url, '--run-dir-a', $dir_a, '--run-dir-b', $dir_b,
    '--prices', '1000,2000,3000' or die "several-pay.mjs: $!";
my $seen = 0;
while (my $l = <$fh>) {
    chomp $l;
    if ($l =~ /^(not )?ok \d+ - (.*?)(?:\s+# (.*))?$/) {
        $seen++;
        ok(!$1, $2) or diag($3 // '');
    } elsif ($l =~ /^#/) {
        note($l);
    }
}
close $fh;
is($? >> 8, 0, 'several-pay.mjs exits 0');
cmp_ok($seen, '>=', 15, 'several-pay.mjs ran its checks');

# each facilitator settled the payments of its own chain only
my %settles;
for my $d ([a => $dir_a], [b => $dir_b]) {
    open my $lf, '<', "$d->[1]/facilitator-requests.jsonl" or next;
    while (my $l = <$lf>) {
        my $j = eval { json_decode($l) } or next;
        next unless ($j->{path} // '') =~ m{/settle$};
        $settles{$d->[0]}++;
    }
}
is($settles{a} // 0, 3, 'facilitator A settled three payments (v2 USDC, v2 EURC, v1)');
is($settles{b} // 0, 1, 'facilitator B settled the chain B payment');
unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
note(sprintf 'took %.1f s', time - $t0);
$ng->stop;

done_testing;
