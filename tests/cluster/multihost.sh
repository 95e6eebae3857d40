#!/bin/bash
# End-to-end test of cluster mode (issue 15) on three Docker hosts, the cluster brought up by
# cluster-up.sh (the multihost fixture, etcd, Garage or dvol serve, the dvol plugins).
#
# usage: multihost.sh DVOL_BINARY FIXTURE_DIR
# Exit 0 = every scenario passed; the failing check is named on stderr otherwise.
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/cluster-up.sh" "$@"

step "1. a volume created on node1 runs on node2 with its data, moved through the remote"
dk 1 volume create -d dvol -o sync-interval=2s data1 >/dev/null
dk 1 run --rm $DV -v data1:/data $IMG sh -c 'echo from-node1 > /data/f; head -c 1048576 /dev/urandom > /data/blob'
dk 2 volume ls -q | grep -qx data1 || fail "node2 does not list data1"
dk 3 volume ls -q | grep -qx data1 || fail "node3 does not list data1"
got=$(dk 2 run --rm $DV -v data1:/data $IMG sh -c 'cat /data/f; wc -c < /data/blob')
[ "$got" = "$(printf 'from-node1\n1048576')" ] || fail "node2 read [$got] from data1"
bytes=$(fetched 2 data1)
[ "$bytes" -ge 1000000 ] && [ "$bytes" -lt 1200000 ] || fail "node2 fetched $bytes bytes for data1 (expected about 1 MiB, once)"
# back on node1: only what it lacks (nothing: node2 changed nothing)
before=$(fetched 1 data1)
dk 1 run --rm $DV -v data1:/data $IMG cat /data/f >/dev/null
bytes=$(( $(fetched 1 data1) - before ))
[ "$bytes" -lt 100000 ] || fail "node1 fetched $bytes bytes moving data1 back unchanged"

step "2. fencing: another host's Mount and CLI are refused with the holder's name"
cid=$(dk 1 run -d $DV -v data1:/data $IMG sleep 600)
for _ in $(seq 1 20); do [ "$(etcd_get dvol/v1/holders/data1 | grep -c node1)" = 1 ] && break; sleep 0.25; done
if out=$(dk 2 run --rm $DV -v data1:/data $IMG true 2>&1); then fail "node2 mounted data1 while node1 holds it"; fi
echo "$out" | grep -q "in use on host node1" || fail "node2's refused mount does not name node1: $out"
if out=$(dvol_on 2 --volume data1 commit -m x 2>&1); then fail "dvol commit on node2 moved data1's head"; fi
echo "$out" | grep -q "held by host node1" || fail "node2's refused commit does not name node1: $out"
dvol_on 2 list | grep -E '^ *data1 .*node1' >/dev/null || fail "dvol list on node2 does not show node1 holding data1"
if out=$(dvol_on 2 --volume data1 pull cluster-node1 2>&1); then fail "dvol pull on node2 moved data1's head"; fi
echo "$out" | grep -q "held by host node1" || fail "node2's refused pull does not name node1: $out"
# lag: node1 is at the cluster head; node3 never mounted data1, so it is behind every head move
lag_of() { dvol_on $1 list --json | python3 -c "import json,sys; print([v['lag'] for v in json.load(sys.stdin) if v['name']=='$2'][0])"; }
[ "$(lag_of 1 data1)" = 0 ] || fail "dvol list on node1 shows data1 lagging ($(lag_of 1 data1)) at the cluster head"
[ "$(lag_of 3 data1)" -ge 1 ] || fail "dvol list on node3 shows no lag for data1 it never fetched"
dvol_on 3 list | grep -E '^ *data1 .*node1 +[1-9]' >/dev/null || fail "dvol list on node3 shows no LAG column: $(dvol_on 3 list)"
dvol_on 1 --volume data1 log >/dev/null
dk 1 rm -f "$cid" >/dev/null

step "2b. -o from=: a cluster volume made from another's cluster head, mountable on any host"
dk 3 volume create -d dvol -o from=data1 copy1 >/dev/null
got=$(dk 2 run --rm $DV -v copy1:/data $IMG sh -c 'cat /data/f; wc -c < /data/blob')
[ "$got" = "$(printf 'from-node1\n1048576')" ] || fail "node2 read [$got] from copy1, made from data1 on node3"
if out=$(dk 3 volume create -d dvol -o from=nosuch copy2 2>&1); then fail "node3 made copy2 from a volume that does not exist"; fi
echo "$out" | grep -q "nosuch is not a cluster volume" || fail "the refused -o from=nosuch does not say why: $out"

