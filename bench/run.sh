#!/usr/bin/env bash
# End-to-end comparison of this module with the official @x402/express
# middleware on loopback, in one run. Prints figures and, last, each target
# of issue 13 with its measured figure and met / not met; asserts nothing.
#
#   bench/run.sh            (ROUNDS=3 N=20000 NE=2000 CONN=16)
#   ROUNDS=1 N=3000 NE=400 bench/run.sh     (quick: under a minute)
#
# Settings (environment):
#   ROUNDS  rounds of closed-loop and open-loop measurements (3)
#   N       module / plain nginx requests per closed-loop measurement
#           (20000; 5 N for the unpaid 402s, whose CPU is ~1/20 of a paid
#           request's and would otherwise be too short to time)
#   NE      node's requests per measurement (2000)
#   CONN    keep-alive connections of a closed-loop measurement (16)
#   RATE    open-loop rate, requests/s (default: half the module's measured
#           1-worker credit-advance throughput, rounded to 2 digits)
#   NO      open-loop requests per target and round (N)
#   OCONN   connections of an open-loop measurement (64)
#   OCHUNKS chunks a target's open-loop requests are cut into (5)
#   LOAD_RT 0: no real-time priority (no real-time open-loop passes, the
#           generator at normal priority); default: both when root
#   KEEP    set: keep the work directory (configs, logs, raw results,
#           open-loop latencies)
#   PLACEMENT  where the processes run (both): "shared", as the scheduler
#           places them; "one", the pinned placements: closed loop on one
#           core, and the open loop's "peers off the worker's core" passes;
#           "both", all of them (see Placements below)
#   CPUS    "W P": the CPU of the one-core placement and of the worker
#           when the peers are off its core (W), and the peers' (P);
#           default the first two CPUs the script may use
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
# nonce). Load: x402_bench_load (bench/load.c). Closed loop (throughput and
# CPU): exactly N requests (NE for node) per measurement over CONN
# keep-alive connections, each sending when its previous answer is
# complete, so its latencies at saturation are mostly queueing. Both sides
# are warmed first (node's JIT), then each round measures every path on both
# sides, the side measured first alternating between rounds.
#
# CPU per request: the serving process's CPU time (all its threads,
# /proc/<pid>/task/*/schedstat, ns) over the measurement ÷ requests. The
# "recovers" column divides it by one bare secp256k1_ecdsa_recover timed in
# the same run. That CPU time is split into user and kernel by the process's
# utime : stime over the measurement (/proc/<pid>/stat: sampled at the
# kernel's tick, so pooled over the rounds, and "—" under 0.1 s of CPU, as
# for the unpaid 402s of a short run); "kernel share" is
# the kernel part, "user in recovers" the user part ÷ one recover (on
# loopback the kernel part is mostly the socket work and waking the peer
# processes: client, facilitator, redis). Redis: redis-server's CPU per
# payment. A measurement ends when its processes have gone quiet, so the
# work it leaves behind (async settlements, Redis writes) counts in it.
#
# Placements (PLACEMENT), both sides alike: on loopback, a write that wakes
# a peer (the load generator, the facilitator, redis-server) asleep on
# another CPU costs the writer an inter-processor interrupt: on a 2-vCPU VM
# ≈ 15 µs of the worker's kernel time per paid request, which remote peers
# in a deployment do not cause. So with PLACEMENT=both the closed loop runs
# each round twice: "shared", every process as the scheduler places it
# (PLACEMENT=shared: only this), and "one core" (PLACEMENT=one: only this),
# the serving process (the nginx worker; node with all its threads), the
# facilitator, redis-server and that measurement's load generator on CPU W
# (taskset -a -pc for the running processes, taskset -c for the generator;
# every thread's Cpus_allowed_list is checked after pinning and again at
# the end of the placement, node's threads started meanwhile included). The
# placements alternate in order between rounds; each prints its own tables
# and ratios, and the targets are given for both.
#
# Open loop (latency the module adds under load): after the rounds, at RATE
# requests/s, NO requests per target and round, the module's credit-advance
# path (zone), a free location of the same nginx (`return 200`, same
# worker) and plain nginx's `return 402`, in OCHUNKS chunks each, the
# targets in turn (so the machine's other load falls on the three alike);
# all three carry the same payment header (the free and plain locations
# ignore it), so the request bytes are the same. Request i is due at
# start + i/RATE and its latency runs from that due time (no coordinated
# omission); a request due while all OCONN connections are busy waits and
# is counted ("waited"). Printed: p50/p99/p99.9 of each (a round's chunks
# pooled), the generator's own send lag, and the credit-advance p99 minus
# each baseline's p99, "added by the module". As root the generator runs at
# real-time priority (chrt -f 1; it sleeps in ppoll between sends) and, in
# the shared placement (PLACEMENT shared or both), each chunk runs twice:
# the nginx workers as deployed, then at real-time
# priority too, leaving out the scheduler slices a woken worker can wait
# behind other programs on a shared machine (a stall of the worker's own,
# such as a blocking write, shows in both). With PLACEMENT one or both, a
# pass "peers off the worker's core" puts the measured nginx workers alone
# on CPU W at normal priority and the generator, the facilitator and the
# other processes here on CPU P, as remote clients would be (the machine's
# other programs can still run on W: a pinned worker cannot move away from
# them), and, as root, again with the workers at real-time priority (W to
# themselves).
#
# Last, the module's requests/s with 1 and 2 workers, the latency of one
# request at a time on one connection (credit advance, and plain nginx's 402
# beside it), both in the shared placement, and the summary of the targets
# (the closed-loop ones for each placement, the open-loop one for each
# pass). Wall-clock figures on a shared machine are noisy; the ratios come
# from alternating measurements under the same load.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/bench
rounds=${ROUNDS:-3}
n=${N:-20000}
ne=${NE:-2000}
conn=${CONN:-16}
rate=${RATE:-}
no=${NO:-$n}
oconn=${OCONN:-64}
ochunks=${OCHUNKS:-5}
placement=${PLACEMENT:-both}
rate_set=${RATE:+1}
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
case $placement in
    shared) placements=shared ;;
    one) placements=one ;;
    both) placements="shared one" ;;
    *) echo "bench: PLACEMENT=$placement: shared, one or both" >&2; exit 2 ;;
