#!/usr/bin/env bash
# Torrix build and run script (Debian 12).
#
#   ./build.sh run          install deps, build, run on 127.0.0.1:$TORRIX_PORT
#   ./build.sh test         install deps, build, run every test (plain and
#                           under ASan+UBSan)
#   ./build.sh test --asan  only the sanitizer pass; --plain only the plain one
#   ./build.sh build        install deps and build
#   ./build.sh fuzz [SECS]  build and run the libFuzzer harnesses
#   ./build.sh bench [--duration S] [--quick] [--workers N|auto] [--peers]
#                           side-by-side benchmark: mock, plain nginx, Torrix
#   ./build.sh bench --scale [--duration S] [--quick]
#                           scale figures: 10 vs 1,000,000 keys (bench/scale.py)
#   ./build.sh bench --instr
#                           instructions per request under callgrind
#                           (bench/instr.py; installs valgrind if missing)
#
# Environment: TORRIX_PORT (8088), TORRIX_CP_PORT (8089), TORRIX_DATA
# (./data), and the providers' own OPENAI_API_KEY, OPENAI_BASE_URL,
# ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, OLLAMA_BASE_URL.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

DEB_PKGS=(nginx nginx-dev liblmdb-dev lmdb-utils libcjson-dev libsodium-dev
          libcurl4-openssl-dev libssl-dev libmicrohttpd-dev build-essential
          pkg-config libcmocka-dev python3 python3-pytest python3-requests
          clang libclang-rt-14-dev ca-certificates curl procps wrk
          libyaml-dev)

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

deps() {
    local missing=()
    for p in "${DEB_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# build_module BUILDDIR CC_OPT LD_OPT: the dynamic module against the host's
# nginx, configured with Debian's own flags (so --with-compat matches).
build_module() {
    local bdir=$1 ccopt=$2 ldopt=$3 src="$ROOT/$1/nginx-src"
    if [ ! -f "$src/configure" ]; then
        mkdir -p "$src"
        cp -r /usr/share/nginx/src/. "$src/"
    fi
    local stamp="$ROOT/$bdir/nginx/.configured"
    local want="$ccopt|$ldopt|$(cat ngx_torrix_module/config)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "configure nginx module ($bdir)"
        (cd "$src" && . ./conf_flags \
            && ./configure --with-cc-opt="$ccopt" --with-ld-opt="$ldopt" \
                "${NGX_CONF_FLAGS[@]}" \
                --add-dynamic-module="$ROOT/ngx_torrix_module" \
                --builddir="$ROOT/$bdir/nginx" >"$ROOT/$bdir/configure.log" 2>&1) \
            || { tail -30 "$ROOT/$bdir/configure.log"; exit 1; }
        printf '%s' "$want" >"$stamp"
    fi
    make -s -f "$ROOT/$bdir/nginx/Makefile" -C "$src" modules
}

# build plain|asan [test]: "test" compiles the module's test hooks (the
# injectable clock, NGX_TORRIX_TEST_HOOKS); production builds never have them
build() {
    local mode=${1:-plain} hooks=""
    [ "${2:-}" = test ] && hooks=" -DNGX_TORRIX_TEST_HOOKS=1"
    if [ "$mode" = asan ]; then
        log "build (ASan+UBSan) into build-asan/"
        make -s -j2 SAN=1 BUILD=build-asan all
        build_module build-asan \
            "-g -O1 -fPIC -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined$hooks" \
            "-fPIC -fsanitize=address,undefined"
    else
        log "build into build/"
        make -s -j2 all
        # The module is built with -O3 and link-time optimisation across
        # its files, so the shared tx_ helpers inline into the phase
        # handlers. -Bsymbolic binds its calls to its own functions at
        # link time, so they skip the PLT. Together these run 9% fewer of
        # the module's instructions per request than -O2 (bench/instr.py,
        # README "Performance"). The Dockerfile repeats these flags.
        build_module build \
            "-g -O3 -fPIC -fno-semantic-interposition -flto=auto$hooks" \
            "-fPIC -O3 -flto=auto -Wl,-Bsymbolic"
    fi
}

run_tests() {
    local mode=$1 rc=0
    if [ "$mode" = asan ]; then
        log "unit tests (ASan+UBSan)"
        make -s SAN=1 BUILD=build-asan unit || rc=1
        log "integration tests (ASan+UBSan)"
        TORRIX_BUILD=build-asan TORRIX_ASAN=1 \
            /usr/bin/python3 -m pytest t/ -q -p no:cacheprovider || rc=1
    else
        log "unit tests"
        make -s unit || rc=1
        log "integration tests"
        TORRIX_BUILD=build /usr/bin/python3 -m pytest t/ -q \
            -p no:cacheprovider || rc=1
    fi
    return $rc
}

cmd_test() {
    local modes=(plain asan) rc=0
    case "${1:-}" in
        --asan) modes=(asan) ;;
        --plain) modes=(plain) ;;
        "") ;;
        *) echo "usage: $0 test [--asan|--plain]" >&2; exit 2 ;;
    esac
    deps
    for m in "${modes[@]}"; do build "$m" test; done
    for m in "${modes[@]}"; do run_tests "$m" || rc=1; done
    if [ $rc -eq 0 ]; then log "all tests passed"; else log "TESTS FAILED"; fi
    return $rc
}

