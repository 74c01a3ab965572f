# A paid POST: the client's request body reaches the upstream intact in
# every settle mode, and the facilitator gets the module's JSON, never the
# client's body.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Digest::MD5 qw(md5_hex);

plan skip_all => 'module not built' unless -f module_path();
my $echo = '/usr/lib/nginx/modules/ngx_http_echo_module.so';
# Debian's echo module is built for Debian's nginx only
plan skip_all => 'no echo module for this nginx'
    unless -f $echo && `@{[nginx_binary()]} -v 2>&1` =~ m{nginx/1\.22\.1\b};

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $up = free_port();
my $fp = $fac->port;

my $ng = start_nginx(main_config => "load_module $echo;", http_config => <<"EOH", config => <<"EOC");
    server {
        listen 127.0.0.1:$up;
        client_max_body_size 10m;
        client_body_buffer_size 10m;
        location / {
            echo_read_request_body;
            echo_request_body;
        }
    }
EOH
client_max_body_size 10m;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }
location /sync/ { proxy_pass http://127.0.0.1:$up; }
location /after/ { x402_settle after; proxy_pass http://127.0.0.1:$up; }
location /async/ { x402_settle async; proxy_pass http://127.0.0.1:$up; }
EOC

my $body = join "\n", map { "line $_ of the client's own body" } 1 .. 20000;

for my $mode (qw(sync after async)) {
    my $before = () = $fac->requests;
    my $r = $ng->request("POST /$mode/api\n$body",
                         "Content-Type: text/plain\nPAYMENT-SIGNATURE: "
                         . sign_payment(amount => '1000'),
                         timeout => 20);
    is($r->{status}, 200, "$mode: 200");
    is(md5_hex($r->{body}), md5_hex($body), "$mode: the upstream got the body intact");
    # async settles after the response: wait for its /settle to arrive
    if ($mode eq 'async') {
        my $end = time + 10;
        while (time < $end) {
            my @all = $fac->requests;
            last if @all >= $before + 2;
            select(undef, undef, undef, 0.05);
        }
    }
    my @seen = ($fac->requests)[$before .. $before + 1];
    is(join(' ', map { $_->{endpoint} // '' } @seen), 'verify settle',
       "$mode: verify and settle");
    for my $s (@seen) {
        ok($s->{json} && $s->{json}{paymentPayload},
           "$mode $s->{endpoint}: the module's JSON");
        unlike($s->{body}, qr/client's own body/, "$mode $s->{endpoint}: not the client's body");
    }
}

my $r = $ng->request("POST /sync/api\n$body", "Content-Type: text/plain");
is($r->{status}, 402, 'unpaid POST: 402, body discarded');

$ng->stop;
unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'clean log');
$fac->stop;

done_testing();