step "3. two hosts race for one lease: exactly one wins, every round"
dk 1 volume create -d dvol race >/dev/null
for round in 1 2 3 4 5; do
    dk 1 run --rm $DV -v race:/data $IMG sh -c 'sleep 4' >"$P/race1" 2>&1 & a=$!
    dk 2 run --rm $DV -v race:/data $IMG sh -c 'sleep 4' >"$P/race2" 2>&1 & b=$!
    wins=0; wait $a && wins=$((wins+1)); wait $b && wins=$((wins+1))
    [ $wins = 1 ] || fail "race round $round: $wins winners ($(cat "$P/race1" "$P/race2"))"
    grep -qh "in use on host node" "$P/race1" "$P/race2" || fail "race round $round: the loser's error names no holder"
done

step "3b. Unmount then Mount on one host keeps the lease (grace); another host asking ends the grace"
dk 1 volume create -d dvol churn >/dev/null
cid=$(dk 1 run -d $DV -v churn:/data $IMG sh -c 'trap "exit 0" TERM; echo kept > /data/f; while true; do sleep 0.2 & wait; done')
dk 1 restart -t 5 "$cid" >/dev/null
dk 1 restart -t 5 "$cid" >/dev/null
dk 1 rm -f "$cid" >/dev/null
taken=$(grep -c 'cluster: lease taken volume="churn"' "$P/n1/dvol.log" || true)
[ "$taken" = 1 ] || fail "node1 took churn's lease $taken times across two restarts (expected once)"
grep -q 'cluster: mounted again; kept the lease, nothing fetched volume="churn"' "$P/n1/dvol.log" || fail "node1 did not keep churn's lease through a restart"
# node1 still holds churn in its grace (10 s), node2's Mount waits at most 3 s: it gets it only
# because node1 lets go when asked
got=$(dk 2 run --rm $DV -v churn:/data $IMG cat /data/f 2>&1) || fail "node2 could not take churn from node1 in its grace: $got"
[ "$got" = kept ] || fail "node2 read [$got] from churn"

step "3c. a failed final push keeps the lease on the host with the data; a retry finishes it"
dk 1 volume create -d dvol -o sync-interval=600s fp >/dev/null
cid=$(dk 1 run -d $DV -v fp:/data $IMG sh -c 'echo final > /data/f; sleep 600')
for _ in $(seq 1 40); do [ "$(dk 1 exec "$cid" cat /data/f 2>/dev/null)" = final ] && break; sleep 0.25; done
stop_remote 1
dk 1 rm -f "$cid" >/dev/null
grep -q 'cluster: final push failed, lease kept.*volume="fp"' "$P/n1/dvol.log" || fail "node1's Unmount of fp did not report its failed final push"
etcd_get dvol/v1/holders/fp | grep -q node1 || fail "node1 released fp although its final push failed"
if out=$(dk 2 run --rm $DV -v fp:/data $IMG true 2>&1); then fail "node2 mounted fp before node1 pushed it"; fi
echo "$out" | grep -q "in use on host node1" || fail "node2's refused mount of fp does not name node1: $out"
start_remote 1
got=""
for _ in $(seq 1 20); do got=$(dk 2 run --rm $DV -v fp:/data $IMG cat /data/f 2>/dev/null) && break; sleep 1; done
[ "$got" = final ] || fail "node2 read [$got] from fp after node1's push was retried"
grep -q 'cluster: final push done on a retry volume="fp"' "$P/n1/dvol.log" || fail "node1 did not report the retried push of fp"

