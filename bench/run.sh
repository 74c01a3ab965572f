#!/usr/bin/env bash
# End-to-end comparison of this module with the official @x402/express
# middleware on loopback, in one run. Prints figures; asserts nothing.
#
#   bench/run.sh            (ROUNDS=3 N=20000 NE=2000 CONN=16)
#
# Started here: redis-server; an "instant" facilitator (nginx answering
# /verify, /settle and /supported with canned JSON); this module's nginx
# with one worker (zone) and another with one worker (x402_redis); the
# same as plain nginx with `return 402` and the module's 402 bytes; and
# node running bench/express-server.mjs (@x402/express pinned in
# bench/package.json). Both sides make the same offer and use the same
# facilitator; the facilitator's CPU counts for neither.
#
# Every paid request carries its own payment, signed beforehand by
# x402_bench_sign (bench/sign.cpp: libsecp256k1 and the core's EIP-712,
# checked here byte for byte against js/sign-payment.mjs (viem) for a fixed
# nonce). Load: x402_bench_load (bench/load.c), exactly N requests (NE for
# node) per measurement over CONN keep-alive connections. Both sides are warmed
# first (node's JIT), then each round measures every path on both sides,
# the side measured first alternating between rounds.
#
# CPU per request: the serving process's CPU time (all its threads,
# /proc/<pid>/task/*/schedstat, ns) over the measurement ÷ requests. The
# "recovers" column divides it by one bare secp256k1_ecdsa_recover timed in
# the same run; "kernel share" is the system part of that CPU time
# (/proc/<pid>/stat stime over utime + stime). Redis: redis-server's CPU per payment. Last, the module's
# requests/s with 1 and 2 workers, and the latency of one request at a
# time on one connection (credit advance, and plain nginx's 402 beside it). Wall-clock figures
# on a shared machine are noisy; the ratios come from alternating
# measurements under the same load.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/bench
rounds=${ROUNDS:-3}
n=${N:-20000}
ne=${NE:-2000}
conn=${CONN:-16}
pay_to=0x209693Bc6afc0C5328bA36FaF03C514EF312287C
payer=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
work=$(mktemp -d /tmp/x402-bench.XXXXXX)
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

say() { echo "== $*" >&2; }
port() { perl -MIO::Socket::INET -e 'for (1..100) { my $p = 20000 + int rand 40000; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $p, Listen => 1) or next; print $p; exit }'; }

