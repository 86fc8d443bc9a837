#!/bin/sh
# Starts torrix-cp, nginx with the module, or both (default), as the
# unprivileged torrix user, data in /var/lib/torrix (a volume).
set -eu
DATA=/var/lib/torrix
case "${1:-all}" in
  cp)
    exec torrix-cp --data "$DATA" --listen "${TORRIX_CP_LISTEN:-0.0.0.0:8089}" --foreground ;;
  gateway)
    exec nginx -g 'daemon off;' ;;
  all)
    torrix-cp --data "$DATA" --listen 127.0.0.1:8089 --foreground &
    cp=$!
    i=0
    while [ ! -f "$DATA/snapshot/data.mdb" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    nginx -g 'daemon off;' &
    ngx=$!
    trap 'kill -QUIT $ngx; kill -TERM $cp' INT TERM
    wait $ngx $cp ;;
  *) exec "$@" ;;
esac
