# The module loads into Debian's own nginx (a C program) with load_module:
# the binary signature matches, the C++ runtime and the libraries resolve,
# `nginx -t` passes, and the .so exports nothing but what nginx looks up in
# a dynamic module.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

my $so = module_path();
ok(-f $so, "module built: $so")
    or BAIL_OUT("no module at $so: run scripts/build-module.sh or set X402_MODULE");

# exported (dynamic, defined) symbols: ngx_modules, ngx_module_names,
# ngx_module_order, and the module structures; nothing of the C++ core,
# the C++ runtime or the libraries linked in
{
    my @syms = map { (split ' ')[-1] } grep { /\S/ } `nm -D --defined-only '$so'`;
    is($?, 0, 'nm -D ran');
    my %have = map { $_ => 1 } @syms;
    ok($have{$_}, "exports $_") for qw(ngx_modules ngx_module_names
                                       ngx_module_order ngx_http_x402_module);
    my @extra = grep { !/^ngx_modules$|^ngx_module_names$|^ngx_module_order$/
                       && !/^ngx_http_x402(?:_\w+)?_module$/ } @syms;
    is("@extra", '', 'exports nothing else');

    # every library it needs resolves (the C++ runtime among them)
    my $ldd = `ldd '$so'`;
    unlike($ldd, qr/not found/, 'ldd: all libraries found');
    like($ldd, qr/libstdc\+\+/, 'links the C++ runtime');
    like($ldd, qr/libsecp256k1/, 'links libsecp256k1');
}

# C++ exceptions: the core's C API is noexcept; no exported C function of
# ours may let one through. What we can check from outside: every core entry
# point the glue calls is declared in the C header (extern "C").
{
    my $h = repo_root() . '/src/core/include/x402/x402.h';
    ok(-f $h, 'core C API header exists');
    my $text = do { local $/; open my $fh, '<', $h or die; <$fh> };
    like($text, qr/extern\s+"C"/, 'core API is extern "C"');
}

run_tests();
done_testing();

__DATA__

=== TEST 1: load_module alone: nginx -t passes and serves
--- config
location / { return 200 "plain\n"; }
--- perl
my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t passes with the module loaded') or diag($out);
like($out, qr/syntax is ok/, 'nginx -t: syntax is ok');
--- request
GET /
--- response_body
plain



=== TEST 2: a priced location: nginx -t passes, two workers, a reload, no alert
--- workers: 2
--- config
location /paid {
    x402_price       0.001;
    x402_pay_to      0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network     base-sepolia;
    x402_facilitator /_x402/;
}
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$TEST_NGINX_FAC_PORT/;
}
--- perl
my ($rc, $out) = $ng->test_config;
is($rc, 0, 'nginx -t passes') or diag($out);
is($ng->get('/paid')->{status}, 402, 'priced location answers 402');
$ng->reload;
is($ng->get('/paid')->{status}, 402, 'still 402 after a reload');
is($ng->get('/free')->{status}, 404, 'unpriced location untouched');
--- error_log
open()
--- no_error_log
[alert]
segfault
exited on signal



=== TEST 3: the module loads with the http block empty of x402 directives
--- http_config
server {
    listen 127.0.0.1:$TEST_NGINX_PORT2;
    location / { return 204; }
}
--- config
location / { return 200 "ok"; }
--- request
GET /
--- response_body chomp
ok
