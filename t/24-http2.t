# HTTP/2 clients (curl, prior knowledge): the 402, and paid requests in
# sync and after modes. The facilitator subrequests of an HTTP/2 request
# carry their own body and headers just the same.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Digest::MD5 qw(md5_hex);

plan skip_all => 'module not built' unless -f module_path();
plan skip_all => 'curl without HTTP/2'
    unless (`curl --version 2>/dev/null` // '') =~ /HTTP2/;
plan skip_all => 'nginx without HTTP/2'
    unless `@{[nginx_binary()]} -V 2>&1` =~ /--with-http_v2_module/;

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $big = join '', map { sprintf "%07d h2 body line\n", $_ } 1 .. 40000;

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $h2 = free_port();
my $fp = $fac->port;

my $ng = start_nginx(http_config => <<"EOH", user_files => ">>> doc.txt\nh2 content\n>>> after/big.txt\n$big");
    server {
        listen 127.0.0.1:$h2 http2;
        root html;
        x402_price 0.001;
        x402_pay_to $PAY_TO;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }
        location /after/ { x402_settle after; }
    }
EOH

sub h2_get {
    my ($path, @headers) = @_;
    my $out = servroot() . "/h2-body-$$";
    my @cmd = ('curl', '-s', '--http2-prior-knowledge', '-D', '-', '-o', $out,
               '--max-time', '10', map({ ('-H', $_) } @headers),
               "http://127.0.0.1:$h2$path");
    open my $p, '-|', @cmd or die "curl: $!";
    local $/;
    my $head = <$p> // '';
    close $p;
    my %h;
    my ($status) = $head =~ m{^HTTP/2 (\d+)}m;
    $h{lc $1} = $2 while $head =~ /^([\w-]+):\s*(.*?)\r?$/mg;
    open my $fh, '<', $out or return ($status, \%h, '');
    my $body = <$fh> // '';
    close $fh;
    return ($status, \%h, $body);
}

my ($st, $h, $body) = h2_get('/doc.txt');
is($st, 402, 'h2: 402');
my $pr = decode_b64_json($h->{'payment-required'} // 'e30=');
like($pr->{resource}{url} // '', qr{^http://127\.0\.0\.1:$h2/doc\.txt$},
     'h2: resource.url from :authority');

($st, $h, $body) = h2_get('/doc.txt', 'PAYMENT-SIGNATURE: ' . sign_payment(amount => '1000'));
is($st, 200, 'h2 sync: 200');
is($body, "h2 content\n", 'h2 sync: content');
ok(decode_b64_json($h->{'payment-response'} // 'e30=')->{success}, 'h2 sync: settled');

($st, $h, $body) = h2_get('/after/big.txt', 'PAYMENT-SIGNATURE: ' . sign_payment(amount => '1000'));
is($st, 200, 'h2 after: 200');
is(md5_hex($body), md5_hex($big), 'h2 after: body intact');
ok(decode_b64_json($h->{'payment-response'} // 'e30=')->{success}, 'h2 after: settled');

my @seen = $fac->requests;
is(join(' ', map { $_->{endpoint} } @seen), 'verify settle verify settle',
   'h2: facilitator calls');
is($seen[0]{method}, 'POST', 'h2: subrequest is a POST');
is($seen[0]{headers}{'content-length'}, length $seen[0]{body}, 'h2: body length');

$ng->stop;
unlike($ng->error_log, qr/\[(error|crit|alert|emerg)\]/, 'h2: clean log');
$fac->stop;

done_testing();
