#!/usr/bin/env bash
# Build the Debian package libnginx-mod-http-x402 from this checkout, the way
# Debian builds its own libnginx-mod-* packages (debian/rules: dh with the
# nginx sequence of nginx-dev; the package Depends on the exact nginx ABI).
#
#   scripts/build-deb.sh [--out DIR]     (default DIR: build/deb)
#
# The work tree (tracked and untracked files, not ignored ones) is copied to
# DIR/libnginx-mod-http-x402-VERSION/ and built there with dpkg-buildpackage -b, so the .deb lands in DIR
# and nothing is written next to the checkout. Missing build dependencies
# (debian/control's Build-Depends) are installed with apt-get build-dep when
# run as root; otherwise they are named and the script stops.
# Then: sudo apt install ./build/deb/libnginx-mod-http-x402_*.deb
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/deb

while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/build-deb.log
say() { printf 'build-deb: %s\n' "$*"; }

need=()
command -v dpkg-buildpackage >/dev/null || need+=(dpkg-dev)
command -v dh >/dev/null || need+=(debhelper)
if [ ${#need[@]} -gt 0 ] || ! (cd "$root" && dpkg-checkbuilddeps > /dev/null 2>&1); then
    if [ "$(id -u)" -ne 0 ]; then
        (cd "$root" && dpkg-checkbuilddeps) || true
        say "missing build dependencies ${need[*]}: run as root, or apt-get build-dep $root" >&2
        exit 1
    fi
    say "installing build dependencies (apt-get build-dep, log: $log)"
    export DEBIAN_FRONTEND=noninteractive
    {
        apt-get update -q
        [ ${#need[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${need[@]}"
        apt-get build-dep -y -q --no-install-recommends "$root"
    } > "$log" 2>&1 || { tail -30 "$log" >&2; say "failed (log: $log)" >&2; exit 1; }
fi

version=$(cd "$root" && dpkg-parsechangelog -S Version)
src=$out/libnginx-mod-http-x402-$version     # the .deb lands in its parent
rm -rf "$src"
mkdir -p "$src"
# the work tree as it is, without build products and node_modules
(cd "$root" && git ls-files -z --cached --others --exclude-standard 2>/dev/null \
    | grep -zv '^js/node_modules' | xargs -0 -r cp --parents -t "$src" 2>/dev/null) \
    || (cd "$root" && tar --exclude=./build --exclude=./js/node_modules --exclude=./.git \
            -cf - . | tar -xf - -C "$src")

say "dpkg-buildpackage -b in $src (log: $log)"
rm -f "$out"/libnginx-mod-http-x402_*.deb
(cd "$src" && dpkg-buildpackage -b -uc -us) >> "$log" 2>&1 \
    || { tail -40 "$log" >&2; say "dpkg-buildpackage failed (log: $log)" >&2; exit 1; }
rm -rf "$src"

deb=$(ls "$out"/libnginx-mod-http-x402_*.deb)
say "built $deb"
dpkg-deb -f "$deb" Package Version Depends
dpkg-deb -c "$deb" | awk '{print "  " $6 ($7 ? " " $7 " " $8 : "")}' | grep -E 'modules|nginx'
echo "$deb"
