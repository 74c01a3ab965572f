#!/usr/bin/env bash
# Cost of the authorization store per paid request, shm zone and Redis on
# loopback. Printed, not asserted.
#
#   scripts/bench-store.sh [N]        (N paid requests per store, default 2000)
#
# Builds the module with -DNGX_HTTP_X402_STORE_TIMING=1 (build/store-bench):
# the store's entry points (reserve, settled) and its Redis event handlers
# add up the time spent in them; a worker prints the sums when it exits.
# Nothing inside blocks, so that time is worker CPU. One nginx worker, the
# facilitator answering from an nginx location, x402_verify local, sync
# settlement, N distinct signed payments sent one after another on a
# keep-alive connection. For Redis it also counts the commands Redis
# executed per payment (INFO commandstats) and the awaited round trips
# (reserve only: the settled record is written without waiting).
# Also printed: the worker's whole CPU per paid request (getrusage of the
# worker via /proc) for scale.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-2000}
work=$(mktemp -d /tmp/x402-bench-store.XXXXXX)
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -f "$work/nginx/logs/nginx.pid" ]; then
        kill "$(cat "$work/nginx/logs/nginx.pid")" 2>/dev/null || true
    fi
    sleep 0.2
    rm -rf "$work"
}
trap cleanup EXIT

port() { perl -MIO::Socket::INET -e 'for (1..100) { my $p = 20000 + int rand 40000; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $p, Listen => 1) or next; print $p; exit }'; }

echo "building the timing module (build/store-bench) ..." >&2
so=$(BUILD_DIR="$root/build/store-bench" \
     X402_NGINX_CC_OPT="-O2 -DNGX_HTTP_X402_STORE_TIMING=1" \
     "$root/scripts/build-module.sh" | tail -1)
cp --remove-destination "$so" "$work/x402.so"

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" > "$work/redis.log" 2>&1 &
pids+=($!)

run() {
    local mode=$1 store_conf=""
    local nport
    nport=$(port)
    [ "$mode" = redis ] && store_conf="x402_redis 127.0.0.1:$rport fail=closed;"

    rm -rf "$work/nginx"
    mkdir -p "$work/nginx/conf" "$work/nginx/logs" "$work/nginx/tmp"
    cat > "$work/nginx/conf/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
daemon on;
master_process on;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log notice;
load_module $work/x402.so;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp;
    x402_zone bench:16m;
    $store_conf
    server {
        listen 127.0.0.1:$nport;
        keepalive_requests 1000000;
        x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        x402_verify local;
        location /paid/ { x402_price 0.001; empty_gif; }
        # the facilitator answers from nginx itself: its cost is not the
        # store's, and a Perl one would dominate the run
        location = /_x402/settle {
            internal;
            default_type application/json;
            return 200 '{"success":true,"transaction":"0x$(printf '%064d' 7)","network":"eip155:84532","payer":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"}';
        }
    }
}
EOF
    /usr/sbin/nginx -p "$work/nginx/" -c conf/nginx.conf
    sleep 0.3

    local pr
    pr=$(curl -s -D - -o /dev/null "http://127.0.0.1:$nport/paid/" \
         | tr -d '\r' | sed -n 's/^[Pp][Aa][Yy][Mm][Ee][Nn][Tt]-[Rr][Ee][Qq][Uu][Ii][Rr][Ee][Dd]: //p')
    echo "signing $n payments ($mode) ..." >&2
    node "$root/js/sign-payment.mjs" --payment-required "$pr" --count "$n" \
        > "$work/pay-$mode.txt"

    [ "$mode" = redis ] && redis-cli -p "$rport" CONFIG RESETSTAT > /dev/null

    local master worker
    master=$(cat "$work/nginx/logs/nginx.pid")
    worker=$(pgrep -P "$master" | head -1)

    perl -MIO::Socket::INET -MTime::HiRes=time -e '
        my ($port, $file, $pid) = @ARGV;
        open my $f, "<", $file or die;
        my @h = grep { /\S/ } map { s/\s+$//r } <$f>;
        sub cpu { open my $s, "<", "/proc/$pid/stat" or die;
                  my @x = split / /, scalar <$s>; return ($x[13] + $x[14]) }
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
                                      PeerPort => $port) or die "$!";
        my ($ok, $c0, $t0) = (0, cpu(), time);
        for my $h (@h) {
            print $s "GET /paid/ HTTP/1.1\r\nHost: b\r\nPAYMENT-SIGNATURE: $h\r\n\r\n";
            my ($st, $len) = (0, 0);
            while (my $l = <$s>) {
                $st = $1 if !$st && $l =~ m{^HTTP/1\.1 (\d+)};
                $len = $1 if $l =~ /^content-length:\s*(\d+)/i;
                last if $l eq "\r\n";
            }
            read($s, my $b, $len) if $len;
            $ok++ if $st == 200;
        }
        my ($c1, $t1) = (cpu(), time);
        my $hz = 100;
        printf "%d %d %.6f %.3f\n", scalar @h, $ok, ($c1 - $c0) / $hz,
               $t1 - $t0;
    ' "$nport" "$work/pay-$mode.txt" "$worker" > "$work/client-$mode.txt"

    local evals=0
    if [ "$mode" = redis ]; then
        evals=$(redis-cli -p "$rport" INFO commandstats \
                | sed -n 's/^cmdstat_eval:calls=\([0-9]*\),.*/\1/p')
    fi

    kill -QUIT "$master"
    for _ in $(seq 50); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done

    read -r sent ok cpu wall < "$work/client-$mode.txt"
    perl -e '
        my ($mode, $sent, $ok, $cpu, $wall, $evals, $log) = @ARGV;
        open my $f, "<", $log or die;
        my %t;
        while (<$f>) {
            $t{$1} = [$2, $3] if /x402 store timing: (\w+) calls=(\d+) ns=(\d+)/;
        }
        # minus what the clock itself costs per timed call
        my $clock = $t{clock}[1] / $t{clock}[0];
        delete $t{clock};
        $_->[1] -= $_->[0] * $clock for values %t;
        my $ns = 0;
        $ns += $t{$_}[1] for keys %t;
        printf "%-6s %d paid requests (%d served), %.0f req/s sequential\n",
               $mode, $sent, $ok, $ok / $wall;
        printf "       store CPU per paid request: %.2f us", $ns / $ok / 1000;
        printf "  (reserve %.2f, settled %.2f", $t{reserve}[1] / $ok / 1000,
               $t{settled}[1] / $ok / 1000;
        printf ", redis read %.2f, redis write %.2f",
               $t{redis_read}[1] / $ok / 1000, $t{redis_write}[1] / $ok / 1000
            if $mode eq "redis";
        print ")\n";
        printf "       worker CPU per paid request (all of it): %.1f us\n",
               $cpu / $ok * 1e6;
        printf "       redis commands per payment: %.2f (1 awaited round trip: reserve; settled is written without waiting)\n",
               $evals / $ok if $mode eq "redis";
    ' "$mode" "$sent" "$ok" "$cpu" "$wall" "$evals" "$work/nginx/logs/error.log"
}

run shm
run redis
