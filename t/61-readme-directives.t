# README.md documents every directive and every variable the module
# registers: the directive names and contexts are read from the
# ngx_command_t tables of src/*.c, the variable names from the
# ngx_http_variable_t tables, so a directive added to the code without
# documentation, or documented in the wrong contexts, fails here.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use X402::Test qw(repo_root);

my $root = repo_root();

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    return scalar <$fh>;
}

my (%directives, %contexts, %variables);

for my $file (glob "$root/src/*.c") {
    my $src = slurp($file);
    (my $short = $file) =~ s{.*/}{};

    # static ngx_command_t  name[] = { ... ngx_null_command };
    while ($src =~ /ngx_command_t\s+\w+\s*\[\]\s*=\s*\{(.*?)ngx_null_command/sg) {
        my $table = $1;
        while ($table =~ /\{\s*ngx_string\("([^"]+)"\),\s*([^,]+),/g) {
            my ($name, $flags) = ($1, $2);
            my @ctx;
            push @ctx, 'h' if $flags =~ /NGX_HTTP_MAIN_CONF/;
            push @ctx, 's' if $flags =~ /NGX_HTTP_SRV_CONF/;
            push @ctx, 'l' if $flags =~ /NGX_HTTP_LOC_CONF/;
            $directives{$name} = $short;
            $contexts{$name} = join ', ', @ctx;
        }
    }

    # static ngx_http_variable_t  name[] = { ... ngx_http_null_variable };
    while ($src =~ /ngx_http_variable_t\s+\w+\s*\[\]\s*=\s*\{(.*?)(?:ngx_http_null_variable|\{\s*ngx_null_string)/sg) {
        my $table = $1;
        while ($table =~ /\{\s*ngx_string\("([^"]+)"\)/g) {
            $variables{$1} = $short;
        }
    }
}

ok(scalar(keys %directives) >= 10, 'found the directive tables')
    or diag(join ' ', sort keys %directives);
ok(scalar(keys %variables) >= 7, 'found the variable tables')
    or diag(join ' ', sort keys %variables);

# the product's public surface must be there in the first place
for my $d (qw(x402 x402_price x402_pay_to x402_network x402_asset
              x402_facilitator x402_settle x402_verify x402_grant x402_zone
              x402_redis x402_metrics x402_paywall)) {
    ok(exists $directives{$d}, "directive $d is registered");
}
for my $v (qw(x402_status x402_reason x402_payer x402_amount x402_network
              x402_tx x402_payment_id)) {
    ok(exists $variables{$v}, "variable \$$v is registered");
}

my $readme = -f "$root/README.md" ? slurp("$root/README.md") : '';
ok(length $readme, 'README.md exists');

for my $d (sort keys %directives) {
    # a code span starting with the name: `x402_price AMOUNT` or `x402_zone`
    like($readme, qr/`\Q$d\E(?:[\s`])/,
         "directive $d ($directives{$d}) is documented in README.md");
}

# the reference table: | `name ARGS` | default | h, s, l | meaning |
my %documented;
for my $line (split /\n/, $readme) {
    $line =~ s/\\\|/ or /g;    # escaped pipes inside a cell
    next unless $line =~ /^\|\s*`(x402\w*)[^|]*\|[^|]*\|\s*([hsl](?:,\s*[hsl])*)\s*\|/;
    $documented{$1} = join ', ', split /,\s*/, $2;
}
for my $d (sort keys %directives) {
    is($documented{$d}, $contexts{$d},
       "directive $d: README's contexts match the code");
}

for my $v (sort keys %variables) {
    like($readme, qr/\$\Q$v\E(?![\w])/,
         "variable \$$v ($variables{$v}) is documented in README.md");
}

# every configuration example is listed
for my $f (map { s{.*/}{}r } glob "$root/conf-examples/*.conf") {
    like($readme, qr{\(conf-examples/\Q$f\E\)}, "conf-examples/$f is listed in README.md");
}

done_testing();
