#!/bin/sh
# Entrypoint of the local dvol-test-postgres:15 image (see tests/images/build.sh).
#
# - If started as root: make PGDATA (and the socket dir) belong to postgres with
#   mode 0700, then re-exec itself as postgres via setpriv.
# - As postgres: run initdb if PGDATA holds no cluster yet (trust auth for
#   local and host connections: this is a throw-away test server), then exec
#   the server.  `docker stop` sends SIGTERM, which postgres treats as a
#   *smart* shutdown (waits for all clients to disconnect, so an open session
#   would make docker SIGKILL it after the timeout).  `docker import` of
#   Docker 20.10 cannot set STOPSIGNAL, so this script stays PID 1 and turns
#   SIGTERM/SIGINT into SIGINT (= fast shutdown: clean checkpoint, no
#   crash recovery on the next start).  SIGQUIT is passed on (immediate).
#
# Env: PGDATA (default /var/lib/postgresql/data), POSTGRES_DB (optional extra
# database created on first init).
# Args: none or options starting with '-' -> passed to postgres; anything else
# is exec'ed as a command (e.g. `docker run ... dvol-test-postgres:15 psql --version`).
set -eu

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    # Only chown what is not already right (cheap on a big restored volume).
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chown postgres:postgres /run/postgresql
    chmod 0700 "$PGDATA"
    chmod 2775 /run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "dvol-pg-entrypoint: initialising new cluster in $PGDATA" >&2
    initdb -D "$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=trust >&2
    printf '%s\n' 'host all all all trust' >>"$PGDATA/pg_hba.conf"
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        echo "CREATE DATABASE \"$POSTGRES_DB\";" |
            postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi

postgres -D "$PGDATA" -c listen_addresses='*' "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || true' TERM INT
trap 'kill -QUIT "$pid" 2>/dev/null || true' QUIT
set +e
wait "$pid"
rc=$?
# `wait` returns early when a trapped signal arrives: keep waiting for postgres.
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid"
    rc=$?
done
exit "$rc"
