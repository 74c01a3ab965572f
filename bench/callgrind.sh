#!/usr/bin/env bash
# Instructions per paid request of one nginx worker under callgrind (credit
# advance: x402_verify local, x402_settle async, zone; or sync: /verify and
# /settle subrequests to the facilitator), against the
# instructions of one bare secp256k1_ecdsa_recover: a deterministic ratio,
# unlike CPU time on a shared machine. Kernel work (sockets, epoll) is not
# counted by callgrind; bench/run.sh's CPU time includes it.
#
#   bench/callgrind.sh [N] [local|sync]   (N paid requests, default 500;
#                                          default local: credit advance)
#
# Leaves the profile in build/bench/callgrind.out for callgrind_annotate.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-500}
path=${2:-local}
case $path in local|sync) ;; *) echo "usage: $0 [N] [local|sync]" >&2; exit 2 ;; esac
work=$(mktemp -d /tmp/x402-callgrind.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/f/logs/nginx.pid" ] && kill "$(cat "$work/f/logs/nginx.pid")" 2>/dev/null || true
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
out=$root/build/bench/callgrind.out
payer=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
user=$( [ "$(id -u)" = 0 ] && echo "user root root;" || true)

fport=$(port); mport=$(port)
mkdir -p "$work/f/logs" "$work/f/conf" "$work/m/logs" "$work/m/conf" "$work/m/tmp"
cat > "$work/f/conf/nginx.conf" <<EOF
$user
daemon on; worker_processes 1; pid logs/nginx.pid; error_log logs/error.log warn;
events {}
http { access_log off; server { listen 127.0.0.1:$fport; default_type application/json;
    location = /settle { return 200 '{"success":true,"transaction":"0x$(printf '%064d' 7)","network":"eip155:84532","payer":"$payer"}'; }
    location / { return 200 '{"isValid":true,"payer":"$payer"}'; } } }
EOF
cat > "$work/m/conf/nginx.conf" <<EOF
$user
daemon off; master_process off; worker_processes 1;
pid logs/nginx.pid; error_log logs/error.log warn;
load_module $work/x402.so;
events {}
http {
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp;
    keepalive_requests 10000000;
    upstream facilitator { server 127.0.0.1:$fport; keepalive 8; }
    server {
        listen 127.0.0.1:$mport;
        x402_pay_to 0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        location /local/ { x402_price 0.001; x402_verify local; x402_settle async; empty_gif; }
        location /sync/ { x402_price 0.001; empty_gif; }
        location /_x402/ { internal; proxy_pass http://facilitator/;
                           proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
/usr/sbin/nginx -p "$work/f/" -c conf/nginx.conf
rm -f "$out" "$out".*
valgrind --tool=callgrind --callgrind-out-file="$out" \
    /usr/sbin/nginx -p "$work/m/" -c conf/nginx.conf > "$work/valgrind.log" 2>&1 &
vpid=$!
pids+=("$vpid")
for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$mport/$path/" && break
    sleep 0.1
done
pr=$(curl -s -D - -o /dev/null "http://127.0.0.1:$mport/$path/" | tr -d '\r' \
     | sed -n 's/^[Pp][Aa][Yy][Mm][Ee][Nn][Tt]-[Rr][Ee][Qq][Uu][Ii][Rr][Ee][Dd]: //p')
"$sign" --payment-required "$pr" --count $((n + 100)) > "$work/pay.txt"
head -100 "$work/pay.txt" > "$work/warm.txt"
tail -n "$n" "$work/pay.txt" > "$work/run.txt"
"$load" "$mport" "/$path/" 100 4 "$work/warm.txt" PAYMENT-SIGNATURE > /dev/null
sleep 1
callgrind_control -z "$vpid" > /dev/null 2>&1
"$load" "$mport" "/$path/" "$n" 4 "$work/run.txt" PAYMENT-SIGNATURE
sleep 1  # the async settlements of the last requests
callgrind_control -d "$vpid" > /dev/null 2>&1
kill -QUIT "$vpid"
wait "$vpid" || true
mv "$out.1" "$out"

total=$(callgrind_annotate "$out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
rec() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$sign" --recover-bench "$1" 2>&1 \
        | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,; }
r1=$(rec 100); r2=$(rec 300)
perl -e 'my ($t, $n, $r1, $r2, $path) = @ARGV; my $rec = ($r2 - $r1) / 200;
    printf "paid request (%s): %.0f instructions; bare secp256k1_ecdsa_recover: %.0f; ratio %.2f\n",
        $path eq "sync" ? "sync: /verify and /settle subrequests" : "local verify, async, zone",
        $t / $n, $rec, $t / $n / $rec' "$total" "$n" "$r1" "$r2" "$path"
echo "profile: callgrind_annotate --inclusive=yes $out | less"
