#!/usr/bin/env bash
# The demo: an official x402 client pays nginx, the official facilitator
# settles on a local chain, and the balances move by exactly the price.
#
#   scripts/demo.sh               install what is missing, build the module,
#                                 start anvil + facilitator + nginx, pay, show
#                                 the 402, the payment, the settlement
#                                 transaction and the balances, then stop
#                                 everything
#   scripts/demo.sh --keep        same, but leave the servers running
#   scripts/demo.sh stop          stop servers left by --keep
#   scripts/demo.sh status        show what is running
#
# Options: --run-dir DIR (default build/demo), --no-install (skip apt/npm).
# Env: X402_MODULE=path.so uses that module instead of building one;
# BUILD_DIR is passed to scripts/build-module.sh.
# Every process started is recorded in DIR/pids/ and stopped by that pid.
# Nothing here touches a real network: the chain is anvil on 127.0.0.1 with
# Base Sepolia's chain id, the token is our own (contracts/TestUSDC.sol).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run=${X402_DEMO_DIR:-$root/build/demo}
keep=0
install=1
cmd=run

while [ $# -gt 0 ]; do
    case $1 in
        stop|status|run) cmd=$1; shift ;;
        --keep) keep=1; shift ;;
        --no-install) install=0; shift ;;
        --run-dir) run=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

mkdir -p "$run"
run=$(cd "$run" && pwd)
pids=$run/pids
interop=$root/js/interop

if [ -t 1 ]; then
    B=$'\e[1m'; D=$'\e[2m'; G=$'\e[32m'; R=$'\e[31m'; N=$'\e[0m'
else
    B=; D=; G=; R=; N=
fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
die() { printf '%sdemo.sh: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

# ---- processes, by recorded pid only ----

stop_pid() {    # name
    local f=$pids/$1.pid pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        echo "stopped $1 (pid $pid)"
    fi
    rm -f "$f"
}

stop_all() {
    # nginx first: nothing new reaches the facilitator or the chain
    stop_pid nginx
    stop_pid facilitator
    stop_pid anvil
}

status_all() {
    local f name pid
    for f in "$pids"/*.pid; do
        [ -e "$f" ] || { echo "nothing recorded in $pids"; return; }
        name=$(basename "$f" .pid)
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running (stale pid $pid)"
        fi
    done
    [ -f "$run/demo.env" ] && cat "$run/demo.env"
}

case $cmd in
    stop) stop_all; exit 0 ;;
    status) status_all; exit 0 ;;
esac

# A previous --keep run in the same directory: stop it first.
if ls "$pids"/*.pid >/dev/null 2>&1; then
    echo "stopping the previous demo in $run"
    stop_all
fi
mkdir -p "$pids"

# ---- 1. install ----

if [ "$install" = 1 ]; then
    # the same install step as the README's test command, so that one finds
    # everything in place (packages, the Node version check, npm ci and its
    # stamp); apt-get's output goes to setup.sh's log
    step "Installing what is missing (scripts/setup.sh --demo)"
    "$root/scripts/setup.sh" --demo || die "scripts/setup.sh --demo failed"
fi
for t in node /usr/sbin/nginx curl; do
    command -v "$t" >/dev/null || die "$t is missing (run without --no-install)"
done

# ---- 2. build ----

if [ -n "${X402_MODULE:-}" ]; then
    # a module built beforehand (CI, or a build directory of your own)
    so=$X402_MODULE
    [ -f "$so" ] || die "X402_MODULE=$so: no such file"
else
    step "Building the module (scripts/build-module.sh)"
    [ -x "$root/scripts/build-module.sh" ] || die "scripts/build-module.sh not found"
    "$root/scripts/build-module.sh" > "$run/build.log" 2>&1 \
        || { tail -30 "$run/build.log"; die "module build failed, see $run/build.log"; }
    so=$(tail -1 "$run/build.log")
    [ -f "$so" ] || die "the build did not print a module path (got '$so')"
fi
echo "module: $so"

# From here on, stop what we started if anything fails.
trap 'rc=$?; if [ $rc -ne 0 ]; then echo; echo "demo failed (exit $rc); logs in $run"; stop_all; fi' EXIT

# ---- 3. chain, facilitator ----

step "Starting a local chain (anvil, chain id 84532) with our USDC at the Base Sepolia address"
rm -f "$run"/chain.json "$run"/facilitator.json "$run"/facilitator-requests.jsonl
node "$interop/chain.mjs" start --run-dir "$run" --fund 10 > "$run/chain.out"
chain_pid=$(node -e 'console.log(require(process.argv[1]).pid)' "$run/chain.json")
echo "$chain_pid" > "$pids/anvil.pid"
rpc=$(node -e 'console.log(require(process.argv[1]).rpcUrl)' "$run/chain.json")
echo "anvil pid $chain_pid at $rpc"

step "Starting the official x402 facilitator (@x402/core + @x402/evm, exact, v1 + v2)"
node "$interop/facilitator.mjs" start --run-dir "$run" > "$run/facilitator.out"
fac_pid=$(node -e 'console.log(require(process.argv[1]).pid)' "$run/facilitator.json")
echo "$fac_pid" > "$pids/facilitator.pid"
fac_port=$(node -e 'console.log(require(process.argv[1]).port)' "$run/facilitator.json")
echo "facilitator pid $fac_pid at http://127.0.0.1:$fac_port  (requests logged to $run/facilitator-requests.jsonl)"

# ---- 4. nginx ----

step "Starting nginx with conf-examples/demo.conf"
read -r port up_port < <(node "$interop/ports.mjs" 2)
pay_to=$(node -e 'console.log(require(process.argv[1]).payTo)' "$run/chain.json")
mkdir -p "$run/html/reports" "$run/nginx-tmp"
cat > "$run/html/reports/today.json" <<'EOF'
{"report":"today","summary":"Agents paid for this file, one authorization at a time."}
EOF
echo '<p>free page; try /reports/today.json or /api/quote</p>' > "$run/html/index.html"
sed -e "s|@MODULE@|$so|g" -e "s|@RUN@|$run|g" -e "s|@PORT@|$port|g" \
    -e "s|@UPSTREAM_PORT@|$up_port|g" -e "s|@FACILITATOR_PORT@|$fac_port|g" \
    -e "s|@PAY_TO@|$pay_to|g" "$root/conf-examples/demo.conf" > "$run/nginx.conf"
# The demo serves files from the checkout, which may sit under a 0700 home
# (root's, on Debian): run as root, the workers must be root too, or they get
# 403 for content that was paid for. A server of yours keeps its own `user`.
if [ "$(id -u)" = 0 ]; then
    sed -i '1i user  root root;' "$run/nginx.conf"
fi
if grep -v '^ *#' "$run/nginx.conf" | grep -q '@[A-Z_]*@'; then
    die "unfilled placeholder in $run/nginx.conf"
fi
/usr/sbin/nginx -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf" -t \
    > "$run/nginx-t.log" 2>&1 || { cat "$run/nginx-t.log"; die "nginx -t failed"; }
/usr/sbin/nginx -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf"
for _ in $(seq 1 50); do
    [ -s "$run/nginx.pid" ] && break
    sleep 0.1
done
[ -s "$run/nginx.pid" ] || die "nginx did not write $run/nginx.pid"
cat "$run/nginx.pid" > "$pids/nginx.pid"
echo "nginx pid $(cat "$pids/nginx.pid") at http://127.0.0.1:$port"
base=http://127.0.0.1:$port
cat > "$run/demo.env" <<EOF
X402_DEMO_URL=$base
X402_DEMO_RPC=$rpc
X402_DEMO_FACILITATOR=http://127.0.0.1:$fac_port
X402_DEMO_RUN_DIR=$run
EOF

# ---- 5. pay ----

balances() { node "$interop/balances.mjs" --run-dir "$run" --pretty payer payTo; }

step "Balances before"
balances
before=$(node "$interop/balances.mjs" --run-dir "$run" payer payTo)

step "An unpaid request: GET /reports/today.json"
curl -s -D "$run/unpaid.headers" -o "$run/unpaid.body" "$base/reports/today.json" || true
sed -e 's/\r$//' "$run/unpaid.headers" | sed -E 's/^(PAYMENT-REQUIRED: .{72}).*/\1.../I'
pr=$(sed -n 's/^[Pp][Aa][Yy][Mm][Ee][Nn][Tt]-[Rr][Ee][Qq][Uu][Ii][Rr][Ee][Dd]: *//p' \
    "$run/unpaid.headers" | tr -d '\r')
if [ -n "$pr" ]; then
    echo "${D}PAYMENT-REQUIRED, decoded:${N}"
    printf '%s' "$pr" | base64 -d | node -e \
        'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.stringify(JSON.parse(s),null,2)))'
fi
echo "${D}body (the v1 form, for legacy clients):${N}"
cat "$run/unpaid.body"; echo

# Each paid request must be served (200, exactly the content); the chain
# must show exactly one price moved per served request and none for any
# other. Any miss makes the demo fail, loudly and non-zero.
quote='{"quote":"Nothing is free, but this costs 0.001 USDC.","from":"upstream"}'
served=0
failures=()
txs=()
pay() {    # title client report-name path expect-option expect-value
    local title=$1 client=$2 name=$3 path=$4 opt=$5 want=$6 verdict rc=0
    step "$title: GET $path"
    node "$interop/$client" --run-dir "$run" --url "$base$path" \
        > "$run/$name.json" || rc=$?
    if [ $rc -ne 0 ] && [ ! -s "$run/$name.json" ]; then
        failures+=("$path ($client): the client failed (exit $rc)")
        return
    fi
    verdict=$(node "$interop/demo-check.mjs" "$run/$name.json" "$opt" "$want" \
        | tee "$run/$name.txt" | tail -1) || true
    sed '$d' "$run/$name.txt"
    case $verdict in
        "served "*)
            served=$((served + 1))
            echo "${G}served: 200 with the content${N}"
            [ "${verdict#served }" = - ] || txs+=("${verdict#served }")
            ;;
        *)
            printf '%s%s%s\n' "$R" "$verdict" "$N"
            failures+=("$path ($client): $verdict")
            ;;
    esac
}

