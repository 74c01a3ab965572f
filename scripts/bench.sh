#!/usr/bin/env bash
# Build the core in Release with the Google Benchmark binary (build/bench)
# and run it: ns/op for decode, match, digest, recover, the whole local
# verification and a bare secp256k1_ecdsa_recover, then their ratio
# (target <= 1.25x). Extra arguments go to the benchmark binary, e.g.
#   scripts/bench.sh --benchmark_repetitions=5
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/bench}
jobs=${JOBS:-2}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DX402_BENCH=ON \
    -DX402_TESTS=OFF >/dev/null
cmake --build "$build" -j"$jobs" --target x402core_bench >/dev/null
exec "$build/x402core_bench" "$@"
