package X402::Nginx;

# One nginx instance of a test: its own prefix directory, port and
# nginx.conf; start, reload, stop (always, also from END).
#
#   my $ng = X402::Nginx->new(config => 'location / { return 200; }')->start;
#   my $r  = $ng->get('/');          # X402::HTTP response hash
#   $ng->stop;

use strict;
use warnings;
use File::Path qw(make_path remove_tree);
use File::Basename qw(basename dirname);
use POSIX ();
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use X402::HTTP ();

my %LIVE;
my $SEQ = 0;

# new(config => server-level text, http_config =>, main_config =>,
#     workers => 1, log_level => 'info', module => 1 (load the .so),
#     port => (random), user_files => ">>> name\ncontent...", name => ...,
#     worker_connections => 1024)
sub new {
    my ($class, %a) = @_;
    my $port = $a{port} || X402::Test::free_port();
    my $name = $a{name} // 'nginx';
    (my $slug = $name) =~ s/[^\w.-]+/_/g;
    $slug = substr($slug, 0, 40);
    my $prefix = $a{prefix}
        || X402::Test::servroot() . '/' . sprintf('%03d', ++$SEQ) . "-$slug";
    my $self = bless { %a, port => $port, prefix => $prefix }, $class;
    $self->{module} //= $X402::Test::LOAD_MODULE // 1;
    $self->{workers} //= 1;
    $self->{log_level} //= $ENV{TEST_NGINX_LOG_LEVEL} || 'info';
    $self->_write_files;
    return $self;
}

sub port        { $_[0]{port} }
sub prefix      { $_[0]{prefix} }
sub conf_path   { "$_[0]{prefix}/conf/nginx.conf" }
sub error_log_path { "$_[0]{prefix}/logs/error.log" }
sub access_log_path { "$_[0]{prefix}/logs/access.log" }
sub html_dir    { "$_[0]{prefix}/html" }

sub conf_text {
    my ($self) = @_;
    open my $fh, '<', $self->conf_path or return '';
    local $/;
    return <$fh>;
}

sub error_log {
    my ($self) = @_;
    open my $fh, '<', $self->error_log_path or return '';
    local $/;
    return scalar <$fh>;
}

sub access_log {
    my ($self) = @_;
    open my $fh, '<', $self->access_log_path or return '';
    local $/;
    return scalar <$fh>;
}

sub _subst {
    my ($self, $s) = @_;
    return '' unless defined $s;
    $s =~ s/\$TEST_NGINX_PORT\b/$self->{port}/g;
    $s =~ s/\$TEST_NGINX_SERVER_ROOT\b/$self->{prefix}/g;
    $s =~ s/\$TEST_NGINX_HTML_DIR\b/$self->{prefix}\/html/g;
    $s =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        defined $ENV{$1} ? $ENV{$1} : die "undefined variable \$$1\n"
    }ge;
    return $s;
}

