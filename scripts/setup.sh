#!/usr/bin/env bash
# Install everything ngx_http_x402_module needs to build, test and run its
# demo on Debian 12 (bookworm): compilers, Debian's nginx + nginx-dev (so the
# module's binary signature matches /usr/sbin/nginx), the core's libraries,
# test tools, Node.js, then the pinned npm packages of js/ (npm ci).
#
#   sudo scripts/setup.sh               everything (as root: apt-get needs it)
#   sudo scripts/setup.sh --build-only  only what building the module needs
#                                       (the Dockerfile's build stage)
#   scripts/setup.sh --demo             what scripts/demo.sh needs: the build,
#                                       Node.js, npm, curl, js/node_modules
#
# Node.js: 18 or newer. Debian 12's own nodejs (18.19/18.20) is what this
# installs and what CI runs on; a newer Node already on PATH is used as is.
# On Node 18 the js/ scripts install the global Web Crypto object that the
# official x402 packages expect (js/webcrypto.mjs).
#
# Idempotent: packages already installed and an unchanged js/node_modules
# are left alone, so a second run takes a second; root is needed only when
# something has to be installed with apt-get. apt-get's output goes to a log
# (${TMPDIR:-/tmp}/x402-setup-apt.log), shown only when it fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

mode=all
case ${1:-} in
    --build-only) mode=build ;;
    --demo) mode=demo ;;
    "") ;;
    *) echo "setup.sh: unknown argument '$1'" >&2; exit 2 ;;
esac

# Debian package names, checked with apt-cache policy on Debian 12.
build_packages=(
    build-essential cmake pkg-config binutils ca-certificates
    # nginx to load the module into, and its sources for the module build
    nginx nginx-dev libpcre2-dev zlib1g-dev libssl-dev
    # the C++ core and the store
    libsecp256k1-dev libjansson-dev libsimdjson-dev libhiredis-dev
)
test_packages=(
    git curl
    # tests, benchmarks, fuzzing
    redis-server libgtest-dev libgmock-dev libbenchmark-dev
    clang libclang-rt-14-dev
    perl libtest-base-perl libjson-pp-perl procps wrk
    # t/25 reads request bodies with Debian's echo module (same nginx ABI)
    libnginx-mod-http-echo
    # the paywall test renders the page in a real browser
    chromium
    # the Node side: viem, the official x402 parsers, clients, facilitator
    nodejs
)
# what scripts/demo.sh needs beyond the build
demo_packages=(curl nodejs)
node_min=18

say() { printf 'setup: %s\n' "$*"; }

log=${TMPDIR:-/tmp}/x402-setup-apt.log

packages=("${build_packages[@]}")
case $mode in
    all) packages+=("${test_packages[@]}") ;;
    demo) packages+=("${demo_packages[@]}") ;;
esac

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        # a Node.js from elsewhere on PATH (nodesource, nvm) stands in for
        # Debian's nodejs if it is new enough (checked below)
        if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then
            continue
        fi
        missing+=("$p")
    fi
done
# Debian's nodejs comes without npm (NodeSource's includes it).
if [ "$mode" != build ] && ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi

apt_install() {    # packages...: quiet, logged, the log's tail on failure
    local rc=0
    printf '\n===== apt-get install %s\n' "$*" >> "$log"
    apt-get install -y -q --no-install-recommends "$@" >> "$log" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        tail -30 "$log" >&2
        say "apt-get install failed (full log: $log)" >&2
        exit 1
    fi
}

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages: ${missing[*]}" >&2
        say "run as root (apt-get install needs it): sudo $0 ${1:-}" >&2
        exit 1
    fi
    say "installing: ${missing[*]} (apt-get, log: $log)"
    : > "$log"
    apt-get update -q >> "$log" 2>&1 || {
        tail -30 "$log" >&2
        say "apt-get update failed (full log: $log)" >&2
        exit 1
    }
    # Keep the packages' init scripts from starting system nginx/redis on
    # their well-known ports: the tests start their own on loopback.
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
        trap 'rm -f "$policy"' EXIT
    fi
    apt_install "${missing[@]}"
    if [ -n "$made_policy" ]; then
        rm -f "$policy"
        trap - EXIT
    fi
else
    say "Debian packages: all present"
fi

if [ "$mode" = build ]; then
    say "done (build dependencies only)"
    exit 0
fi

# Node.js: which one, and new enough?
node_bin=$(command -v node || true)
if [ -z "$node_bin" ]; then
    say "Node.js $node_min or newer is needed: no 'node' on PATH (Debian: apt-get install nodejs)" >&2
    exit 1
fi
node_version=$(node --version 2>/dev/null || echo unknown)
node_major=${node_version#v}
node_major=${node_major%%.*}
case $node_major in
    ''|*[!0-9]*) node_major=0 ;;
esac
if [ "$node_major" -lt "$node_min" ]; then
    say "Node.js $node_min or newer is needed; $node_bin is $node_version." >&2
    say "Debian 12's nodejs (18.19 or later) works: apt-get install nodejs, or put a newer node first on PATH." >&2
    exit 1
fi

# npm ci only when package-lock.json changed since the last install
# (scripts/demo.sh runs this same step, so the test command does not
# repeat the demo's npm ci).
stamp=$root/js/node_modules/.x402-setup-stamp
want=$(sha256sum "$root/js/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "js/node_modules: up to date"
else
    say "npm ci in js/"
    (cd "$root/js" && npm ci --no-audit --no-fund --loglevel=error) || {
        say "npm ci failed" >&2
        exit 1
    }
    printf '%s' "$want" > "$stamp"
fi

# Test-local packages kept apart from js/node_modules (js/jwt-check: jose),
# each with its own lock.
for lock in "$root"/js/*/package-lock.json; do
    [ -f "$lock" ] || continue
    dir=$(dirname "$lock")
    stamp=$dir/node_modules/.x402-setup-stamp
    want=$(sha256sum "$lock" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        continue
    fi
    say "npm ci in js/${dir##*/}/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || {
        say "npm ci in $dir failed" >&2
        exit 1
    }
    printf '%s' "$want" > "$stamp"
done

say "node $node_version ($node_bin), npm $(npm --version), nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///')"
say "done"
