# Scopes: a grant (x402_grant) is valid only on the virtual host it was
# paid on (server block, host name) besides the location and
# the offer; $x402_store survives internal redirects and is not cached from
# before the payment was reserved.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

sub paid_server {
    my ($listen, $name, $body, $extra) = @_;
    $extra //= '';
    return <<"EOS";
    server {
        listen 127.0.0.1:$listen $extra;
        server_name $name;
        location /grant/ { x402_grant 10m; root html/$body; }
    }
EOS
}

{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $fp = $fac->port;
    my $port = free_port();
    my $port2 = free_port();
    my $common = <<"EOH";
    x402_price 0.001;
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
EOH
    # every server reaches the facilitator through its own internal location
    my $fac_loc = "location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }";
    my $http = $common
        . paid_server($port, 'a.example alias.example', 'a')
        . paid_server($port, 'b.example', 'b')
        . paid_server($port2, 'other.example', 'other', 'default_server');
    $http =~ s/(location \/grant\/)/$fac_loc\n        $1/g;

    my $ng = start_nginx(port => $port, http_config => $http,
                         config => "location / { return 404; }\n",
                         user_files => ">>> a/grant/x\ncontent of a\n>>> b/grant/x\ncontent of b\n"
                                     . ">>> other/grant/x\ncontent of the default server on another port\n");
    my $h = sign_payment(amount => '1000');

    my $r = $ng->get('/grant/x', { Host => 'a.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 200, 'a.example: paid');
    is($r->{body}, "content of a\n", 'a.example: content');

    $r = $ng->get('/grant/x', { Host => 'a.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 200, 'a.example: the grant reads again');
    is($r->{body}, "content of a\n", 'a.example: granted content');

    $r = $ng->get('/grant/x', { Host => 'b.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 402, 'b.example: same price, payTo and location, another server: 402');
    unlike($r->{body}, qr/content of b/, 'b.example: nothing served');

    $r = $ng->get('/grant/x', { Host => 'alias.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 402, 'alias.example: another host name of the same server: 402');

    $r = X402::HTTP::http_get($port2, '/grant/x', { Host => 'a.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 402, 'another port with Host a.example (its default server): 402');
    unlike($r->{body} // '', qr/content of the default/, 'another port: nothing served');

    my @settles = grep { $_->{endpoint} eq 'settle' } $fac->requests;
    is(scalar @settles, 1, 'settled once');

    $ng->stop;
    $fac->stop;
}

# the same with Redis, across a fleet: honoured by another nginx on the
# same virtual host, not on another
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $fp = $fac->port;
    my $redis = X402::Redis->start;
    my $rp = $redis->port;
    my $fac_loc = "location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }";
    my @ng;
    for my $i (1, 2) {
        my $port = free_port();
        my $http = <<"EOH"
    x402_redis 127.0.0.1:$rp;
    x402_price 0.001;
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
EOH
            . paid_server($port, 'a.example', 'a') . paid_server($port, 'b.example', 'b');
        $http =~ s/(location \/grant\/)/$fac_loc\n        $1/g;
        push @ng, start_nginx(port => $port, name => "fleet$i", http_config => $http,
                              config => "location / { return 404; }\n",
                              user_files => ">>> a/grant/x\ncontent of a\n>>> b/grant/x\ncontent of b\n");
    }
    my $h = sign_payment(amount => '1000');
    my $r = $ng[0]->get('/grant/x', { Host => 'a.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 200, 'redis: paid at one, a.example');
    is($ng[0]->get('/grant/x', { Host => 'b.example', 'PAYMENT-SIGNATURE' => $h })->{status},
       402, 'redis: b.example at the same nginx: 402');
    $r = $ng[1]->get('/grant/x', { Host => 'a.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 200, 'redis: a.example at the other nginx: the grant holds');
    is($r->{body}, "content of a\n", 'redis: granted content');
    $r = $ng[1]->get('/grant/x', { Host => 'b.example', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 402, 'redis: b.example at the other nginx: 402');
    unlike($r->{body}, qr/content of b/, 'redis: nothing served');
    $_->stop for @ng;
    $redis->stop;
    $fac->stop;
}

# $x402_store after internal redirects, and not cached from before
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $fp = $fac->port;
    my $ng = start_nginx(
        http_config => "    log_format st '\$uri|\$x402_status|\$x402_store|\$pre';\n",
        config => <<"EOC",
access_log logs/st.log st;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }
location /p/ { set \$pre "[\$x402_store]"; try_files \$uri \@back; add_header X-Store \$x402_store always; }
location \@back { rewrite ^ /b.txt break; add_header X-Store \$x402_store always; }
location /q/ { set \$pre "[\$x402_store]"; add_header X-Store \$x402_store always; }
EOC
        user_files => ">>> b.txt\nback\n>>> q/doc.txt\nq\n");

    my $r = $ng->get('/p/missing', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'redirect: paid');
    is($r->{body}, "back\n", 'redirect: served by the named location');
    is(X402::HTTP::header($r, 'X-Store'), 'zone', 'redirect: $x402_store in the header');

    $r = $ng->get('/q/doc.txt', { 'PAYMENT-SIGNATURE' => scalar sign_payment(amount => '1000') });
    is($r->{status}, 200, 'no redirect: paid');
    is(X402::HTTP::header($r, 'X-Store'), 'zone',
       'no redirect: $x402_store not cached from before the reservation');

    $ng->stop;
    open my $fh, '<', $ng->prefix . '/logs/st.log' or die $!;
    my @l = map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
    is($l[0][0], '/b.txt', 'log: after the redirect');
    is($l[0][1], 'settled', 'log: settled');
    is($l[0][2], 'zone', 'log: $x402_store survives the redirect');
    is($l[0][3], '[]', 'log: empty before the payment');
    is($l[1][2], 'zone', 'log: $x402_store not cached');
    is($l[1][3], '[]', 'log: empty before the payment (no redirect)');
    $fac->stop;
}

done_testing();
