package X402::Test;

# Our test harness: Test::Nginx-style data blocks, parsed by Test::Base,
# run against a real nginx with the built module.  Every block gets a fresh
# prefix directory and fresh random ports; nginx is always stopped, also when
# a test dies.  See t/README.md for the sections and the Perl API.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(decode_base64 encode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);
use Test::More;
use Exporter qw(import);

require Test::Base;    # block parser only: its import/END magic stays off

use X402::Nginx;
use X402::HTTP qw(http_request http_get parse_response);
use FakeFacilitator;

our @EXPORT = (
    @Test::More::EXPORT,
    qw(run_tests blocks start_nginx stop_all http_request http_get
       parse_response start_facilitator sign_payment sign_payments
       decode_b64_json encode_b64_json json_encode json_decode
       repo_root module_path nginx_binary free_port servroot
       log_tail no_module_conf repeat_each)
);

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');

# set to 0 (before run_tests) for blocks that must run without the module
our $LOAD_MODULE = 1;

# repeat_each(2): every block's requests run twice on the same nginx, so
# that state one request leaves behind (in the ctx, the pools, the zones)
# shows up in the next; env TEST_NGINX_REPEAT_EACH overrides. A block whose
# second pass differs by design (a payment presented again is a replay)
# says `--- no_repeat`.
our $REPEAT_EACH = 1;

sub repeat_each {
    $REPEAT_EACH = shift if @_;
    return $ENV{TEST_NGINX_REPEAT_EACH} || $REPEAT_EACH;
}

sub repo_root { $ROOT }

sub module_path {
    my $p = $ENV{X402_MODULE} || "$ROOT/build/ngx_http_x402_module.so";
    return abs_path($p) // $p;
}

sub nginx_binary { $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx' }

my $SERVROOT;

# one directory per test process: t/servroot-<pid>; old ones whose process
# is gone are removed first so failed runs do not accumulate
sub servroot {
    return $SERVROOT if $SERVROOT;
    for my $d (glob "$ROOT/t/servroot-*") {
        next unless $d =~ /servroot-(\d+)$/;
        next if $1 == $$ || kill(0, $1);
        remove_tree($d);
    }
    $SERVROOT = "$ROOT/t/servroot-$$";
    remove_tree($SERVROOT);
    make_path($SERVROOT);
    return $SERVROOT;
}

# the test process itself, not a child forked by a test
my $MAIN_PID = $$;

# The file is a process group of its own, so that whatever it forked and
# did not stop (a server child of a test that died) can be found and ended
# at exit: such a child keeps prove's pipe open, and prove then waits for
# it for ever (a t/82 that died this way hung a whole CI run).
setpgrp(0, 0);

# every other process of our group, by /proc
sub _group_pids {
    my @p;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        # pid (comm) state ppid pgrp: comm may hold spaces and parentheses
        my ($pid, $pgrp) = $line =~ /^(\d+) \(.*\) \S+ \d+ (\d+)/s or next;
        push @p, $pid if $pgrp == $MAIN_PID && $pid != $MAIN_PID;
    }
    return @p;
}

sub _end_group {
    my @left = _group_pids() or return;
    print STDERR "# ending processes the test left running: @left\n";
    kill 'TERM', @left;
    my $deadline = time + 2;
    while (time < $deadline) {
        last unless grep { kill 0, $_ } @left;
        sleep 0.05;
    }
    kill 'KILL', grep { kill 0, $_ } @left;
    waitpid($_, 0) for @left;    # our own children: not left as zombies
}

# killed (prove's timeout, ^C): still stop every server we started
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        return POSIX::_exit(1) if $$ != $MAIN_PID;
        print STDERR "# killed by SIG$sig: stopping the servers\n";
        exit 1;
    };
}

