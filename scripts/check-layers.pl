#!/usr/bin/perl
#
# check-layers.pl: the glue's layering rule, executable (src/README.md).
#
#   scripts/check-layers.pl [-v] [OBJDIR]
#
# Reads the object files of the glue (OBJDIR, default
# $BUILD_DIR/nginx-debian/objs/addon/src, i.e. what scripts/build-module.sh
# leaves) with nm: a file that needs a symbol another glue file defines
# calls into that file. Each file has a layer in the table below. The check
# fails, naming file, file and symbol, on
#   - an edge from a file into a higher layer (an upward call),
#   - edges closing a cycle between files (possible within one layer),
#   - a glue object with no layer in the table.
# The only symbols exempt are the ngx_module_t objects
# (ngx_http_x402_*module), named to reach a module's configuration as nginx
# itself does. Anything that happens later reaches upward through a
# function pointer the caller supplied: that is no symbol reference, so it
# is no edge. -v prints every edge.
#
# Needs only perl and nm (binutils).

use strict;
use warnings;

# layer => files (basename without ngx_http_x402_ and .o). Lower layers may
# be called by higher ones, never the other way round. "a+b+c" is one unit
# split over several files: calls among them are not edges (say why in
# src/README.md).
my @layers = (
    [ 0 => qw(ctx paywall background) ],
    [ 1 => qw(shm queue+spool zone) ],
    [ 2 => qw(redis_conn) ],
    [ 3 => qw(redis redis_queue) ],
    [ 4 => qw(store) ],
    [ 5 => qw(request response facilitator metrics store_hooks retry discovery supported) ],
    [ 6 => qw(settle) ],
    [ 7 => qw(handler filter cache variables) ],
    [ 8 => qw(module store_module cdp) ],
);

my $verbose = 0;
if (@ARGV && $ARGV[0] eq '-v') {
    $verbose = 1;
    shift @ARGV;
}

my $build = $ENV{BUILD_DIR} || 'build';
my $objdir = shift(@ARGV) // "$build/nginx-debian/objs/addon/src";

my (%layer, %unit);
for my $l (@layers) {
    my ($n, @files) = @$l;
    for my $u (@files) {
        for my $f (split /\+/, $u) {
            $layer{$f} = $n;
            $unit{$f} = $u;
        }
    }
}

opendir(my $dh, $objdir) or die "check-layers: $objdir: $! (build first)\n";
# objects of files since removed from src/ stay in the build directory
(my $src = $0) =~ s{[^/]*$}{../src};
my @objs = sort grep { /^(ngx_http_x402_\w+)\.o$/ and -f "$src/$1.c" }
    readdir $dh;
closedir $dh;
die "check-layers: no ngx_http_x402_*.o in $objdir\n" unless @objs;

my (%def, %undef, @bad);

for my $o (@objs) {
    (my $f = $o) =~ s/^ngx_http_x402_(\w+)\.o$/$1/;
    push @bad, "$f.c: no layer in the table of $0" unless exists $layer{$f};

    open(my $nm, '-|', 'nm', "$objdir/$o") or die "check-layers: nm: $!\n";
    while (<$nm>) {
        if (/^\s+U\s+(\S+)$/) {
            $undef{$f}{$1} = 1;
        } elsif (/^[0-9a-f]+\s+[BCDGRSTVW]\s+(\S+)$/) {
            $def{$1} = $f;
        }
    }
    close $nm or die "check-layers: nm $objdir/$o failed\n";
}

# edges: caller => callee => [symbols]
my %edge;
for my $f (sort keys %undef) {
    for my $s (sort keys %{ $undef{$f} }) {
        my $t = $def{$s};
        next unless defined $t and $t ne $f;
        next if defined $unit{$f} and defined $unit{$t}
                and $unit{$f} eq $unit{$t} and $unit{$f} =~ /\+/;
        next if $s =~ /^ngx_http_x402_(?:\w+_)?module$/;
        push @{ $edge{$f}{$t} }, $s;
    }
}

sub name { "ngx_http_x402_$_[0].c" }

for my $f (sort keys %edge) {
    for my $t (sort keys %{ $edge{$f} }) {
        my $syms = join ', ', @{ $edge{$f}{$t} };
        my ($lf, $lt) = ($layer{$f} // '?', $layer{$t} // '?');
        printf "  %s (L%s) -> %s (L%s): %s\n", name($f), $lf, name($t), $lt,
            $syms if $verbose;
        next if $lf eq '?' or $lt eq '?';
        push @bad, sprintf "upward: %s (L%s) -> %s (L%s): %s",
            name($f), $lf, name($t), $lt, $syms if $lt > $lf;
    }
}

# cycles: Tarjan's strongly connected components over the file graph
my ($index, @stack, %on, %idx, %low, @sccs) = (0);

sub strong {
    my $v = shift;
    $idx{$v} = $low{$v} = $index++;
    push @stack, $v;
    $on{$v} = 1;
    for my $w (sort keys %{ $edge{$v} || {} }) {
        if (!exists $idx{$w}) {
            strong($w);
            $low{$v} = $low{$w} if $low{$w} < $low{$v};
        } elsif ($on{$w}) {
            $low{$v} = $idx{$w} if $idx{$w} < $low{$v};
        }
    }
    if ($low{$v} == $idx{$v}) {
        my @c;
        my $w;
        do {
            $w = pop @stack;
            delete $on{$w};
            push @c, $w;
        } while ($w ne $v);
        push @sccs, [ sort @c ] if @c > 1;
    }
}

for my $v (sort keys %undef) {
    strong($v) unless exists $idx{$v};
}

for my $c (@sccs) {
    my %in = map { $_ => 1 } @$c;
    my @e;
    for my $f (@$c) {
        for my $t (sort keys %{ $edge{$f} || {} }) {
            push @e, sprintf "    %s -> %s: %s", name($f), name($t),
                join ', ', @{ $edge{$f}{$t} } if $in{$t};
        }
    }
    push @bad, join "\n", "cycle: " . join(', ', map { name($_) } @$c),
        @e;
}

if (@bad) {
    print STDERR "check-layers: $_\n" for @bad;
    printf STDERR "check-layers: %d violation(s) of the layering in src/README.md\n",
        scalar @bad;
    exit 1;
}

printf "check-layers: %d glue files, calls only downward, no cycles\n",
    scalar @objs;
exit 0;
