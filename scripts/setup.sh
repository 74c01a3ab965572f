#!/usr/bin/env bash
# Install everything ngx_http_x402_module needs to build, test and run its
# demo on Debian 12 (bookworm): compilers, Debian's nginx + nginx-dev (so the
# module's binary signature matches /usr/sbin/nginx), the core's libraries,
# test tools, Node.js, then the pinned npm packages of js/ (npm ci).
#
#   sudo scripts/setup.sh               everything (as root: apt-get needs it)
#   sudo scripts/setup.sh --build-only  only what building the module needs
#                                       (the Dockerfile's build stage)
#
# Idempotent: packages already installed and an unchanged js/node_modules
# are left alone, so a second run takes a second.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

build_only=
case ${1:-} in
    --build-only) build_only=1 ;;
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
    # the paywall test renders the page in a real browser
    chromium
    # the Node side: viem, the official x402 parsers, clients, facilitator
    nodejs
)

say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    say "run as root (apt-get install needs it)" >&2
    exit 1
fi

packages=("${build_packages[@]}")
[ -n "$build_only" ] || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing+=("$p")
    fi
done

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    apt-get update -qq
    # Keep the packages' init scripts from starting system nginx/redis on
    # their well-known ports: the tests start their own on loopback.
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    rc=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        > /tmp/x402-setup-apt.log 2>&1 || rc=$?
    [ -n "$made_policy" ] && rm -f "$policy"
    if [ $rc -ne 0 ]; then
        tail -30 /tmp/x402-setup-apt.log >&2
        say "apt-get install failed (log: /tmp/x402-setup-apt.log)" >&2
        exit 1
    fi
else
    say "Debian packages: all present"
fi

if [ -n "$build_only" ]; then
    say "done (build dependencies only)"
    exit 0
fi

# Debian's nodejs comes without npm (NodeSource's includes it).
if ! command -v npm >/dev/null 2>&1; then
    say "installing npm"
    apt-get install -y -qq --no-install-recommends npm > /tmp/x402-setup-npm.log 2>&1 || {
        tail -30 /tmp/x402-setup-npm.log >&2
        exit 1
    }
fi

# npm ci only when package-lock.json changed since the last install.
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

say "node $(node --version), npm $(npm --version), nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///')"
say "done"