# A file that hangs fails on its own, naming itself, long before CI's time
# limit ends the whole run without a report (X402_TEST_FILE_TIMEOUT seconds,
# 0 = none). A test that sets its own alarm replaces this one.
my $FILE_LIMIT = $ENV{X402_TEST_FILE_TIMEOUT} // 900;
if ($FILE_LIMIT > 0) {
    $SIG{ALRM} = sub {
        return POSIX::_exit(1) if $$ != $MAIN_PID;
        print STDERR "# $0 still running after ${FILE_LIMIT}s "
            . "(X402_TEST_FILE_TIMEOUT): stopped\n";
        exit 124;
    };
    alarm $FILE_LIMIT;
}

END {
    return if $$ != $MAIN_PID;
    my $status = $?;
    # each in an eval: one that dies must not leave the others running
    for my $stop (sub { X402::Nginx->stop_all },
                  sub { FakeFacilitator->stop_all },
                  sub { X402::Redis->stop_all if X402::Redis->can('stop_all') },
                  \&_stop_signer,
                  \&_end_group) {
        eval { $stop->(); 1 } or print STDERR "# stopping the servers: $@";
    }
    if ($SERVROOT && -d $SERVROOT && !$ENV{TEST_NGINX_KEEP}) {
        my $tb = Test::More->builder;
        if ($tb->is_passing && $status == 0) {
            remove_tree($SERVROOT);
        } else {
            print STDERR "# kept $SERVROOT for inspection\n";
        }
    }
    $? = $status;
}

my %USED_PORTS;

sub free_port {
    for (1 .. 200) {
        my $p = 20000 + int(rand(40000));
        next if $USED_PORTS{$p};
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => $p, Proto => 'tcp',
            ReuseAddr => 0, Listen => 1);
        next unless $s;
        close $s;
        $USED_PORTS{$p} = 1;
        return $p;
    }
    die "free_port: no free port found\n";
}

sub json_encode { JSON::PP->new->utf8->canonical->allow_nonref->encode($_[0]) }
sub json_decode { JSON::PP->new->utf8->allow_nonref->decode($_[0]) }

sub decode_b64_json {
    my ($b64) = @_;
    return undef unless defined $b64;
    return json_decode(decode_base64($b64));
}

sub encode_b64_json {
    my $s = ref $_[0] ? JSON::PP->new->encode($_[0]) : $_[0];
    return encode_base64($s, '');
}

sub log_tail {
    my ($file, $n) = @_;
    $n ||= 40;
    open my $fh, '<', $file or return "($file: $!)\n";
    my @l = <$fh>;
    close $fh;
    @l = @l[-$n .. -1] if @l > $n;
    return join '', @l;
}

sub start_nginx { X402::Nginx->new(@_)->start }

sub stop_all { X402::Nginx->stop_all; FakeFacilitator->stop_all }

sub start_facilitator { FakeFacilitator->new(@_)->start }

# sign_payment(%args) -> header value (base64); in list context also the
# decoded payload.  Arguments are js/sign-payment.mjs options without the
# dashes, e.g. (payment_required => $hdr, high_s => 1, set => [...]).
sub sign_payment {
    my @out = sign_payments(1, @_);
    return wantarray ? @{ $out[0] } : $out[0][0];
}

# sign_payments($n, %args) -> list of [header, payload] with distinct nonces
sub sign_payments {
    my ($n, %args) = @_;
    my $opts = { %args, count => $n };
    my $json = JSON::PP->new->canonical->encode($opts);
    my @lines = ($ENV{X402_SIGN_ONESHOT} || $$ != $MAIN_PID)
        ? _sign_once($json) : _sign_served($json, $opts);
    my @res;
    for my $l (@lines) {
        next unless $l =~ /\S/;
        my $o = json_decode($l);
        push @res, [ $o->{header}, $o->{payload} ];
    }
    die "sign-payment.mjs: expected $n payments, got " . @res . "\n"
        unless @res == $n;
    return @res;
}