step "3d. a restarted plugin takes back the leases it held"
dk 1 volume create -d dvol rs >/dev/null
cid=$(dk 1 run -d $DV -v rs:/data $IMG sh -c 'echo before > /data/r; sleep 600')
for _ in $(seq 1 20); do etcd_get dvol/v1/holders/rs | grep -q node1 && break; sleep 0.25; done
holder=$(etcd_get dvol/v1/holders/rs)
echo "$holder" | grep -q node1 || fail "node1 does not hold rs"
kill -KILL "${plugin_pid[1]}"
start_plugin 1; wait_plugin 1
grep -q 'cluster: took back its lease after a plugin restart volume="rs"' "$P/n1/dvol.log" || fail "the restarted plugin did not take back rs"
dk 1 exec "$cid" sh -c 'echo after > /data/r'
sleep $((TTL + 1))
[ "$(etcd_get dvol/v1/holders/rs)" = "$holder" ] || fail "node1's lease on rs did not outlive its TTL after the restart"
dk 1 rm -f "$cid" >/dev/null
got=$(dk 2 run --rm $DV -v rs:/data $IMG cat /data/r 2>&1) || fail "node2 could not mount rs: $got"
[ "$got" = after ] || fail "node2 read [$got] from rs: the restarted plugin lost what was written after the restart"

step "3e. the lease outlives a transfer longer than its TTL (Mount's data, Unmount's push); a Mount past its timeout fails clearly"
# node3's plugin again, held by the test where Mount brings the data and where a publication
# pushes (each pause stands for a slow transfer), with a Mount timeout of 8 s
dk 1 volume create -d dvol -o sync-interval=600s slow >/dev/null
dk 1 run --rm $DV -v slow:/data $IMG sh -c 'echo slow > /data/f; head -c 1048576 /dev/urandom > /data/blob'
PAUSE=$P/pause3
restart_plugin 3 DVOL_FAILPOINT_PAUSE=cluster.bring,cluster.publish DVOL_FAILPOINT_PAUSE_FILE=$PAUSE -- --cluster-mount-timeout 8
held_at() { for _ in $(seq 1 80); do [ -e "$PAUSE" ] && return 0; sleep 0.25; done; fail "$1"; }
taken3() { grep -c 'cluster: lease taken volume="slow"' "$P/n3/dvol.log" || true; }
t0=$SECONDS
dk 3 run --rm $DV -v slow:/data $IMG cat /data/f >"$P/slow1" 2>&1 & m=$!
held_at "node3's Mount of slow never reached its transfer"
holder=$(etcd_get dvol/v1/holders/slow)
echo "$holder" | grep -q node3 || fail "node3 does not hold slow while bringing its data: [$holder]"
if wait $m; then fail "node3's Mount of slow succeeded while its data was held back"; fi
waited=$((SECONDS - t0))
grep -q "slow: its data did not arrive on host node3 within [0-9]*s; the transfer goes on" "$P/slow1" || fail "node3's Mount of slow did not fail saying the transfer goes on: $(cat "$P/slow1")"
[ $waited -le 20 ] || fail "node3's Mount of slow took ${waited}s to give up (timeout 8 s)"
# Past the TTL since node3 took the lease: it is still the one it took, and node1 is refused.
sleep 1
[ "$(etcd_get dvol/v1/holders/slow)" = "$holder" ] || fail "node3's lease on slow ended while it brought the data ($((SECONDS - t0))s, TTL $TTL s)"
if out=$(dk 1 run --rm $DV -v slow:/data $IMG true 2>&1); then fail "node1 mounted slow while node3 was bringing its data"; fi
echo "$out" | grep -q "in use on host node3" || fail "node1's refused mount of slow does not name node3: $out"
[ "$(etcd_get dvol/v1/holders/slow)" = "$holder" ] || fail "node3's lease on slow ended while it brought the data ($((SECONDS - t0))s, TTL $TTL s)"
echo "    node3 held slow's lease $((SECONDS - t0))s through its transfer (TTL $TTL s); its Mount gave up after ${waited}s"
l0=$(wc -l < "$P/n3/dvol.log")
rm -f "$PAUSE"
# The retry finds the data brought under the same lease (taken once, fetched once), then
# writes; its Unmount's push is held past the TTL too.
dk 3 run --rm $DV -v slow:/data $IMG sh -c 'cat /data/f; echo changed-on-node3 > /data/f' >"$P/slow2" 2>&1 & m=$!
# Docker mounts and unmounts once before the container starts (Mount, Unmount, Mount,
# Unmount): that first publication goes at once, the last one (the container has ended) is held.
for _ in $(seq 1 20); do
    held_at "node3's Unmount of slow never reached its push"
    [ "$(tail -n +$((l0 + 1)) "$P/n3/dvol.log" | grep -c 'Unmount volume=slow ')" -ge 2 ] && break
    rm -f "$PAUSE"; sleep 0.25
