package X402::HTTP;

# A raw HTTP/1.1 client for the tests: we want to see exactly what nginx
# sends (status, every header with its repetitions, the body as bytes).

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use Exporter qw(import);

our @EXPORT_OK = qw(http_request http_get parse_response build_request header
                    keepalive_get);

# responses (with a status line) received from each port: nginx logs a
# request after its response went out, so a test reading the access log
# waits for this many lines (X402::StoreTest::log_records)
our %ANSWERED;

# build_request("GET /x", "Name: v\nOther: w") -> raw request bytes.
# The first line of $spec is the request line ("GET /x" or with HTTP/1.x);
# any further lines are the body.  Host and Connection: close are added
# unless given; Content-Length is added for a body.
sub build_request {
    my ($spec, $more, %o) = @_;
    $spec =~ s/\A\s+//;
    my ($line, $body) = split /\n/, $spec, 2;
    $line =~ s/\s+$//;
    $line .= ' HTTP/1.1' unless $line =~ m{ HTTP/\d\.\d$};
    if (defined $body) {
        $body =~ s/\n\z//;    # the section's final newline is not content
        $body = undef if $body eq '' && $line !~ /^(POST|PUT|PATCH)/;
    }
    my @h = grep { /\S/ } split /\n/, ($more // '');
    s/\r$// for @h;
    my %have = map { /^([^:]+):/ ? (lc $1 => 1) : () } @h;
    my @out = ($line);
    push @out, 'Host: ' . ($o{host} // 'localhost') unless $have{host};
    push @out, 'Connection: close' unless $have{connection};
    push @out, @h;
    push @out, 'Content-Length: ' . length($body)
        if defined $body && !$have{'content-length'}
           && !$have{'transfer-encoding'};
    return join("\r\n", @out) . "\r\n\r\n" . ($body // '');
}

# http_request($port, $raw, timeout => 10, host => '127.0.0.1')
#   -> { ok, status, reason, headers => {lc name => [values]},
#        header_list => [[Name, value], ...], body, raw, error, elapsed }
sub http_request {
    my ($port, $raw, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => $o{host} // '127.0.0.1',
                                  PeerPort => $port, Proto => 'tcp',
                                  Timeout => $timeout);
    return { ok => 0, error => "connect to $port: $!" } unless $s;
    binmode $s;
    $s->autoflush(1);
    my $off = 0;
    while ($off < length $raw) {
        my $n = syswrite($s, $raw, length($raw) - $off, $off);
        if (!defined $n) {
            last if $!{EPIPE} || $!{ECONNRESET};    # nginx may answer early
            return { ok => 0, error => "write: $!" };
        }
        $off += $n;
    }
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = $t0 + $timeout;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            close $s;
            my $r = parse_response($buf);
            return { %$r, ok => 0,
                     error => "timeout after ${timeout}s; got "
                              . length($buf) . " bytes",
                     raw => $buf };
        }
        next unless $sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        last if !$n;    # EOF or reset: Connection: close ends the response
        last if _complete($buf, $raw);
    }
    close $s;
    my $r = parse_response($buf, head => ($raw =~ /^HEAD / ? 1 : 0));
    $r->{elapsed} = time - $t0;
    $ANSWERED{$port}++ if $r->{status};
    return $r;
}

# a response is complete once its framing says so (some tests keep the
# connection open on purpose)
sub _complete {
    my ($buf, $req) = @_;
    my $i = index($buf, "\r\n\r\n");
    return 0 if $i < 0;
    my $head = substr($buf, 0, $i);
    return 1 if $req =~ /^HEAD /;
    return 1 if $head =~ m{^HTTP/\d\.\d (1\d\d|204|304)};
    if ($head =~ /^content-length:\s*(\d+)/mi) {
        return length($buf) - $i - 4 >= $1;
    }
    if ($head =~ /^transfer-encoding:\s*chunked/mi) {
        return substr($buf, $i + 4) =~ /(?:^|\r\n)0\r\n(?:[^\r\n]+\r\n)*\r\n\z/;
    }
    return 0;
}

sub parse_response {
    my ($buf, %o) = @_;
    my %r = (ok => 0, raw => $buf, headers => {}, header_list => [],
             body => '');
    my $i = index($buf, "\r\n\r\n");
    if ($i < 0) {
        $r{error} = 'incomplete response header: ' . substr($buf, 0, 200);
        return \%r;
    }
    my $head = substr($buf, 0, $i);
    my $body = substr($buf, $i + 4);
    my ($status, @lines) = split /\r\n/, $head;
    unless ($status =~ m{^HTTP/(\d\.\d) (\d{3})(?: (.*))?$}) {
        $r{error} = "bad status line '$status'";
        return \%r;
    }
    @r{qw(version status reason)} = ($1, $2, $3 // '');
    for my $l (@lines) {
        my ($n, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or do {
            $r{error} = "bad header line '$l'";
            return \%r;
        };
        push @{ $r{headers}{lc $n} }, $v;
        push @{ $r{header_list} }, [ $n, $v ];
    }
    if (!$o{head} && ($r{headers}{'transfer-encoding'}[0] // '') =~ /chunked/i) {
        my $out = '';
        while (1) {
            unless ($body =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
                $r{error} = 'bad chunked framing';
                return \%r;
            }
            my $n = hex $1;
            last if $n == 0;
            if (length($body) < $n + 2) {
                $r{error} = 'truncated chunk';
                return \%r;
            }
            $out .= substr($body, 0, $n);
            $body = substr($body, $n + 2);
        }
        $body = $out;
    } elsif (!$o{head} && defined(my $cl = $r{headers}{'content-length'})) {
        if (length($body) < $cl->[0]) {
            $r{error} = "truncated body: " . length($body) . " of $cl->[0]";
            $r{body} = $body;
            return \%r;
        }
        $body = substr($body, 0, $cl->[0]);
    }
    $r{body} = $o{head} ? '' : $body;
    $r{ok} = 1;
    return \%r;
}

# all values of a header joined with ", " (as HTTP combines them), or undef
sub header {
    my ($r, $name) = @_;
    my $v = $r->{headers}{lc $name} or return undef;
    return join ', ', @$v;
}

# http_get($port, '/path', { Name => value, ... } or "Name: v\n...")
sub http_get {
    my ($port, $path, $hdrs, %o) = @_;
    my $more = ref $hdrs eq 'HASH'
        ? join("\n", map { "$_: $hdrs->{$_}" } sort keys %$hdrs)
        : ref $hdrs eq 'ARRAY'
        ? join("\n", map { "$hdrs->[2*$_]: $hdrs->[2*$_+1]" } 0 .. $#$hdrs / 2)
        : $hdrs;
    return http_request($port, build_request("GET $path", $more), %o);
}


# One GET on a connection the test keeps open (keep-alive), with a payment
# header if given; the response read by its framing (Content-Length), at
# most 10 s; {elapsed} is the seconds it took.
sub keepalive_get {
    my ($s, $path, $pay) = @_;
    my $t0 = time;
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n"
             . ($pay ? "PAYMENT-SIGNATURE: $pay\r\n" : '') . "\r\n";
    my $buf = '';
    my $sel = IO::Select->new($s);
    while (time < $t0 + 10) {
        next unless $sel->can_read(0.2);
        my $n = sysread($s, $buf, 65536, length $buf);
        last if !$n;
        my $i = index($buf, "\r\n\r\n");
        next if $i < 0;
        my ($cl) = substr($buf, 0, $i) =~ /^content-length:\s*(\d+)/mi;
        last if defined $cl && length($buf) - $i - 4 >= $cl;
    }
    my $r = parse_response($buf);
    $r->{elapsed} = time - $t0;
    return $r;
}

1;
