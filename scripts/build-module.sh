#!/usr/bin/env bash
# Build ngx_http_x402_module.so.
#
#   scripts/build-module.sh                  for Debian's own nginx (nginx-dev):
#                                            same configure flags, so the
#                                            module's binary signature matches
#                                            /usr/sbin/nginx
#   scripts/build-module.sh --nginx-src DIR  against an upstream nginx source
#                                            tree (./configure --with-compat)
#
# Env: BUILD_DIR (default build/), JOBS (default 2), X402_NGINX_CC_OPT
# (extra --with-cc-opt, e.g. sanitizers), X402_CORE_BUILD_DIR (link the C++
# core built there, for a variant of the glue only: t/37). Prints the path
# of the .so last.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
jobs=${JOBS:-2}
src=

while [ $# -gt 0 ]; do
    case $1 in
        --nginx-src) src=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "build-module.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

mkdir -p "$build"
build=$(cd "$build" && pwd)

if [ -z "$src" ]; then
    # Debian: a private copy of /usr/share/nginx/src, configured with the
    # flags Debian's nginx was built with.
    if [ ! -f /usr/share/nginx/src/conf_flags ]; then
        echo "build-module.sh: /usr/share/nginx/src missing: apt-get install nginx-dev" >&2
        exit 1
    fi
    tree=$build/nginx-debian
    # shellcheck disable=SC1091
    . /usr/share/nginx/src/conf_flags
    flags=("${NGX_CONF_FLAGS[@]}")
    if [ ! -x "$tree/configure" ]; then
        rm -rf "$tree"
        cp -a /usr/share/nginx/src "$tree"
    fi
else
    tree=$src
    flags=(--with-compat --with-http_auth_request_module)
fi

flags+=(--add-dynamic-module="$root")
if [ -n "${X402_NGINX_CC_OPT:-}" ]; then
    flags+=(--with-cc-opt="$X402_NGINX_CC_OPT" --with-ld-opt="$X402_NGINX_CC_OPT")
fi

# Reconfigure only when the flags or the module's config changed: a full
# nginx configure takes longer than the module build itself.
stamp=$tree/objs/.x402-configure
want=$(printf '%s\n' "${flags[@]}"; cat "$root/config" "$root/config.make"; ls "$root"/src/*.c "$root"/src/*.h)
if [ ! -f "$tree/objs/Makefile" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    (cd "$tree" && ./configure "${flags[@]}") > "$build/configure.log" 2>&1 || {
        tail -40 "$build/configure.log" >&2
        echo "build-module.sh: configure failed (full log: $build/configure.log)" >&2
        exit 1
    }
    printf '%s' "$want" > "$stamp"
fi

X402_JOBS=$jobs make -C "$tree" -f objs/Makefile -j"$jobs" modules > "$build/make.log" 2>&1 || {
    grep -E 'error|Error' "$build/make.log" | head -40 >&2
    echo "build-module.sh: make failed (full log: $build/make.log)" >&2
    exit 1
}

# a new inode: overwriting a .so in place crashes an nginx that has it mapped
cp --remove-destination "$tree/objs/ngx_http_x402_module.so" "$build/ngx_http_x402_module.so"
echo "$build/ngx_http_x402_module.so"
