#!/usr/bin/env bash
# The dvol workflow on a real PostgreSQL: commit, break things, reset; branch and switch.
#
#   examples/postgres-workflow.sh
#
# Needs root, a running dvol plugin (driver $DVOL_DRIVER, default `dvol`: the systemd unit,
# the managed plugin as `dvol:latest`, or `dvol plugin serve &`) and a PostgreSQL image
# ($PG_IMAGE, default the local dvol-test-postgres:15 built by tests/images/build.sh; the
# official postgres:15 works too with POSTGRES_HOST_AUTH_METHOD=trust).
# The same steps run as the test tests/docker/postgres.rs.
set -euo pipefail

DRIVER=${DVOL_DRIVER:-dvol}
IMAGE=${PG_IMAGE:-dvol-test-postgres:15}
VOL=${VOL:-pgdemo}
CTR=${CTR:-pgdemo}

psql() { docker exec "$CTR" psql -U postgres -v ON_ERROR_STOP=1 -tAc "$1"; }
wait_ready() {
    for _ in $(seq 1 300); do
        docker exec "$CTR" pg_isready -U postgres -q 2>/dev/null && psql 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "postgres did not become ready" >&2; exit 1
}
step() { printf '\n== %s\n' "$*"; }

step "start PostgreSQL on dvol volume $VOL (created implicitly by the plugin)"
docker run -d --name "$CTR" --volume-driver "$DRIVER" -e POSTGRES_HOST_AUTH_METHOD=trust \
    -v "$VOL:/var/lib/postgresql/data" "$IMAGE" >/dev/null
wait_ready
psql "create table t(x text); insert into t values ('a'), ('b')"

step "commit (dvol stops the container so PostgreSQL shuts down cleanly, then starts it)"
dvol commit --volume "$VOL" -m "two rows"
wait_ready

step "insert more rows, then throw them away"
psql "insert into t values ('c'), ('d')"
echo "rows: $(psql "select string_agg(x, ',' order by x) from t")"
dvol reset --volume "$VOL" --hard HEAD
wait_ready
echo "rows after reset: $(psql "select string_agg(x, ',' order by x) from t")"   # a,b

step "branch: each branch has its own rows"
dvol checkout --volume "$VOL" -b experiment
wait_ready
psql "insert into t values ('experiment-only')"
dvol commit --volume "$VOL" -m "experiment row"
dvol checkout --volume "$VOL" master
wait_ready
echo "master:     $(psql "select string_agg(x, ',' order by x) from t")"        # a,b
dvol checkout --volume "$VOL" experiment
wait_ready
echo "experiment: $(psql "select string_agg(x, ',' order by x) from t")"        # a,b,experiment-only

step "give QA a copy of the experiment (shares storage, copies nothing)"
docker volume create -d "$DRIVER" -o "from=$VOL@experiment" "${VOL}-qa"
dvol list

step "clean up (docker volume rm keeps dvol history; dvol rm deletes it)"
docker rm -f "$CTR" >/dev/null
docker volume rm "$VOL" "${VOL}-qa"
dvol rm -f "$VOL"
dvol rm -f "${VOL}-qa"
