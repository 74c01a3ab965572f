# Know what happened on chain (issue 14): when a /settle answer is lost, an
# eth_call of the token's authorizationState(from, nonce) through the
# operator's JSON-RPC location (x402_rpc) says whether the authorization was
# used: settled, or send the /settle again. Once the authorization expired,
# the chain has the last word: settled, or given up (not "unknown").
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $USED   = '0x' . ('0' x 63) . '1';
my $UNUSED = '0x' . ('0' x 64);
sub rpc_answer { qq(rpc: 200 {"jsonrpc":"2.0","id":1,"result":"$_[0]"}\n) }

my $fac = start_facilitator(script => "verify: default\nsettle: 502 {}\n");
my $fport = $fac->port;

sub reqs { my ($ep) = @_; grep { $_->{endpoint} eq $ep } $fac->requests }

my $extra = <<"EOC";
    location = /store {
        return 200 "\$x402_pending \$x402_settle_lost \$x402_settle_unknown\\n";
    }
    location = /metrics {
        x402_metrics;
    }
    # one JSON-RPC endpoint per network: <x402_rpc><CAIP-2 id>
    location = /_x402_rpc/eip155:84532 {
        internal;
        proxy_pass http://127.0.0.1:$fport/rpc;
    }
EOC

sub counters {
    my ($ng) = @_;
    return [split ' ', $ng->get('/store')->{body} // ''];
}

sub metric {
    my ($ng, $name) = @_;
    my $m = $ng->get('/metrics')->{body} // '';
    return $m =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

sub auth_of {
    my ($hdr) = @_;
    return decode_b64_json($hdr)->{payload}{authorization};
}

my $ng = start_nginx(
    workers => 2,
    http_config => store_http_config("    x402_rpc /_x402_rpc/;\n"),
    config => store_server_config($fport, settle => 'async', extra => $extra),
);

# ---- the answer is lost, the chain says used: settled, not sent again ----

$fac->set_script("verify: default\nsettle: 502 {}\n" . rpc_answer($USED));
my @p = payments_for($ng, 3);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'served on credit');
ok(wait_for(8, sub { (counters($ng)->[0] // 1) == 0 }),
   'resolved without another /settle');
is(scalar(reqs('settle')), 1, 'the facilitator saw one /settle only');
my @rpc = reqs('rpc');
is(scalar(@rpc), 1, 'one JSON-RPC call');
my $a = auth_of($p[0][0]);
my $call = $rpc[0]{json} // {};
is($call->{method}, 'eth_call', 'an eth_call');
is(lc $call->{params}[0]{to}, lc '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
   'to the asset');
is($call->{params}[0]{data},
   '0xe94a0102' . ('0' x 24) . lc(substr($a->{from}, 2)) . lc(substr($a->{nonce}, 2)),
   'authorizationState(from, nonce)');
is($call->{params}[1], 'latest', 'at latest');
like($rpc[0]{path}, qr{^/rpc$}, 'through the location of the network');
like($ng->error_log, qr/the chain \(\/_x402_rpc\/eip155:84532\) says its authorization was used: settled/,
     'logged');
is(metric($ng, 'x402_async_settlements_total{outcome="settled_on_chain"}'), 1,
   'counted as settled on chain');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 402,
   'the payment is not served again');

# ---- the chain says unused: the /settle goes out again ----

$fac->set_script("verify: default\nsettle: 502 {}\n" . rpc_answer($UNUSED));
my $settles = reqs('settle');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 200,
   'served on credit');
ok(wait_for(3, sub { reqs('settle') > $settles }), 'the first /settle failed');
$fac->set_script("verify: default\nsettle: default\n" . rpc_answer($UNUSED));
ok(wait_for(8, sub { (counters($ng)->[0] // 1) == 0 }), 'settled');
is(scalar(reqs('settle')) - $settles, 2, 'after a second /settle');
like($ng->error_log, qr/says its authorization was not used/, 'logged');
is(metric($ng, 'x402_async_settlements_total{outcome="settled"}'), 1,
   'counted as settled');

# ---- expired after a lost answer: the chain decides, given up ----

# the JSON-RPC endpoint fails while the authorization is valid: the /settle
# is sent again each time (502); once it expired the chain says unused
$fac->set_script("verify: default\nsettle: 502 {}\nrpc: 503 {}\n");
my ($short) = payments_for($ng, 1, valid_for => 8);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $short->[0] })->{status}, 200,
   'served on credit (valid 8 more seconds)');
my $asked = reqs('rpc');
ok(wait_for(6, sub { reqs('rpc') > $asked }), 'the chain is asked');
sleep 1;
$fac->set_script("verify: default\nsettle: 502 {}\n" . rpc_answer($UNUSED));
ok(wait_for(15, sub { (counters($ng)->[1] // 0) == 1 }),
   'given up once expired and unused on chain');
is(counters($ng)->[2], 0, 'not unknown');
like($ng->error_log, qr/no usable answer from the chain .*JSON-RPC answered HTTP 503/,
     'the failed lookup is logged');
like($ng->error_log, qr/payment [0-9a-f]{64} GIVEN UP/, 'the give-up too');

# ---- the chain answers again later, and says used: settled ----

$fac->set_script("verify: default\nsettle: 502 {}\nrpc: 503 {}\n");
($short) = payments_for($ng, 1, valid_for => 8);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $short->[0] })->{status}, 200,
   'served on credit (valid 8 more seconds)');
sleep 3;
$fac->set_script("verify: default\nsettle: 502 {}\n" . rpc_answer($USED));
ok(wait_for(15, sub { (counters($ng)->[0] // 1) == 0 }), 'resolved');
is(metric($ng, 'x402_async_settlements_total{outcome="settled_on_chain"}'), 2,
   'settled on chain');
is(counters($ng)->[1], 1, 'not given up');
unlike($ng->error_log, qr/\[alert\]|exited on signal/, 'no alerts, no crash');
$ng->stop;

# ---- x402_rpc must name a location prefix ----

my $bad = X402::Nginx->new(
    http_config => "    x402_rpc http://rpc.example/;\n",
    config => '');
my ($rc, $out) = $bad->test_config;
isnt($rc, 0, 'x402_rpc with a URL is refused');
like($out, qr/invalid x402_rpc "http:\/\/rpc.example\/".*starts and ends with "\/"/,
     'naming the value and the rule');

done_testing();