# one node run per call: for a forked child, or when the signer is off
sub _sign_once {
    my ($json) = @_;
    my $script = "$ROOT/js/sign-payment.mjs";
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $r;
        open STDOUT, '>&', $w or POSIX::_exit(111);
        exec 'node', $script, '--json', $json, '--out', 'jsonl'
            or POSIX::_exit(112);
    }
    close $w;
    my @lines = <$r>;
    close $r;
    waitpid $pid, 0;
    die "sign-payment.mjs failed (exit " . ($? >> 8) . ") for $json\n" if $?;
    return @lines;
}

# the test process's signer: one `node sign-payment.mjs --serve` for the
# whole file (a node start and viem's load cost more than the signature;
# hundreds of payments in the suite). Its answers are the jsonl lines of a
# one-shot run, then {"end":0}. X402_SIGN_ONESHOT=1: a node run per call.
my $SIGNER;

sub _start_signer {
    pipe(my $in_r, my $in_w) or die "pipe: $!";
    pipe(my $out_r, my $out_w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $in_w;
        close $out_r;
        open STDIN, '<&', $in_r or POSIX::_exit(111);
        open STDOUT, '>&', $out_w or POSIX::_exit(111);
        exec 'node', "$ROOT/js/sign-payment.mjs", '--serve'
            or POSIX::_exit(112);
    }
    close $in_r;
    close $out_w;
    $in_w->autoflush(1);
    $SIGNER = { pid => $pid, in => $in_w, out => $out_r };
}

# a file that signs gets its signer at once: node loads while nginx starts
if (!$ENV{X402_SIGN_ONESHOT} && open my $src, '<', $0) {
    local $/;
    _start_signer() if <$src> =~ /\b(?:sign_payments?|payments_for)\b/;
}

sub _sign_served {
    my ($json, $opts) = @_;
    _start_signer() unless $SIGNER;
    $SIGNER->{used} = 1;
    local $SIG{PIPE} = 'IGNORE';    # a dead signer: EOF below, not SIGPIPE
    # one line, ASCII: \u escapes reach node as the same characters
    my $ok = print { $SIGNER->{in} }
        JSON::PP->new->ascii->canonical->encode($opts), "\n";
    my (@lines, $end);
    if ($ok) {
        my $fh = $SIGNER->{out};
        while (defined(my $l = <$fh>)) {
            if ($l =~ /^\{"end":/) { $end = json_decode($l); last }
            push @lines, $l;
        }
    }
    if (!$end) {
        _stop_signer();
        die "sign-payment.mjs --serve died for $json\n";
    }
    if ($end->{end}) {
        print STDERR "$end->{error}\n" if defined $end->{error};
        die "sign-payment.mjs failed (exit $end->{end}) for $json\n";
    }
    return @lines;
}

sub _stop_signer {
    my $s = $SIGNER or return;
    undef $SIGNER;
    close $s->{in};     # EOF: it exits
    close $s->{out};
    local $?;
    kill 'TERM', $s->{pid} unless $s->{used};    # maybe still loading
    for (1 .. 500) {    # 5 s
        return if waitpid($s->{pid}, POSIX::WNOHANG()) == $s->{pid};
        sleep 0.01;
    }
    kill 'KILL', $s->{pid};
    waitpid $s->{pid}, 0;
}

# Test::Base parses the DATA section of the test script
my $TB;

sub _tb {
    $TB ||= Test::Base->new;
    return $TB;
}

sub blocks {
    my @b = @{ _tb()->block_list };
    return wantarray ? @b : scalar @b;
}

# `--- foo eval` runs in Test::Base::Filter: make our helpers visible there
for my $f (qw(sign_payment sign_payments decode_b64_json encode_b64_json
              json_encode json_decode repo_root)) {
    no strict 'refs';
    *{"Test::Base::Filter::$f"} = \&{$f};
}

my @PORT_VARS = qw(PORT PORT2 PORT3 FAC_PORT REDIS_PORT UPSTREAM_PORT);

sub _subst_env {
    my ($s) = @_;
    return $s unless defined $s && !ref $s;
    $s =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        defined $ENV{$1} ? $ENV{$1} : die "undefined variable \$$1\n"
    }ge;
    return $s;
}

