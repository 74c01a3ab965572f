#!/usr/bin/env bash
# redis-server's CPU per payment on the x402_redis path alone (the part of
# bench/run.sh that measures it, quick to rerun). Prints figures; asserts
# nothing.
#
#   bench/redis.sh            (ROUNDS=3 N=20000 CONN=16)
#
# One redis-server, an "instant" facilitator (nginx answering canned JSON),
# the module's nginx with one worker, x402_redis, x402_verify local and
# x402_settle async; N distinct payments signed beforehand (bench/sign.cpp)
# sent by bench/load.c over CONN keep-alive connections. Per round:
# redis-server's CPU (/proc schedstat) ÷ payments, the worker's CPU per
# request, and the commands Redis executed per payment (INFO commandstats);
# then, per round, each command's calls and µs of redis-server CPU per
# payment (INFO commandstats; a script's inner commands are counted both
# under their own name and within the eval's time).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3}
n=${N:-20000}
conn=${CONN:-16}
pay_to=0x209693Bc6afc0C5328bA36FaF03C514EF312287C
payer=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
work=$(mktemp -d /tmp/x402-bench-redis.XXXXXX)
pids=()
masters=()

cleanup() {
    for m in "${masters[@]}"; do
        [ -f "$m" ] && kill -QUIT "$(cat "$m")" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    [ -n "${KEEP:-}" ] && { echo "kept $work" >&2; return; }
    rm -rf "$work"
}
trap cleanup EXIT