# ns of CPU of a process and all its threads
cpu_ns() {
    local sum=0 t v
    for t in /proc/"$1"/task/*/schedstat; do
        read -r v _ < "$t" 2>/dev/null || continue
        sum=$((sum + v))
    done
    echo "$sum"
}

# user and system ticks of a process (all threads), "user sys"
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

# nginx workers of the instance whose pid file is $1
workers() { pgrep -P "$(cat "$1")" | tr '\n' ' '; }

wait_port() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on $1" >&2
    exit 1
}

# ---------------------------------------------------------------- build
say "building the module (build/bench-module), the signer (build/bench)"
so=$(BUILD_DIR="$root/build/bench-module" "$root/scripts/build-module.sh" | tail -1)
cp --remove-destination "$so" "$work/x402.so"
cmake -S "$root" -B "$root/build/bench" -DCMAKE_BUILD_TYPE=Release \
    -DX402_BENCH=ON -DX402_TESTS=OFF > /dev/null
cmake --build "$root/build/bench" -j2 --target x402_bench_sign x402_bench_load \
    > /dev/null
sign=$root/build/bench/x402_bench_sign
load=$root/build/bench/x402_bench_load
if [ ! -d "$bench/node_modules/@x402/express" ]; then
    say "npm ci in bench/"
    (cd "$bench" && npm ci --no-audit --no-fund > /dev/null)
fi

# ---------------------------------------------------------------- servers
rport=$(port); fport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" > "$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")

# nginx instance NAME WORKERS with the server block in $3
nginx_start() {
    local name=$1 nworkers=$2 body=$3 dir=$work/$1
    mkdir -p "$dir/conf" "$dir/logs" "$dir/tmp"
    cat > "$dir/conf/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root root;" )
daemon on;
master_process on;
worker_processes $nworkers;
pid logs/nginx.pid;
error_log logs/error.log warn;
load_module $work/x402.so;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp;
    keepalive_requests 10000000;
$body
}
EOF
    /usr/sbin/nginx -p "$dir/" -c conf/nginx.conf
    masters+=("$dir/logs/nginx.pid")
}

tx=0x$(printf '%064d' 7)
nginx_start facilitator 1 "
    server {
        listen 127.0.0.1:$fport;
        default_type application/json;
        location = /verify { return 200 '{\"isValid\":true,\"payer\":\"$payer\"}'; }
        location = /settle { return 200 '{\"success\":true,\"transaction\":\"$tx\",\"network\":\"eip155:84532\",\"payer\":\"$payer\"}'; }
        location = /supported { return 200 '{\"kinds\":[{\"x402Version\":2,\"scheme\":\"exact\",\"network\":\"eip155:84532\"},{\"x402Version\":1,\"scheme\":\"exact\",\"network\":\"base-sepolia\"}],\"extensions\":[],\"signers\":{}}'; }
        location / { return 200; }
    }"

# the module's locations: /paid/ (402 and sync), /local/ (credit advance)
module_server() {
    cat <<EOF
    upstream facilitator { server 127.0.0.1:$fport; keepalive 32; }
    server {
        listen 127.0.0.1:$1;
        x402_pay_to $pay_to;
        x402_network base-sepolia;
        x402_facilitator /_x402/;
        location /paid/ { x402_price 0.001; empty_gif; }
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
            proxy_set_header Connection "";
        }
        location / { return 200; }
    }
EOF
}

zport=$(port); rzport=$(port); z2port=$(port); eport=$(port)
nginx_start zone 1 "    x402_zone bench:64m;
$(module_server "$zport")"
nginx_start redis 1 "    x402_zone bench:64m;
    x402_redis 127.0.0.1:$rport;
$(module_server "$rzport")"
nginx_start zone2 2 "    x402_zone bench:64m;
$(module_server "$z2port")"

(cd "$bench" && exec node express-server.mjs "$eport" \
    "http://127.0.0.1:$fport" "$pay_to") > "$work/express.log" 2>&1 &
node_pid=$!
pids+=("$node_pid")
for p in "$fport" "$zport" "$rzport" "$z2port" "$eport"; do wait_port "$p"; done

# ---------------------------------------------------------------- offers
req_header() {  # PAYMENT-REQUIRED of PORT PATH
    curl -s -D - -o /dev/null "http://127.0.0.1:$1$2" | tr -d '\r' \
        | sed -n 's/^[Pp][Aa][Yy][Mm][Ee][Nn][Tt]-[Rr][Ee][Qq][Uu][Ii][Rr][Ee][Dd]: //p'
}
pr_module=$(req_header "$zport" /paid/)
pr_local=$(req_header "$zport" /local/)
pr_redis=$(req_header "$rzport" /local/)
pr_zone2=$(req_header "$z2port" /local/)
for _ in $(seq 50); do  # the middleware fetches /supported first
    pr_express=$(req_header "$eport" /paid/)
    [ -n "$pr_express" ] && break
    sleep 0.1
done
for v in pr_module pr_local pr_redis pr_zone2 pr_express; do
    [ -n "${!v}" ] || { echo "bench: no PAYMENT-REQUIRED ($v)" >&2; exit 1; }
done
node -e '
    const [a, b] = process.argv.slice(1).map(s =>
        JSON.parse(Buffer.from(s, "base64")).accepts[0]);
    for (const k of ["scheme", "network", "amount", "asset", "payTo", "maxTimeoutSeconds"])
        if (String(a[k]).toLowerCase() !== String(b[k]).toLowerCase())
            { console.error(`offers differ in ${k}: ${a[k]} vs ${b[k]}`); process.exit(1); }
    if (a.extra.name !== b.extra.name || a.extra.version !== b.extra.version)
        { console.error("offers differ in extra"); process.exit(1); }
' "$pr_module" "$pr_express"

# the native signer against viem, fixed nonce and time
nonce=0x$(printf '%064x' 402)
[ "$("$sign" --payment-required "$pr_express" --nonce "$nonce" --now 1800000000)" \
  = "$(node "$root/js/sign-payment.mjs" --payment-required "$pr_express" --nonce "$nonce" --now 1800000000)" ] || {
    echo "bench: x402_bench_sign and viem disagree" >&2; exit 1; }
say "signer matches viem byte for byte; offers match"

# ---------------------------------------------------------------- payments
# one file per measurement: the side's requirement, N (NE) distinct payments
sign_file() {  # NAME PR COUNT
    "$sign" --payment-required "$2" --count "$3" > "$work/pay-$1.txt"
}
# a round's payments are signed when it starts: signed all at once, the
# last rounds' could outlive their validBefore (now + maxTimeoutSeconds)
# on a slow machine and be refused
sign_round() {
    local r=$1
    sign_file "sync-$r" "$pr_module" "$n"
    sign_file "zone-$r" "$pr_local" "$n"
    sign_file "redis-$r" "$pr_redis" "$n"
    for p in sync zone redis; do sign_file "express-$p-$r" "$pr_express" "$ne"; done
}
say "signing $(( 3 * ne + 6000 )) payments for the warm-up"
for i in 1 2 3; do sign_file "warm-express-$i" "$pr_express" "$ne"; done
sign_file warm-zone "$pr_local" 2000
sign_file warm-sync "$pr_module" 2000
sign_file warm-redis "$pr_redis" 2000

# ---------------------------------------------------------------- plain 402
# plain nginx answering the module's 402 bytes with `return 402`
body=$(curl -s "http://127.0.0.1:$zport/paid/")
case $body in *'$'*) echo "bench: the 402 body has a \$" >&2; exit 1 ;; esac
pport=$(port)
nginx_start plain 1 "    server {
        listen 127.0.0.1:$pport;
        location /paid/ {
            default_type application/json;
            add_header PAYMENT-REQUIRED $pr_module always;
            add_header Cache-Control no-store always;
            add_header Access-Control-Expose-Headers 'PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE' always;
            return 402 '$(printf '%s' "$body" | sed "s/'/\\\\'/g")';
        }
        location / { return 200; }
    }"
wait_port "$pport"

# ---------------------------------------------------------------- measure
# measure LABEL PIDS PORT PATH COUNT [FILE] -> appends to results
measure() {
    local label=$1 pidlist=$2 port=$3 path=$4 count=$5 file=${6:--}
    local c0=0 c1=0 p r0 r1 out u s u0=0 s0=0 u1=0 s1=0
    for p in $pidlist; do
        c0=$((c0 + $(cpu_ns "$p")))
        read -r u s < <(ticks "$p"); u0=$((u0 + u)); s0=$((s0 + s))
    done
    r0=$(cpu_ns "$redis_pid")
    out=$("$load" "$port" "$path" "$count" "${CONNS:-$conn}" "$file" PAYMENT-SIGNATURE \
          | sed -n 's/^result //p')
    for p in $pidlist; do
        c1=$((c1 + $(cpu_ns "$p")))
        read -r u s < <(ticks "$p"); u1=$((u1 + u)); s1=$((s1 + s))
    done
    r1=$(cpu_ns "$redis_pid")
    # label requests 2xx 402 other errors rps p50 p99 cpu_ns redis_ns
    # user_ticks sys_ticks
    echo "$label $out $((c1 - c0)) $((r1 - r0)) $((u1 - u0)) $((s1 - s0))" >> "$work/results"
}

zw=$(workers "$work/zone/logs/nginx.pid")
rw=$(workers "$work/redis/logs/nginx.pid")
z2w=$(workers "$work/zone2/logs/nginx.pid")
pw=$(workers "$work/plain/logs/nginx.pid")
: > "$work/results"

say "warming up"
measure warm "$zw" "$zport" /paid/ 5000
measure warm "$zw" "$zport" /paid/ 2000 "$work/pay-warm-sync.txt"
measure warm "$zw" "$zport" /local/ 2000 "$work/pay-warm-zone.txt"
measure warm "$rw" "$rzport" /local/ 2000 "$work/pay-warm-redis.txt"
measure warm "$pw" "$pport" /paid/ 5000
measure warm "$node_pid" "$eport" /paid/ 5000
for i in 1 2 3; do
    measure warm "$node_pid" "$eport" /paid/ "$ne" "$work/pay-warm-express-$i.txt"
done
: > "$work/results"

recover_ns=$("$sign" --recover-bench 20000)
for r in $(seq "$rounds"); do
    say "round $r of $rounds"
    sign_round "$r"
    module=(
        "module:402 $zw $zport /paid/ $n"
        "module:sync $zw $zport /paid/ $n $work/pay-sync-$r.txt"
        "module:zone $zw $zport /local/ $n $work/pay-zone-$r.txt"
        "module:redis $rw $rzport /local/ $n $work/pay-redis-$r.txt"
        "plain:402 $pw $pport /paid/ $n"
    )
    express=(
        "express:402 $node_pid $eport /paid/ $ne"
        "express:sync $node_pid $eport /paid/ $ne $work/pay-express-sync-$r.txt"
        "express:zone $node_pid $eport /paid/ $ne $work/pay-express-zone-$r.txt"
        "express:redis $node_pid $eport /paid/ $ne $work/pay-express-redis-$r.txt"
        ""
    )
    for i in 0 1 2 3 4; do
        # shellcheck disable=SC2086
        if [ $((r % 2)) = 1 ]; then
            measure ${module[$i]}
            [ -n "${express[$i]}" ] && measure ${express[$i]}
        else
            [ -n "${express[$i]}" ] && measure ${express[$i]}
            measure ${module[$i]}
        fi
    done
done
recover_ns2=$("$sign" --recover-bench 20000)

sign_file zone1 "$pr_local" "$n"
sign_file zone2 "$pr_zone2" "$n"
sign_file latency "$pr_local" "$((n / 4))"
say "scaling: 1 and 2 workers, credit advance (zone)"
measure scale:1 "$zw" "$zport" /local/ "$n" "$work/pay-zone1.txt"
measure scale:2 "$z2w" "$z2port" /local/ "$n" "$work/pay-zone2.txt"

say "latency on one connection: credit advance (zone) and plain nginx's 402"
CONNS=1 measure latency:zone "$zw" "$zport" /local/ "$((n / 4))" "$work/pay-latency.txt"
CONNS=1 measure latency:plain "$pw" "$pport" /paid/ "$((n / 4))"

# ---------------------------------------------------------------- report
perl - "$work/results" "$recover_ns" "$recover_ns2" "$rounds" <<'EOF'
use strict; use warnings;
my ($file, $rec1, $rec2, $rounds) = @ARGV;
my $rec = ($rec1 + $rec2) / 2;
my (%runs, @order);
open my $f, '<', $file or die;
while (<$f>) {
    my ($label, $req, $ok, $pw, $other, $err, $rps, $p50, $p99, $cpu, $rcpu, $ut, $st) = split;
    push @order, $label unless $runs{$label};
    push @{ $runs{$label} }, { req => $req, ok => $ok, pw => $pw, other => $other,
        err => $err, rps => $rps, p50 => $p50, p99 => $p99,
        cpu => $cpu / $req / 1000, rcpu => $rcpu / $req / 1000,
        sys => $ut + $st ? 100 * $st / ($ut + $st) : 0 };
}
sub med { my @s = sort { $a <=> $b } @_; my $m = @s / 2;
          @s % 2 ? $s[$m] : ($s[$m - 1] + $s[$m]) / 2 }
sub span { my @s = sort { $a <=> $b } @_; sprintf '%s–%s', @_ ? ($s[0], $s[-1]) : ('', '') }
sub fmt { my ($v) = @_; $v >= 100 ? sprintf('%.0f', $v) : $v >= 10 ? sprintf('%.1f', $v) : sprintf('%.2f', $v) }
sub col { my ($l, $k) = @_; map { $_->{$k} } @{ $runs{$l} } }

my %want = ('402' => 'pw', sync => 'ok', zone => 'ok', redis => 'ok');
printf "bare secp256k1_ecdsa_recover: %.1f µs of CPU (before %.1f, after %.1f)\n\n",
    $rec / 1000, $rec1 / 1000, $rec2 / 1000;
print "| path | side | CPU µs/request (median, range) | in recovers | kernel share | requests/s | p50 ms | p99 ms | answered as expected |\n";
print "|---|---|---|---|---|---|---|---|---|\n";
my %name = ('402' => 'unpaid 402', sync => 'paid, facilitator verify + settle (sync)',
            zone => 'paid, local verify + async, zone',
            redis => 'paid, local verify + async, x402_redis');
for my $p ('402', 'sync', 'zone', 'redis') {
    for my $side ('module', 'express', ($p eq '402' ? 'plain' : ())) {
        my $l = "$side:$p";
        next unless $runs{$l};
        my @c = col($l, 'cpu');
        my ($good, $all) = (0, 0);
        for (@{ $runs{$l} }) { $good += $_->{ $want{$p} }; $all += $_->{req} }
        printf "| %s | %s | %s (%s) | %.2f | %.0f%% | %.0f | %.2f | %.2f | %d of %d |\n",
            $name{$p}, $side eq 'plain' ? 'plain nginx `return 402`' : $side eq 'module' ? 'this module' : "\@x402/express",
            fmt(med(@c)), join('–', map { fmt($_) } (sort { $a <=> $b } @c)[0, -1]),
            med(@c) * 1000 / $rec, med(col($l, 'sys')), med(col($l, 'rps')),
            med(col($l, 'p50')) / 1000, med(col($l, 'p99')) / 1000, $good, $all;
    }
}
print "\n| path | CPU per request: \@x402/express ÷ this module (median, range over rounds) |\n|---|---|\n";
for my $p ('402', 'sync', 'zone', 'redis') {
    my @e = col("express:$p", 'cpu'); my @m = col("module:$p", 'cpu');
    my @r = map { $e[$_] / $m[$_] } 0 .. $#m;
    printf "| %s | %.1f× (%s) |\n", $name{$p}, med(@r),
        join('–', map { sprintf '%.1f', $_ } (sort { $a <=> $b } @r)[0, -1]);
}
{
    my @m = col('module:402', 'cpu'); my @p = col('plain:402', 'cpu');
    my @r = map { $m[$_] / $p[$_] } 0 .. $#m;
    printf "\nthe module's 402 ÷ plain nginx `return 402` (same bytes): %.2f× (%s)\n",
        med(@r), join('–', map { sprintf '%.2f', $_ } (sort { $a <=> $b } @r)[0, -1]);
}
{
    my @r = col('module:redis', 'rcpu');
    printf "redis-server CPU per payment (x402_redis path): %.1f µs (%s)\n",
        med(@r), join('–', map { sprintf '%.1f', $_ } (sort { $a <=> $b } @r)[0, -1]);
}
if ($runs{'latency:zone'} && $runs{'latency:plain'}) {
    my ($z, $p) = ($runs{'latency:zone'}[0], $runs{'latency:plain'}[0]);
    printf "one connection, one request at a time: credit advance (zone) p50 %.3f ms, p99 %.3f ms; plain nginx 402 p50 %.3f ms, p99 %.3f ms\n",
        $z->{p50} / 1000, $z->{p99} / 1000, $p->{p50} / 1000, $p->{p99} / 1000;
}
if ($runs{'scale:1'} && $runs{'scale:2'}) {
    my ($a, $b) = ($runs{'scale:1'}[0], $runs{'scale:2'}[0]);
    printf "scaling, credit advance (zone): 1 worker %.0f requests/s, 2 workers %.0f requests/s (%.2f×; CPU %s and %s µs/request)\n",
        $a->{rps}, $b->{rps}, $b->{rps} / $a->{rps}, fmt($a->{cpu}), fmt($b->{cpu});
}
EOF
