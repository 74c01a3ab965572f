# nginx (Debian 12's own 1.22) with ngx_http_x402_module.
#
#   docker build -t nginx-x402 .
#   docker run --rm -p 8080:80 -v /srv:/srv:ro nginx-x402
#
# The build stage installs the build dependencies and builds the module with
# the same scripts as the README (scripts/setup.sh --build-only, then
# scripts/build-module.sh against Debian's nginx-dev, so the module's binary
# signature matches the nginx of the runtime stage).

FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN bash scripts/setup.sh --build-only \
 && BUILD_DIR=/out scripts/build-module.sh

FROM debian:12
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        nginx ca-certificates libsecp256k1-1 libjansson4 libsimdjson14 libhiredis0.14 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ngx_http_x402_module.so /usr/lib/nginx/modules/ngx_http_x402_module.so
COPY conf-examples/ /etc/nginx/conf-examples/
COPY conf-examples/first-paid-location.conf /etc/nginx/nginx.conf
# the module loads into this nginx (a configuration without the example's
# upstream names, which would need DNS at build time)
RUN printf 'load_module modules/ngx_http_x402_module.so;\nevents {}\nhttp {}\n' \
        > /tmp/load.conf \
 && nginx -t -c /tmp/load.conf \
 && rm /tmp/load.conf \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