sub _write_files {
    my ($self) = @_;
    my $p = $self->{prefix};
    make_path("$p/conf", "$p/logs", "$p/html", "$p/tmp");
    if ($self->{user_files}) {
        my @parts = split /^>>>\s*(\S+)[ \t]*\n/m, $self->{user_files};
        shift @parts;
        while (@parts) {
            my ($f, $c) = splice @parts, 0, 2;
            my $path = $f =~ m{^/} ? $f : "$p/html/$f";
            make_path(dirname($path));
            open my $fh, '>', $path or die "$path: $!";
            print $fh $c;
            close $fh;
        }
    }
    if (!-e "$p/html/index.html") {
        open my $fh, '>', "$p/html/index.html" or die $!;
        print $fh "index\n";
        close $fh;
    }
    my $module = X402::Test::module_path();
    if ($self->{module} && !-f $module) {
        die "module $module not built (scripts/build-module.sh, or set X402_MODULE)\n";
    }
    my $conf = $self->{raw_conf} // join '',
        ($> == 0 ? "user root root;\n" : ''),
        "daemon on;\nmaster_process on;\n",
        "worker_processes $self->{workers};\n",
        "pid logs/nginx.pid;\n",
        "error_log logs/error.log $self->{log_level};\n",
        ($self->{module} ? "load_module $module;\n" : ''),
        $self->_subst($self->{main_config}), "\n",
        "events {\n    worker_connections "
            . ($self->{worker_connections} // 1024) . ";\n}\n",
        "http {\n",
        "    access_log logs/access.log;\n",
        "    default_type text/plain;\n",
        "    client_body_temp_path tmp/body;\n",
        "    proxy_temp_path tmp/proxy;\n",
        "    fastcgi_temp_path tmp/fastcgi;\n",
        "    uwsgi_temp_path tmp/uwsgi;\n",
        "    scgi_temp_path tmp/scgi;\n",
        "    keepalive_timeout 65;\n",
        $self->_subst($self->{http_config}), "\n",
        "    server {\n",
        "        listen 127.0.0.1:$self->{port};\n",
        "        server_name localhost;\n",
        "        root html;\n",
        $self->_subst($self->{config}), "\n",
        "    }\n",
        "}\n";
    open my $fh, '>', $self->conf_path or die $!;
    print $fh $conf;
    close $fh;

    # shared boilerplate: t/conf/NAME.conf becomes conf/NAME.conf, with the
    # $TEST_NGINX_* of this nginx, for `include NAME.conf;`
    for my $inc (glob(X402::Test::repo_root() . '/t/conf/*.conf')) {
        open my $in, '<', $inc or die "$inc: $!";
        my $text = do { local $/; <$in> };
        close $in;
        $text =~ s/\$TEST_NGINX_PORT\b/$self->{port}/g;
        $text =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{$ENV{$1} // "\$$1"}ge;
        open my $out, '>', "$p/conf/" . basename($inc) or die $!;
        print $out $text;
        close $out;
    }
}

sub _cmd {
    my ($self, @args) = @_;
    return (X402::Test::nginx_binary(), '-p', "$self->{prefix}/",
            '-c', $self->conf_path, @args);
}

# run a command, return (exit code, stdout+stderr)
sub _run {
    my @cmd = @_;
    # X402_TEST_NGINX_PREFIX_CMD: words run before nginx, for nginx only
    # (e.g. "env LD_PRELOAD=.../libasan.so" or "valgrind -q ...")
    unshift @cmd, split ' ', $ENV{X402_TEST_NGINX_PREFIX_CMD}
        if $ENV{X402_TEST_NGINX_PREFIX_CMD}
           && $cmd[0] eq X402::Test::nginx_binary();
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $r;
        open STDOUT, '>&', $w;
        open STDERR, '>&', $w;
        open STDIN, '<', '/dev/null';
        exec @cmd
            or POSIX::_exit(127);
    }
    close $w;
    local $/;
    my $out = <$r> // '';
    close $r;
    waitpid $pid, 0;
    return ($? >> 8, $out);
}

# nginx -t: (exit code, output)
sub test_config {
    my ($self) = @_;
    return _run($self->_cmd('-t'));
}

sub pid {
    my ($self) = @_;
    open my $fh, '<', "$self->{prefix}/logs/nginx.pid" or return undef;
    my $pid = <$fh>;
    close $fh;
    return undef unless defined $pid && $pid =~ /^(\d+)/;
    return $1;
}

sub start {
    my ($self) = @_;
    unlink "$self->{prefix}/logs/nginx.pid";
    my ($rc, $out) = _run($self->_cmd);
    if ($rc != 0) {
        die "nginx failed to start (exit $rc):\n$out"
            . X402::Test::log_tail($self->error_log_path, 20);
    }
    my $deadline = time + 10;
    my $pid;
    while (time < $deadline) {
        $pid = $self->pid;
        last if $pid;
        sleep 0.01;
    }
    die "nginx wrote no pid file:\n$out"
        . X402::Test::log_tail($self->error_log_path, 20) unless $pid;
    $self->{pid} = $pid;
    $LIVE{$pid} = $self;
    # the master listens before it forks workers: wait until a worker runs
    # so that the first request does not race the startup
    while (time < $deadline) {
        my @w = $self->worker_pids;
        last if @w >= $self->{workers};
        sleep 0.01;
    }
    $deadline = time + 5;
    while (time < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', Proto => 'tcp',
                                      PeerPort => $self->{port});
        if ($s) { close $s; return $self }
        sleep 0.02;
    }
    die "nginx (pid $pid) does not accept on port $self->{port}:\n"
        . X402::Test::log_tail($self->error_log_path, 20);
}