done
t1=$SECONDS
sleep $((TTL + 1))
[ "$(etcd_get dvol/v1/holders/slow)" = "$holder" ] || fail "node3's lease on slow ended during its Unmount's push"
if out=$(dk 1 run --rm $DV -v slow:/data $IMG true 2>&1); then fail "node1 mounted slow during node3's Unmount push"; fi
echo "$out" | grep -q "in use on host node3" || fail "node1's refused mount of slow does not name node3: $out"
echo "    node3 held slow's lease $((SECONDS - t1))s through its Unmount's push"
rm -f "$PAUSE"
wait $m || fail "node3's second run on slow failed: $(cat "$P/slow2")"
[ "$(head -1 "$P/slow2")" = slow ] || fail "node3's retry read [$(cat "$P/slow2")] from slow"
[ "$(taken3)" = 1 ] || fail "node3 took slow's lease $(taken3) times (expected once, kept through the timed-out Mount)"
bytes=$(fetched 3 slow)
[ "$bytes" -ge 1000000 ] && [ "$bytes" -lt 1200000 ] || fail "node3 fetched $bytes bytes for slow (expected about 1 MiB, once)"
got=$(dk 1 run --rm $DV -v slow:/data $IMG cat /data/f 2>&1) || fail "node1 could not mount slow after node3: $got"
[ "$got" = changed-on-node3 ] || fail "node1 read [$got] from slow after node3's held push"
restart_plugin 3

step "4. a Swarm service keeps its data across a drain"
dk 1 service create -q --name mob --no-resolve-image --constraint node.role==worker \
    --hostname '{{.Node.Hostname}}' --stop-grace-period 3s \
    --mount type=volume,source=mobvol,target=/data,volume-driver=dvol,volume-opt=sync-interval=2s \
    $IMG sh -c 'trap "exit 0" TERM; h=$(cat /etc/hostname); while true; do echo "$h" >> /data/log; sleep 0.5 & wait; done' >/dev/null
