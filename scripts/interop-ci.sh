#!/usr/bin/env bash
# The interop suite of issue 5, bounded, for CI (.ci/run calls it):
#
#   1. the committed contract artifacts match contracts/*.sol;
#   2. t/51: chain + token + official facilitator + official clients agree
#      without nginx (if this fails, the infrastructure is broken);
#   3. t/50, t/52 (every other t/5x): the official clients pay through
#      nginx + the module, negative paths, conformance vectors against the
#      official facilitator, concurrency (one nginx, and two sharing Redis);
#   4. the README's demo (scripts/demo.sh --no-install) runs to the end.
#
# Needs the module built (X402_MODULE, default build/ngx_http_x402_module.so)
# and js/node_modules (npm ci in js/). Exit non-zero when any part fails;
# each part has a hard time limit, the whole well under 10 minutes.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export X402_MODULE=${X402_MODULE:-$root/build/ngx_http_x402_module.so}
fail=0
t_start=$(date +%s)

part() {    # name limit-seconds command...
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    echo "=== interop: $name"
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    echo "=== interop: $name: exit $rc in $(( $(date +%s) - t0 ))s"
    [ $rc -eq 0 ] || fail=1
}

if [ ! -d js/node_modules/@x402/core ]; then
    echo "interop: js/node_modules missing: run npm ci in js/" >&2
    exit 1
fi

part "contract artifacts" 60 node js/interop/compile.mjs --check
part "self-check without nginx (t/51)" 180 prove t/51-interop-selfcheck.t
if [ -f "$X402_MODULE" ]; then
    through=()
    for f in t/5*.t; do
        [ "$f" = t/51-interop-selfcheck.t ] || through+=("$f")
    done
    part "through nginx (${through[*]})" 480 prove "${through[@]}"
    part "demo" 180 scripts/demo.sh --no-install --run-dir "$root/build/demo-ci"
else
    echo "interop: $X402_MODULE not built: t/50 and the demo cannot run" >&2
    fail=1
fi

echo "=== interop: total $(( $(date +%s) - t_start ))s, $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
