#!/usr/bin/env bash
# Build the Dockerfile with buildah and check that the image answers the
# documented 402, started with no network at all (so no DNS either).
#
#   scripts/image-test.sh          (as root; needs buildah and debootstrap)
#
# No Docker engine is needed: buildah with chroot isolation and vfs storage,
# in a storage of its own (X402_IMAGE_CACHE, default /var/cache/x402-image).
# The `debian:12` base is made locally from a debootstrap minbase root
# (Debian's registry only) the first time and kept there, tagged
# docker.io/library/debian:12, so FROM debian:12 never goes to Docker Hub.
# The image is then run in a network namespace of its own with only
# loopback: nginx must start, and GET /reports/q3.csv must get 402 with a
# PAYMENT-REQUIRED header and the v1 body.
# scripts/test.sh runs this when buildah is installed; .ci/run always does.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${X402_IMAGE_CACHE:-/var/cache/x402-image}
mirror=${X402_MIRROR:-http://deb.debian.org/debian}
image=localhost/nginx-x402:test
say() { printf 'image-test: %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { say "run as root (buildah with chroot isolation, unshare)" >&2; exit 1; }
for t in buildah debootstrap unshare; do
    command -v $t >/dev/null || { say "$t is missing (apt-get install buildah debootstrap)" >&2; exit 1; }
done

mkdir -p "$cache"
export BUILDAH_ISOLATION=chroot STORAGE_DRIVER=vfs
bh() { buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs "$@"; }
log=$cache/image-test.log
: > "$log"

ctrs=()
cleanup() {
    local c
    for c in "${ctrs[@]}"; do bh rm "$c" > /dev/null 2>&1 || true; done
}
trap cleanup EXIT

# ---- the debian:12 base, from a debootstrap root (kept for 7 days) ----
base=docker.io/library/debian:12
if ! bh inspect --type image "$base" > /dev/null 2>&1 \
   || [ -z "$(find "$cache/base.stamp" -mtime -7 2>/dev/null)" ]; then
    say "making $base from a debootstrap minbase bookworm root"
    rootfs=$cache/rootfs
    rm -rf --one-file-system "$rootfs"
    tarball=${X402_DEBOOTSTRAP_TARBALL:-/var/cache/x402-ci/bookworm-minbase.tgz}
    if [ -f "$tarball" ]; then
        debootstrap --variant=minbase --unpack-tarball="$tarball" bookworm "$rootfs" \
            "$mirror" >> "$log" 2>&1
    else
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >> "$log" 2>&1
    fi || { tail -20 "$log" >&2; exit 1; }
    cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    c=$(bh from scratch)
    ctrs+=("$c")
    mnt=$(bh mount "$c")
    cp -a "$rootfs/." "$mnt/"
    bh umount "$c" > /dev/null
    bh config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    bh commit -q --rm "$c" "$base" > /dev/null
    ctrs=()
    rm -rf --one-file-system "$rootfs"
    touch "$cache/base.stamp"
fi

# ---- the Dockerfile ----
say "buildah bud (chroot isolation, vfs) -t $image   (log: $log)"
t0=$(date +%s)
bh bud --pull=never --isolation chroot -f "$root/Dockerfile" -t "$image" "$root" \
    >> "$log" 2>&1 || { tail -40 "$log" >&2; say "build failed (log: $log)" >&2; exit 1; }
say "built in $(( $(date +%s) - t0 ))s: $(bh inspect --type image --format '{{.FromImageID}}' "$image" | cut -c1-12)"
cmd=$(bh inspect --type image --format '{{.OCIv1.Config.Cmd}}' "$image")
[ "$cmd" = "[nginx -g daemon off;]" ] || { say "unexpected CMD $cmd" >&2; exit 1; }

# ---- run it: loopback only, the image's CMD, one unpaid request ----
c=$(bh from --pull=never "$image")
ctrs+=("$c")
# bash's /dev/tcp as the client: the image has no curl, and needs none
# shellcheck disable=SC2016
probe='
nginx -g "daemon off;" &
for _ in $(seq 1 50); do [ -s /run/nginx.pid ] && break; sleep 0.1; done
exec 3<>/dev/tcp/127.0.0.1/80
printf "GET /reports/q3.csv HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
tr -d "\r" <&3
nginx -s quit'
out=$(unshare --net sh -c 'ip link set lo up && exec "$@"' sh \
    buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs \
    run --isolation chroot "$c" -- bash -c "$probe" 2>&1) || true
printf '%s\n' "$out" | sed 's/^/  | /'
ok=1
printf '%s\n' "$out" | grep -q '^HTTP/1.1 402 Payment Required$' || { say "no 402 status line" >&2; ok=0; }
printf '%s\n' "$out" | grep -qi '^PAYMENT-REQUIRED: ey' || { say "no PAYMENT-REQUIRED header" >&2; ok=0; }
printf '%s\n' "$out" | grep -q '"x402Version":1' || { say "no v1 body" >&2; ok=0; }
[ "$ok" = 1 ] || exit 1
say "the image answered the documented 402, started with no network"
