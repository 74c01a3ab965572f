# Review pass (issue 9/14): attacks tried on the real nginx; each block is
# a hole found (or a hardening) and fails on the code before its fix.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use Time::HiRes ();

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

# A grant paid on one server block is read on another server block that
# listens on another port with the same server_name (or none: the usual
# "one site per port" layout): the scope hashes names only.
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $fp = $fac->port;
    my $port = free_port();
    my $port2 = free_port();
    my $http = <<"EOH";
    x402_price 0.001;
    x402_pay_to $PAY_TO;
    x402_network base-sepolia;
    x402_facilitator /_x402/;
    server {
        listen 127.0.0.1:$port2;
        server_name localhost;
        location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }
        location /grant/ { x402_grant 10m; root html/b; }
    }
EOH
    my $ng = start_nginx(port => $port, http_config => $http,
                         config => "location /_x402/ { internal; proxy_pass http://127.0.0.1:$fp/; }\n"
                                 . "location /grant/ { x402_grant 10m; root html/a; }\n",
                         user_files => ">>> a/grant/x\ncontent of a\n>>> b/grant/x\ncontent of b on another port\n");
    my $h = sign_payment(amount => '1000');
    my $r = $ng->get('/grant/x', { Host => 'localhost', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 200, 'grant/port: paid on the first server');
    is($r->{body}, "content of a\n", 'grant/port: its content');

    # both servers are "server_name localhost"
    # TODO: open. Adding the local port to the scope fixes this but breaks
    # a fleet whose members listen on different ports (t/15's Redis fleet
    # does); needs a decision (port in the scope, or an explicit scope name).
    local $TODO = 'grant scope ignores the listen port (same server_name on two ports)';
    $r = X402::HTTP::http_get($port2, '/grant/x', { Host => 'localhost', 'PAYMENT-SIGNATURE' => $h });
    is($r->{status}, 402, 'grant/port: another server block on another port: 402');
    unlike($r->{body} // '', qr/another port/, 'grant/port: nothing served');
    $ng->stop;
    $fac->stop;
}

# A CORS preflight is not charged and reaches the location's handling; an
# upstream that answers OPTIONS like GET (many frameworks, a PHP script)
# then hands the priced body out free. The preflight gets the upstream's
# status and headers, never a body.
{
    my $up = free_port();
    my $http = <<"EOH";
    server {
        listen 127.0.0.1:$up;
        location / { return 200 "priced body from the upstream\\n"; }
    }
EOH
    my $ng = start_nginx(http_config => $http, config => <<"EOC");
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
location /_x402/ { internal; return 500; }
location /api/ { proxy_pass http://127.0.0.1:$up; }
location /api-nobuf/ { proxy_buffering off; proxy_pass http://127.0.0.1:$up; }
EOC
    for my $loc ('/api/', '/api-nobuf/') {
        my $r = $ng->request("OPTIONS ${loc}doc",
                             "Origin: https://app.example\nAccess-Control-Request-Method: GET\n");
        isnt($r->{status}, 402, "preflight $loc: not charged");
        unlike($r->{body} // '', qr/priced body/, "preflight $loc: no priced body without payment");
        my $g = $ng->get("${loc}doc");
        is($g->{status}, 402, "GET $loc: 402");
    }
    $ng->stop;
    unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'preflight: no alert in the error log');
}

# Spool replay into a zone too small for what is owed: the replay stops
# ("the rest stays there"), then the start compacts the spool with just the
# queue and the rest is gone from disk: owed settlements lost.
{
    use X402::StoreTest;
    my $fac = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");
    my $fp = $fac->port;
    my $n = 40;
    my $zone = sub { store_http_config("    x402_zone x402:$_[0];\n") };
    my $ng = start_nginx(name => 'spool-small', http_config => $zone->('1m'),
                         config => store_server_config($fp, settle => 'async',
                             extra => "location = /pending { return 200 \$x402_pending; }\n"));
    my @p = payments_for($ng, $n);
    my $served = grep { $ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $_->[0] })->{status} == 200 } @p;
    is($served, $n, "spool/small zone: $n served on credit");
    ok(wait_for(5, sub { ($ng->get('/pending')->{body} // 0) == $n }), "spool/small zone: $n owed");
    my $spool = $ng->prefix . '/x402_spool/settlements';
    my $owed = sub {
        open my $fh, '<', $spool or return -1;
        my (%owe, %done);
        while (<$fh>) { $owe{$1} = 1 if /^owe (\S+)/; $done{$1} = 1 if /^done (\S+)/; }
        return scalar grep { !$done{$_} } keys %owe;
    };
    is($owed->(), $n, "spool/small zone: $n owed in the spool");
    my $kill = sub {
        my $pid = $ng->pid; my @w = $ng->worker_pids;
        kill 'KILL', $pid, @w;
        wait_for(5, sub { !grep { X402::Nginx::pid_alive($_) } $pid, @w });
        $ng->{pid} = undef;
    };
    $kill->();

    # restarted with a smaller zone (an operator's mistake, or a zone
    # that also holds many records): not everything fits
    $ng->{http_config} = $zone->('32k');
    $ng->_write_files;
    $ng->start;
    sleep 0.5;
    like($ng->error_log, qr/too small for the settlements owed/, 'spool/small zone: replay stopped');
    $kill->();
    is($owed->(), $n, "spool/small zone: still $n owed in the spool after that start");

    # back to a big zone, facilitator up: everything settles
    $fac->set_script("verify: default\nsettle: default\n");
    my $since = Time::HiRes::time();
    $ng->{http_config} = $zone->('1m');
    $ng->_write_files;
    $ng->start;
    ok(wait_for(15, sub { ($ng->get('/pending')->{body} // -1) == 0 }), 'spool/small zone: nothing owed at the end');
    my %settled;
    $settled{$_->{json}{paymentPayload}{payload}{authorization}{nonce}} = 1
        for grep { $_->{endpoint} eq 'settle' && $_->{t} >= $since } $fac->requests;
    my $ok = grep { $settled{decode_b64_json($_->[0])->{payload}{authorization}{nonce}} } @p;
    is($ok, $n, "spool/small zone: all $n settled in the end");
    $ng->stop;
    $fac->stop;
}

# A settlement body of 32767 or 32768 bytes is accepted when queued (at
# most NGX_HTTP_X402_ASYNC_BODY_MAX, 32768) but its base64 decodes to an
# estimated 32769 bytes at replay: the line was taken for malformed and
# the settlement dropped from the queue.
{
    use MIME::Base64 qw(encode_base64);
    my $fac = start_facilitator(script => "verify: default\nsettle: 500 {\"error\":\"down\"}\n");
    my $ng = X402::Nginx->new(name => 'spool-edge', http_config => store_http_config(),
                              config => store_server_config($fac->port, settle => 'async',
                                  extra => "location = /pending { return 200 \$x402_pending; }\n"));
    my $dir = $ng->prefix . '/x402_spool';
    mkdir $dir;
    open my $fh, '>', "$dir/settlements" or die $!;
    my $t = time + 3600;
    for my $len (32767, 32768) {
        my $body = '{"x":"' . ('a' x ($len - 8)) . '"}';
        print $fh join(' ', 'owe', sprintf('%064x', $len), $t, $t, 0, 0, 0,
                       encode_base64('/_x402/settle', ''), encode_base64($body, '')), "\n";
    }
    close $fh;
    $ng->start;
    like($ng->error_log, qr/resumed 2 async settlement\(s\)/, 'spool edge: both bodies at the size bound resumed');
    unlike($ng->error_log, qr/malformed record/, 'spool edge: none taken for malformed');
    $ng->stop;
    $fac->stop;
}

done_testing();
