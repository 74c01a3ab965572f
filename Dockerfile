# nginx (Debian 12's own 1.22) with ngx_http_x402_module, installed from the
# project's Debian package (libnginx-mod-http-x402, see debian/).
#
#   docker build -t nginx-x402 .          (or: buildah bud -t nginx-x402 .)
#   docker run --rm -p 8080:80 -v /srv:/srv:ro nginx-x402
#
# The build stage builds the package with scripts/build-deb.sh (Debian's
# nginx-dev, the exact nginx ABI); the runtime stage installs it with apt, so
# the module's libraries come in as the package's Depends. The configuration
# is conf-examples/first-paid-location.conf: edit it or mount your own over
# /etc/nginx/nginx.conf. nginx starts without DNS: the facilitator's name is
# resolved per request. scripts/image-test.sh builds this with buildah and
# checks the 402.

FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN scripts/build-deb.sh --out /out

FROM debian:12
COPY --from=build /out/libnginx-mod-http-x402_*.deb /tmp/
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ca-certificates /tmp/libnginx-mod-http-x402_*.deb > /tmp/apt.log \
 || { tail -30 /tmp/apt.log; exit 1; } \
 && rm -rf /var/lib/apt/lists/* /tmp/*.deb /tmp/apt.log
COPY conf-examples/ /etc/nginx/conf-examples/
COPY conf-examples/first-paid-location.conf /etc/nginx/nginx.conf
RUN mkdir -p /srv/www /srv/reports \
 && nginx -t \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