pay "Paying with the official v2 client (@x402/fetch)" client-v2.mjs pay-v2 \
    /reports/today.json --expect-file "$run/html/reports/today.json"
pay "Paying again with the v2 client, for the proxied API" client-v2.mjs pay-v2-api \
    /api/quote --expect-text "$quote"$'\n'
pay "Paying with the official v1 client (x402-fetch)" client-v1.mjs pay-v1 \
    /api/quote --expect-text "$quote"$'\n'

# x402_settle after (the default): a paid request for a missing report is
# answered 404 and not settled; the balances below show nothing moved for it
step "Paying for a report that does not exist: GET /reports/missing.json"
node "$interop/client-v2.mjs" --run-dir "$run" --url "$base/reports/missing.json" \
    > "$run/pay-404.json" || true
status404=$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
console.log(`${r.status} ${r.settlement ? "settled" : "not settled"}`);' "$run/pay-404.json" \
    2>/dev/null || echo "no report")
echo "$status404: under x402_settle after a 404 costs nothing"
[ "$status404" = "404 not settled" ] \
    || failures+=("/reports/missing.json: $status404, expected 404 not settled")

step "The settlement transactions, on chain"
if [ ${#txs[@]} -ne "$served" ]; then
    failures+=("$served requests served but ${#txs[@]} settlement transactions named")
fi
for tx in "${txs[@]}"; do
    node "$interop/tx.mjs" --run-dir "$run" --pretty "$tx" \
        || failures+=("transaction $tx: not a transfer of the price on chain")
done

step "Balances after (3 paid requests at 0.001 USDC)"
balances
after=$(node "$interop/balances.mjs" --run-dir "$run" payer payTo)
# exactly 1000 atomic units per served request from the payer to payTo, read
# from the chain: more means money moved for a request that was not served
moved=$(node -e '
const [b, a] = [JSON.parse(process.argv[1]).balances, JSON.parse(process.argv[2]).balances];
const paid = BigInt(b.payer) - BigInt(a.payer), got = BigInt(a.payTo) - BigInt(b.payTo);
console.log(paid === got ? String(paid) : `payer paid ${paid} but payTo received ${got}`);' \
    "$before" "$after")
echo "payer paid $moved atomic units for $served served requests ($((served * 1000)) expected)"
[ "$served" -eq 3 ] || failures+=("$served of 3 paid requests served")
[ "$moved" = "$((served * 1000))" ] \
    || failures+=("money moved: $moved atomic units for $served served requests of 1000 each")

ok=1
if [ ${#failures[@]} -eq 0 ]; then
    printf '\n%sThe demo paid through nginx, got the content and settled on the local chain.%s\n' "$G" "$N"
else
    ok=0
    printf '\n%sDEMO FAILED:%s\n' "$R" "$N" >&2
    for f in "${failures[@]}"; do
        printf '%s  - %s%s\n' "$R" "$f" "$N" >&2
    done
    printf 'logs and reports in %s\n' "$run" >&2
fi

trap - EXIT
stop_hint=
[ "$run" = "$root/build/demo" ] || stop_hint=" --run-dir $run"
if [ "$keep" = 1 ]; then
    cat <<EOF

Left running (pids in $pids):
  nginx        $base   (conf: $run/nginx.conf)
  facilitator  http://127.0.0.1:$fac_port
  anvil        $rpc
Pay again:     node js/interop/client-v2.mjs --run-dir $run --url $base/reports/today.json --pretty
Stop:          scripts/demo.sh stop$stop_hint
EOF
else
    step "Stopping"
    stop_all
fi
[ "$ok" = 1 ]
