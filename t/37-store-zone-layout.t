# The store zone across a reload that loads the module from another file
# (issue 9, item 9). nginx reuses a shared zone only for the same module
# object, so such a reload gets a new zone: the old one is found by name,
# its header (magic, layout, structure sizes) says whether this build can
# read it, and then its records are carried over (a served payment stays
# refused) -- or, written by a build with another layout, the reload is
# refused with an emerg naming the zone, and the running configuration
# keeps serving with its records.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::StoreTest;
use File::Copy qw(copy);
use File::Basename ();
use Time::HiRes qw(time sleep);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $dir = servroot();

# the running nginx's config loads $dir/TO.so instead of FROM.so; a HUP by
# hand (the reload may be refused); returns the error log's length before
sub hup_loading {
    my ($ng, $from, $to) = @_;
    my $conf = $ng->prefix . '/conf/nginx.conf';
    open my $fh, '<', $conf or die "$conf: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    $text =~ s{load_module \S+/\Q$from\E\.so;}{load_module $dir/$to.so;}
        or die "no load_module $from.so in $conf\n";
    open $fh, '>', $conf or die "$conf: $!";
    print $fh $text;
    close $fh;
    my $before = length $ng->error_log;
    kill 'HUP', $ng->pid;
    return $before;
}

# two files with the same build: two module objects for the dynamic loader
copy(module_path(), "$dir/a.so") or die "copy: $!";
copy(module_path(), "$dir/b.so") or die "copy: $!";

my $server = store_server_config($fac->port);

# this build's layout, as its source says
my ($layout) = do {
    open my $h, '<', repo_root() . '/src/ngx_http_x402_store_int.h' or die $!;
    local $/;
    <$h> =~ /#define NGX_HTTP_X402_ZONE_LAYOUT\s+(\d+)/;
};

my $ng = start_nginx(
    module => 0,
    workers => 2,
    main_config => "load_module $dir/a.so;",
    http_config => store_http_config(),
    config => $server,
);

my @p = payments_for($ng, 4);
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 200,
   'a payment served (module a.so)');

$ng->reload(main_config => "load_module $dir/b.so;");
like($ng->error_log, qr/zone "x402" resized: 1 authorizations/,
     'reload with the module from another file: the record is carried over');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[0][0] })->{status}, 402,
   'the served payment is still refused');
is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 200,
   'a new one is served');

# ---- a build with another zone layout ----

SKIP: {
    # scripts/build-module.sh builds for Debian's nginx: another nginx under
    # test (scripts/test-nginx-upstream.sh) would refuse the variant's version
    skip 'the layout variant is built for /usr/sbin/nginx only', 4
        if ($ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx') ne '/usr/sbin/nginx';

    # built once into build/, then reused; with the C++ core of the build
    # under test when there is one (the layout is the glue's: the core
    # would be the same, and building it is most of the time)
    my $other = repo_root() . '/build/t37-layout';
    if (!-f "$other/ngx_http_x402_module.so") {
        my $core = File::Basename::dirname(module_path()) . '/nginx-debian/objs/x402core';
        my $shared = -f "$core/libx402core.a" ? "X402_CORE_BUILD_DIR=$core " : '';
        my $rc = system('bash', '-c',
            "BUILD_DIR=$other X402_NGINX_CC_OPT=-DNGX_HTTP_X402_ZONE_LAYOUT=99 $shared"
            . repo_root() . "/scripts/build-module.sh "
            . ">$dir/layout-build.log 2>&1");
        skip 'cannot build the module with another layout', 4 if $rc;
    }
    copy("$other/ngx_http_x402_module.so", "$dir/c.so") or die "copy: $!";

    # the config now loads c.so; a HUP by hand: the reload must fail
    my $before = hup_loading($ng, 'b', 'c');
    ok(wait_for(10, sub {
        substr($ng->error_log, $before) =~ /was written by a module build/ }),
       'a zone with another layout: the reload is refused');
    like(substr($ng->error_log, $before),
         qr/\[emerg\].*x402 zone "x402" was written by a module build with another layout \($layout, this build 99\)/,
         'with an emerg naming the zone and both layouts');
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[1][0] })->{status}, 402,
       'the running configuration keeps its records');
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $p[2][0] })->{status}, 200,
       'and serves');
}
$ng->stop;

# ---- a zone written by the build this one replaces ----
# X402_PREVIOUS_MODULE=path/to/ngx_http_x402_module.so of an older commit
# (e.g. the branch point): its zone, written with an older layout, is
# refused on the reload to this build, and the old configuration serves on.

SKIP: {
    my $prev = $ENV{X402_PREVIOUS_MODULE};
    skip 'X402_PREVIOUS_MODULE not set (a build of an older layout)', 5
        unless $prev && -f $prev;

    copy($prev, "$dir/prev.so") or die "copy: $!";
    copy(module_path(), "$dir/this.so") or die "copy: $!";

    $ng = start_nginx(
        module => 0,
        workers => 2,
        main_config => "load_module $dir/prev.so;",
        http_config => store_http_config(),
        config => $server,
    );
    my @q = payments_for($ng, 2);
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[0][0] })->{status},
       200, 'a payment served by the previous build');

    my $before = hup_loading($ng, 'prev', 'this');
    ok(wait_for(10, sub {
        substr($ng->error_log, $before)
            =~ /was written by a module build|resized:/ }),
       'the reload to this build is answered');
    like(substr($ng->error_log, $before),
         qr/\[emerg\].*another layout \((\d+), this build $layout\)/,
         "the previous build's zone is refused (its layout is not $layout)");
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[0][0] })->{status},
       402, 'the previous configuration keeps its records');
    is($ng->get('/paid/', { 'PAYMENT-SIGNATURE' => $q[1][0] })->{status},
       200, 'and serves');
    $ng->stop;
}
$fac->stop;

done_testing();
