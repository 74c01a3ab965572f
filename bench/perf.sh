#!/usr/bin/env bash
# Where one nginx worker's CPU goes per paid request, kernel included:
# `perf record` of a one-worker module nginx (no valgrind) against an
# instant facilitator (nginx answering /verify and /settle with canned
# JSON), while x402_bench_load sends N paid requests over C connections.
# Prints the worker's CPU per request (user, system) against a bare
# secp256k1_ecdsa_recover, the share of each DSO, and the top symbols.
#
#   bench/perf.sh [local|sync|proxy|proxy2] [N] [C]
#       local: credit advance (x402_verify local, x402_settle async, zone)
#       sync:  /verify and /settle subrequests to the facilitator
#       proxy, proxy2: nginx's own floor for the same I/O, no x402 at all:
#              the same requests proxied to the facilitator's /settle
#              (one upstream exchange, as local's settlement), and with an
#              auth_request to its /verify first (two, as sync)
#       N paid requests (default 20000), C connections (default 16)
#
# Leaves the profile in build/bench/perf-<path>.data for `perf report -i`.
# Needs perf (kernel.perf_event_paranoid <= 1, or root). RECORD=0: the CPU
# time only, without perf's sampling overhead (to compare builds).
# STRACE=1: the worker's system calls per paid request (strace -c; its
# overhead makes the CPU figures meaningless then).
# PIN=W:P: the worker on CPU W, the facilitator and the load generator on
# CPU P (taskset). PIN=0:0 puts all three on one core: waking a loopback
# peer then costs no inter-processor interrupt (on this 2-vCPU VM an IPI
# to a sleeping peer on the other vCPU is ≈ 15 µs of the worker's kernel
# time per paid request: 25 µs of kernel with the peers on the other core,
# 10 µs with them on the worker's).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
path=${1:-local}
n=${2:-20000}
conns=${3:-16}
case $path in local|sync|proxy|proxy2) ;; *) echo "usage: $0 [local|sync|proxy|proxy2] [N] [C]" >&2; exit 2 ;; esac
perf=${PERF:-/usr/bin/perf}
work=$(mktemp -d /tmp/x402-perf.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for d in f m; do
        [ -f "$work/$d/logs/nginx.pid" ] && kill "$(cat "$work/$d/logs/nginx.pid")" 2>/dev/null || true
    done
    sleep 0.3
    rm -rf "$work"
}
trap cleanup EXIT
port() { perl -MIO::Socket::INET -e 'for (1..100) { my $p = 20000 + int rand 40000; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $p, Listen => 1) or next; print $p; exit }'; }

so=$(BUILD_DIR="$root/build/bench-module" "$root/scripts/build-module.sh" | tail -1)
cp --remove-destination "$so" "$work/x402.so"
cmake -S "$root" -B "$root/build/bench" -DCMAKE_BUILD_TYPE=Release \
    -DX402_BENCH=ON -DX402_TESTS=OFF > /dev/null
cmake --build "$root/build/bench" -j2 --target x402_bench_sign x402_bench_load > /dev/null
sign=$root/build/bench/x402_bench_sign
load=$root/build/bench/x402_bench_load
out=$root/build/bench/perf-$path.data
payer=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
user=$( [ "$(id -u)" = 0 ] && echo "user root root;" || true)

fport=$(port); mport=$(port)
mkdir -p "$work/f/logs" "$work/f/conf" "$work/m/logs" "$work/m/conf" "$work/m/tmp"
cat > "$work/f/conf/nginx.conf" <<EOF
$user
daemon on; worker_processes 1; pid logs/nginx.pid; error_log logs/error.log warn;
events {}
http { access_log off; keepalive_requests 10000000;
    server { listen 127.0.0.1:$fport; default_type application/json;
    location = /settle { return 200 '{"success":true,"transaction":"0x$(printf '%064d' 7)","network":"eip155:84532","payer":"$payer"}'; }
    location / { return 200 '{"isValid":true,"payer":"$payer"}'; } } }
