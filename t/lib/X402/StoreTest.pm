package X402::StoreTest;

# Helpers shared by the store tests (t/3x-*.t): a paid server block, signed
# payments for it, concurrent requests, the access log as records.

use strict;
use warnings;
use POSIX ();
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use X402::Test;
use Exporter 'import';

our @EXPORT = qw(store_http_config store_server_config payments_for
                 concurrent_gets log_records wait_for settles_of
                 unfinished_paid_requests end_during_reload $PAY_TO);

our $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

# $x402_status and the store's variables, one line per request
sub store_http_config {
    my ($extra) = @_;
    return <<"EOC" . ($extra // '');
    log_format x402store '\$uri \$status \$x402_status \$x402_store '
                         '\$x402_payment_id \$x402_pending';
EOC
}

# a server block: /paid/ and /other/ priced, the facilitator on $fport
sub store_server_config {
    my ($fport, %a) = @_;
    my $settle = $a{settle} // 'sync';
    my $grant = $a{grant} ? "x402_grant $a{grant};" : '';
    my $extra = $a{extra} // '';
    return <<"EOC";
    access_log logs/store.log x402store;

    x402_pay_to       $PAY_TO;
    x402_network      base-sepolia;
    x402_facilitator  /_x402/;
    x402_settle       $settle;
    x402_verify       local;
    $grant

    # a content handler: "return" would run before the access phase
    location /paid/ {
        x402_price  0.001;
        empty_gif;
    }

    location /other/ {
        x402_price  0.001;
        empty_gif;
    }

    location /_x402/ {
        internal;
        proxy_pass http://127.0.0.1:$fport/;
        proxy_connect_timeout 2s;
        proxy_read_timeout 5s;
    }
    $extra
EOC
}

# n signed payments for /paid/ of $ng: [header, payload] pairs
sub payments_for {
    my ($ng, $n, %opts) = @_;
    my $r = $ng->get('/paid/');
    die "expected a 402 from /paid/, got $r->{status}\n"
        unless $r->{status} == 402;
    my $pr = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
    return sign_payments($n, payment_required => $pr, %opts);
}

# the same GET sent at once (one process each) to every port of @$ports;
# returns the responses' statuses in port order
sub concurrent_gets {
    my ($ports, $path, $hdrs) = @_;
    my @kids;
    # all children wait for the same instant to send
    my $go = time + 0.05;
    for my $i (0 .. $#$ports) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            my $d = $go - time;
            sleep $d if $d > 0;
            my $res = X402::Test::http_get($ports->[$i], $path, $hdrs);
            print $w ($res->{status} // 0), "\n";
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my @st;
    for my $k (@kids) {
        my $fh = $k->[1];
        my $s = <$fh>;
        close $fh;
        waitpid $k->[0], 0;
        chomp $s if defined $s;
        push @st, $s // 0;
    }
    # answered in the children: counted here (see log_records)
    for my $i (0 .. $#st) {
        $X402::HTTP::ANSWERED{$ports->[$i]}++ if $st[$i];
    }
    return @st;
}

# the store log of $ng as [uri, status, x402_status, store, id, pending];
# nginx logs a request after its response went out: waits (5 s at most)
# for a line per response the test got from it
sub log_records {
    my ($ng) = @_;
    my $want = $X402::HTTP::ANSWERED{$ng->port} // 0;
    my $deadline = time + 5;
    my @r;
    while (1) {
        @r = ();
        if (open my $fh, '<', $ng->prefix . '/logs/store.log') {
            while (<$fh>) {
                next unless /\n\z/;    # a line being written
                chomp;
                push @r, [split / /];
            }
        }
        return @r if @r >= $want || time > $deadline;
        sleep 0.05;
    }
}

# polls $cond (a sub) until true or $secs pass; returns its last value
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    my $v;
    while (1) {
        $v = $cond->();
        return $v if $v || time > $deadline;
        sleep 0.1;
    }
}

# how many /settle requests the fake facilitator $fac got for $nonce
sub settles_of {
    my ($fac, $nonce) = @_;
    return scalar grep {
        $_->{endpoint} eq 'settle'
        && lc($_->{json}{paymentPayload}{payload}{authorization}{nonce} // '')
           eq lc $nonce } $fac->requests;
}

# A request that a reload catches in a worker (with end_during_reload):
# for each payment header, a GET /paid/ to $ng on a connection of its own,
# its header all but its end (the empty line). Returns the sockets 0.3 s
# later, the worker having read what came.
sub unfinished_paid_requests {
    my ($ng, @pay) = @_;
    my @c;
    for my $h (@pay) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $ng->port)
            or die "connect: $!";
        print $c "GET /paid/ HTTP/1.1\r\nHost: localhost\r\n"
               . "Connection: close\r\nPAYMENT-SIGNATURE: $h\r\n";
        push @c, $c;
    }
    sleep 0.3;
    return @c;
}

# Reloads $ng with %reload (X402::Nginx::reload) while a child ends the
# headers on @$socks $after s into it: the reload returns only once the
# old workers are gone, so the old worker serves the requests after the
# reload began. Returns their responses, in order, the sockets closed.
sub end_during_reload {
    my ($ng, $socks, $after, %reload) = @_;
    my $kid = fork // die "fork: $!";
    if (!$kid) {
        sleep $after;
        print $_ "\r\n" for @$socks;
        POSIX::_exit(0);
    }
    $ng->reload(%reload);
    waitpid $kid, 0;
    my @resp;
    for my $c (@$socks) {
        push @resp, do { local $/; <$c> } // '';
        close $c;
    }
    return @resp;
}

1;
