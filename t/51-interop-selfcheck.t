#!/usr/bin/perl
# The money path without nginx (issue 5): the committed contract artifacts
# match their source, the token follows EIP-3009 with the revert reasons the
# official facilitator understands (js/interop/token-test.mjs), and the
# local chain + token, the official facilitator,
# the official v1/v2 clients and a reference server built on the official
# server code agree (js/interop/selfcheck.mjs); a second token (TestEURC)
# and a second chain move balances only where paid
# (js/interop/several-check.mjs). When this passes and
# t/50-interop.t fails, the module is at fault, not the infrastructure.

use strict;
use warnings;
use Test::More;
use FindBin;
use Cwd qw(abs_path);
use Time::HiRes qw(time);

my $root = abs_path("$FindBin::Bin/..");
plan skip_all => 'js/node_modules missing (npm ci in js/)'
    unless -d "$root/js/node_modules/\@x402/core"
        && -x "$root/js/node_modules/\@foundry-rs/anvil-linux-amd64/bin/anvil";

my $t0 = time;
my $out = `node $root/js/interop/compile.mjs --check 2>&1`;
is($? >> 8, 0, 'contracts/artifacts match contracts/*.sol') or diag($out);
my $t_compile = time - $t0;

# the scripts print TAP-like lines: re-emit each as a test
sub run_checks {
    my ($script, $min) = @_;
    my $t = time;
    open my $fh, '-|', 'node', "$root/js/interop/$script"
        or die "$script: $!";
    my $seen = 0;
    while (my $l = <$fh>) {
        chomp $l;
        if ($l =~ /^(not )?ok \d+ - (.*?)(?:\s+# (.*))?$/) {
            $seen++;
            ok(!$1, "$script: $2") or diag($3 // '');
        } elsif ($l =~ /^#/) {
            note($l);
        }
    }
    close $fh;
    is($? >> 8, 0, "$script exits 0");
    cmp_ok($seen, '>=', $min, "$script ran its checks");
    return time - $t;
}

my $t_token = run_checks('token-test.mjs', 20);
my $t_self = run_checks('selfcheck.mjs', 20);
# several options (issue 12): TestEURC next to TestUSDC, and a second chain
my $t_several = run_checks('several-check.mjs', 23);
note(sprintf 'compile check %.1fs, token %.1fs, selfcheck %.1fs, several %.1fs',
     $t_compile, $t_token, $t_self, $t_several);

done_testing;
