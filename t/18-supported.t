# What facilitators support (issue 12 item 3): one worker asks each
# facilitator prefix `GET <prefix>supported` in the background, half a
# second after it starts (never on a client's request path), keeps the
# answer in shared memory, and on a new answer logs loudly every priced
# option its facilitator does not list: [error] for a missing v2 kind,
# [warn] for a missing v1 kind. A failing facilitator is asked again with
# backoff (5 s first). Through x402_facilitator_auth the GET carries its
# own token (t/68).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Time::HiRes qw(sleep time);

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

sub wait_for {
    my ($cond, $secs) = @_;
    my $end = time + ($secs // 5);
    sleep 0.05 until $cond->() || time > $end;
    return $cond->();
}

sub supported_calls { grep { $_->{endpoint} eq 'supported' } $_[0]->requests(all => 1) }

# base-sepolia listed in v2 and v1, Base in v2 only, Polygon not at all
my $ANSWER = '{"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:84532"},'
    . '{"x402Version":1,"scheme":"exact","network":"base-sepolia"},'
    . '{"x402Version":2,"scheme":"exact","network":"eip155:8453"}],'
    . '"extensions":[],"signers":{}}';

sub conf {
    my ($fac, $fac2) = @_;
    my $fp = $fac->port;
    my $fp2 = $fac2 ? $fac2->port : 1;
    return (workers => 2, config => <<"EOC");
x402_pay_to $PAY_TO;
x402_facilitator /_x402/;
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$fp/;
}
location /_x402_b/ {
    internal;
    proxy_pass http://127.0.0.1:$fp2/;
}
location /sepolia/ { x402_price 0.001; x402_network base-sepolia; }
location /sepolia/inner/ { }
location /base/ { x402_price 0.001; x402_network base; }
location /polygon/ { x402_price \$arg_p; x402_network polygon; }
location /other/ { x402_price 0.001; x402_network base; x402_facilitator /_x402_b/; }
location /free/ { }
EOC
}

{
    my $fac = start_facilitator(script => "supported: 200 $ANSWER\n");
    my $fac2 = start_facilitator(script => "supported: default\n");
    my $ng = start_nginx(conf($fac, $fac2));

    # requests before and after the background GET never cause one
    my $r = $ng->get('/sepolia/x');
    is($r->{status}, 402, 'a 402 right after the start');
    ok(wait_for(sub { supported_calls($fac) >= 1 && supported_calls($fac2) >= 1 }),
       'each facilitator was asked GET /supported');
    $ng->get('/sepolia/x') for 1 .. 5;
    sleep 1;
    is(scalar(supported_calls($fac)), 1, 'once, by one of the two workers, whatever the traffic');
    is(scalar(supported_calls($fac2)), 1, 'the second facilitator once too');
    my ($call) = supported_calls($fac);
    is($call->{method}, 'GET', 'a GET');
    is($call->{path}, '/supported', 'of <prefix>supported');
    is($call->{headers}{accept}, 'application/json', 'asking for JSON');

    ok(wait_for(sub { $ng->error_log =~ /facilitator "\/_x402\/" supports 3 kind/ }),
       'the answer is read') or diag($ng->error_log);
    my $log = $ng->error_log;
    like($log, qr/\[error\].*location "\/polygon\/": option 1 \(exact on eip155:137, asset 0x[0-9a-fA-F]{40}\) is NOT supported by its facilitator "\/_x402\/"/,
         'an option its facilitator does not list: [error], naming location, option and facilitator');
    like($log, qr/\[warn\].*location "\/base\/": option 1 \(exact on base\): facilitator "\/_x402\/" lists no x402Version 1 kind/,
         'a missing v1 kind: [warn]');
    unlike($log, qr/location "\/sepolia\/".*NOT supported|location "\/sepolia\/": option 1 \(exact on base-sepolia\)/,
           'a supported option: nothing said');
    unlike($log, qr/location "\/other\/"/, 'a location using another facilitator is checked against that one');
    is(() = $log =~ /NOT supported/g, 1, 'one [error] line in all');
    $ng->stop;
    $fac->stop;
    $fac2->stop;
}

# a facilitator that fails is asked again (backoff), and then checked
{
    my $fac = start_facilitator(script => "supported: 503 {\"error\":\"down\"}\nsupported: 200 $ANSWER\n");
    my $ng = start_nginx(conf($fac));
    ok(wait_for(sub { $ng->error_log =~ /GET "\/_x402\/supported" failed.*status 503/ }),
       'a failure is logged with its status') or diag($ng->error_log);
    unlike($ng->error_log, qr/\[error\]/, 'a failing probe logs no [error] of nginx\'s own');
    ok(wait_for(sub { $ng->error_log =~ /NOT supported/ }, 9), 'asked again after the backoff, then checked');
    is(scalar(supported_calls($fac)), 2, 'twice in all');
    $ng->stop;
    $fac->stop;
}

# garbage and a dead facilitator: a [warn], never a crash, no [error]
{
    my $fac = start_facilitator(script => "supported: 200 {\"kinds\":7}\n");
    my $ng = start_nginx(conf($fac));
    ok(wait_for(sub { $ng->error_log =~ /answered what is not a SupportedResponse: .*kinds/ }),
       'a malformed answer is named') or diag($ng->error_log);
    ok(wait_for(sub { $ng->error_log =~ /facilitator "\/_x402_b\/": GET "\/_x402_b\/supported" failed/ }),
       'a dead facilitator: warned');
    unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'nothing worse than a warning');
    is($ng->get('/sepolia/x')->{status}, 402, 'still serving');
    $ng->stop;
    $fac->stop;
}

# an answer beyond the shared memory slot (64 KiB), let through by a large
# subrequest_output_buffer_size: refused, named, nothing overflows
{
    my $big = '{"kinds":[' . (' ' x 70000) . '],"extensions":[],"signers":{}}';
    my $fac = start_facilitator(script => "supported: 200 $big\n");
    my $fp = $fac->port;
    my $ng = start_nginx(config => <<"EOC");
x402_pay_to $PAY_TO;
x402_facilitator /_x402/;
location /_x402/ {
    internal;
    subrequest_output_buffer_size 256k;
    proxy_pass http://127.0.0.1:$fp/;
}
location /sepolia/ { x402_price 0.001; x402_network base-sepolia; }
EOC
    ok(wait_for(sub { $ng->error_log =~ /answered what is not a SupportedResponse: the answer is larger than 65536 bytes \(status 200, 70\d\d\d bytes\)/ }),
       'an answer larger than the slot: refused and named') or diag($ng->error_log);
    is($ng->get('/sepolia/x')->{status}, 402, 'still serving');
    unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]|signal \d+/, 'no crash');
    $ng->stop;
    $fac->stop;
}

done_testing();
