package FakeFacilitator;

# A scripted x402 facilitator for the module's tests (coinbase/x402
# specs/x402-specification-v2.md 7, "Facilitator Interface"; answers as
# e2e/facilitators/{typescript/index.ts,go/main.go} do):
# POST .../verify, .../settle and GET .../supported on 127.0.0.1:<port>.
# Every request it receives is recorded (one JSON line each) so a test can
# assert what reached it; the answer to the n-th request of an endpoint is
# the n-th line of the script for that endpoint (the last line repeats).
#
#   my $fac = FakeFacilitator->new(script => <<'EOS')->start;
#   verify: default
#   settle: delay=2000 200 {"success":false,"errorReason":"x","transaction":"","network":"{{network}}"}
#   EOS
#   ... $fac->port ... $fac->requests ... $fac->set_script(...) ... $fac->stop;
#
# Script lines: "<endpoint>: [delay=MS] ACTION" where ACTION is
#   default            a well-behaved answer (isValid true / success true
#                      with a transaction hash derived from the body)
#   STATUS BODY        that status and body; {{payer}} {{network}} {{tx}}
#                      {{amount}} in BODY are filled from the request
#   close              close the connection without answering
#   garbage            200 with a body that is not JSON
#   hang               accept, read, never answer (until nginx gives up)
#   reset              close with RST (SO_LINGER 0)
#   chain              (rpc endpoint) answer an eth_call of
#                      authorizationState(from, nonce) from the fake chain
# Modifiers before the action:
#   delay=MS           wait first
#   chain              (settle) keep a fake chain: a nonce settles once, a
#                      second /settle of it is refused (nonce used)
#   lose=N             with chain: every Nth settle settles on the chain but
#                      its answer is lost (502)
# A hash ref { verify => [ {status, body | json, delay_ms, action} ] } works too.
#
# Standalone: perl t/lib/FakeFacilitator.pm --port P [--script FILE]
#             [--log FILE]   (runs until killed)

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER);
use Fcntl qw(:flock SEEK_END);
use JSON::PP ();
use Digest::SHA qw(sha256_hex);
use POSIX ();
use Time::HiRes qw(sleep time);

my %LIVE;

sub new {
    my ($class, %a) = @_;
    my $port = $a{port} || (X402::Test->can('free_port')
                            ? X402::Test::free_port() : _any_port());
    my $dir = $a{dir} || (X402::Test->can('servroot')
                          ? X402::Test::servroot() : '/tmp');
    my $self = bless {
        port => $port,
        log  => $a{log} || "$dir/facilitator-$port.jsonl",
        script_file => "$dir/facilitator-$port.script.json",
    }, $class;
    $self->set_script($a{script});
    unlink $self->{log}, "$self->{log}.chain", glob("$self->{log}.count-*");
    open my $fh, '>', $self->{log} or die "$self->{log}: $!";
    close $fh;
    return $self;
}

sub _any_port {
    for (1 .. 100) {
        my $p = 20000 + int(rand(40000));
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $p, Listen => 1) or next;
        close $s;
        return $p;
    }
    die "no free port\n";
}

sub port { $_[0]{port} }
sub url  { "http://127.0.0.1:$_[0]{port}" }
sub log_file { $_[0]{log} }

sub parse_script {
    my ($text) = @_;
    return {} unless defined $text;
    return $text if ref $text eq 'HASH';
    my %s;
    for my $line (split /\n/, $text) {
        next unless $line =~ /\S/;
        next if $line =~ /^\s*#/;
        $line =~ /^\s*([\w-]+)\s*:\s*(.*?)\s*$/
            or die "facilitator script: bad line '$line'\n";
        my ($ep, $rest) = ($1, $2);
        my %e;
        while ($rest =~ s/^(delay=(\d+)|chain|lose=(\d+))\s+//) {
            $e{delay_ms} = $2 if defined $2;
            $e{lose} = $3 if defined $3;
            $e{chain} = 1 if $1 eq 'chain';
        }
        if ($rest =~ /^(default|close|garbage|hang|reset|chain)$/) {
            $e{action} = $1;
        } elsif ($rest =~ /^(\d{3})(?:\s+(.*))?$/) {
            $e{status} = $1;
            $e{body} = $2 // '';
        } else {
            die "facilitator script: bad action '$rest'\n";
        }
        push @{ $s{$ep} }, \%e;
    }
    return \%s;
}