sub _section {
    my ($block, $name) = @_;
    return undef unless exists $block->{$name};
    my @v = $block->$name;
    return undef unless @v;
    my $v = @v == 1 ? $v[0] : [@v];
    return ref $v eq 'ARRAY' ? [ map { _subst_env($_) } @$v ] : _subst_env($v);
}

sub _lines {
    my ($v) = @_;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return grep { /\S/ } split /\n/, $v;
}

sub _as_list { my $v = shift; return () unless defined $v; return ref $v eq "ARRAY" ? @$v : ($v) }

sub run_tests {
    my $tb = Test::More->builder;
    my $blocks = _tb()->block_list;
    for my $block (@$blocks) {
        my $name = $block->name;
        my $failed_before = grep { !$_ } $tb->summary;
        my $ng;
        my $ok = eval { $ng = _run_block($block); 1 };
        my $err = $@;
        if (!$ok) {
            fail("$name: harness error");
            diag($err);
        }
        my $failed_after = grep { !$_ } $tb->summary;
        if ($ng && $failed_after > $failed_before) {
            diag("---- $name: nginx.conf\n" . $ng->conf_text)
                if $ENV{TEST_NGINX_VERBOSE};
            diag("---- $name: tail of " . $ng->error_log_path . "\n"
                 . log_tail($ng->error_log_path, 40));
        }
        $ng->stop if $ng;
        if ($ng && !$ENV{TEST_NGINX_KEEP} && $failed_after == $failed_before) {
            remove_tree($ng->prefix);
        }
    }
}

sub _block_nginx_args {
    my ($block) = @_;
    my %a;
    for my $s (qw(config http_config main_config workers log_level
                  user_files)) {
        my $v = _section($block, $s);
        $a{$s} = $v if defined $v;
    }
    $a{name} = $block->name;
    $a{module} = 0 if exists $block->{no_module} || !$LOAD_MODULE;
    return %a;
}

sub _run_block {
    my ($block) = @_;
    my $name = $block->name;

    # ports first: eval sections and $TEST_NGINX_* refer to them
    $ENV{"TEST_NGINX_$_"} = free_port() for @PORT_VARS;
    $ENV{TEST_NGINX_SERVROOT} = servroot();
    $block->run_filters unless $block->is_filtered;

    my $fac;
    if (exists $block->{facilitator}) {
        my $script = _section($block, 'facilitator');
        $fac = FakeFacilitator->new(port => $ENV{TEST_NGINX_FAC_PORT},
                                    script => $script,
                                    dir => servroot())->start;
    }

    my %na = _block_nginx_args($block);
    $na{port} = $ENV{TEST_NGINX_PORT};

    if (exists $block->{must_die}) {
        my $ng = X402::Nginx->new(%na);
        my ($rc, $out) = $ng->test_config;
        isnt($rc, 0, "$name: nginx -t fails");
        my $text = $out . $ng->error_log;
        for my $pat (_patterns(_section($block, 'error_log'))) {
            _like_text($text, $pat, "$name: nginx -t output matches");
        }
        $fac->stop if $fac;
        return $ng;
    }

    my $ng = X402::Nginx->new(%na);
    $ng->start;
    my $t0 = time;

    if (exists $block->{perl}) {
        my $code = $block->{perl}[0];
        my $sub = eval "package main; no strict 'vars'; sub { my (\$ng, \$block, \$fac) = \@_;\n#line 1 \"$name --- perl\"\n$code\n}";
        die "perl section of '$name' does not compile: $@" unless $sub;
        $sub->($ng, $block, $fac);
    }

    my $passes = exists $block->{no_repeat} ? 1 : repeat_each();
    if (exists $block->{request} || exists $block->{raw_request}) {
        _run_requests($block, $ng, $_, $passes) for 1 .. $passes;
    }

    if (exists $block->{wait}) {
        sleep(_section($block, 'wait'));
    }

    # error.log checks after a graceful stop: everything is flushed and a
    # crash during shutdown shows up as well
    $ng->stop;
    $fac->stop if $fac;

    if ($fac && exists $block->{facilitator_saw}) {
        my @want = (_lines(_section($block, 'facilitator_saw'))) x $passes;
        my @got = map { $_->{endpoint} } $fac->requests;
        is(join(' ', @got), join(' ', map { split ' ' } @want),
           "$name: facilitator saw");
    }

    my $log = $ng->error_log;
    my @expect = _patterns(_section($block, 'error_log'));
    for my $pat (@expect) {
        _like_text($log, $pat, "$name: error_log");
    }
    my @forbid = _patterns(_section($block, 'no_error_log'));
    push @forbid, '[alert]', '[emerg]', '[crit]';
    push @forbid, '[error]' unless @expect || exists $block->{allow_error};
    my %seen;
    for my $pat (grep { !$seen{ref $_ ? "$_" : $_}++ } @forbid) {
        _unlike_text($log, $pat, "$name: no_error_log");
    }
    return $ng;
}

