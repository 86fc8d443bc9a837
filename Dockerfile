# Torrix image: Debian's nginx with ngx_torrix_module, and torrix-cp.
# Reviewed, not built here (no Docker engine on the development machines).
#
#   docker build -t torrix .
#   docker compose up        (see compose.yaml: gateway + control plane)

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config nginx nginx-dev liblmdb-dev libcjson-dev \
      libsodium-dev libcurl4-openssl-dev libssl-dev libmicrohttpd-dev \
      libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# the module's flags are build.sh's (build(): -O3, LTO, -Bsymbolic)
RUN make -j"$(nproc)" all \
 && mkdir -p build/nginx-src && cp -r /usr/share/nginx/src/. build/nginx-src/ \
 && cd build/nginx-src && . ./conf_flags \
 && ./configure \
      --with-cc-opt="-O3 -fPIC -fno-semantic-interposition -flto=auto" \
      --with-ld-opt="-fPIC -O3 -flto=auto -Wl,-Bsymbolic" \
      "${NGX_CONF_FLAGS[@]}" --add-dynamic-module=/src/ngx_torrix_module \
      --builddir=/src/build/nginx \
 && make -f /src/build/nginx/Makefile modules

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nginx liblmdb0 libcjson1 libsodium23 libcurl4 libssl3 \
      libmicrohttpd12 libyaml-0-2 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system torrix \
 && useradd --system --gid torrix --home /var/lib/torrix --shell /usr/sbin/nologin torrix \
 && mkdir -p /var/lib/torrix /run/torrix \
 && chown -R torrix:torrix /var/lib/torrix /run/torrix /var/lib/nginx /var/log/nginx
COPY --from=build /src/build/nginx/ngx_http_torrix_module.so /usr/lib/nginx/modules/
COPY --from=build /src/build/torrix-cp /usr/local/bin/torrix-cp
COPY conf/torrix_proxy.conf /etc/nginx/torrix_proxy.conf
COPY conf/torrix_fallback.conf /etc/nginx/torrix_fallback.conf
COPY docker/nginx.conf /etc/nginx/nginx.conf
COPY docker/entrypoint.sh /usr/local/bin/torrix-entrypoint
USER torrix
VOLUME ["/var/lib/torrix"]
EXPOSE 8088
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/torrix-entrypoint"]
CMD ["all"]
