#!/usr/bin/env bash
# The test suite, the README's test command:
#
#   1. the C++ core with its GoogleTest suite (CMake + ctest);
#   2. ngx_http_x402_module.so for Debian's nginx (scripts/build-module.sh),
#      and the glue's layering rule checked on its objects
#      (scripts/check-layers.pl, src/README.md);
#   3. every t/*.t against a real nginx with that module (prove, one at a
#      time: each test starts its own nginx, facilitators, redis);
#   4. a short bounded libFuzzer pass over the core (scripts/fuzz.sh);
#   5. the interop suite: official clients + official facilitator on a
#      local chain, and the demo (scripts/interop-ci.sh);
#   6. when buildah is installed and this runs as root: the Dockerfile built
#      with buildah and the image's 402 (scripts/image-test.sh).
#
# Every step runs even if an earlier one failed (except that the t/ tests
# need the module); the summary at the end says which failed, and the exit
# status is non-zero if any did.
#
# Env: JOBS (2), BUILD_DIR (build: the module), CORE_BUILD_DIR (build/core),
# FUZZ_TIME (60 s), X402_SKIP="fuzz interop image" (steps to leave out),
# PROVE_ARGS (extra arguments for prove, e.g. "t/01-402.t").
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

jobs=${JOBS:-2}
build=${BUILD_DIR:-$root/build}
core_build=${CORE_BUILD_DIR:-$root/build/core}
skip=" ${X402_SKIP:-} "
summary=()
failed=0
t_all=$(date +%s)

details=()    # lines a step adds under its own summary line
step() {    # name command...: run, time, record
    local name=$1 t0 rc
    shift
    printf '\n===== %s\n' "$name"
    t0=$(date +%s)
    "$@"
    rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then
        summary+=("ok      ${dt}s  $name")
    else
        summary+=("FAILED  ${dt}s  $name (exit $rc)")
        failed=1
    fi
    summary+=("${details[@]}")
    details=()
    return $rc
}

core() {
    cmake -S "$root" -B "$core_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
          -DX402_TESTS=ON > "$core_build.cmake.log" 2>&1 \
        || { cat "$core_build.cmake.log"; return 1; }
    if ! cmake --build "$core_build" -j"$jobs" > "$core_build.build.log" 2>&1; then
        grep -E 'error|Error' "$core_build.build.log" | head -40
        echo "core build failed (full log: $core_build.build.log)"
        return 1
    fi
    ctest --test-dir "$core_build" --output-on-failure -j"$jobs" > "$core_build.ctest.log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        cat "$core_build.ctest.log"
    else
        tail -n 3 "$core_build.ctest.log"
    fi
    return $rc
}

module() {
    local so
    so=$(BUILD_DIR="$build" JOBS="$jobs" "$root/scripts/build-module.sh") || return 1
    export X402_MODULE=$so
    echo "module: $X402_MODULE"
    nm -D --defined-only "$X402_MODULE" | awk '{print "  exports: " $3}'
}

run_interop=
if [[ $skip != *" interop "* ]] && [ -f "$root/scripts/interop-ci.sh" ]; then
    run_interop=1
fi

# libFuzzer reports every new input: keep the end (stats, or the crash)
fuzz() {
    FUZZ_TIME="${FUZZ_TIME:-60}" bash "$root/scripts/fuzz.sh" > "$build/fuzz.log" 2>&1
    local rc=$?
    tail -n 40 "$build/fuzz.log"
    echo "(full log: $build/fuzz.log)"
    return $rc
}

tests() {
    rm -f "$build/prove-failures.txt"
    if [ -n "${PROVE_ARGS:-}" ]; then
        # shellcheck disable=SC2086
        prove -j1 --timer -I t/lib $PROVE_ARGS
        return
    fi
    # the interop tests (t/5x) run in their own step, under time limits
    local files=()
    for f in t/*.t; do
        if [ -n "$run_interop" ] && [[ $f == t/5* ]]; then continue; fi
        files+=("$f")
    done
    prove -j1 --timer -I t/lib "${files[@]}" 2>&1 | tee "$build/prove.log"
    local rc=${PIPESTATUS[0]}
    # name what failed where the summary shows it: a CI log is often cut
    # before prove's own report
    if [ "$rc" -ne 0 ]; then
        awk '/^Test Summary Report/ {on=1; next}
             on && /^t\// {f=$1} on && /Failed tests?:|Parse errors?:|Non-zero (exit|wait)|Bad plan/ {
                 gsub(/^ +/, ""); print f ": " $0 }' "$build/prove.log" \
            | head -n 20 > "$build/prove-failures.txt"
        while IFS= read -r l; do details+=("        ${l:0:150}"); done \
            < "$build/prove-failures.txt"
    fi
    return "$rc"
}

mkdir -p "$build" "$(dirname "$core_build")"
step "core: build + ctest" core
if step "module: build" module; then
    step "layers: calls only downward (check-layers.pl)" \
        perl "$root/scripts/check-layers.pl" "$build/nginx-debian/objs/addon/src"
    step "t/: prove" tests
else
    summary+=("SKIPPED      t/: prove (no module)")
fi
if [[ $skip != *" fuzz "* ]] && [ -f "$root/scripts/fuzz.sh" ]; then
    step "fuzz: ${FUZZ_TIME:-60}s libFuzzer pass" fuzz
fi
if [ -n "$run_interop" ] && [ -n "${X402_MODULE:-}" ]; then
    step "interop: official clients, facilitator, demo" \
        bash "$root/scripts/interop-ci.sh"
fi

if [[ $skip != *" image "* ]] && command -v buildah >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ]; then
    step "image: Dockerfile with buildah, the 402" bash "$root/scripts/image-test.sh"
fi

printf '\n===== summary (%ss in all)\n' "$(( $(date +%s) - t_all ))"
printf '  %s\n' "${summary[@]}"
exit $failed
