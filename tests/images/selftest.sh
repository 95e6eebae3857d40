#!/usr/bin/env bash
# Smoke-test the images built by tests/images/build.sh (takes ~15 s):
#   - busybox: `sh -c 'echo ok'`
#   - postgres: named volume, create/insert/select, graceful `docker stop`,
#     start again, rows still there and no crash recovery in the log.
# Skips the postgres part when DVOL_SKIP_PG_IMAGE=1.
set -euo pipefail

tag="dvol-selftest-$$"
log() { printf '[selftest %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
cleanup() {
    docker rm -f "$tag" >/dev/null 2>&1 || true
    docker volume rm -f "$tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT

out=$(docker run --rm dvol-test-busybox:latest sh -c 'echo ok')
[ "$out" = ok ] || { log "busybox: FAILED (got '$out')"; exit 1; }
log "busybox: ok"

[ "${DVOL_SKIP_PG_IMAGE:-0}" = 1 ] && { log "postgres: skipped"; exit 0; }

wait_ready() {
    local _
    for _ in $(seq 1 120); do
        docker exec "$tag" pg_isready -U postgres -q 2>/dev/null && return 0
        sleep 0.5
    done
    docker logs "$tag" >&2
    log "postgres: not ready after 60s"
    return 1
}
psql_() { docker exec "$tag" psql -U postgres -v ON_ERROR_STOP=1 -tA "$@"; }

docker volume create "$tag" >/dev/null
docker run -d --name "$tag" -v "$tag:/var/lib/postgresql/data" dvol-test-postgres:15 >/dev/null
wait_ready
psql_ -c 'CREATE TABLE t (id int PRIMARY KEY, v text)' \
      -c "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g" >/dev/null
[ "$(psql_ -c 'SELECT count(*) FROM t')" = 1000 ] || { log "postgres: insert FAILED"; exit 1; }
docker exec -d "$tag" psql -U postgres -c 'SELECT pg_sleep(300)'  # an open session
sleep 0.5
s=$(date +%s)
docker stop -t 30 "$tag" >/dev/null
log "postgres: docker stop took $(( $(date +%s) - s ))s"
docker logs "$tag" 2>&1 | grep -q 'database system is shut down' ||
    { docker logs "$tag" >&2; log "postgres: no clean shutdown"; exit 1; }
docker start "$tag" >/dev/null
wait_ready
[ "$(psql_ -c 'SELECT count(*), sum(id) FROM t')" = "1000|500500" ] ||
    { log "postgres: rows lost after restart"; exit 1; }
if docker logs "$tag" 2>&1 | grep -q 'not properly shut down'; then
    log "postgres: crash recovery after docker stop"; exit 1
fi
docker stop "$tag" >/dev/null
log "postgres: ok (persisted across graceful stop/start)"
