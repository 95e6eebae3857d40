#!/bin/bash
# Benchmark of cluster mode (issue 15) on three Docker hosts on one machine (the cluster of
# tests/cluster/cluster-up.sh: the multihost fixture, a 3-member etcd, S3 on a 3-node Garage,
# the dvol plugin on every host). Prints two tables:
#
# 1. Moving a PostgreSQL volume on `docker node update --availability drain`: the first move
#    (the new host has nothing) and the move back after about 1% of the data changed (the old
#    host fetches what it lacks), from the drain to PostgreSQL answering on the new host, with
#    the bytes fetched; against a full copy of the same data directory (tar over TCP between
#    the two hosts' namespaces, the same bridge the remote is reached through).
#    The volume syncs in the background (-o sync-interval=20s) and the drain comes once a
#    sync after the load has finished, as an operator's drain would find it.
# 2. Data lost on a holder kill as a function of the sync interval: a client inserts numbered
#    rows one at a time, noting each acknowledged one and when; the holder is cut off (its
#    link down: a dead host, for the cluster); another host starts PostgreSQL on the volume
#    once the lease expired; lost = acknowledged rows missing there, and how many seconds of
#    acknowledged work they span.
# Clients run in containers of their own sharing the server's network (psql -h 127.0.0.1), as
# real clients connect, never `docker exec` into the server: background syncs pause the
# server's container, and an exec into it during a pause left it paused (unpause timed out).
#
# usage: examples/cluster-bench.sh DVOL_BINARY FIXTURE_DIR [PGBENCH_SCALE [INTERVALS]]
#   PGBENCH_SCALE: pgbench -i -s (default 68: about 1 GiB of data directory)
#   INTERVALS: sync intervals of part 2 in seconds (default "2 5 10")
# Needs root, Docker, etcd, garage, socat, the local image dvol-test-postgres:15 (tests/images/build.sh).
# A Mount waits up to 60 s for the lease (the plugin's default), as in production: the new
# host's Mount waits for the old host's final push rather than failing and being retried.
MOUNT_WAIT=60
. "$(dirname "$(readlink -f "$0")")/../tests/cluster/cluster-up.sh" "$1" "$2"
SCALE=${3:-68}
INTERVALS=${4:-2 5 10}
load_pg_image
# client NODE CID ARGS...: run ARGS in a client container on the network of container CID
client() { local n=${1#node} c=$2; shift 2; dk $n run --rm --network container:$c $PG "$@"; }
sql() { local n=$1 c=$2; shift 2; client "$n" "$c" psql -h 127.0.0.1 -U postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }
# answering NODE CID: wait until PostgreSQL in CID answers
answering() {
    for _ in $(seq 1 240); do sql "$1" "$2" -c 'select 1' >/dev/null 2>&1 && return 0; sleep 0.5; done
    fail "PostgreSQL in $2 on $1 did not answer"
}
# pg_task SERVICE NODE: the service's container there once PostgreSQL answers in it
pg_task() {
    local c
    for _ in $(seq 1 240); do c=$(task_of "$1" "$2"); [ -n "$c" ] && break; sleep 0.5; done
    [ -n "$c" ] || fail "no task of $1 on $2"
    answering "$2" "$c"; echo "$c"
}
# last_ms NODE VOLUME WHAT: the ms= of the last "cluster: WHAT" line of VOLUME on NODE
last_ms() { grep "cluster: $3 volume=\"$2\"" "$P/n${1#node}/dvol.log" | tail -1 | sed -n 's/.* ms=\([0-9]*\).*/\1/p'; }
pushes() { grep -c "cluster: pushed volume=\"$2\"" "$P/n$1/dvol.log" || true; }
# synced NODE VOLUME: wait until two more background pushes of VOLUME ended on NODE (the
# second one started after now)
synced() {
    local n0; n0=$(pushes "$1" "$2")
    for _ in $(seq 1 1200); do [ "$(pushes "$1" "$2")" -ge $((n0 + 2)) ] && return 0; sleep 0.5; done
    fail "no background sync of $2 on node$1"
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }

step "1. moving a PostgreSQL volume (pgbench scale $SCALE) on drain"
dk 1 service create -q --name pgb --no-resolve-image --constraint node.role==worker \
    --stop-grace-period 60s \
    --mount type=volume,source=pgbvol,target=/var/lib/postgresql/data,volume-driver=dvol,volume-opt=sync-interval=20s \
    $PG >/dev/null
a=$(runs_on pgb); cid=$(pg_task pgb "$a")
t=$(now)
client "$a" "$cid" pgbench -h 127.0.0.1 -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1 || fail "pgbench -i failed"
sql "$a" "$cid" -c checkpoint
echo "    pgbench -i -s $SCALE on $a: $(secs "$t" "$(now)") s"
synced ${a#node} pgbvol
live=$(dvol_on ${a#node} path pgbvol)
size=$(du -sb "$live" | cut -f1)

# the full copy: the data directory as tar over TCP from one host's namespace to the other's
b=$( [ "$a" = node2 ] && echo node3 || echo node2 )
sink=$P/copy; mkdir -p "$sink"
ip netns exec "$(ns ${b#node})" socat -u TCP-LISTEN:9000,reuseaddr STDOUT | tar -x -C "$sink" & rx=$!
sleep 0.5
t=$(now)
tar -C "$live" -cf - . | ip netns exec "$(ns ${a#node})" socat -u STDIN "TCP:$(ip_of ${b#node}):9000"
wait $rx
copy=$(secs "$t" "$(now)")
rm -rf "$sink"

# move FROM: drain FROM, the service answers elsewhere; prints "TO SECONDS BYTES PUSH_S MOUNT_S":
# drain to answering, bytes fetched, the old host's last push and the new host's Mount
move() {
    local from=$1 to before t took
    before=$(for n in 2 3; do fetched $n pgbvol; done | awk '{s+=$1} END {print s}')
    t=$(now)
    dk 1 node update --availability drain "$from" >/dev/null
    to=$(runs_on pgb "$from"); pg_task pgb "$to" >/dev/null
    took=$(secs "$t" "$(now)")
    echo "$to $took $(( $(for n in 2 3; do fetched $n pgbvol; done | awk '{s+=$1} END {print s}') - before ))" \
        "$(awk -v m="$(last_ms "$from" pgbvol pushed)" 'BEGIN {printf "%.1f", m / 1000}')" \
        "$(awk -v m="$(last_ms "$to" pgbvol mounted)" 'BEGIN {printf "%.1f", m / 1000}')"
}
read -r b first first_bytes first_push first_mount <<<"$(move "$a")"
# about 1% of the data changed: 1% of the accounts rows, one contiguous range
cid=$(pg_task pgb "$b")
rows=$((SCALE * 1000))
sql "$b" "$cid" -c "update pgbench_accounts set abalance = abalance + 1 where aid <= $rows" >/dev/null
sql "$b" "$cid" -c checkpoint
synced ${b#node} pgbvol
dk 1 node update --availability active "$a" >/dev/null
read -r back second second_bytes second_push second_mount <<<"$(move "$b")"
[ "$back" = "$a" ] || fail "the service went to $back, not back to $a"
dk 1 service rm pgb >/dev/null
dk 1 node update --availability active "$b" >/dev/null
echo
echo "| move (scale $SCALE, data directory $(mib "$size") MiB) | drain to answering, s | of which: last push, s | Mount, s | MiB fetched |"
echo "|---|---|---|---|---|"
echo "| dvol, first move ($a -> $b) | $first | $first_push | $first_mount | $(mib "$first_bytes") |"
echo "| dvol, move back after 1% changed ($b -> $a) | $second | $second_push | $second_mount | $(mib "$second_bytes") |"
echo "| full copy (tar over TCP, $a -> $b) | | | $copy | $(mib "$size") |"
echo

step "2. data lost on a holder kill, by sync interval"
echo "| sync interval | acknowledged | lost rows | lost seconds of acknowledged work |"
echo "|---|---|---|---|"
for iv in $INTERVALS; do
    vol=kill$iv
    dk 2 volume create -d dvol -o sync-interval=${iv}s $vol >/dev/null
    c2=$(dk 2 run -d $DV -v $vol:/var/lib/postgresql/data $PG)
    answering node2 "$c2"
    sql node2 "$c2" -c 'create table acks (i int primary key)'
    # the client: one numbered row per transaction, each acknowledged one printed with its time
    ack=$(dk 2 run -d --network container:$c2 $PG sh -c 'i=1; while psql -h 127.0.0.1 -U postgres -qAtX -c "insert into acks values ($i)" >/dev/null; do echo "$i $(date +%s.%N)"; i=$((i + 1)); done')
    sleep $((3 * iv + 5))
    killed=$(now)
    ip -n spx-n2 link set eth0 down
    # acknowledged before the kill (the host is dead from then on, for the cluster)
    dk 2 logs "$ack" 2>/dev/null | awk -v k="$killed" '$2 < k' > "$P/acked$iv"
    c3=""
    for _ in $(seq 1 60); do
        c3=$(dk 3 run -d $DV -v $vol:/var/lib/postgresql/data $PG 2>/dev/null) && break
        sleep 1
    done
    [ -n "$c3" ] || fail "node3 never got $vol"
    answering node3 "$c3"
    found=$(sql node3 "$c3" -c 'select coalesce(max(i), 0) from acks')
    acked=$(wc -l < "$P/acked$iv")
    lost=$(( acked > found ? acked - found : 0 ))
    first_lost=$(awk -v f="$found" '$1 == f + 1 {print $2}' "$P/acked$iv")
    span=$( [ "$lost" -gt 0 ] && secs "$first_lost" "$killed" || echo 0 )
    echo "| ${iv} s | $acked | $lost | $span |"
    ip -n spx-n2 link set eth0 up
    dk 3 rm -f "$c3" >/dev/null
    dk 2 rm -f "$ack" "$c2" >/dev/null 2>&1 || true
done
echo "done in ${SECONDS}s"