# replace the behaviour; takes effect for the next request
sub set_script {
    my ($self, $script) = @_;
    my $s = parse_script($script);
    my $tmp = "$self->{script_file}.tmp";
    open my $fh, '>', $tmp or die "$tmp: $!";
    print $fh JSON::PP->new->canonical->encode($s);
    close $fh;
    rename $tmp, $self->{script_file} or die "rename: $!";
    return $self;
}

sub start {
    my ($self) = @_;
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => $self->{port}, Proto => 'tcp',
        Listen => 128, ReuseAddr => 1)
        or die "fake facilitator: listen on $self->{port}: $!\n";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setpgid(0, 0);
        $SIG{CHLD} = 'IGNORE';
        $SIG{TERM} = sub { POSIX::_exit(0) };
        open STDIN, '<', '/dev/null';
        while (1) {
            my $c = $listen->accept or next;
            my $h = fork;
            if (defined $h && $h == 0) {
                close $listen;
                eval { $self->_serve($c) };
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    close $listen;
    $self->{pid} = $pid;
    $LIVE{$pid} = $self;
    return $self;
}

# connections waiting in its listen queue (not accepted yet): Linux's
# /proc/net/tcp, rx_queue of the listening socket
sub backlog {
    my ($self) = @_;
    my $want = sprintf '0100007F:%04X 00000000:0000 0A', $self->{port};
    open my $f, '<', '/proc/net/tcp' or return 0;
    while (<$f>) {
        return hex $1 if index($_, $want) >= 0 && /0A [0-9A-F]{8}:([0-9A-F]{8})/;
    }
    return 0;
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    delete $LIVE{$pid};
    kill 'TERM', -$pid;    # its own process group: the server and handlers
    kill 'TERM', $pid;
    my $deadline = time + 3;
    while (time < $deadline) {
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.01;
    }
    if (kill 0, $pid) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    kill 'KILL', -$pid;    # leftover hanging handlers
    return $self;
}

sub stop_all { my @live = values %LIVE; $_->stop for @live }   # stop() deletes from %LIVE

# every request received so far, in order: { endpoint, method, path,
# headers => {lc => value}, body (raw bytes), json (decoded body or undef),
# t (epoch seconds) }. The module's background GET /supported (one per
# start, whenever its timer fires) is left out unless all => 1: it is no
# part of any payment's sequence.
sub requests {
    my ($self, %o) = @_;
    open my $fh, '<', $self->{log} or return ();
    flock $fh, LOCK_SH;
    my @r;
    my $js = JSON::PP->new;
    while (my $l = <$fh>) {
        my $o = $js->decode($l);
        next if $o->{endpoint} eq 'supported' && !$o{all};
        $o->{json} = eval { JSON::PP->new->utf8->decode($o->{body}) };
        push @r, $o;
    }
    close $fh;
    return @r;
}

sub _read_request {
    my ($c, $bufref) = @_;
    my $sel = IO::Select->new($c);
    my $deadline = time + 30;
    while (index($$bufref, "\r\n\r\n") < 0) {
        return undef if time > $deadline;
        $sel->can_read(1) or next;
        my $n = sysread($c, $$bufref, 65536, length $$bufref);
        return undef unless $n;
    }
    my $i = index($$bufref, "\r\n\r\n");
    my $head = substr($$bufref, 0, $i);
    $$bufref = substr($$bufref, $i + 4);
    my ($line, @h) = split /\r\n/, $head;
    my ($method, $path, $ver) = split ' ', $line;
    my %h;
    for (@h) {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*?)\s*$/;
    }
    my $body = '';
    if (defined $h{'content-length'}) {
        while (length $$bufref < $h{'content-length'}) {
            return undef if time > $deadline;
            $sel->can_read(1) or next;
            my $n = sysread($c, $$bufref, 65536, length $$bufref);
            return undef unless $n;
        }
        $body = substr($$bufref, 0, $h{'content-length'});
        $$bufref = substr($$bufref, $h{'content-length'});
    } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            if ($$bufref =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
                my $n = hex $1;
                while (length $$bufref < $n + 2) {
                    return undef if time > $deadline;
                    $sel->can_read(1) or next;
                    my $r = sysread($c, $$bufref, 65536, length $$bufref);
                    return undef unless $r;
                }
                last if $n == 0;
                $body .= substr($$bufref, 0, $n);
                $$bufref = substr($$bufref, $n + 2);
                next;
            }
            return undef if time > $deadline;
            $sel->can_read(1) or next;
            my $r = sysread($c, $$bufref, 65536, length $$bufref);
            return undef unless $r;
        }
        $$bufref =~ s/\A\r\n//;
    }
    return { method => $method, path => $path, version => $ver // 'HTTP/1.0',
             headers => \%h, body => $body };
}