sub _patterns {
    my ($v) = @_;
    return () unless defined $v;
    return map { ref $_ eq 'ARRAY' ? @$_ : $_ } (ref $v eq 'ARRAY' ? @$v : _lines($v));
}

sub _like_text {
    my ($text, $pat, $name) = @_;
    if (ref $pat eq 'Regexp') {
        like($text, $pat, "$name: $pat");
    } else {
        ok(index($text, $pat) >= 0, "$name: '$pat'")
            or diag("'$pat' not found");
    }
}

sub _unlike_text {
    my ($text, $pat, $name) = @_;
    if (ref $pat eq 'Regexp') {
        unlike($text, $pat, "$name: $pat");
    } else {
        my $i = index($text, $pat);
        ok($i < 0, "$name: no '$pat'") or do {
            my $s = rindex($text, "\n", $i) + 1;
            my $e = index($text, "\n", $i);
            diag("found: " . substr($text, $s, ($e < 0 ? length $text : $e) - $s));
        };
    }
}

sub _run_requests {
    my ($block, $ng, $pass, $passes) = @_;
    my $name = $block->name;
    $name .= " (pass $pass)" if $passes && $passes > 1;
    my @reqs = exists $block->{raw_request}
        ? map { { raw => $_ } } _as_list(_section($block, 'raw_request'))
        : map { { req => $_ } } _as_list(_section($block, 'request'));
    my $more = _section($block, 'more_headers');
    my $timeout = _section($block, 'timeout') // $ENV{TEST_NGINX_TIMEOUT} // 10;
    $timeout =~ s/s$//;

    my @codes   = _as_list(_section($block, 'error_code'));
    my @bodies  = _as_list(_section($block, 'response_body'));
    my @blikes  = _as_list(_section($block, 'response_body_like'));
    my @hdrs    = _as_list(_section($block, 'response_headers'));
    my @hlikes  = _as_list(_section($block, 'response_headers_like'));

    for my $i (0 .. $#reqs) {
        my $n = @reqs > 1 ? "$name #$i" : $name;
        my $r = $reqs[$i];
        my $raw = $r->{raw} // X402::HTTP::build_request(
            $r->{req}, ref $more eq 'ARRAY' ? $more->[$i] : $more);
        my $res = http_request($ng->port, $raw, timeout => $timeout);
        if (!$res->{ok}) {
            fail("$n: response received");
            diag($res->{error});
            next;
        }
        my $pick = sub { my $l = shift; @$l > 1 ? $l->[$i] : $l->[0] };

        if (@codes) {
            my $want = $pick->(\@codes);
            $want =~ s/\s+//g if defined $want;
            is($res->{status}, $want, "$n: status")
                or diag("body: " . substr($res->{body}, 0, 500));
        } else {
            is($res->{status}, 200, "$n: status 200")
                or diag("body: " . substr($res->{body}, 0, 500));
        }
        if (@bodies) {
            my $want = $pick->(\@bodies);
            is($res->{body}, $want, "$n: response_body") if defined $want;
        }
        if (@blikes) {
            my $want = $pick->(\@blikes);
            if (defined $want) {
                my $re = ref $want eq 'Regexp' ? $want : qr/$want/s;
                like($res->{body}, $re, "$n: response_body_like");
            }
        }
        if (@hdrs) {
            for my $l (_lines($pick->(\@hdrs))) {
                if ($l =~ /^\s*!\s*([\w-]+)\s*$/) {
                    ok(!exists $res->{headers}{lc $1}, "$n: no header $1")
                        or diag("$1: " . join(', ', @{ $res->{headers}{lc $1} }));
                } elsif ($l =~ /^\s*([\w-]+)\s*:\s?(.*?)\s*$/) {
                    my ($h, $v) = ($1, $2);
                    is(X402::HTTP::header($res, $h), $v, "$n: header $h");
                } else {
                    die "bad response_headers line '$l'\n";
                }
            }
        }
        if (@hlikes) {
            for my $l (_lines($pick->(\@hlikes))) {
                $l =~ /^\s*([\w-]+)\s*:\s?(.*?)\s*$/
                    or die "bad response_headers_like line '$l'\n";
                my ($h, $re) = ($1, $2);
                like(X402::HTTP::header($res, $h) // '', qr/$re/,
                     "$n: header $h like /$re/");
            }
        }
        $ng->{last_response} = $res;
    }
}

