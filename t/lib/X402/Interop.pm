package X402::Interop;

# The real money path for the t/5x interop tests: a local chain (anvil with
# our EIP-3009 token at the Base Sepolia USDC address) and the official x402
# facilitator, both from js/interop/, stopped by pid when the test ends;
# chain reads over JSON-RPC; the official clients and the payment forge
# run as node processes.
#
#   my $ix = X402::Interop->start;          # chain + facilitator
#   $ix->balances->{payTo}; $ix->pay(2, $url); $ix->tx_ok($hash); ...

use strict;
use warnings;
use File::Path qw(make_path);
use Math::BigInt;
use POSIX ();
use Time::HiRes qw(time sleep);
use X402::Test ();
use X402::HTTP qw(http_request);

our $PRICE = 1000;    # 0.001 USDC in atomic units

my @LIVE;

sub js_dir { X402::Test::repo_root() . '/js/interop' }

sub available {
    my $root = X402::Test::repo_root();
    return -d "$root/js/node_modules/\@x402/core"
        && -x "$root/js/node_modules/\@foundry-rs/anvil-linux-amd64/bin/anvil";
}

# node('script.mjs', args...) -> (exit code, stdout)
sub node {
    my ($script, @args) = @_;
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $r;
        open STDOUT, '>&', $w or POSIX::_exit(111);
        open STDIN, '<', '/dev/null';
        exec('node', js_dir() . "/$script", @args) or POSIX::_exit(112);
    }
    close $w;
    local $/;
    my $out = <$r> // '';
    close $r;
    waitpid $pid, 0;
    return ($? >> 8, $out);
}

sub node_json {
    my ($rc, $out) = node(@_);
    my $j = eval { X402::Test::json_decode($out) };
    die "node $_[0]: exit $rc, output not JSON: " . substr($out, 0, 300) . "\n"
        unless $j;
    return $j;
}