cmd_fuzz() {
    local secs=${1:-60}
    deps
    make -s fuzz
    for f in build-fuzz/fuzz_*; do
        local name corpus seeds opts
        name=$(basename "$f")
        corpus="build-fuzz/corpus-$name"
        seeds="shared/fuzz/corpus/${name#fuzz_}"
        [ -d "$seeds" ] || seeds="control-plane/fuzz/corpus/${name#fuzz_}"
        opts=()
        # libyaml is slow on long inputs: keep the agents files short
        [ "$name" = fuzz_agents ] && opts=(-max_len=4096)
        mkdir -p "$corpus"
        log "$name for ${secs}s"
        "$f" -max_total_time="$secs" -print_final_stats=1 "${opts[@]}" \
            "$corpus" "$seeds" 2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' || true
    done
}

# upstream{} blocks (keepalive pools) for the providers' hosts, from the same
# environment torrix-cp reads; a host that does not resolve here is left to
# nginx's resolver at request time instead of failing the configuration
upstream_blocks() {
    local n=0 url hostport host port
    for url in "${OPENAI_BASE_URL:-https://api.openai.com/v1}" \
               "${ANTHROPIC_BASE_URL:-https://api.anthropic.com}" \
               "${OLLAMA_BASE_URL:-http://localhost:11434}"; do
        hostport=${url#*://}
        hostport=${hostport%%/*}
        host=${hostport%:*}
        port=${hostport##*:}
        if [ "$port" = "$hostport" ]; then
            case "$url" in https://*) port=443 ;; *) port=80 ;; esac
        fi
        getent hosts "$host" >/dev/null 2>&1 || continue
        n=$((n + 1))
        printf '    upstream torrix_provider_%d { server %s:%s; keepalive 32; }\n' \
            "$n" "$host" "$port"
    done
}

cmd_run() {
    deps
    build plain
    local port=${TORRIX_PORT:-8088} cpport=${TORRIX_CP_PORT:-8089}
    local data=${TORRIX_DATA:-$ROOT/data}
    mkdir -p "$data"
    data=$(cd "$data" && pwd)
    local rundir="$data/run"
    mkdir -p "$rundir/logs" "$rundir/tmp"

    local user_line=""
    [ "$(id -u)" -eq 0 ] && user_line="user root;"

    cat >"$rundir/nginx.conf" <<EOF
# generated by ./build.sh run
$user_line
load_module $ROOT/build/nginx/ngx_http_torrix_module.so;
worker_processes  2;
pid               $rundir/nginx.pid;
error_log         $rundir/logs/error.log notice;
daemon            off;

events { worker_connections 1024; }

http {
    access_log             $rundir/logs/access.log;
    client_body_temp_path  $rundir/tmp/body;
    proxy_temp_path        $rundir/tmp/proxy;
    fastcgi_temp_path      $rundir/tmp/fastcgi;
    uwsgi_temp_path        $rundir/tmp/uwsgi;
    scgi_temp_path         $rundir/tmp/scgi;

    torrix_snapshot  $data/snapshot;
    torrix_spool     $data/spool size=8m rotate=10s;

$(upstream_blocks)
    upstream torrix_cp        { server 127.0.0.1:$cpport;     keepalive 8; }

    resolver $(awk '/^nameserver/ { print $2; exit }' /etc/resolv.conf 2>/dev/null || echo 127.0.0.53) ipv6=off;

    server {
        listen  127.0.0.1:$port;

        location /v1/ {
            torrix                on;
            torrix_max_body_size  4m;
            torrix_fallback       @torrix_fallback;
            include               $ROOT/conf/torrix_proxy.conf;
        }

        location @torrix_fallback {
            torrix                on;
            torrix_max_body_size  4m;
            include               $ROOT/conf/torrix_proxy.conf;
            include               $ROOT/conf/torrix_fallback.conf;
        }

        location = /proxy {
            torrix                on;
            include               $ROOT/conf/torrix_proxy.conf;
        }

        location /api/ {
            proxy_pass            http://torrix_cp;
            proxy_http_version    1.1;
            proxy_set_header      Connection "";
            client_max_body_size  1m;
        }

        location = / {
            return 200 "Torrix gateway. API: /api/v1, OpenAI: /v1, Anthropic: /v1/messages\n";
        }
    }
}
EOF

    log "torrix-cp on 127.0.0.1:$cpport, data in $data"
    "$ROOT/build/torrix-cp" --data "$data" --listen "127.0.0.1:$cpport" \
        --foreground &
    local cppid=$!

    local i
    for i in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$cpport/api/v1/health" >/dev/null 2>&1 && break
        kill -0 $cppid 2>/dev/null || { echo "torrix-cp exited" >&2; exit 1; }
        sleep 0.1
    done

    log "nginx on http://127.0.0.1:$port (admin key in $data/admin.key; Ctrl-C stops)"
    /usr/sbin/nginx -p "$rundir" -c "$rundir/nginx.conf" -e "$rundir/logs/error.log" &
    local ngxpid=$!

    stop() {
        trap - INT TERM
        log "stopping"
        kill -QUIT $ngxpid 2>/dev/null || true
        kill -TERM $cppid 2>/dev/null || true
        wait $ngxpid 2>/dev/null || true
        wait $cppid 2>/dev/null || true
        exit 0
    }
    trap stop INT TERM
    wait -n $ngxpid $cppid || true
    stop
}

case "${1:-}" in
    run)   shift; cmd_run "$@" ;;
    test)  shift; cmd_test "$@" ;;
    build) shift; deps; build plain ;;
    fuzz)  shift; cmd_fuzz "$@" ;;
    bench) shift; deps; build plain; /usr/bin/python3 bench/bench.py "$@" ;;
    *) echo "usage: $0 run|test [--asan|--plain]|build|fuzz [SECONDS]|bench" >&2; exit 2 ;;
esac