EOF
# keepalive as many upstream connections as there are clients: no
# connect()/close() per request in the profile
cat > "$work/m/conf/nginx.conf" <<EOF
$user
daemon on; master_process on; worker_processes 1;
pid logs/nginx.pid; error_log logs/error.log warn;
load_module $work/x402.so;
events {}
http {
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp;
    keepalive_requests 10000000;
    x402_zone bench:64m;
    upstream facilitator { server 127.0.0.1:$fport; keepalive $((conns * 2)); }
    server {
        listen 127.0.0.1:$mport;
        x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        location /sync/ { x402_price 0.001; empty_gif; }
        location /local/ { x402_price 0.001; x402_verify local; x402_settle async; empty_gif; }
        location /_x402/ { internal; proxy_pass http://facilitator/;
                           proxy_http_version 1.1; proxy_set_header Connection ""; }
        location /proxy/ { proxy_pass http://facilitator/settle;
                           proxy_http_version 1.1; proxy_set_header Connection ""; }
        location /proxy2/ { auth_request /_floor/verify;
                            proxy_pass http://facilitator/settle;
                            proxy_http_version 1.1; proxy_set_header Connection ""; }
        location = /_floor/verify { internal; proxy_pass http://facilitator/verify;
                                    proxy_pass_request_body off;
                                    proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
/usr/sbin/nginx -p "$work/f/" -c conf/nginx.conf
/usr/sbin/nginx -p "$work/m/" -c conf/nginx.conf
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$mport/$path/" && break
    sleep 0.1
done
wpid=$(pgrep -P "$(cat "$work/m/logs/nginx.pid")" | head -1)
pin=()
if [ -n "${PIN:-}" ]; then  # W:P, see above
    taskset -pc ${PIN%%:*} "$wpid" > /dev/null
    for p in $(cat "$work/f/logs/nginx.pid") $(pgrep -P "$(cat "$work/f/logs/nginx.pid")"); do taskset -pc ${PIN##*:} "$p" > /dev/null; done
    pin=(taskset -c ${PIN##*:})
fi
# the floors' requests carry the same payments (the same bytes in)
offer=$path; case $path in proxy*) offer=local ;; esac
pr=$(curl -s -D - -o /dev/null "http://127.0.0.1:$mport/$offer/" | tr -d '\r' \
     | sed -n 's/^[Pp][Aa][Yy][Mm][Ee][Nn][Tt]-[Rr][Ee][Qq][Uu][Ii][Rr][Ee][Dd]: //p')
warm=$((n / 10 + 200))
"$sign" --payment-required "$pr" --count $((n + warm)) > "$work/pay.txt"
head -n "$warm" "$work/pay.txt" > "$work/warm.txt"
tail -n "$n" "$work/pay.txt" > "$work/run.txt"
"$load" "$mport" "/$path/" "$warm" "$conns" "$work/warm.txt" PAYMENT-SIGNATURE > /dev/null
sleep 1

ticks() { awk '{ print $14, $15 }' "/proc/$wpid/stat"; }
read -r u0 s0 < <(ticks)
record=${RECORD:-1}
if [ "${STRACE:-0}" = 1 ]; then
    record=0
    strace -c -f -o "$work/strace.txt" -p "$wpid" &
    spid=$!
    pids+=("$spid")
    sleep 1
fi
if [ "$record" != 0 ]; then
    "$perf" record -q -F 4999 -g -p "$wpid" -o "$out" -- sleep 600 > /dev/null 2>&1 &
    ppid=$!
    pids+=("$ppid")
    sleep 1
fi
"${pin[@]}" "$load" "$mport" "/$path/" "$n" "$conns" "$work/run.txt" PAYMENT-SIGNATURE
sleep 0.5  # the async settlements of the last requests
if [ "$record" != 0 ]; then
    kill -INT "$ppid"; wait "$ppid" 2>/dev/null || true
fi
read -r u1 s1 < <(ticks)
if [ "${STRACE:-0}" = 1 ]; then
    kill -INT "$spid"; wait "$spid" 2>/dev/null || true
    echo "-- system calls per paid request"
    awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" { printf "%8.3f %s\n", $4 / n, $NF }' \
        "$work/strace.txt" | sort -rn
fi

# a bare recover, in CPU time on this machine now
rec=$("$sign" --recover-bench 3000)   # ns
hz=$(getconf CLK_TCK)
perl -e 'my ($u, $s, $n, $hz, $rec, $path) = @ARGV;
    my ($us, $ss) = ($u * 1e6 / $hz / $n, $s * 1e6 / $hz / $n); $rec /= 1000;
    printf "%s: worker CPU per paid request %.1f us (user %.1f, system %.1f: kernel %.0f%%)",
        $path, $us + $ss, $us, $ss, 100 * $ss / ($us + $ss || 1);
    printf "; bare recover %.1f us: %.2f recovers", $rec, ($us + $ss) / $rec if $rec;
    print "\n"' "$((u1 - u0))" "$((s1 - s0))" "$n" "$hz" "$rec" "$path"
[ "$record" = 0 ] && exit 0
echo "-- by DSO"
"$perf" report -i "$out" --no-children --sort dso --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | sed -n 1,12p
echo "-- top symbols (self; libsecp256k1 has none: see its DSO line)"
"$perf" report -i "$out" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | grep -v libsecp256k1 | sed -n 1,${TOP:-25}p
echo "-- system calls (inclusive)"
"$perf" report -i "$out" --children --sort sym --stdio -g none 2>/dev/null \
    | grep -E '\[k\] (__x64_sys_|__sys_|do_writev|ksys_write|ksys_read|do_epoll_wait|__do_sys_)' | sed -n 1,14p
echo "profile: $perf report -i $out"