sub _children {
    my ($ppid) = @_;
    my @kids;
    opendir my $d, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $st = <$fh>;
        close $fh;
        next unless $st && $st =~ /\)\s+\S\s+(\d+)/;
        push @kids, $p + 0 if $1 == $ppid;
    }
    closedir $d;
    return sort { $a <=> $b } @kids;
}

sub worker_pids {
    my ($self) = @_;
    return () unless $self->{pid};
    my @w = _children($self->{pid});
    return @w;
}

sub running { my $p = $_[0]{pid}; return $p && pid_alive($p) }

# a zombie counts as gone: nginx daemonizes, so its master is reaped by
# init, which may take a while to get to it
sub pid_alive {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $st = <$fh>;
    close $fh;
    return 0 unless defined $st;
    return $st =~ /\)\s+([A-Za-z])/ && $1 ne 'Z' && $1 ne 'X';
}

# reload(config => ..., ...): rewrite nginx.conf with the given changes and
# HUP; returns once the old workers are gone and new ones run
sub reload {
    my ($self, %a) = @_;
    die "nginx not running\n" unless $self->running;
    if (%a) {
        $self->{$_} = $a{$_} for keys %a;
        $self->_write_files;
    }
    my %old = map { $_ => 1 } $self->worker_pids;
    kill 'HUP', $self->{pid};
    # the new workers within 30 s; the old ones may take longer: they end
    # the requests they hold first, facilitator calls of owed settlements
    # included (each bounded by the facilitator location's proxy timeouts),
    # which under load took t/82's old workers past 10 s
    my $start = time;
    my $new_ok;
    while (time < $start + 90) {
        my @w = $self->worker_pids;
        my @new = grep { !$old{$_} } @w;
        $new_ok = 1 if @new >= $self->{workers};
        return $self if $new_ok && !grep { $old{$_} } @w;
        last if !$new_ok && time > $start + 30;
        sleep 0.02;
    }
    die "reload did not complete ("
        . ($new_ok ? "old workers still running after 90 s"
                   : "no new workers after 30 s") . "):\n"
        . X402::Test::log_tail($self->error_log_path, 20);
}

# graceful QUIT, then TERM, then KILL (workers too): never leaves a process
sub stop {
    my ($self, %o) = @_;
    my $pid = delete $self->{pid} or return;
    delete $LIVE{$pid};
    my @workers = _children($pid);
    # a graceful stop waits for the requests in flight: quit_wait (default
    # 5 s) bounds it before TERM. Owed settlements' facilitator calls are
    # such requests: under load they took t/82 over 5 s, and TERM then
    # made the exiting workers log "open socket ... left" alerts
    my $quit_wait = $o{quit_wait} // $self->{quit_wait} // 5;
    for my $step (['QUIT', $quit_wait], ['TERM', 3], ['KILL', 2]) {
        my ($sig, $wait) = @$step;
        kill $sig, $pid;
        kill 'KILL', @workers if $sig eq 'KILL' && @workers;
        my $deadline = time + $wait;
        while (time < $deadline) {
            last unless pid_alive($pid);
            sleep 0.005;
        }
        last unless pid_alive($pid);
        warn "# nginx $pid did not stop on $sig\n" if $sig ne 'QUIT';
    }
    # workers left behind by a killed master
    for my $w (@workers) {
        kill 'KILL', $w if pid_alive($w);
    }
    return $self;
}

sub stop_all {
    # stop() deletes from %LIVE: iterate over a copy ("Use of freed value in
    # iteration" otherwise, when a test dies with nginx still running)
    my @live = values %LIVE;
    $_->stop for @live;
}

# $ng->request("GET /x", "Header: v\n...", timeout => 5) or
# $ng->request(raw => $bytes)
sub request {
    my ($self, $spec, $more, %o) = @_;
    my $raw = $spec eq 'raw' ? $more : X402::HTTP::build_request($spec, $more);
    return X402::HTTP::http_request($self->{port}, $raw, %o);
}

sub get {
    my ($self, $path, $hdrs, %o) = @_;
    return X402::HTTP::http_get($self->{port}, $path, $hdrs, %o);
}

sub DESTROY { }

1;