port() { perl -MIO::Socket::INET -e 'for (1..100) { my $p = 20000 + int rand 40000; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $p, Listen => 1) or next; print $p; exit }'; }
cpu_ns() {
    local sum=0 t v
    for t in /proc/"$1"/task/*/schedstat; do
        read -r v _ < "$t" 2>/dev/null || continue
        sum=$((sum + v))
    done
    echo "$sum"
}
wait_port() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on $1" >&2
    exit 1
}

so=$(BUILD_DIR="$root/build/bench-module" "$root/scripts/build-module.sh" | tail -1)
cp --remove-destination "$so" "$work/x402.so"
cmake -S "$root" -B "$root/build/bench" -DCMAKE_BUILD_TYPE=Release \
    -DX402_BENCH=ON -DX402_TESTS=OFF > /dev/null
cmake --build "$root/build/bench" -j2 --target x402_bench_sign x402_bench_load \
    > /dev/null
sign=$root/build/bench/x402_bench_sign
load=$root/build/bench/x402_bench_load

rport=$(port); fport=$(port); nport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" > "$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")

nginx_start() {  # NAME BODY
    local dir=$work/$1
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    cat > "$dir/conf/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
daemon on;
master_process on;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
load_module $work/x402.so;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp;
    keepalive_requests 10000000;
$2
}
EOF
    /usr/sbin/nginx -p "$dir/" -c conf/nginx.conf
    masters+=("$dir/logs/nginx.pid")
}

tx=0x$(printf '%064d' 7)
nginx_start facilitator "
    server {
        listen 127.0.0.1:$fport;
        default_type application/json;
        location = /settle { return 200 '{\"success\":true,\"transaction\":\"$tx\",\"network\":\"eip155:84532\",\"payer\":\"$payer\"}'; }
        location / { return 200; }
    }"
nginx_start redis "
    x402_zone bench:64m;
    x402_redis 127.0.0.1:$rport;
    upstream facilitator { server 127.0.0.1:$fport; keepalive 32; }
    server {
        listen 127.0.0.1:$nport;
        x402_pay_to $pay_to;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        location /local/ {
            x402_price 0.001;
            x402_verify local;
            x402_settle async;
            empty_gif;
        }
        location /_x402/ {
            internal;
            proxy_pass http://facilitator/;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
        location / { return 200; }
    }"
wait_port "$fport"; wait_port "$nport"
worker=$(pgrep -P "$(cat "$work/redis/logs/nginx.pid")" | head -1)

pr=$(curl -s -D - -o /dev/null "http://127.0.0.1:$nport/local/" | tr -d '\r' \
     | sed -n 's/^[Pp][Aa][Yy][Mm][Ee][Nn][Tt]-[Rr][Ee][Qq][Uu][Ii][Rr][Ee][Dd]: //p')
"$sign" --payment-required "$pr" --count 2000 > "$work/warm.txt"
for r in $(seq "$rounds"); do
    "$sign" --payment-required "$pr" --count "$n" > "$work/pay-$r.txt"
done

calls() {  # the sum of calls in INFO commandstats
    redis-cli -p "$rport" info commandstats | tr -d '\r' \
        | sed -n 's/.*:calls=\([0-9]*\),.*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}
cmdstats() {  # "name calls usec" per command
    redis-cli -p "$rport" info commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2 \3/p'
}
reads() {  # socket reads Redis processed (one per batch of commands)
    redis-cli -p "$rport" info stats | tr -d '\r' \
        | sed -n 's/^total_reads_processed:\([0-9]*\)/\1/p'
}

"$load" "$nport" /local/ 2000 "$conn" "$work/warm.txt" PAYMENT-SIGNATURE > /dev/null
sleep 0.5
echo "| round | paid | redis-server CPU µs/payment | Redis commands/payment | Redis reads/payment | worker CPU µs/request | requests/s |"
echo "|---|---|---|---|---|---|---|"
split=""
for r in $(seq "$rounds"); do
    cmdstats > "$work/cs0"
    k0=$(calls); d0=$(reads); r0=$(cpu_ns "$redis_pid"); w0=$(cpu_ns "$worker")
    out=$("$load" "$nport" /local/ "$n" "$conn" "$work/pay-$r.txt" PAYMENT-SIGNATURE \
          | sed -n 's/^result //p')
    sleep 0.5   # the async settlements' records land
    r1=$(cpu_ns "$redis_pid"); w1=$(cpu_ns "$worker"); d1=$(reads); k1=$(calls)
    cmdstats > "$work/cs1"
    # requests 2xx 402 other errors rps p50 p99
    read -r req ok _ _ _ rps _ < <(echo "$out")
    # the INFO calls between the marks: one command and one read each
    perl -e 'my ($r, $ok, $rc, $kc, $dc, $wc, $rps) = @ARGV;
             printf "| %d | %d of %d | %.2f | %.2f | %.2f | %.2f | %.0f |\n",
                 $ARGV[7], $ok, $r, $rc / $ok / 1000, $kc / $ok, $dc / $ok,
                 $wc / $r / 1000, $rps' \
        "$req" "$ok" "$((r1 - r0))" "$((k1 - k0 - 2))" "$((d1 - d0 - 2))" \
        "$((w1 - w0))" "$rps" "$r"
    # the difference per command, INFO's own calls left out
    split+=$(perl -e 'my ($r, $ok, $f0, $f1) = @ARGV; my (%x, %y);
        for my $p ([$f0, \%x], [$f1, \%y]) { open my $h, "<", $p->[0] or die;
            while (<$h>) { my ($n, $c, $u) = split; $p->[1]{$n} = [$c, $u] } }
        my %d = map { $_ => [$y{$_}[0] - ($x{$_}[0] // 0),
                             $y{$_}[1] - ($x{$_}[1] // 0)] } keys %y;
        for my $n (sort { $d{$b}[1] <=> $d{$a}[1] } keys %d) {
            my ($c, $u) = @{ $d{$n} };
            next if $n eq "info" || !$c;
            printf "| %d | %s | %.3f | %.3f | %.2f |\n",
                $r, $n, $c / $ok, $u / $ok, $u / $c }' \
        "$r" "$ok" "$work/cs0" "$work/cs1")$'\n'
done
echo
echo "| round | command | calls/payment | µs/payment (INFO commandstats) | µs/call |"
echo "|---|---|---|---|---|"
printf '%s' "$split"
