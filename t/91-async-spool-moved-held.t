# x402_redis: a reload that names another x402_spool directory writes what
# the zone owes into the new file, for the next start. It wrote the
# entries Redis holds too (their owe confirmed: the old file said "done
# <id> redis"), and their end writes nothing to the spool (Redis learns
# it): their "owe" line stayed in the new file, and the next start resumed
# them and sent a settled payment's /settle again (refused: nonce used,
# logged and counted refused). Now the entries Redis holds stay out of it.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'no redis-server' unless `which redis-server` =~ /\S/;

my $redis = X402::Redis->start;
my $rport = $redis->port;

my $fac = start_facilitator(script => "verify: default\nsettle: delay=3000 chain default\n");

my $http = "    x402_redis 127.0.0.1:$rport prefix=t91:;\n"
         . "    x402_async_drain 1s;\n";
my $extra = <<'EOC';
    location = /metrics {
        x402_metrics;
    }
EOC
my $ng = start_nginx(
    workers => 1,
    config => store_server_config($fac->port, settle => 'async',
                                  extra => $extra),
    http_config => store_http_config($http));
my ($p) = payments_for($ng, 1);
my $nonce = decode_b64_json($p->[0])->{payload}{authorization}{nonce};

is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status}, 200,
   'served on credit');
my $old = $ng->prefix . '/x402_spool/settlements';
ok(wait_for(2, sub { (eval { local (@ARGV, $/) = ($old); <> } // '')
                     =~ /^done [0-9a-f]{64} redis$/m }),
   'its owe confirmed: redis holds it');
# while its first attempt runs
$ng->reload(http_config => store_http_config("    x402_spool spool2;\n$http"));
like($ng->error_log, qr/the spool is now/, 'the spool moved');
ok(wait_for(10, sub { grep { lc $_ eq lc $nonce } $fac->chain_nonces }),
   'settled');
sleep 1;
$ng->stop;
$ng->start;
sleep 5;
is(settles_of($fac, $nonce), 1, 'sent to /settle once, a restart after');
my $m = $ng->get('/metrics')->{body} // '';
ok($m !~ /^x402_async_settlements_total\{outcome="refused"\} [1-9]/m,
   'not counted refused');
unlike($ng->error_log, qr/refused by the facilitator/, 'not logged refused');
$ng->stop;
$redis->stop;

done_testing();