sub no_module_conf { (module => 0) }

package X402::Redis;

# A private redis-server on a random loopback port, for store tests.

use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

my %LIVE;

sub start {
    my ($class, %a) = @_;
    my $port = $a{port} || X402::Test::free_port();
    my $dir = X402::Test::servroot() . "/redis-$port";
    File::Path::make_path($dir);
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', "$dir/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-server', '--port', $port, '--bind', '127.0.0.1',
            '--save', '', '--appendonly', 'no', '--dir', $dir,
            @{ $a{args} || [] }
            or POSIX::_exit(127);
    }
    my $self = bless { port => $port, pid => $pid, dir => $dir }, $class;
    $LIVE{$pid} = $self;
    my $deadline = time + 10;
    while (time < $deadline) {
        my $r = eval { $self->cmd('PING') };
        return $self if defined $r && $r eq 'PONG';
        sleep 0.05;
    }
    $self->stop;
    die "redis-server did not start on $port: "
        . X402::Test::log_tail("$dir/redis.log", 20);
}

sub port { $_[0]{port} }

# one command over RESP, returns the decoded reply (arrays as refs)
sub cmd {
    my ($self, @args) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port}, Timeout => 3)
        or die "redis connect: $!\n";
    my $req = '*' . @args . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print $s $req;
    my $rep = _read_reply($s);
    close $s;
    return $rep;
}

sub _read_reply {
    my ($s) = @_;
    my $line = <$s>;
    die "redis: no reply\n" unless defined $line;
    $line =~ s/\r\n$//;
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    return $v if $t eq '+' || $t eq ':';
    die "redis error: $v\n" if $t eq '-';
    if ($t eq '$') {
        return undef if $v < 0;
        my $buf = '';
        read($s, $buf, $v + 2);
        return substr($buf, 0, $v);
    }
    if ($t eq '*') {
        return undef if $v < 0;
        return [ map { _read_reply($s) } 1 .. $v ];
    }
    die "redis: bad reply '$line'\n";
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    delete $LIVE{$pid};
    kill 'TERM', $pid;
    my $deadline = time + 5;
    while (time < $deadline) {
        return if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# SIGSTOP/SIGCONT: a redis that accepts connections but never answers
sub pause  { kill 'STOP', $_[0]{pid} if $_[0]{pid} }
sub resume { kill 'CONT', $_[0]{pid} if $_[0]{pid} }

sub stop_all {
    my @live = values %LIVE;    # stop() deletes from %LIVE
    for my $r (@live) {
        kill 'CONT', $r->{pid};
        $r->stop;
    }
}

1;