esac
# the CPUs this script may use (kernel list format, as in
# /proc/*/status): "shared" gives the processes back this set; "one" and
# "off" take their two CPUs from CPUS, by default its first two
allowed=$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/$$/status)
read -r cpu_w cpu_p _ <<< "${CPUS:-$(perl -e 'print join " ", map { /(\d+)-(\d+)/ ? ($1 .. $2) : $_ } split /,/, $ARGV[0]' "$allowed")}"
if [ "$placement" != shared ] && [ -z "${cpu_p:-}" ]; then
    echo "bench: PLACEMENT=$placement needs two CPUs (CPUS=\"W P\"), have $allowed" >&2; exit 2
fi
mpin=''  # the load generator's taskset prefix, set by place()
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
    local r=$1 pl
    for pl in $placements; do
        sign_file "sync-$pl-$r" "$pr_module" "$n"
        sign_file "zone-$pl-$r" "$pr_local" "$n"
        sign_file "redis-$pl-$r" "$pr_redis" "$n"
        for p in sync zone redis; do sign_file "express-$p-$pl-$r" "$pr_express" "$ne"; done
    done
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
# wait (3 s at most) until the processes PIDS have used under 0.5 ms of CPU
# in 50 ms: work a measurement leaves behind (async settlements, Redis
# writes) counts in it, not in the next one, and does not load the next
# one's latencies
quiet() {
    local a b p
    for _ in $(seq 60); do
        a=0; b=0
        for p in $1; do a=$((a + $(cpu_ns "$p"))); done
        sleep 0.05
        for p in $1; do b=$((b + $(cpu_ns "$p"))); done
        [ $((b - a)) -lt 500000 ] && return 0
    done
}

