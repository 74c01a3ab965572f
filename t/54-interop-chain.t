#!/usr/bin/perl
# x402_rpc against a real chain (issue 14): the facilitator settles an async
# payment on anvil but nginx loses its answer (the facilitator location
# times out first); the retry asks anvil the token's
# authorizationState(from, nonce) through x402_rpc, learns the
# authorization was used, and ends the entry "settled on chain" without a
# second /settle. The chain shows one transfer.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use X402::Test;
use X402::Interop;
use X402::StoreTest qw(wait_for);
use JSON::PP ();
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built (scripts/build-module.sh or X402_MODULE)'
    unless -f module_path();
plan skip_all => 'js/node_modules missing (npm ci in js/)'
    unless X402::Interop::available();

my $PRICE = $X402::Interop::PRICE;
my $ix = X402::Interop->start;
my ($pay_to, $fac_port) = ($ix->pay_to, $ix->fac_port);
my $chain_port = $ix->chain->{port};

my $ng = start_nginx(name => 'chain',
    http_config => "    x402_rpc /_x402_rpc/;\n",
    config => <<"EOC",
        large_client_header_buffers 4 16k;
        x402_pay_to $pay_to;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        x402_settle async;
        location /_x402/ {
            internal;
            proxy_pass http://127.0.0.1:$fac_port/;
            # the /settle answer never arrives in time: lost
            proxy_read_timeout 1ms;
        }
        location = /_x402_rpc/eip155:84532 {
            internal;
            proxy_pass http://127.0.0.1:$chain_port/;
        }
        location /async/ {
            x402_price 0.001;
            x402_verify local;
        }
        location = /metrics {
            x402_metrics;
        }
EOC
    user_files => ">>> async/doc.json\n{\"doc\":\"async\"}\n");

my $b0 = $ix->balances;
my ($o) = $ix->forge({ url => 'http://127.0.0.1:' . $ng->port . '/async/doc.json',
                       version => 2, vector => 'valid',
                       send => JSON::PP::true, times => 1 });
is($o->{responses}[0]{status}, 200, 'served on credit');
my $b = $ix->wait_pay_to($b0->{payTo}, $PRICE, 20);
is($b->{payTo} - $b0->{payTo}, $PRICE, 'the facilitator settled it on chain');

ok(wait_for(15, sub { $ng->error_log =~ /says its authorization was used: settled/ }),
   'nginx lost the answer and asked the chain: used, settled');
like($ng->error_log, qr/failed \(attempt 1: [^)]*\), answer lost/,
     'the first answer was lost');
my $m = $ng->get('/metrics')->{body} // '';
like($m, qr/^x402_async_settlements_total\{outcome="settled_on_chain"\} 1$/m,
     'counted as settled on chain');
like($m, qr/^x402_settlements_pending 0$/m, 'nothing owed');
my $nonce = $o->{payload}{payload}{authorization}{nonce};
sleep 1;
is(scalar($ix->settles_of($nonce)), 1, 'one /settle only');
is($ix->balances->{payTo} - $b0->{payTo}, $PRICE, 'one transfer');
$ng->stop;
$ix->stop;

done_testing();
