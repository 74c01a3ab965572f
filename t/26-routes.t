# Content of a priced location reaches a client only after a payment that
# matches THAT location's offer is settled (async: verified), whichever route
# nginx takes to it: error_page (with and without "=", any status),
# proxy_intercept_errors, try_files, index, rewrite ... last, named
# locations, X-Accel-Redirect. A payment buys only what it matches: reaching
# a location with another price or payTo answers 402 with that location's
# requirements. Across sync, after and async, the zone and Redis.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $OTHER  = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
my $REPORT = "the priced report\n";
my $DEAR   = "the dear report\n";

my $files = ">>> premium/report.html\n$REPORT"
          . ">>> dear/report.html\n$DEAR"
          . ">>> other/report.html\nother payee\n"
          . ">>> free.txt\nfree\n"
          . ">>> idx/keep\nx\n"
          . ">>> ssi/same.html\n<!--# include virtual=\"/premium/report.html\" -->\n"
          . ">>> ssi/dear.html\n<!--# include virtual=\"/dear/report.html\" -->\n";

sub confs {
    my (%a) = @_;
    my $fp = $a{fac}->port;
    my $up = $a{up};
    my $redis = $a{redis} ? "x402_redis 127.0.0.1:$a{redis} prefix=t26: fail=closed;" : '';
    my $http = <<"EOH";
    log_format x402 '\$uri|\$status|\$x402_status|\$x402_reason|\$x402_store';
    $redis
    server {
        listen 127.0.0.1:$up;
        location /xa/     { add_header X-Accel-Redirect /premium/report.html; return 200 "app"; }
        location /xadear/ { add_header X-Accel-Redirect /dear/report.html; return 200 "app"; }
        location /xaoth/  { add_header X-Accel-Redirect /other/report.html; return 200 "app"; }
        location /xafree/ { add_header X-Accel-Redirect /free.txt; return 200 "app"; }
        location /xanamed/ { add_header X-Accel-Redirect \@paid; return 200 "app"; }
        location /e404/   { return 404 "upstream 404"; }
    }
EOH
    my $server = <<"EOC";
access_log logs/x402.log x402;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle $a{settle};
x402_verify $a{verify};
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
    proxy_read_timeout 3s;
}
location /premium/ {
    x402_price 0.001;
    location /premium/app/    { proxy_pass http://127.0.0.1:$up/xa/; }
    location /premium/dear/   { proxy_pass http://127.0.0.1:$up/xadear/; }
    location /premium/oth/    { proxy_pass http://127.0.0.1:$up/xaoth/; }
    location /premium/tofree/ { proxy_pass http://127.0.0.1:$up/xafree/; }
    location /premium/ep/     { error_page 404 /dear/report.html; }
    location /premium/ep200/  { error_page 404 =200 /free.txt; }
}
location /dear/  { x402_price 0.01; }
location /ssi/   { x402_price 0.001; ssi on; }
location /other/ { x402_price 0.001; x402_pay_to $OTHER; }
location \@paid {
    x402_price 0.001;
    rewrite ^ /premium/report.html break;
}
location /        { error_page 404 /premium/report.html; }
location /eq/     { error_page 404 = /premium/report.html; }
location /e200/   { error_page 404 =200 /premium/report.html; }
location /e410/   { error_page 404 =410 /premium/report.html; }
location /named/  { error_page 404 \@paid; }
location /gone/   { error_page 404 /premium/nothere.html; }
location /tf/     { try_files \$uri /premium/report.html; }
location /tfn/    { try_files \$uri \@paid; }
location /rw/     { rewrite ^/rw/(.*)\$ /premium/\$1 last; }
location /idx/    { index /premium/report.html; }
location /xa/     { proxy_pass http://127.0.0.1:$up/xa/; }
location /xanamed/ { proxy_pass http://127.0.0.1:$up/xanamed/; }
location /pie/    {
    proxy_pass http://127.0.0.1:$up/e404/;
    proxy_intercept_errors on;
    error_page 404 /premium/report.html;
}
EOC
    return (http_config => $http, config => $server, user_files => $files);
}

sub x402_log {
    my ($ng) = @_;
    open my $fh, '<', $ng->prefix . '/logs/x402.log' or return ();
    return map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
}

sub settles { scalar grep { $_->{endpoint} eq 'settle' } $_[0]->requests }

sub wait_settles {
    my ($fac, $n) = @_;
    for (1 .. 50) { last if settles($fac) >= $n; select undef, undef, undef, 0.1 }
    return settles($fac);
}

my @routes = (
    # path, expected status of the paid content, what
    [ '/missing.html',      404, 'error_page 404 (the issue)' ],
    [ '/eq/missing.html',   200, 'error_page 404 =' ],
    [ '/e200/missing.html', 200, 'error_page 404 =200' ],
    [ '/e410/missing.html', 410, 'error_page 404 =410' ],
    [ '/named/missing',     404, 'error_page to a named location' ],
    [ '/pie/x',             404, 'proxy_intercept_errors' ],
    [ '/tf/missing',        200, 'try_files' ],
    [ '/tfn/missing',       200, 'try_files to a named location' ],
    [ '/rw/report.html',    200, 'rewrite ... last' ],
    [ '/idx/',              200, 'index' ],
    [ '/xa/x',              200, 'X-Accel-Redirect' ],
    [ '/xanamed/x',         200, 'X-Accel-Redirect to a named location' ],
);

for my $mode (['after', 'facilitator'], ['after', 'local'],
              ['sync', 'facilitator'], ['async', 'local'])
{
    my ($settle, $verify) = @$mode;
    my $m = "$settle/$verify";
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(confs(fac => $fac, up => free_port(),
                               settle => $settle, verify => $verify));

    my $n = 0;
    for my $rt (@routes) {
        my ($path, $status, $what) = @$rt;

        my $r = $ng->get($path);
        is($r->{status}, 402, "$m $what: unpaid is 402");
        unlike($r->{body}, qr/priced report/, "$m $what: unpaid, no content");

        my $pay = sign_payment(amount => '1000');
        $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => $pay });
        is($r->{status}, $status, "$m $what: paid, status $status");
        is($r->{body}, $REPORT, "$m $what: paid, the content");
        $n++;
        is(wait_settles($fac, $n), $n, "$m $what: settled once");
        if ($settle ne 'async') {
            ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'),
               "$m $what: PAYMENT-RESPONSE");
        }

        $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => $pay });
        is($r->{status}, 402, "$m $what: the same payment again is 402");
        unlike($r->{body}, qr/priced report/, "$m $what: replay, no content");
        is(settles($fac), $n, "$m $what: replay not settled");
    }

    # an error_page target that does not exist: the client got an error
    my $r = $ng->get('/gone/missing', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 404, "$m missing error page: 404");
    unlike($r->{body}, qr/priced report/, "$m missing error page: no content");
    if ($settle eq 'after') {
        is(settles($fac), $n, "$m missing error page: not settled");
    }

    # item 2: a payment buys only what it matches
    for my $c (['/premium/dear/x', 'X-Accel-Redirect to a dearer location', '10000', $PAY_TO],
               ['/premium/oth/x',  'X-Accel-Redirect to another payTo',    '1000', $OTHER],
               ['/premium/ep/missing', 'error_page to a dearer location', '10000', $PAY_TO])
    {
        my ($path, $what, $amount, $to) = @$c;
        my $before = settles($fac);
        $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
        is($r->{status}, 402, "$m $what: 402");
        unlike($r->{body}, qr/report|payee/, "$m $what: no content");
        my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED') // 'e30=');
        is($pr->{accepts}[0]{amount}, $amount, "$m $what: the final location's amount");
        is($pr->{accepts}[0]{payTo}, $to, "$m $what: the final location's payTo");
        is($pr->{error}, 'no_matching_requirement', "$m $what: reason");
        if ($settle eq 'after') {
            is(wait_settles($fac, $before), $before, "$m $what: nothing settled");
        }
    }

    # an SSI include buys only what the payment matches too
    $r = $ng->get('/ssi/same.html', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, "$m SSI include, same offer: 200");
    like($r->{body}, qr/priced report/, "$m SSI include, same offer: included");
    $r = $ng->get('/ssi/dear.html', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    unlike($r->{body}, qr/dear report/, "$m SSI include of a dearer location: not included");

    # ... and a payment for the final location itself passes there
    $r = $ng->get('/premium/app/x', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, "$m X-Accel-Redirect, same offer: 200");
    is($r->{body}, $REPORT, "$m X-Accel-Redirect, same offer: content");

    # paid location redirecting to free content: not charged under after
    my $before = settles($fac);
    for my $path ('/premium/tofree/x', '/premium/ep200/missing') {
        $r = $ng->get($path, { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
        is($r->{status}, 200, "$m $path: free content");
        is($r->{body}, "free\n", "$m $path: the free body");
        if ($settle eq 'after') {
            is(settles($fac), $before, "$m $path: not settled");
        }
    }

    $ng->stop;
    my @l = x402_log($ng);
    my ($issue) = grep { $_->[0] eq '/premium/report.html' && $_->[1] eq '404' } @l;
    ok($issue, "$m: the issue's request logged");
    like($issue->[2], $settle eq 'async' ? qr/^(verified|settled)$/ : qr/^settled$/,
         "$m: \$x402_status of the issue's request") if $issue;
    if ($settle eq 'after') {
        my @free = grep { $_->[0] eq '/free.txt' } @l;
        is(scalar(@free), 2, "$m: free content logged");
        is($_->[3], 'not_settled', "$m: free content, reason not_settled") for @free;
    }
    $fac->stop;
}

# the issue's case with a key that holds no funds: the settlement is refused,
# the content never leaves, and the refusal is final
{
    my $fac = start_facilitator(script => "verify: default\n"
        . "settle: 200 {\"success\":false,\"errorReason\":\"insufficient_funds\",\"transaction\":\"\",\"network\":\"{{network}}\",\"payer\":\"{{payer}}\"}\n");
    my $ng = start_nginx(confs(fac => $fac, up => free_port(),
                               settle => 'after', verify => 'local'));
    my $pay = sign_payment(amount => '1000');
    for my $i (1 .. 3) {
        my $r = $ng->get('/missing.html', { 'PAYMENT-SIGNATURE' => $pay });
        is($r->{status}, 402, "unfunded $i: 402");
        unlike($r->{body}, qr/priced report/, "unfunded $i: no content");
    }
    is(settles($fac), 1, 'unfunded: settled once, refused, not again');
    $ng->stop;
    $fac->stop;
}

# the issue's case with the store in Redis
{
    my $redis = X402::Redis->start;
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(confs(fac => $fac, up => free_port(), redis => $redis->port,
                               settle => 'after', verify => 'local'));
    my $pay = sign_payment(amount => '1000');
    my $r = $ng->get('/missing.html', { 'PAYMENT-SIGNATURE' => $pay });
    is($r->{status}, 404, 'redis: 404');
    is($r->{body}, $REPORT, 'redis: paid content');
    is(settles($fac), 1, 'redis: settled');
    $r = $ng->get('/missing.html', { 'PAYMENT-SIGNATURE' => $pay });
    is($r->{status}, 402, 'redis: replay 402');
    unlike($r->{body}, qr/priced report/, 'redis: replay, no content');
    is(settles($fac), 1, 'redis: replay not settled');
    $ng->stop;
    my @l = x402_log($ng);
    is($l[0][4], 'redis', 'redis: $x402_store');
    $fac->stop;
    $redis->stop;
}

done_testing();
