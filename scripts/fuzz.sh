#!/usr/bin/env bash
# Build the libFuzzer target with clang (ASan + UBSan + libFuzzer, the core
# instrumented too) in build/fuzz and run a bounded pass over decode +
# match + local verification, seeded from src/core/fuzz/corpus (headers and
# payloads of the unit-test vectors). New inputs go to build/fuzz/corpus,
# crashes to build/fuzz/artifacts; the exit status is non-zero on any crash,
# leak, UB or contract violation.
#
#   scripts/fuzz.sh                 60 s (CI)
#   FUZZ_TIME=3600 scripts/fuzz.sh  a long run; extra arguments go to
#                                   libFuzzer, e.g. -jobs=2 -workers=2
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/fuzz}
jobs=${JOBS:-2}
time=${FUZZ_TIME:-60}

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DX402_FUZZ=ON -DX402_TESTS=OFF -DX402_BENCH=OFF >/dev/null
cmake --build "$build" -j"$jobs" --target x402core_fuzz >/dev/null

mkdir -p "$build/corpus" "$build/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec "$build/x402core_fuzz" "$build/corpus" "$root/src/core/fuzz/corpus" \
    -max_total_time="$time" -max_len=20000 -timeout=10 -rss_limit_mb=2048 \
    -dict="$root/src/core/fuzz/payment.dict" \
    -artifact_prefix="$build/artifacts/" -print_final_stats=1 "$@"
