# Nothing of the paying client reaches the facilitator: the /verify and
# /settle subrequests (sync, after, async, and the async settlement's
# retry) carry only what the module and the facilitator location set. The
# facilitator location here forwards what an operator might copy from a
# proxy recipe (X-Forwarded-For from $proxy_add_x_forwarded_for, $http_*
# variables): none of the client's values may come through.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Time::HiRes qw(sleep time);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

sub conf {
    my ($fac) = @_;
    my $fp = $fac->port;
    return (config => <<"EOC",
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header X-Seen-Cookie \$http_cookie;
    proxy_set_header X-Seen-UA \$http_user_agent;
    proxy_set_header X-Seen-Secret \$http_x_secret;
    proxy_set_header X-Seen-Host \$http_host;
    proxy_set_header X-Seen-Referer \$http_referer;
    proxy_set_header X-Seen-Auth \$http_authorization;
    proxy_set_header X-Operator "set by the operator";
}
location /after/ { x402_settle after; }
location /async/ { x402_settle async; }
EOC
        user_files => ">>> doc.txt\nsync\n>>> after/doc.txt\nafter\n>>> async/doc.txt\nasync\n");
}

my %CLIENT = (
    'X-Forwarded-For' => '6.6.6.6, 7.7.7.7',
    'Cookie'          => 'session=client-secret',
    'User-Agent'      => 'client-agent/1.0',
    'X-Secret'        => 'client-secret-header',
    'Referer'         => 'https://client.example/ref',
    'Authorization'   => 'Bearer client-token',
    'Host'            => 'client-host.example',
);

sub check_clean {
    my ($name, $req, $no_peer) = @_;
    my $h = $req->{headers};
    # an async settlement's request (its first attempt, a retry) has no
    # client connection: its address is the "unix:" nginx gives a
    # unix-socket client, never a client's
    is($h->{'x-forwarded-for'}, $no_peer ? 'unix:' : '127.0.0.1',
       "$name: X-Forwarded-For is nginx's own peer address only");
    is($h->{'x-real-ip'}, $no_peer ? 'unix:' : '127.0.0.1', "$name: X-Real-IP as set");
    is($h->{'x-operator'}, 'set by the operator', "$name: operator header kept");
    for my $k (qw(x-seen-cookie x-seen-ua x-seen-secret x-seen-host
                  x-seen-referer x-seen-auth cookie authorization x-secret
                  referer payment-signature x-payment)) {
        ok(!defined $h->{$k} || $h->{$k} eq '', "$name: no $k");
    }
    unlike(join("\n", map { "$_: $h->{$_}" } sort keys %$h),
           qr/client-secret|client-agent|client-token|client-host|6\.6\.6\.6|client\.example/,
           "$name: no client value anywhere");
    like($h->{'content-type'} // '', qr{^application/json}, "$name: JSON");
}

for my $mode ('sync', 'after', 'async') {
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(conf($fac));
    my $uri = $mode eq 'sync' ? '/doc.txt' : "/$mode/doc.txt";
    my $r = $ng->get($uri, { %CLIENT, 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, "$mode: paid");
    my $end = time + 3;
    sleep 0.05 while time < $end && grep({ $_->{endpoint} eq 'settle' } $fac->requests) < 1;
    my @seen = $fac->requests;
    is(join(' ', map { $_->{endpoint} } @seen), 'verify settle', "$mode: verify settle");
    # async: the /settle runs on a request of the module's own
    check_clean("$mode $_->{endpoint}", $_,
                $mode eq 'async' && $_->{endpoint} eq 'settle') for @seen;
    $ng->stop;
    $fac->stop;
}

# the async settlement's retry (a request of the module's own)
{
    my $fac = start_facilitator(script => "verify: default\nsettle: 502 {}\n");
    my $ng = start_nginx(conf($fac));
    my $r = $ng->get('/async/doc.txt', { %CLIENT, 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'retry: served on credit');
    my $end = time + 3;
    sleep 0.05 while time < $end && grep({ $_->{endpoint} eq 'settle' } $fac->requests) < 1;
    $fac->set_script("verify: default\nsettle: default\n");
    $end = time + 10;
    sleep 0.1 while time < $end && grep({ $_->{endpoint} eq 'settle' } $fac->requests) < 2;
    my @settles = grep { $_->{endpoint} eq 'settle' } $fac->requests;
    ok(@settles >= 2, 'retry: the settlement was retried');
    check_clean("retry settle $_", $settles[$_], 1) for 0 .. $#settles;
    $ng->stop;
    $fac->stop;
}

done_testing();
