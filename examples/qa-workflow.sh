#!/usr/bin/env bash
# Production data for QA, masked once, one private copy per tester.
#
#   REMOTE_URL=s3://dvol-demo/prod examples/qa-workflow.sh
#
# Two hosts, each a dvol root (on one machine for the demo):
# - production ($PROD_ROOT) runs PostgreSQL on a dvol volume and snapshots it with the command
#   the systemd timer runs (packaging/systemd/dvol-snapshot: commit --pause, push, prune, gc)
#   to a remote ($REMOTE_URL: s3://bucket/prefix on Garage or any S3, a path, ssh://, http://);
# - QA ($QA_ROOT, served by the dvol plugin $QA_DRIVER) pulls it, masks it once (PostgreSQL on
#   a private branch, a masking SQL script, committed as branch `masked`), gives each tester a
#   copy of the masked data, lets them reset it, and drops it.
#
# For s3:// remotes dvol reads AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY (and AWS_ALLOW_HTTP=true for plain http) from the environment.
# Needs root, Docker, the dvol plugin serving $QA_ROOT as driver $QA_DRIVER (default: `dvol`
# on /var/lib/dvol), and a PostgreSQL image ($PG_IMAGE, default dvol-test-postgres:15 from
# tests/images/build.sh; the official postgres:15 works with POSTGRES_HOST_AUTH_METHOD=trust).
# Production mounts its volume through $PROD_DRIVER when set (a plugin serving $PROD_ROOT, as on
# a real production host), else by binding its live directory (`dvol path`), which dvol treats
# the same (it pauses the container for the commit).
# The test tests/docker/qa.rs runs this script.
set -euo pipefail

: "${REMOTE_URL:?set REMOTE_URL to the remote production pushes to}"
DVOL=${DVOL:-dvol}
PROD_ROOT=${PROD_ROOT:-/var/lib/dvol-prod}
PROD_DRIVER=${PROD_DRIVER:-}
QA_ROOT=${QA_ROOT:-/var/lib/dvol}
QA_DRIVER=${QA_DRIVER:-dvol}
PG_IMAGE=${PG_IMAGE:-dvol-test-postgres:15}
NAME=${NAME:-shop}              # prefix of every volume and container of the demo
TESTERS=${TESTERS:-alice bob}
SNAPSHOT=${SNAPSHOT:-$(dirname "$0")/../packaging/systemd/dvol-snapshot}

prod() { "$DVOL" -p "$PROD_ROOT" "$@"; }
qa() { "$DVOL" -p "$QA_ROOT" "$@"; }
sql() { docker exec "$1" psql -U postgres -v ON_ERROR_STOP=1 -tAc "$2"; }
wait_ready() {
    for _ in $(seq 1 300); do
        docker exec "$1" pg_isready -U postgres -q 2>/dev/null && sql "$1" 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "PostgreSQL in $1 did not become ready" >&2; exit 1
}
# start_pg CONTAINER MOUNT-ARGS...: PostgreSQL with its data directory on the given mount.
start_pg() {
    local c=$1; shift
    docker run -d --name "$c" -e POSTGRES_HOST_AUTH_METHOD=trust "$@" "$PG_IMAGE" >/dev/null
    wait_ready "$c"
}
expect() {  # expect WHAT ACTUAL WANTED
    if [ "$2" != "$3" ]; then echo "FAILED: $1: got '$2', want '$3'" >&2; exit 1; fi
    echo "ok: $1 = $2"
}
step() { printf '\n== %s\n' "$*"; }
PGDATA=/var/lib/postgresql/data

step "production: PostgreSQL on dvol volume $NAME-prod"
prod init "$NAME-prod" >/dev/null
prod --volume "$NAME-prod" remote add origin "$REMOTE_URL"
if [ -n "$PROD_DRIVER" ]; then
    start_pg "$NAME-prod" --volume-driver "$PROD_DRIVER" -v "$NAME-prod:$PGDATA"