# start(run_dir => ..., fund => 10)
sub start {
    my ($class, %a) = @_;
    my $run = $a{run_dir} || X402::Test::servroot() . '/interop';
    make_path($run);
    my $self = bless { run => $run }, $class;
    push @LIVE, $self;
    my $t = time;
    $self->{chain} = node_json('chain.mjs', 'start', '--run-dir', $run,
                               '--fund', $a{fund} // '10');
    $self->{fac} = node_json('facilitator.mjs', 'start', '--run-dir', $run);
    $self->{start_secs} = time - $t;
    my $c = $self->{chain};
    $self->{addr} = { payer => $c->{accounts}{payer}{address},
                      payer2 => $c->{accounts}{payer2}{address},
                      poor => $c->{accounts}{poor}{address},
                      payTo => $c->{payTo} };
    return $self;
}

sub run_dir  { $_[0]{run} }
sub chain    { $_[0]{chain} }
sub fac      { $_[0]{fac} }
sub fac_port { $_[0]{fac}{port} }
sub pay_to   { $_[0]{chain}{payTo} }

sub stop {
    my ($self) = @_;
    for my $k (qw(fac chain)) {
        my $s = $self->{$k} or next;
        my $pid = delete $s->{pid} or next;
        kill 'TERM', $pid;
        for (1 .. 60) { last unless kill 0, $pid; sleep 0.05 }
        kill 'KILL', $pid if kill 0, $pid;
    }
}

sub stop_all { $_->stop for @LIVE }

END { stop_all() }

# ---- chain reads over JSON-RPC ----

sub rpc {
    my ($self, $method, @params) = @_;
    my $body = X402::Test::json_encode({ jsonrpc => '2.0',
        id => ++$self->{rpc_id}, method => $method, params => \@params });
    my $raw = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "Content-Type: application/json\r\nConnection: close\r\n"
        . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
    my $res = http_request($self->{chain}{port}, $raw, timeout => 10);
    die "rpc $method: " . ($res->{error} // "status $res->{status}") . "\n"
        unless $res->{ok} && $res->{status} == 200;
    my $j = X402::Test::json_decode($res->{body});
    die "rpc $method: $j->{error}{message}\n" if $j->{error};
    return $j->{result};
}

sub hex2dec {
    my ($h) = @_;
    $h =~ s/^0x//;
    return Math::BigInt->from_hex($h || '0')->bstr;
}

# token balances of payer, payer2, poor, payTo (atomic units)
sub balances {
    my ($self) = @_;
    my %b;
    for my $n (sort keys %{ $self->{addr} }) {
        (my $a = lc $self->{addr}{$n}) =~ s/^0x//;
        my $r = $self->rpc('eth_call', { to => $self->{chain}{token}{address},
            data => '0x70a08231' . ('0' x 24) . $a }, 'latest');
        $b{$n} = hex2dec($r) + 0;
    }
    return \%b;
}

my $TRANSFER_TOPIC =
    '0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef';

# a settlement's receipt: undef unless mined with status success; else
# {transfers => [{from, to, value}]} of the token's Transfer events
sub tx_ok {
    my ($self, $hash) = @_;
    return undef unless defined $hash && $hash =~ /^0x[0-9a-fA-F]{64}$/;
    my $r = $self->rpc('eth_getTransactionReceipt', $hash) or return undef;
    return undef unless $r->{status} eq '0x1';
    my @t;
    for my $l (@{ $r->{logs} }) {
        next unless lc $l->{address} eq lc $self->{chain}{token}{address}
            && lc $l->{topics}[0] eq $TRANSFER_TOPIC;
        push @t, { from => '0x' . substr($l->{topics}[1], 26),
                   to => '0x' . substr($l->{topics}[2], 26),
                   value => hex2dec($l->{data}) };
    }
    return { transfers => \@t, block => hex2dec($r->{blockNumber}) };
}

# wait until payTo has received $want more than $from (async settlements)
sub wait_pay_to {
    my ($self, $from, $want, $secs) = @_;
    my $deadline = time + ($secs // 10);
    my $b;
    while (time < $deadline) {
        $b = $self->balances;
        return $b if $b->{payTo} - $from >= $want;
        sleep 0.2;
    }
    return $b;
}

# ---- the facilitator's request log ----

sub fac_log {
    my ($self) = @_;
    open my $fh, '<', "$self->{run}/facilitator-requests.jsonl" or return ();
    my @l = map { X402::Test::json_decode($_) } grep { /\S/ } <$fh>;
    close $fh;
    return @l;
}

# the facilitator's log entries for /settle of the authorization with nonce
sub settles_of {
    my ($self, $nonce) = @_;
    return () unless $nonce;
    return grep {
        $_->{path} =~ m{/settle$}
        && lc($_->{request}{paymentPayload}{payload}{authorization}{nonce} // '')
           eq lc $nonce
    } $self->fac_log;
}

# ---- paying ----

# pay($version, $url, account => 'poor') -> the client's JSON report
sub pay {
    my ($self, $v, $url, %o) = @_;
    my @a = ('--run-dir', $self->{run}, '--url', $url);
    push @a, '--account', $o{account} if $o{account};
    return node_json("client-v$v.mjs", @a);
}

# several official client runs at once: [[v, url, account?], ...] -> reports
sub pay_parallel {
    my ($self, @jobs) = @_;
    my @kids;
    for my $i (0 .. $#jobs) {
        my ($v, $url, $acct) = @{ $jobs[$i] };
        my $out = "$self->{run}/pay-parallel-$$-$i.json";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            open STDOUT, '>', $out or POSIX::_exit(111);
            open STDIN, '<', '/dev/null';
            exec('node', js_dir() . "/client-v$v.mjs", '--run-dir', $self->{run},
                 '--url', $url, ($acct ? ('--account', $acct) : ()))
                or POSIX::_exit(112);
        }
        push @kids, [$pid, $out];
    }
    my @res;
    for my $k (@kids) {
        waitpid $k->[0], 0;
        open my $fh, '<', $k->[1] or die "$k->[1]: $!";
        local $/;
        my $text = <$fh>;
        close $fh;
        push @res, eval { X402::Test::json_decode($text) }
            // { status => undef, error => "no report: " . substr($text // '', 0, 200) };
    }
    return @res;
}

# forge(jobs...) -> reports; see js/interop/forge.mjs --batch
sub forge {
    my ($self, @jobs) = @_;
    return @{ node_json('forge.mjs', '--run-dir', $self->{run}, '--batch',
                        X402::Test::json_encode(\@jobs)) };
}

sub nonce_of {
    my ($r) = @_;
    my $p = $r->{paymentPayload} // $r->{payload} or return undef;
    return $p->{payload}{authorization}{nonce};
}

1;