# measure LABEL PIDS PORT PATH COUNT [FILE] -> appends to results
measure() {
    local label=$1 pidlist=$2 port=$3 path=$4 count=$5 file=${6:--}
    local c0=0 c1=0 p r0 r1 out u s u0=0 s0=0 u1=0 s1=0
    for p in $pidlist; do
        c0=$((c0 + $(cpu_ns "$p")))
        read -r u s < <(ticks "$p"); u0=$((u0 + u)); s0=$((s0 + s))
    done
    r0=$(cpu_ns "$redis_pid")
    out=$(RATE=${MRATE:-0} LATS=${MLATS:-} $mpin ${MPRIO:-} "$load" "$port" "$path" "$count" "${CONNS:-$conn}" \
          "$file" PAYMENT-SIGNATURE | sed -n 's/^result //p')
    [ -n "$out" ] || { echo "bench: $label: no result from the load" >&2; exit 1; }
    quiet "$pidlist $redis_pid"
    for p in $pidlist; do
        c1=$((c1 + $(cpu_ns "$p")))
        read -r u s < <(ticks "$p"); u1=$((u1 + u)); s1=$((s1 + s))
    done
    r1=$(cpu_ns "$redis_pid")
    # label requests 2xx 402 other errors rps p50 p99 p99.9 waited lag_p99
    # p99_from_send cpu_ns redis_ns user_ticks sys_ticks
    echo "$label $out $((c1 - c0)) $((r1 - r0)) $((u1 - u0)) $((s1 - s0))" >> "$work/results"
}

zw=$(workers "$work/zone/logs/nginx.pid")
rw=$(workers "$work/redis/logs/nginx.pid")
z2w=$(workers "$work/zone2/logs/nginx.pid")
pw=$(workers "$work/plain/logs/nginx.pid")
fw=$(workers "$work/facilitator/logs/nginx.pid")
: > "$work/results"