else
    start_pg "$NAME-prod" -v "$(prod path "$NAME-prod"):$PGDATA"
fi
sql "$NAME-prod" "create table customers(id int primary key, name text, email text, phone text, plan text)"
sql "$NAME-prod" "insert into customers values
    (1, 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0001', 'gold'),
    (2, 'Grace Hopper', 'grace@example.com', '+1 202 555 0102', 'silver'),
    (3, 'Alan Turing', 'alan@example.com', '+44 20 7946 0003', 'gold')"

step "production: the scheduled snapshot (what dvol-snapshot@$NAME-prod.timer runs)"
# /etc/dvol/snapshot-VOLUME.env would hold these settings.
snapshot() {
    VOLUME="$NAME-prod" REMOTE=origin KEEP_LAST=24 KEEP_DAILY=7 DVOL="$DVOL" DVOL_ROOT="$PROD_ROOT" \
        "$SNAPSHOT"
}
snapshot
wait_ready "$NAME-prod"
sql "$NAME-prod" "insert into customers values (4, 'Katherine Johnson', 'kj@example.com', '+1 757 555 0104', 'gold')"
snapshot    # an hour later
wait_ready "$NAME-prod"
prod --volume "$NAME-prod" log --oneline

step "QA: pull production's data (the remote-tracking data stays on the QA host only)"
qa clone "$REMOTE_URL" "$NAME-prod" "$NAME-qa"
qa --volume "$NAME-qa" log --oneline

step "QA: mask it once, on a private branch"
qa --volume "$NAME-qa" checkout -b masked
start_pg "$NAME-mask" --volume-driver "$QA_DRIVER" -v "$NAME-qa:$PGDATA"
expect "customers before masking" "$(sql "$NAME-mask" "select count(*) from customers")" 4
sql "$NAME-mask" "
    update customers set
        name  = 'Customer ' || id,
        email = 'customer' || id || '@example.invalid',
        phone = '+00 000 000 ' || lpad(id::text, 4, '0');
    checkpoint"
docker stop "$NAME-mask" >/dev/null
docker rm "$NAME-mask" >/dev/null
qa --volume "$NAME-qa" commit -m "masked: no personal data"
qa --volume "$NAME-qa" log --oneline

step "QA: one copy of the masked data per tester (shares storage, copies nothing)"
for t in $TESTERS; do
    docker volume create -d "$QA_DRIVER" -o "from=$NAME-qa@masked" "$NAME-$t" >/dev/null
    start_pg "$NAME-$t" --volume-driver "$QA_DRIVER" -v "$NAME-$t:$PGDATA"
    expect "$t sees personal emails" "$(sql "$NAME-$t" "select count(*) from customers where email not like '%@example.invalid'")" 0
    expect "$t sees customers" "$(sql "$NAME-$t" "select count(*) from customers")" 4
done

step "QA: testers change their copies, then reset them"
first=${TESTERS%% *}
sql "$NAME-$first" "delete from customers where plan = 'gold'"
expect "$first after deleting gold customers" "$(sql "$NAME-$first" "select count(*) from customers")" 1
for t in $TESTERS; do
    [ "$t" = "$first" ] && continue
    expect "$t is not affected" "$(sql "$NAME-$t" "select count(*) from customers")" 4
done
qa reset --volume "$NAME-$first" --hard HEAD     # dvol stops and restarts the container
wait_ready "$NAME-$first"
expect "$first after reset" "$(sql "$NAME-$first" "select count(*) from customers")" 4

step "QA: drop the testers' copies (docker volume rm keeps history; dvol rm deletes it)"
for t in $TESTERS; do
    docker rm -f "$NAME-$t" >/dev/null
    docker volume rm "$NAME-$t" >/dev/null
    qa rm -f "$NAME-$t"
done
qa list

step "production: done with the demo"
docker rm -f "$NAME-prod" >/dev/null
echo "QA workflow complete"
