# Client-chosen numbers never size server state (issue 9, item 3). A
# record lives at most the server's window (the requirement's
# maxTimeoutSeconds + 60 s) or until validBefore + 10 s if sooner:
#  - 600 payments from fresh keys with validBefore = 2^256-1, refused by the
#    facilitator, do not fill a 64k zone: later payments are served, also
#    after a reload (refused payments' records are evicted first);
#  - x402_verify local refuses validBefore beyond now + maxTimeoutSeconds +
#    60 s (402, no record); a payment within it is served;
#  - with x402_redis the record's TTL is the window (no "invalid expire
#    time"), so under fail=open a second nginx refuses the replay;
#  - an async settlement the facilitator refuses is final: not retried.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $MAX256 = '115792089237316195423570985008687907853269984665640564039457584007913129639935';
my $REFUSE_VERIFY = 'verify: 200 {"isValid":false,"invalidReason":'
    . '"insufficient_funds","payer":"{{payer}}"}';

# /paid/ asks a facilitator that refuses everything (nginx itself, to send
# hundreds of payments quickly), /good/ the fake facilitator
sub server_conf {
    my ($fport, %a) = @_;
    my $verify = $a{verify} // 'facilitator';
    my $settle = $a{settle} // 'sync';
    return <<"EOC";
    access_log logs/store.log x402store;
    x402_pay_to       $PAY_TO;
    x402_network      base-sepolia;
    x402_facilitator  /_x402/;
    x402_verify       $verify;
    x402_settle       $settle;

    location /paid/ {
        x402_price  0.001;
        x402_facilitator /_refuse/;
        empty_gif;
    }
    location /good/ {
        x402_price  0.001;
        empty_gif;
    }
    location = /full {
        return 200 "\$x402_store_full\\n";
    }
    location = /metrics {
        x402_metrics;
    }
    location = /_refuse/verify {
        internal;
        default_type application/json;
        return 200 '{"isValid":false,"invalidReason":"insufficient_funds"}';
    }
    location = /_refuse/settle {
        internal;
        default_type application/json;
        return 200 '{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532"}';
    }
    location /_x402/ {
        internal;
        proxy_pass http://127.0.0.1:$fport/;
        proxy_read_timeout 5s;
    }
EOC
}

sub good_payments {
    my ($ng, $n, %opts) = @_;
    my $r = $ng->get('/good/');
    return sign_payments($n, payment_required =>
                         X402::HTTP::header($r, 'PAYMENT-REQUIRED'), %opts);
}

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $_[0]->requests }

sub statuses {
    my ($ng, @pays) = @_;
    my %st;
    $st{ $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $_->[0] })->{status} }++
        for @pays;
    return join ' ', map { "$_:$st{$_}" } sort keys %st;
}

# ---- 1. refused far-future payments do not fill the zone ----

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");

{
    my $ng = start_nginx(
        workers => 2,
        http_config => store_http_config("    x402_zone small:64k;\n"),
        config => server_conf($fac->port),
    );

    my @junk = payments_for($ng, 600, key => 'random',
                            valid_before => $MAX256);
    is(statuses($ng, @junk), '402:600',
       '600 refused payments with validBefore 2^256-1: all 402, none 503');
    is($ng->get('/full')->{body}, "0\n", 'the zone was never full');

    my @good = good_payments($ng, 2);
    is($ng->get('/good/', { 'PAYMENT-SIGNATURE' => $good[0][0] })->{status},
       200, 'then a valid payment is served');
    is($ng->get('/good/', { 'PAYMENT-SIGNATURE' => $good[0][0] })->{status},
       402, 'and recorded: its replay is refused');

    @junk = payments_for($ng, 300, key => 'random',
                         valid_before => int(time) + 10 * 365 * 86400);
    is(statuses($ng, @junk), '402:300',
       '300 more, ten years ahead: all 402');

    $ng->reload;
    is($ng->get('/good/', { 'PAYMENT-SIGNATURE' => $good[1][0] })->{status},
       200, 'after a reload a valid payment is served');
    is($ng->get('/good/', { 'PAYMENT-SIGNATURE' => $good[0][0] })->{status},
       402, 'and the served one is still refused');
    like($ng->error_log, qr/evicted \d+ expired or refused authorizations/,
         'refused records were evicted to make room (logged)');
    unlike($ng->error_log, qr/is full of unexpired/, 'never full');
    like($ng->get('/metrics')->{body},
         qr/^x402_store_refused_evicted_total [1-9]/m,
         'metrics: x402_store_refused_evicted_total');
    $ng->stop;
}

