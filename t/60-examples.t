# Every conf-examples/*.conf loads: `nginx -t` with the built module, after
# the substitutions of X402::Examples (module path, ports, paths, the
# facilitator's and Redis's addresses).
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::Examples qw(example_files example_conf);

plan skip_all => 'module not built' unless -f module_path();

my @files = example_files();
ok(scalar(grep { m{/(add-to-existing-site|static-for-agents|fleet-redis)\.conf$} } @files) == 3,
   'the three uses have an example');

for my $file (@files) {
    (my $name = $file) =~ s{.*/}{};
    my $prefix = servroot() . "/example-$name";
    my ($conf) = example_conf($file, prefix => $prefix);
    my $path = "$prefix/conf/nginx.conf";
    open my $fh, '>', $path or die "$path: $!";
    print $fh $conf;
    close $fh;

    my ($rc, $out) = X402::Nginx::_run(nginx_binary(), '-p', "$prefix/",
                                       '-c', $path, '-t');
    is($rc, 0, "$name: nginx -t") or diag($out);
    like($out, qr/test is successful/, "$name: test is successful");
    unlike($out, qr/\[(emerg|alert|crit)\]/, "$name: no emerg/alert/crit");
    unlike($out, qr/\[warn\]/, "$name: no warnings") or diag($out);
}

# Every example starts while DNS is down: no proxy_pass names a host that
# nginx would resolve at start-up (a name that is neither an IP address nor
# an upstream block of the file); the facilitator is named by a variable and
# resolved per request by `resolver`.
for my $file (@files) {
    (my $name = $file) =~ s{.*/}{};
    open my $fh, '<', $file or die "$file: $!";
    my $c = do { local $/; <$fh> };
    close $fh;
    $c =~ s/#[^\n]*//g;
    my %upstreams = map { $_ => 1 } $c =~ /^\s*upstream\s+(\S+)\s*\{/mg;
    my @named;
    while ($c =~ m{\bproxy_pass\s+\w+://([^/;:\s]+)}g) {
        my $host = $1;
        next if $host =~ /^\$/ || $host =~ /^[\d.]+$/ || $host =~ /^\@/
             || $upstreams{$host};
        push @named, $host;
    }
    is("@named", '', "$name: no host resolved at start-up in proxy_pass");
    if ($c =~ m{proxy_pass\s+\w+://\$}) {
        like($c, qr/^\s*resolver\s+\S/m, "$name: a resolver for the variable's name");
    }
}

done_testing();