first=$(runs_on mob)
sleep 3
dk 1 node update --availability drain "$first" >/dev/null
second=$(runs_on mob "$first")
sleep 2
cid=$(task_of mob "$second")
lines=$(dk ${second#node} exec "$cid" cat /data/log)
echo "$lines" | awk '{print "    " $0}' | uniq -c | head
[ "$(echo "$lines" | head -1)" = "$first" ] || fail "mobvol on $second does not start with $first's lines"
[ "$(echo "$lines" | tail -1)" = "$second" ] || fail "mobvol on $second does not end with $second's lines"
[ "$(echo "$lines" | grep -cx "$first")" -ge 4 ] || fail "mobvol kept too little of $first's log"
dk 1 service rm mob >/dev/null
dk 1 node update --availability active "$first" >/dev/null

step "4b. PostgreSQL under pgbench is drained to another host with every acknowledged transaction"
if [ "${DVOL_SKIP_PG_TESTS:-}" = 1 ]; then
    echo "    skipped (DVOL_SKIP_PG_TESTS=1)"
else
    load_pg_image
    dk 1 service create -q --name pg --no-resolve-image --constraint node.role==worker \
        --stop-grace-period 30s \
        --mount type=volume,source=pgvol,target=/var/lib/postgresql/data,volume-driver=dvol,volume-opt=sync-interval=600s \
        $PG >/dev/null
    from=$(runs_on pg); cid=$(pg_ready pg "$from")
    dk ${from#node} exec "$cid" pgbench -U postgres -i -s 2 -q postgres >/dev/null 2>&1 || fail "pgbench -i failed on $from"
    psql_on "$from" "$cid" -c 'create table acks (i int primary key)'
    # load: pgbench for longer than the test, then a client committing numbered rows one at a
    # time and noting each one PostgreSQL acknowledged, until the drain stops the server
    dk ${from#node} exec -d "$cid" pgbench -U postgres -c 2 -T 600 postgres
    : > "$P/acked"
    ( i=1; while psql_on "$from" "$cid" -c "insert into acks values ($i)" >/dev/null 2>&1; do echo $i >> "$P/acked"; i=$((i + 1)); done ) &
    acker=$!
    sleep 5
    t_drain=$SECONDS
    dk 1 node update --availability drain "$from" >/dev/null
    wait $acker || true
    to=$(runs_on pg "$from"); cid=$(pg_ready pg "$to")
    moved=$((SECONDS - t_drain))
    acked=$(wc -l < "$P/acked")
    [ "$acked" -ge 5 ] || fail "only $acked rows were acknowledged before the drain"
    psql_on "$to" "$cid" -c 'select i from acks order by i' > "$P/found"
    missing=$(comm -23 <(sort "$P/acked") <(sort "$P/found") | wc -l)
    [ "$missing" = 0 ] || fail "$missing of $acked acknowledged rows are missing on $to: $(comm -23 <(sort "$P/acked") <(sort "$P/found") | head -5 | tr '\n' ' ')"
    # pgbench's own invariant: every committed transaction added the same delta to an account,
    # a teller, a branch and the history
    sums=$(psql_on "$to" "$cid" -c "select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), (select sum(bbalance) from pgbench_branches), (select coalesce(sum(delta), 0) from pgbench_history), (select count(*) from pgbench_history)")
    IFS='|' read -r a t b h txns <<<"$sums"
    [ "$a" = "$t" ] && [ "$t" = "$b" ] && [ "$b" = "$h" ] || fail "pgbench balances disagree on $to: accounts|tellers|branches|history = $sums"
    [ "$txns" -gt 0 ] || fail "no pgbench transaction reached $to"
    bytes=$(fetched ${to#node} pgvol)
    [ "$bytes" -gt 10000000 ] || fail "$to fetched only $bytes bytes of pgvol"
    echo "    $from -> $to in ${moved}s (drain to PostgreSQL answering): $acked acknowledged rows all there ($(wc -l < "$P/found") found), $txns pgbench transactions consistent, $((bytes / 1048576)) MiB fetched"
    dk 1 service rm pg >/dev/null
    dk 1 node update --availability active "$from" >/dev/null
fi

# partitioned VOLUME CUT RESTORE: node2 holds VOLUME (three containers, one counting), CUT
# cuts node2 off (its link, or only its path to etcd), node3 gets the lease only after expiry
# and starts from the last published commit, node2 stops its containers before its lease can
# expire and never moves the head; once RESTORE gives the path back, node2's unsynced work
# comes back as a branch. Sets n3 (what node3 read) and kept (the branch).
partitioned() {
    local vol=$1 cut=$2 restore=$3
    dk 2 volume create -d dvol -o sync-interval=1s "$vol" >/dev/null
    local cid cids c
    cid=$(dk 2 run -d $DV -v "$vol":/data $IMG sh -c 'i=0; while true; do i=$((i+1)); echo $i > /data/n; sleep 0.2; done')
    # Two more containers on it: fencing stops them all before the lease can expire. Each
    # ignores the stop signal (a shell as PID 1): only the kill stops it.
    cids="$cid $(for i in 1 2; do dk 2 run -d $DV -v "$vol":/data $IMG sh -c 'while true; do sleep 1; done'; done)"
    sleep 4
    etcd_get dvol/v1/heads/$vol | grep -q '"host":"node2"' || fail "node2 never published $vol"
    pushed() { grep -c "cluster: pushed volume=\"$vol\"" "$P/n2/dvol.log" || true; }
    local pushed_before; pushed_before=$(pushed)
    eval "$cut"
    local t0=$SECONDS
    # what node2 published before the cut (a move in flight at the cut has landed by now)
    sleep 1
    local head_cut; head_cut=$(etcd_get dvol/v1/heads/$vol)
    # node3 gets the lease only once node2's has expired, and starts from the last pushed commit
    n3=""
    for _ in $(seq 1 30); do
        n3=$(dk 3 run --rm $DV -v "$vol":/data $IMG cat /data/n 2>/dev/null) && break
        sleep 1
    done
    [ -n "$n3" ] || fail "node3 never got $vol after node2 was cut off"
    [ $((SECONDS - t0)) -ge $((TTL - 2)) ] || fail "node3 mounted $vol $((SECONDS - t0))s after the cut, before the lease TTL ($TTL s)"
    local head_after; head_after=$(etcd_get dvol/v1/heads/$vol)
    # node3 changed nothing: the head is still the one node2 published before the cut
    [ "$head_after" = "$head_cut" ] || fail "$vol's head moved after the cut: [$head_cut] then [$head_after]"
    # fencing: node2 stopped its containers when it could not renew, all before the lease could
    # expire: by the TTL after its last renewal (as logged).
    epoch() { date -d "$1" +%s.%N; }
    local renewed ahead
    renewed=$(sed -n "/stops publishing it volume=$vol\$/q; /cluster: lease renewed volume=$vol\$/p" "$P/n2/dvol.log" | tail -1 | cut -d' ' -f1)
    [ -n "$renewed" ] || fail "node2 logged no renewal of $vol's lease"
    for c in $cids; do
        for _ in $(seq 1 40); do [ "$(dk 2 inspect -f '{{.State.Running}}' "$c")" = false ] && break; sleep 0.25; done
        [ "$(dk 2 inspect -f '{{.State.Running}}' "$c")" = false ] || fail "node2 kept running container $c after losing $vol's lease"
        ahead=$(echo "$(epoch "$renewed") $TTL $(epoch "$(dk 2 inspect -f '{{.State.FinishedAt}}' "$c")")" | awk '{printf "%.2f", $1 + $2 - $3}')
        echo "    node2 stopped ${c:0:12} ${ahead}s before its lease could expire"
        awk "BEGIN {exit !($ahead > 0)}" || fail "node2 stopped container $c ${ahead#-}s after its lease could have expired"
    done
    [ "$(grep -c "cluster: stopped a container: this host no longer holds.*volume=\"$vol\"" "$P/n2/dvol.log")" = 3 ] || fail "node2 did not report stopping its 3 containers of $vol"
    sed -n "/stops publishing it volume=$vol\$/,/cluster: stopped a container/p" "$P/n2/dvol.log" | cut -c12-150 | sed 's/^/    | /'
    echo "    node2 lost the lease at $(grep -m1 "stops publishing it volume=$vol\$" "$P/n2/dvol.log" | cut -c12-23), stopped its container at $(grep "cluster: stopped a container.*volume=\"$vol\"" "$P/n2/dvol.log" | head -1 | cut -c12-23); node3 took the lease at $(grep "cluster: lease taken volume=\"$vol\"" "$P/n3/dvol.log" | tail -1 | cut -c12-23)"
    pushed_cut=$(( $(pushed) - pushed_before ))
    eval "$restore"
    # node2's unsynced work (its container kept counting) comes back as a branch, and the head
    # stays where node3 left it.
    kept=""
    for _ in $(seq 1 60); do
        kept=$(dvol_on 2 --volume "$vol" branch 2>/dev/null | grep -o 'node2-unsynced-[0-9TZ.]*' | head -1) && [ -n "$kept" ] && break
        sleep 0.5
    done
    [ -n "$kept" ] || fail "node2's unsynced work on $vol was not kept as a branch"
    sleep 2
    [ "$(etcd_get dvol/v1/heads/$vol)" = "$head_after" ] || fail "node2 moved $vol's head after losing its lease"
    dk 2 rm -f $cids >/dev/null 2>&1 || true
}

step "5. a partitioned holder loses the lease after expiry and cannot move the head"
partitioned part "ip -n spx-n2 link set eth0 down" "ip -n spx-n2 link set eth0 up"
echo "    node3 read n=$n3; node2 kept $kept"

step "5b. a partial partition: the holder cut from etcd but not from the remote cannot move the head"
# Only node2's etcd client traffic (port 2379, its own member's too) is dropped; the remote,
# the Swarm and etcd's peers stay reachable.
cut_etcd="ip netns exec spx-n2 iptables -I OUTPUT -p tcp --dport 2379 -j DROP"
heal_etcd="ip netns exec spx-n2 iptables -D OUTPUT -p tcp --dport 2379 -j DROP"
partitioned etcdcut "$cut_etcd" "$heal_etcd"
# node2 could still push: at least one push landed after the cut, and the head never named it
[ "$pushed_cut" -ge 1 ] || fail "node2 pushed nothing after its etcd path was cut (the remote should stay reachable)"
echo "    node2 pushed $pushed_cut commit(s) after the cut that the head never named; node3 read n=$n3; node2 kept $kept"
echo "PASSED all cluster scenarios in ${SECONDS}s"