sub _serve {
    my ($self, $c) = @_;
    binmode $c;
    my $buf = '';
    while (my $req = _read_request($c, \$buf)) {
        (my $ep = $req->{path}) =~ s/\?.*//;
        $ep =~ s{.*/}{};
        $ep = 'unknown' if $ep eq '';
        my $n = $self->_record($ep, $req);
        my $script = eval {
            open my $fh, '<', $self->{script_file} or die;
            local $/;
            JSON::PP->new->decode(<$fh>);
        } || {};
        my $list = $script->{$ep} || [];
        my $e = @$list ? $list->[$n < @$list ? $n : -1] : { action => 'default' };
        sleep($e->{delay_ms} / 1000) if $e->{delay_ms};
        my $action = $e->{action} // '';
        if ($action eq 'close') {
            close $c;
            return;
        }
        if ($action eq 'reset') {
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            close $c;
            return;
        }
        if ($action eq 'hang') {
            sleep 1 while 1;
        }
        my ($status, $body);
        my $vars = _vars($req);
        if ($e->{chain} && $ep eq 'settle' && $vars->{valid_json}) {
            if (!$self->_chain_settle($vars->{nonce})) {
                ($status, $body) = (200, JSON::PP->new->canonical->encode({
                    success => JSON::PP::false, transaction => '',
                    errorReason => 'invalid_exact_evm_payload_authorization_nonce_used',
                    network => $vars->{network}, payer => $vars->{payer} }));
                $action = 'done';
            } elsif ($e->{lose} && $n % $e->{lose} == $e->{lose} - 1) {
                ($status, $body) = (502, '{}');
                $action = 'done';
            }
        }
        if ($action eq 'done') {
            # answered above
        } elsif ($action eq 'chain') {
            my $j = eval { JSON::PP->new->decode($req->{body}) } || {};
            my $data = eval { $j->{params}[0]{data} } // '';
            my $used = length($data) == 2 + 8 + 64 + 64
                && $self->_chain_has('0x' . lc substr($data, -64));
            ($status, $body) = (200, '{"jsonrpc":"2.0","id":1,"result":"0x'
                . ('0' x 63) . ($used ? '1' : '0') . '"}');
        } elsif ($action eq 'garbage') {
            ($status, $body) = (200, "<html>this is not json\x00\xff");
        } elsif ($action eq 'default') {
            ($status, $body) = _default($ep, $req, $vars);
        } else {
            $status = $e->{status};
            $body = defined $e->{json}
                ? JSON::PP->new->canonical->encode($e->{json}) : $e->{body};
            $body =~ s/\{\{(\w+)\}\}/$vars->{$1} \/\/ ''/ge;
        }
        my $keep = $req->{version} eq 'HTTP/1.1'
            && ($req->{headers}{connection} // '') !~ /close/i;
        my $resp = "HTTP/1.1 $status X\r\n"
            . "Content-Type: application/json\r\n"
            . 'Content-Length: ' . length($body) . "\r\n"
            . ($keep ? '' : "Connection: close\r\n")
            . "\r\n" . $body;
        my $off = 0;
        while ($off < length $resp) {
            my $w = syswrite($c, $resp, length($resp) - $off, $off);
            return unless $w;
            $off += $w;
        }
        last unless $keep;
    }
    close $c;
}

sub _vars {
    my ($req) = @_;
    my $j = eval { JSON::PP->new->decode($req->{body}) } || {};
    $j = {} unless ref $j eq 'HASH';
    my $pp = ref $j->{paymentPayload} eq 'HASH' ? $j->{paymentPayload} : {};
    my $pr = ref $j->{paymentRequirements} eq 'HASH' ? $j->{paymentRequirements} : {};
    my $auth = eval { $pp->{payload}{authorization} } || {};
    return {
        nonce   => lc((ref $auth eq 'HASH' ? $auth->{nonce} : undef) // ''),
        payer   => (ref $auth eq 'HASH' ? $auth->{from} : undef) // '',
        network => $pr->{network} // $pp->{network}
                   // eval { $pp->{accepted}{network} } // '',
        amount  => $pr->{amount} // $pr->{maxAmountRequired} // '',
        tx      => '0x' . sha256_hex($req->{body}),
        valid_json => (ref $j->{paymentPayload} eq 'HASH' ? 1 : 0),
    };
}

sub _default {
    my ($ep, $req, $v) = @_;
    my $js = JSON::PP->new->canonical;
    if ($ep eq 'supported') {
        return (200, $js->encode({
            kinds => [
                { x402Version => 2, scheme => 'exact', network => 'eip155:84532' },
                { x402Version => 2, scheme => 'exact', network => 'eip155:8453' },
                { x402Version => 1, scheme => 'exact', network => 'base-sepolia' },
                { x402Version => 1, scheme => 'exact', network => 'base' },
                # the other networks the tests name
                (map { ({ x402Version => 2, scheme => 'exact', network => $_ }) }
                     qw(eip155:137 eip155:43114 eip155:80002 eip155:43113
                        eip155:31337 eip155:31338 eip155:10 eip155:42161)),
                (map { ({ x402Version => 1, scheme => 'exact', network => $_ }) }
                     qw(polygon avalanche polygon-amoy avalanche-fuji)),
            ],
            extensions => [], signers => {} }));
    }
    return (400, '{"error":"invalid request body"}') unless $v->{valid_json};
    if ($ep eq 'verify') {
        return (200, $js->encode({ isValid => JSON::PP::true, payer => $v->{payer} }));
    }
    if ($ep eq 'settle') {
        return (200, $js->encode({ success => JSON::PP::true,
                                   transaction => $v->{tx},
                                   network => $v->{network},
                                   payer => $v->{payer} }));
    }
    return (404, '{"error":"not found"}');
}

# the fake chain: settled nonces, one a line
sub chain_file { "$_[0]{log}.chain" }

sub chain_nonces {
    my ($self) = @_;
    open my $fh, '<', $self->chain_file or return ();
    chomp(my @n = <$fh>);
    return @n;
}

sub _chain_has {
    my ($self, $nonce) = @_;
    return scalar grep { $_ eq $nonce } $self->chain_nonces;
}

# settles nonce on the fake chain; false if it was used already
sub _chain_settle {
    my ($self, $nonce) = @_;
    open my $fh, '+>>', $self->chain_file or die $self->chain_file . ": $!";
    flock $fh, LOCK_EX;
    seek $fh, 0, 0;
    while (my $l = <$fh>) {
        chomp $l;
        return 0 if $l eq $nonce;
    }
    seek $fh, 0, SEEK_END;
    print $fh "$nonce\n";
    close $fh;
    return 1;
}

# append under an exclusive lock; returns how many requests this endpoint
# had before (the script index), kept in a counter file per endpoint so
# that a long run does not read the whole log for each request
sub _record {
    my ($self, $ep, $req) = @_;
    open my $fh, '+<', $self->{log} or die "$self->{log}: $!";
    flock $fh, LOCK_EX;
    my $cf = "$self->{log}.count-$ep";
    my $n = 0;
    if (open my $c, '<', $cf) {
        $n = <$c> // 0;
        chomp $n;
        close $c;
    }
    open my $c, '>', $cf or die "$cf: $!";
    print $c $n + 1, "\n";
    close $c;
    seek $fh, 0, SEEK_END;
    print $fh JSON::PP->new->ascii->canonical->encode({
        endpoint => $ep, method => $req->{method}, path => $req->{path},
        headers => $req->{headers}, body => $req->{body}, t => time,
    }), "\n";
    close $fh;
    return $n;
}

# standalone use
unless (caller) {
    my %o;
    while (@ARGV) {
        my $k = shift @ARGV;
        $k =~ s/^--//;
        $o{$k} = shift @ARGV;
    }
    my $script;
    if ($o{script}) {
        open my $fh, '<', $o{script} or die "$o{script}: $!";
        local $/;
        $script = <$fh>;
    }
    my $f = FakeFacilitator->new(port => $o{port}, script => $script,
                                 log => $o{log}, dir => $o{dir} || '/tmp');
    $f->start;
    print "fake facilitator on ", $f->url, " (log ", $f->log_file, ")\n";
    $SIG{TERM} = $SIG{INT} = sub { $f->stop; exit 0 };
    sleep 1 while 1;
}

1;