# ---------------------------------------------------------------- placement
# pin CPULIST PIDS: every thread of each process (taskset -a: node's too),
# then check each thread's Cpus_allowed_list, new threads included (they
# inherit their creator's affinity)
pin() {
    local list=$1 p; shift
    for p in "$@"; do taskset -a -pc "$list" "$p" > /dev/null; done
    pinned "$list" "$@"
}
pinned() {
    local list=$1 p t; shift
    for p in "$@"; do
        for t in /proc/"$p"/task/*/status; do
            [ "$(awk '/^Cpus_allowed_list/ { print $2 }' "$t" 2>/dev/null)" = "$list" ] \
                || [ ! -e "$t" ] || {
                echo "bench: $t is not on CPU(s) $list" >&2; exit 1; }
        done
    done
}
# the processes of the closed loop and of the open loop's nginx (the
# 2-worker instance of the scaling figure stays as the scheduler places it)
servers="$zw $rw $pw $fw $node_pid $redis_pid"
# place shared | one | off
#   shared: as the scheduler places them (the CPUs the script may use)
#   one:    the servers, the facilitator, redis-server and the load
#           generator on CPU cpu_w (no wakeup crosses CPUs)
#   off:    the measured nginx workers (module, plain) alone on cpu_w, the
#           load generator and every other process here on cpu_p (peers
#           off the worker's core, as remote clients would be)
place() {
    case $1 in
        shared) pin "$allowed" $servers; mpin='' ;;
        one) pin "$cpu_w" $servers; mpin="taskset -c $cpu_w" ;;
        off) pin "$cpu_p" $rw $fw $node_pid $redis_pid; pin "$cpu_w" $zw $pw
             mpin="taskset -c $cpu_p" ;;
    esac
}

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
    say "round $r of $rounds ($placements)"
    sign_round "$r"
    # the placements in turn, the first alternating between rounds too
    order=$placements
    [ $((r % 2)) = 0 ] && order=$(echo $placements | tr ' ' '\n' | tac | tr '\n' ' ')
    for pl in $order; do
        place "$pl"
        sfx=; [ "$pl" = shared ] || sfx=@$pl   # labels: module:zone, module:zone@one
        module=(
            "module:402$sfx $zw $zport /paid/ $((5 * n))"
            "module:sync$sfx $zw $zport /paid/ $n $work/pay-sync-$pl-$r.txt"
            "module:zone$sfx $zw $zport /local/ $n $work/pay-zone-$pl-$r.txt"
            "module:redis$sfx $rw $rzport /local/ $n $work/pay-redis-$pl-$r.txt"
            "plain:402$sfx $pw $pport /paid/ $((5 * n))"
        )
        express=(
            "express:402$sfx $node_pid $eport /paid/ $ne"
            "express:sync$sfx $node_pid $eport /paid/ $ne $work/pay-express-sync-$pl-$r.txt"
            "express:zone$sfx $node_pid $eport /paid/ $ne $work/pay-express-zone-$pl-$r.txt"
            "express:redis$sfx $node_pid $eport /paid/ $ne $work/pay-express-redis-$pl-$r.txt"
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
        # still pinned at the end, threads started meanwhile included
        [ "$pl" = one ] && pinned "$cpu_w" $servers
        # the count of node's threads pinned, for the report
        [ "$pl" = one ] && echo "pinned $cpu_w $(ls /proc/$node_pid/task | wc -l)" >> "$work/results"
    done
    place shared
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

# ---------------------------------------------------------------- open loop
# the module's 1-worker credit-advance capacity: median requests/s of the
# closed-loop zone measurements; the rate is half of it, 2 digits
cap_label=module:zone; [ "$placement" = one ] && cap_label=module:zone@one
capacity=$(awk -v l="$cap_label" '$1 == l { print $7 }' "$work/results" | sort -n \
    | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
if [ -z "$rate" ]; then
    rate=$(perl -e 'my $h = $ARGV[0] / 2; my $e = 10 ** (int(log($h) / log(10)) - 1);
                    print int($h / $e + 0.5) * $e' "$capacity")
fi
# the generator at a real-time priority (root): woken by its timer or an
# answer it runs at once, so its own scheduling delay stays out of the
# latencies it measures (it sleeps in ppoll between sends)
prio=
if [ "${LOAD_RT:-1}" != 0 ] && [ "$(id -u)" = 0 ] && chrt -f 1 true 2>/dev/null; then
    prio="chrt -f 1"
fi
[ "$placement" != shared ] && echo "off $cpu_w $cpu_p" >> "$work/results"
echo "open $rate $capacity $((no / ochunks * ochunks)) $oconn ${rate_set:-0} ${prio:+rt}" >> "$work/results"
say "open loop at $rate requests/s (the module's capacity $capacity), $((no / ochunks * ochunks)) requests a target a round"
# each round: OCHUNKS chunks of each target in turn (the order rotating),
# so that the machine's other load falls on the three alike; a target's
# percentiles pool its chunks' latencies (LATS files). With the generator
# at real-time priority, each chunk runs twice: the nginx workers as they
# are ("open"), then at real-time priority too ("rt"): on a shared machine
# a worker woken by a request can wait for a core behind other programs
# for a scheduler slice (ms); at real-time priority what is left is the
# worker's own time, queueing included, and any stall of its own (a
# blocking write would still show). PLACEMENT one (or both) adds a pass
# "off": the measured workers alone on CPU cpu_w at normal priority, the
# generator and the facilitator on cpu_p, as remote peers would be: no
# wakeup of a peer on the worker's core, no wait for a core behind them;
# as root, then "offrt", the same with the workers at real-time priority
# (the machine's other programs, which can run on cpu_w too, left out)
modes=
[ "$placement" != one ] && modes="open${prio:+ rt}"
[ "$placement" != shared ] && modes="$modes off${prio:+ offrt}"
chunk=$((no / ochunks))
for r in $(seq "$rounds"); do
    for c in $(seq "$ochunks"); do
        for mode in $modes; do sign_file "$mode-$r-$c" "$pr_local" "$chunk"; done
        for mode in $modes; do
            case $mode in off*) place off ;; *) place shared ;; esac
            if [ "$mode" = rt ] || [ "$mode" = offrt ]; then
                for p in $zw $pw; do chrt -f -p 1 "$p"; done
            fi
            open=(
                "$mode:zone $zw $zport /local/ $chunk $work/pay-$mode-$r-$c.txt"
                "$mode:free $zw $zport / $chunk $work/pay-$mode-$r-$c.txt"
                "$mode:plain $pw $pport /paid/ $chunk $work/pay-$mode-$r-$c.txt"
            )
            for k in 0 1 2; do
                t=${open[$(( (k + r + c) % 3 ))]}
                t=${t%% *}
                # shellcheck disable=SC2086
                MRATE=$rate MPRIO=$prio MLATS=$work/lat-$mode-${t#*:}-$r.txt CONNS=$oconn \
                    measure ${open[$(( (k + r + c) % 3 ))]}
            done
            if [ "$mode" = rt ] || [ "$mode" = offrt ]; then
                for p in $zw $pw; do chrt -o -p 0 "$p"; done
            fi
        done
    done
done
place shared

# ---------------------------------------------------------------- report
perl - "$work/results" "$recover_ns" "$recover_ns2" "$rounds" "$work" <<'EOF'
use strict; use warnings; use utf8;
binmode STDOUT, ":encoding(UTF-8)";
my ($file, $rec1, $rec2, $rounds, $work) = @ARGV;
my $rec = ($rec1 + $rec2) / 2;
my (%runs, @order, %open, %pinned);
open my $f, '<', $file or die;
while (<$f>) {
    my @v = split;
    if ($v[0] eq 'open') { @open{qw(rate capacity count conns set rt)} = @v[1 .. 6]; next }
    if ($v[0] eq 'pinned') { @pinned{qw(cpu threads)} = @v[1, 2]; next }
    if ($v[0] eq 'off') { @pinned{qw(off_w off_p)} = @v[1, 2]; next }
    my ($label, $req, $ok, $pw, $other, $err, $rps, $p50, $p99, $p999, $waited, $lag,
        $p99s, $cpu, $rcpu, $ut, $st) = @v;
    push @order, $label unless $runs{$label};
    my $c = $cpu / $req / 1000;
    push @{ $runs{$label} }, { req => $req, ok => $ok, pw => $pw, other => $other,
        err => $err, rps => $rps, p50 => $p50 / 1000, p99 => $p99 / 1000,
        p999 => $p999 / 1000, waited => $waited, lag => $lag / 1000, p99s => $p99s / 1000,
        cpu => $c, rcpu => $rcpu / $req / 1000, rec => $c * 1000 / $rec,
        ut => $ut, st => $st };
}
# user : kernel from utime : stime, sampled at the kernel's tick: pooled over
# a label's rounds, and not given under 10 USER_HZ ticks (0.1 s of CPU)
for my $l (keys %runs) {
    my ($ut, $st) = (0, 0);
    for (@{ $runs{$l} }) { $ut += $_->{ut}; $st += $_->{st} }
    my $u = $ut + $st >= 10 ? $ut / ($ut + $st) : undef;
    for (@{ $runs{$l} }) {
        @$_{qw(user kern urec sys)} = defined $u
            ? ($_->{cpu} * $u, $_->{cpu} * (1 - $u), $_->{rec} * $u, 100 * (1 - $u))
            : (undef) x 4;
    }
}
sub med { my @s = sort { $a <=> $b } @_; my $m = @s / 2;
          @s % 2 ? $s[$m] : ($s[$m - 1] + $s[$m]) / 2 }
sub fmt { my ($v) = @_; $v >= 100 ? sprintf('%.0f', $v) : $v >= 10 ? sprintf('%.1f', $v) : sprintf('%.2f', $v) }
sub col { my ($l, $k) = @_; grep { defined } map { $_->{$k} } @{ $runs{$l} || [] } }
# "median (min–max)" with printf format $p; one value alone
sub mr { my ($p, @v) = @_; my @s = sort { $a <=> $b } @v;
         !@s ? '—' : @s == 1 ? sprintf($p, $s[0])
             : sprintf("$p ($p–$p)", med(@s), $s[0], $s[-1]) }
sub opt { my ($p, @v) = @_; @v ? sprintf($p, med(@v)) : '—' }

my %want = ('402' => 'pw', sync => 'ok', zone => 'ok', redis => 'ok', free => 'ok');
printf "bare secp256k1_ecdsa_recover: %.1f µs of CPU (before %.1f, after %.1f)\n\n",
    $rec / 1000, $rec1 / 1000, $rec2 / 1000;
# the placements of the closed loop measured, and each one's label suffix
my %sfx = (shared => '', one => '@one');
my @pls = grep { $runs{"module:zone$sfx{$_}"} } 'shared', 'one';
my %plname = (shared => 'shared (as the scheduler places them)',
              one => "one core (serving process, generator, facilitator, redis-server on CPU " . ($pinned{cpu} // '?') . ')');
my %plshort = (shared => 'shared', one => 'one core');
my %name = ('402' => 'unpaid 402', sync => 'paid, facilitator verify + settle (sync)',
            zone => 'paid, local verify + async, zone',
            redis => 'paid, local verify + async, x402_redis');
sub answered { my ($l, $p) = @_; my ($good, $all) = (0, 0);
    for (@{ $runs{$l} }) { $good += $_->{ $want{$p} }; $all += $_->{req} } "$good of $all" }
my (%ratio, %r402, %redis);
for my $pl (@pls) {
    my $x = $sfx{$pl};
    print "closed loop, placement $plname{$pl}, $rounds round(s): CPU of the serving process per request; user + kernel = CPU\n";
    printf "(pinned with taskset, every thread: node had %d threads, all on CPU %s at the end of each round)\n",
        $pinned{threads}, $pinned{cpu} if $pl eq 'one';
    print "\n| path | side | CPU µs/request (median, range) | in recovers | user µs | kernel µs | user in recovers | kernel share | requests/s | p50 ms | p99 ms | answered as expected |\n";
    print "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for my $p ('402', 'sync', 'zone', 'redis') {
        for my $side ('module', 'express', ($p eq '402' ? 'plain' : ())) {
            my $l = "$side:$p$x";
            next unless $runs{$l};
            my @c = col($l, 'cpu');
            my @u = col($l, 'user'); my @k = col($l, 'kern');
            printf "| %s | %s | %s (%s) | %.2f | %s | %s | %s | %s | %.0f | %.2f | %.2f | %s |\n",
                $name{$p}, $side eq 'plain' ? 'plain nginx `return 402`' : $side eq 'module' ? 'this module' : "\@x402/express",
                fmt(med(@c)), join('–', map { fmt($_) } (sort { $a <=> $b } @c)[0, -1]),
                med(col($l, 'rec')), @u ? fmt(med(@u)) : '—', @k ? fmt(med(@k)) : '—',
                opt('%.2f', col($l, 'urec')), opt('%.0f%%', col($l, 'sys')), med(col($l, 'rps')),
                med(col($l, 'p50')), med(col($l, 'p99')), answered($l, $p);
        }
    }
    print "\n| path | CPU per request: \@x402/express ÷ this module (median, range over rounds), $plshort{$pl} |\n|---|---|\n";
    for my $p ('402', 'sync', 'zone', 'redis') {
        my @e = col("express:$p$x", 'cpu'); my @m = col("module:$p$x", 'cpu');
        $ratio{$pl}{$p} = [ map { $e[$_] / $m[$_] } 0 .. $#m ];
        printf "| %s | %s |\n", $name{$p}, mr('%.1f×', @{ $ratio{$pl}{$p} });
    }
    my @m402 = col("module:402$x", 'cpu'); my @p402 = col("plain:402$x", 'cpu');
    $r402{$pl} = [ map { $m402[$_] / $p402[$_] } 0 .. $#m402 ];
    printf "\nthe module's 402 ÷ plain nginx `return 402` (same bytes), CPU per request, %s: %s\n",
        $plshort{$pl}, mr('%.2f×', @{ $r402{$pl} });
    $redis{$pl} = [ col("module:redis$x", 'rcpu') ];
    printf "redis-server CPU per payment (x402_redis path), %s: %s µs\n\n", $plshort{$pl},
        mr('%.1f', @{ $redis{$pl} });
}
if ($runs{'latency:zone'} && $runs{'latency:plain'}) {
    my ($z, $p) = ($runs{'latency:zone'}[0], $runs{'latency:plain'}[0]);
    printf "one connection, one request at a time: credit advance (zone) p50 %.3f ms, p99 %.3f ms; plain nginx 402 p50 %.3f ms, p99 %.3f ms\n",
        $z->{p50}, $z->{p99}, $p->{p50}, $p->{p99};
}
if ($runs{'scale:1'} && $runs{'scale:2'}) {
    my ($a, $b) = ($runs{'scale:1'}[0], $runs{'scale:2'}[0]);
    printf "scaling, credit advance (zone): 1 worker %.0f requests/s, 2 workers %.0f requests/s (%.2f×; CPU %s and %s µs/request)\n",
        $a->{rps}, $b->{rps}, $b->{rps} / $a->{rps}, fmt($a->{cpu}), fmt($b->{cpu});
}

my %add;   # mode => { free => [...], plain => [...] } p99 differences per round
my @modes = grep { $runs{"$_:zone"} } 'open', 'rt', 'off', 'offrt';
$pinned{$_} //= '?' for qw(off_w off_p);
for my $mode (@modes) {
    # per round, each target's latencies pooled over its chunks
    my %o;
    my $pq = sub { my ($v, $p) = @_; my @s = sort { $a <=> $b } @$v;
                   @s ? $s[ int(@s * $p) < @s ? int(@s * $p) : $#s ] : 0 };
    for my $t ('zone', 'free', 'plain') {
        for my $r (1 .. $rounds) {
            open my $lf, '<', "$work/lat-$mode-$t-$r.txt" or next;
            my (@due, @sent, @lag);
            while (<$lf>) { my ($d, $s) = split; push @due, $d / 1000; push @sent, $s / 1000;
                            push @lag, ($d - $s) / 1000 }
            push @{ $o{$t} }, { p50 => $pq->(\@due, 0.5), p99 => $pq->(\@due, 0.99),
                p999 => $pq->(\@due, 0.999), p99s => $pq->(\@sent, 0.99),
                lag => $pq->(\@lag, 0.99) };
        }
    }
    my $oc = sub { my ($t, $k) = @_; map { $_->{$k} } @{ $o{$t} || [] } };
    if ($mode eq $modes[0]) {
        printf "\nopen loop at %s requests/s (%s; the module's 1-worker credit-advance capacity, closed loop: %.0f requests/s), %d requests per target a round in %d chunks, the targets in turn, %d connections, the generator %s; latency from each request's due time; per round, a target's chunks pooled; the placements interleaved chunk by chunk\n",
            $open{rate}, $open{set} ? 'RATE' : 'half the capacity, 2 digits',
            $open{capacity}, $open{count}, scalar(@{ $runs{"$mode:zone"} }) / $rounds, $open{conns},
            $open{rt} ? 'at real-time priority (chrt -f 1)' : 'at normal priority';
    }
    print {
        open => "\nshared placement, the nginx workers at normal priority (as deployed; on a shared machine a worker can wait for a core):\n\n",
        rt => "\nshared placement, the measured nginx workers at real-time priority too (the machine's other programs left out):\n\n",
        off => "\npeers off the worker's core: the measured nginx workers alone on CPU $pinned{off_w} at normal priority, the generator, the facilitator and the other processes here on CPU $pinned{off_p} (as remote clients would be; the machine's other programs can run on CPU $pinned{off_w} too):\n\n",
        offrt => "\npeers off the worker's core, the measured nginx workers at real-time priority too (CPU $pinned{off_w} to themselves):\n\n",
    }->{$mode};
    print "| target | p50 ms | p99 ms | p99.9 ms | achieved requests/s | waited for a connection | the load's own send lag, p99 ms | p99 from the send ms | answered as expected |\n|---|---|---|---|---|---|---|---|---|\n";
    my %oname = (zone => 'credit advance (zone), the module\'s nginx',
                 free => 'free location (`return 200`), the module\'s nginx',
                 plain => 'plain nginx `return 402`');
    for my $t ('zone', 'free', 'plain') {
        my $l = "$mode:$t";
        printf "| %s | %s | %s | %s | %.0f | %d | %s | %s | %s |\n", $oname{$t},
            mr('%.3f', $oc->($t, 'p50')), mr('%.3f', $oc->($t, 'p99')), mr('%.3f', $oc->($t, 'p999')),
            med(col($l, 'rps')), eval { my $s = 0; $s += $_ for col($l, 'waited'); $s },
            mr('%.3f', $oc->($t, 'lag')), mr('%.3f', $oc->($t, 'p99s')),
            answered($l, $t eq 'plain' ? '402' : $t);
    }
    my $diff = sub { my ($k, $b) = @_; my @z = $oc->('zone', $k); my @x = $oc->($b, $k);
                     map { $z[$_] - $x[$_] } 0 .. $#z };
    $add{$mode} = { free => [ $diff->('p99', 'free') ], plain => [ $diff->('p99', 'plain') ] };
    printf "\nadded by the module at p99 (credit advance p99 − baseline p99, per round): %s ms over the free location, %s ms over plain nginx's 402; at p50 %s ms over the free location; at p99 from the send (the load's own lag left out) %s ms over the free location\n",
        mr('%.3f', @{ $add{$mode}{free} }), mr('%.3f', @{ $add{$mode}{plain} }),
        mr('%.3f', $diff->('p50', 'free')), mr('%.3f', $diff->('p99s', 'free'));
}

# ---- the targets: met if the median and every round meet it
sub verdict { my ($ok, @v) = @_;
    my $all = !grep { !$ok->($_) } @v;
    $ok->(med(@v)) ? ($all ? 'met' : 'met at the median, not in every round') : 'not met' }
print "\ntargets (issue 13): median (min–max over rounds); met = the median and every round\n";
print "  (two placements, both sides alike: on loopback, a write waking a peer (client, facilitator, redis-server) asleep on another CPU costs the writer an inter-processor interrupt, kernel time that remote peers in a deployment do not cause; \"shared\" lets the scheduler place the processes, \"one core\" puts them all on one CPU, where no wakeup crosses CPUs)\n"
    if @pls > 1;
my @t = (
    ['credit advance (zone) ≤ 1.4 recovers of CPU per request', 'module:zone', 1.4],
    ['x402_redis ≤ 1.5 recovers', 'module:redis', 1.5],
    ['sync ≤ 2.0 recovers', 'module:sync', 2.0],
);
for (@t) {
    my ($what, $l, $max) = @$_;
    for my $pl (@pls) {
        my @v = col("$l$sfx{$pl}", 'rec');
        printf "  %-56s %-9s %s (user part %s): %s\n", $what, $plshort{$pl}, mr('%.2f', @v),
            mr('%.2f', col("$l$sfx{$pl}", 'urec')), verdict(sub { $_[0] <= $max }, @v);
        $what = '';
    }
}
my $what = "the module's 402 ≤ 1.10× plain nginx's CPU per request";
for my $pl (@pls) {
    printf "  %-56s %-9s %s: %s\n", $what, $plshort{$pl},
        mr('%.2f×', @{ $r402{$pl} }), verdict(sub { $_[0] <= 1.10 }, @{ $r402{$pl} });
    $what = '';
}
for my $p ('sync', 'zone', 'redis') {
    $what = "≥ 20× less CPU than \@x402/express, $p";
    for my $pl (@pls) {
        printf "  %-56s %-9s %s: %s\n", $what, $plshort{$pl},
            mr('%.1f×', @{ $ratio{$pl}{$p} }), verdict(sub { $_[0] >= 20 }, @{ $ratio{$pl}{$p} });
        $what = '';
    }
}
my %mname = (open => 'shared, workers as deployed', rt => 'shared, workers real-time',
             off => "peers off the worker's core", offrt => "peers off, workers real-time");
$what = "module-added p99 < 1 ms ($open{rate} requests/s)";
for my $mode (@modes) {
    my ($f, $p) = @{ $add{$mode} }{qw(free plain)};
    printf "  %-56s %s: %s ms over the free location: %s; %s ms over plain nginx: %s\n",
        $what, $mname{$mode},
        mr('%.3f', @$f), verdict(sub { $_[0] < 1 }, @$f),
        mr('%.3f', @$p), verdict(sub { $_[0] < 1 }, @$p);
    $what = '';
}
$what = 'redis-server CPU per payment ≤ 10 µs';
for my $pl (@pls) {
    printf "  %-56s %-9s %s µs: %s\n", $what, $plshort{$pl},
        mr('%.1f', @{ $redis{$pl} }), verdict(sub { $_[0] <= 10 }, @{ $redis{$pl} });
    $what = '';
}
EOF