# ---- 2. x402_verify local: validBefore within the server's window ----

{
    my $ng = start_nginx(
        http_config => store_http_config("    x402_zone small:64k;\n"),
        config => server_conf($fac->port, verify => 'local'),
    );
    my $seen = scalar $fac->requests;

    my ($far) = good_payments($ng, 1, valid_before => $MAX256);
    my $r = $ng->get('/good/', { 'PAYMENT-SIGNATURE' => $far->[0] });
    is($r->{status}, 402, 'local: validBefore 2^256-1 refused');
    my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    is($pr->{error},
       'invalid_exact_evm_payload_authorization_valid_before',
       'with the validBefore reason');
    like($ng->error_log, qr/more than maxTimeoutSeconds \+ 60 s ahead/,
         'the log names the rule');
    is(scalar $fac->requests, $seen, 'nothing reached the facilitator');

    # keys without funds, ten years ahead (settle would refuse): no record
    my @junk = payments_for($ng, 600, key => 'random',
                            valid_before => int(time) + 10 * 365 * 86400);
    is(statuses($ng, @junk), '402:600', '600 of them: 402, none 503');

    # refused at /settle within the window: refused records, evictable
    @junk = payments_for($ng, 400, key => 'random');
    is(statuses($ng, @junk), '402:400',
       '400 refused at /settle within the window: 402, none 503');

    my ($near) = good_payments($ng, 1, valid_before => int(time) + 300 + 30);
    is($ng->get('/good/', { 'PAYMENT-SIGNATURE' => $near->[0] })->{status},
       200, 'validBefore now + maxTimeout + 30 s: served');
    is($ng->get('/full')->{body}, "0\n", 'the zone was never full');
    $ng->stop;
}

# ---- 3. Redis: the TTL is the window, the fleet refuses the replay ----

SKIP: {
    skip 'no redis-server', 6 unless `which redis-server` =~ /\S/;

    $fac->set_script("verify: default\nsettle: default\n");
    my $before = settles($fac);
    my $redis = X402::Redis->start;
    my $rport = $redis->port;
    my @ng = map {
        start_nginx(
            name => "fleet$_",
            http_config => store_http_config(
                "    x402_redis 127.0.0.1:$rport prefix=t35: fail=open "
                . "timeout=500ms;\n"),
            config => server_conf($fac->port),
        )
    } 1, 2;

    my ($p) = good_payments($ng[0], 1, valid_before => $MAX256);
    is($ng[0]->get('/good/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status},
       200, 'validBefore 2^256-1: served by the first nginx');
    sleep 0.3;

    my @keys = grep { !/epoch$/ } @{ $redis->cmd('KEYS', 't35:*') };
    is(scalar @keys, 1, 'recorded in redis');
    my $ttl = @keys ? $redis->cmd('PTTL', $keys[0]) : -2;
    ok($ttl > 0 && $ttl <= (300 + 60 + 10) * 1000,
       "its TTL is the server's window ($ttl ms)");

    is($ng[1]->get('/good/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status},
       402, 'fail=open: the second nginx refuses the replay');
    is(settles($fac) - $before, 1, 'settled once');
    unlike($ng[0]->error_log . $ng[1]->error_log, qr/invalid expire time/,
           'redis never refused an expire time');
    $_->stop for @ng;
    $redis->stop;
}

# ---- 4. an async settlement the facilitator refuses is final ----

{
    $fac->set_script("verify: default\n"
        . 'settle: 200 {"success":false,"errorReason":"insufficient_funds",'
        . '"transaction":"","network":"{{network}}","payer":"{{payer}}"}'
        . "\n");
    my $before = settles($fac);
    my $ng = start_nginx(
        http_config => store_http_config(),
        config => server_conf($fac->port, verify => 'local',
                              settle => 'async'),
    );
    my ($p) = good_payments($ng, 1);
    is($ng->get('/good/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status},
       200, 'async: served on credit');
    sleep 3.5;
    is(settles($fac) - $before, 1, 'the refused settlement was not retried');
    like($ng->error_log, qr/refused by the facilitator .*final, not retried/,
         'logged as final');
    is($ng->get('/good/', { 'PAYMENT-SIGNATURE' => $p->[0] })->{status},
       402, 'its replay is refused');
    $ng->stop;
}

$fac->stop;

done_testing();
