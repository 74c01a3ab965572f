package X402::Examples;

# conf-examples/*.conf made runnable here: the module path, listen ports,
# pid and log paths, the facilitator and Redis addresses and document roots
# are replaced by the test's own; everything else is the file as shipped.

use strict;
use warnings;

use File::Path qw(make_path);
use Exporter qw(import);

use X402::Test ();

our @EXPORT_OK = qw(example_files example_conf);

sub example_files {
    my $dir = X402::Test::repo_root() . '/conf-examples';
    opendir my $dh, $dir or die "$dir: $!";
    my @f = sort grep { /\.conf$/ } readdir $dh;
    closedir $dh;
    return map { "$dir/$_" } @f;
}

# example_conf($file, prefix => DIR, ports => [..] (filled in, in order of
# the listen lines), fac_port =>, redis_port =>, root => DIR)
# -> (conf text, [listen ports])
sub example_conf {
    my ($file, %a) = @_;
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    my $c = <$fh>;
    close $fh;

    my $p = $a{prefix};
    make_path("$p/logs", "$p/conf", "$p/html", "$p/tmp");
    my $module = X402::Test::module_path();
    my $fac = $a{fac_port} || X402::Test::free_port();
    my $redis = $a{redis_port} || X402::Test::free_port();
    my $root = $a{root} || "$p/html";
    my @ports;

    # demo.conf is a template of scripts/demo.sh
    $c =~ s/\@MODULE\@/$module/g;
    $c =~ s/\@RUN\@/$p/g;
    $c =~ s/\@FACILITATOR_PORT\@/$fac/g;
    $c =~ s/\@PAY_TO\@/0x209693Bc6afc0C5328bA36FaF03C514EF312287C/g;
    $c =~ s/\@(UPSTREAM_PORT|PORT)\@/free_port_for(\@ports, $a{ports})/ge;
    $c =~ s{^\s*html\s*$}{}mg;

    $c =~ s{^(\s*load_module\s+)\S*ngx_http_x402_module\.so;}{$1$module;}m;
    # The example's `user` (www-data) cannot read a checkout under a 0700
    # home (root's, on Debian): as root the workers run as root here, as in
    # every test config (X402::Nginx); otherwise `user` would be ignored.
    $c =~ s{^\s*user\s+[^;]*;\n?}{}m;
    $c = "user root root;\n" . $c if $> == 0;
    $c =~ s{^(\s*pid\s+)[^;]+;}{$1$p/logs/nginx.pid;}m;
    $c =~ s{/var/log/nginx/}{$p/logs/}g;
    $c =~ s{^(\s*listen\s+)(?!127\.0\.0\.1:\d+;)[^;]+;}
           {$1 . '127.0.0.1:' . free_port_for(\@ports, $a{ports}) . ';'}mge;
    $c =~ s{^(\s*listen\s+)127\.0\.0\.1:(\d+);}
           {$1 . '127.0.0.1:' . ($2 == 9402 ? free_port_for(\@ports, $a{ports}) : $2) . ';'}mge;
    $c =~ s{https://x402\.org/facilitator/}{http://127.0.0.1:$fac/}g;
    # the facilitator named at request time (resolver + variable): its
    # address here, plain http (an IP literal needs no resolver)
    $c =~ s{^(\s*set\s+\$facilitator_host\s+)x402\.org;}{${1}127.0.0.1:$fac;}mg;
    $c =~ s{https://\$facilitator_host\b}{http://\$facilitator_host}g;
    $c =~ s{(x402_redis\s+)[\w.-]+:\d+}{${1}127.0.0.1:$redis}g;
    $c =~ s{^(\s*root\s+)/srv/[^;]*;}{$1$root;}mg;
    $c =~ s{^(\s*server\s+)127\.0\.0\.1:8080;}
           {$1 . '127.0.0.1:' . ($a{app_port} || X402::Test::free_port()) . ';'}mge;

    # a CDP API key (x402_facilitator_auth): a placeholder made here, an
    # EC P-256 key of no account, so that the file loads as shipped
    while ($c =~ m{\bkey=(/etc/nginx/\S+?)(?=[\s;])}g) {
        my $orig = $1;
        (my $base = $orig) =~ s{.*/}{};
        my $key = "$p/conf/$base";
        system('openssl', 'ecparam', '-name', 'prime256v1', '-genkey',
               '-noout', '-out', $key) == 0
            or die "openssl could not make a placeholder key $key\n"
            unless -s $key;
        $c =~ s{\bkey=\Q$orig\E}{key=$key}g;
    }

    # where nothing says otherwise, logs and temp files go to the prefix
    # a main-level error_log always: without one nginx keeps the stderr it
    # was started with (the harness's pipe) open in the daemon
    $c = "error_log $p/logs/error.log info;\n" . $c;
    $c =~ s{^(\s*http\s*\{)}{$1\n    client_body_temp_path $p/tmp/body;\n    proxy_temp_path $p/tmp/proxy;\n    fastcgi_temp_path $p/tmp/fastcgi;\n    uwsgi_temp_path $p/tmp/uwsgi;\n    scgi_temp_path $p/tmp/scgi;\n}m
        unless $c =~ /client_body_temp_path/;
    $c = "pid $p/logs/nginx.pid;\n" . $c unless $c =~ /^\s*pid\s/m;

    # temp paths must exist (demo.sh creates its own)
    while ($c =~ m{^\s*\w+_temp_path\s+(\S+?)/\w+;}mg) {
        make_path($1);
    }

    return ($c, \@ports);
}

sub free_port_for {
    my ($ports, $given) = @_;
    my $port = ($given && @$given > @$ports) ? $given->[@$ports]
                                             : X402::Test::free_port();
    push @$ports, $port;
    return $port;
}

1;
