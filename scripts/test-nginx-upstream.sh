#!/usr/bin/env bash
# The module and the t/ suite against a newer, upstream nginx (>= 1.26):
# Debian 13 (trixie)'s nginx_*.orig.tar.gz, which is nginx.org's release
# tarball, fetched from Debian's archive and checked the way apt checks it
# (InRelease signed by a key of debian-archive-keyring, Sources' SHA-256 in
# InRelease, the tarball's SHA-256 in Sources). nginx is configured with the
# modules the tests and the examples use, built (binary and module), and
# prove runs t/ with that binary and module.
#
#   scripts/test-nginx-upstream.sh                 trixie's nginx
#   scripts/test-nginx-upstream.sh --nginx-src DIR an nginx source tree of yours
#
# Env: X402_MIRROR (http://deb.debian.org/debian), NGINX_SUITE (trixie),
# BUILD_DIR (build/nginx-upstream), JOBS (2), PROVE_ARGS (files; default
# every t/*.t but the interop suite t/5x, which tests the Node clients, not
# nginx). Needs what scripts/setup.sh installs (and gpgv, curl).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mirror=${X402_MIRROR:-http://deb.debian.org/debian}
suite=${NGINX_SUITE:-trixie}
build=${BUILD_DIR:-$root/build/nginx-upstream}
jobs=${JOBS:-2}
src=
say() { printf 'nginx-upstream: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --nginx-src) src=$(cd "$2" && pwd) || exit 2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "test-nginx-upstream.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
mkdir -p "$build"
build=$(cd "$build" && pwd)

sha_ok() {    # file sha256
    [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

fetch_debian_orig() {
    local dl=$build/download keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    local idx sha orig line
    mkdir -p "$dl"
    command -v gpgv >/dev/null || die "gpgv missing (apt-get install gpgv)"
    [ -f "$keyring" ] || die "$keyring missing (apt-get install debian-archive-keyring)"
    say "fetching $suite's nginx source from $mirror"
    curl -fsSL "$mirror/dists/$suite/InRelease" -o "$dl/InRelease" || die "no InRelease for $suite"
    gpgv --keyring "$keyring" "$dl/InRelease" > "$dl/gpgv.log" 2>&1 \
        || { cat "$dl/gpgv.log" >&2; die "InRelease of $suite: bad signature"; }
    idx=main/source/Sources.gz
    sha=$(awk -v f="$idx" '/^SHA256:/{s=1;next} /^[^ ]/{s=0} s&&$3==f{print $1}' "$dl/InRelease")
    [ -n "$sha" ] || die "$idx not listed in InRelease"
    curl -fsSL "$mirror/dists/$suite/$idx" -o "$dl/Sources.gz" || die "cannot fetch $idx"
    sha_ok "$dl/Sources.gz" "$sha" || die "$idx: SHA-256 mismatch"
    line=$(gzip -dc "$dl/Sources.gz" | awk '
        /^Package: /{p=($2=="nginx")} p&&/^Directory: /{d=$2}
        p&&/^Checksums-Sha256:/{c=1;next} c&&!/^ /{c=0}
        p&&c&&$3~/^nginx_[0-9.]+\.orig\.tar\.gz$/{s=$1; o=$3}
        /^$/{if (p&&o) {print s, o, d; exit} p=0}')
    [ -n "$line" ] || die "no nginx orig tarball in $suite's Sources"
    read -r sha orig dir <<< "$line"
    if [ ! -f "$dl/$orig" ] || ! sha_ok "$dl/$orig" "$sha"; then
        curl -fsSL "$mirror/$dir/$orig" -o "$dl/$orig" || die "cannot fetch $orig"
        sha_ok "$dl/$orig" "$sha" || die "$orig: SHA-256 mismatch"
    fi
    say "$orig: signature and SHA-256 good"
    local v=${orig#nginx_}
    v=${v%.orig.tar.gz}
    src=$build/nginx-$v
    if [ ! -x "$src/configure" ]; then
        rm -rf "$src"
        tar -xzf "$dl/$orig" -C "$build" || die "cannot unpack $orig"
    fi
}

[ -n "$src" ] || fetch_debian_orig
[ -x "$src/configure" ] || die "$src: no nginx source tree"

# What the t/ suite and conf-examples need beyond nginx's defaults: SSL (an
# https facilitator), HTTP/2 (t/24), auth_request (t/11, t/70), sub and
# addition filters (t/03, t/09, t/21: content changed after the access
# phase), realip and stub_status (examples); the rest of the static modules
# of Debian's nginx, so both builds offer the same directives;
# --with-compat as for any dynamic module.
flags=(
    --prefix="$build/prefix"
    --with-compat --with-debug --with-threads --with-pcre-jit
    --with-http_ssl_module --with-http_v2_module
    --with-http_auth_request_module --with-http_sub_module
    --with-http_addition_module --with-http_realip_module
    --with-http_stub_status_module --with-http_slice_module
    --with-http_dav_module --with-http_gunzip_module
    --with-http_gzip_static_module --with-http_secure_link_module
    --with-http_random_index_module --with-http_mp4_module
    --with-http_flv_module
    --add-dynamic-module="$root"
)
say "configure $(basename "$src") ${flags[*]}"
(cd "$src" && ./configure "${flags[@]}") > "$build/configure.log" 2>&1 \
    || { tail -30 "$build/configure.log" >&2; die "configure failed (log: $build/configure.log)"; }
say "make -j$jobs (nginx and the module)"
X402_JOBS=$jobs make -C "$src" -f objs/Makefile -j"$jobs" > "$build/make.log" 2>&1 \
    || { grep -E 'error|Error' "$build/make.log" | head -40 >&2; die "make failed (log: $build/make.log)"; }

export TEST_NGINX_BINARY=$src/objs/nginx
export X402_MODULE=$src/objs/ngx_http_x402_module.so
"$TEST_NGINX_BINARY" -V 2>&1 | head -1
cd "$root" || exit 1
if [ -n "${PROVE_ARGS:-}" ]; then
    # shellcheck disable=SC2086
    prove -j1 --timer -I t/lib $PROVE_ARGS
else
    files=()
    for f in t/*.t; do
        [[ $f == t/5* ]] || files+=("$f")
    done
    prove -j1 --timer -I t/lib "${files[@]}"
fi
