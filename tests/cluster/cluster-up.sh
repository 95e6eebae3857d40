#!/bin/bash
# A dvol cluster on three Docker hosts, sourced by tests/cluster/multihost.sh (the end-to-end
# test of cluster mode, issue 15) and examples/cluster-bench.sh: the multihost fixture
# (../shared/multihost: three dockerds in network namespaces joined as a Swarm), a 3-member
# etcd (one member per host namespace), the shared remote and `dvol plugin serve --cluster-*`
# on every host instead of the fixture's toy plugin; then helpers for the scripts that source
# it. The shared remote is S3 on a 3-node Garage
# cluster, one node per host namespace (replication factor 3; each host's plugin uses its own
# node), or with DVOL_CLUSTER_REMOTE_KIND=serve (the default when garage is not on PATH)
# `dvol serve` in the hub namespace.
#
# usage: . cluster-up.sh DVOL_BINARY FIXTURE_DIR
# State goes to $SPX_STATE (a fresh directory by default). At the sourcing script's exit, stops
# only what it started (by pid) and tears the fixture down with its down.sh, even on failure;
# `fail` names the failing check on stderr.
set -euo pipefail
DVOL=$(readlink -f "$1"); FIX=$(readlink -f "$2")
HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
export SPX_STATE=${SPX_STATE:-$(mktemp -d /var/tmp/dvol-cluster.XXXXXX)}
. "$FIX/env.sh"
TTL=6
REMOTE_KIND=${DVOL_CLUSTER_REMOTE_KIND:-$(command -v garage >/dev/null && echo garage || echo serve)}
REMOTE_IP=10.99.0.2
case $REMOTE_KIND in
garage) REMOTE=s3://bucket/cluster ;;
serve) REMOTE=http://$REMOTE_IP:7900 ;;
*) echo "DVOL_CLUSTER_REMOTE_KIND=$REMOTE_KIND: garage or serve" >&2; exit 2 ;;
esac
ETCD=http://$(ip_of 1):2379,http://$(ip_of 2):2379,http://$(ip_of 3):2379
TOKEN=cluster-test-token-0123456789abcdef
IMG=spx/busybox:1
# Every run names the driver: a host that never saw a volume must not make a local one.
DV="--volume-driver dvol"
pids=()
# One run at a time on this machine (the fixture's namespace and socket names are fixed): a
# lock directory holding the owner's pid (a lock file descriptor would be inherited by the
# daemons), taken before the teardown trap, so a run that cannot have it tears nothing down.
LOCK=/run/dvol-multihost.lock.d
for _ in $(seq 1 600); do
    mkdir "$LOCK" 2>/dev/null && { echo $$ > "$LOCK/pid"; break; }
    owner=$(cat "$LOCK/pid" 2>/dev/null || true)
    [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null && rm -rf "$LOCK"
    sleep 1
done
[ "$(cat "$LOCK/pid" 2>/dev/null)" = $$ ] || { echo "FAILED: another multihost run holds $LOCK" >&2; exit 1; }

cleanup() {
    rc=$?
    if [ $rc -ne 0 ]; then
        for n in $NODES; do echo "--- plugin log node$n (tail)"; tail -n 25 "$P/n$n/dvol.log" 2>/dev/null; done
    fi
    # DVOL_CLUSTER_LOGS=DIR keeps the plugins' whole logs
    if [ -n "${DVOL_CLUSTER_LOGS:-}" ] && mkdir -p "$DVOL_CLUSTER_LOGS"; then
        for n in $NODES; do cp "$P/n$n/dvol.log" "$DVOL_CLUSTER_LOGS/node$n.log" 2>/dev/null || true; done
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$p" 2>/dev/null && kill -KILL "$p"   # etcd without quorum ignores TERM
    done
    "$FIX/down.sh" >/dev/null 2>&1 || true
    rm -rf "$SPX_STATE"
    rm -rf "$LOCK"
    exit $rc
}
trap cleanup EXIT

fail() { echo "FAILED: $*" >&2; exit 1; }
step() { echo "=== $* (+${SECONDS}s)"; }
dvol_on() { local n=$1; shift; ip netns exec spx-n$n "$DVOL" -p "$P/n$n/dvol" --disable-docker-integration "$@"; }
# Bytes host $1 has fetched from the remote for volume $2 so far (its plugin logs each Mount).
fetched() { grep "cluster: mounted volume=\"$2\"" "$P/n$1/dvol.log" | sed 's/.*bytes=\([0-9]*\).*/\1/' | awk '{s+=$1} END {print s+0}'; }
etcd_get() { ip netns exec spx-n1 env ETCDCTL_API=3 etcdctl --endpoints "$ETCD" get --print-value-only "$1"; }

step "fixture: network and three dockerds"
# A run killed before its trap (a stopped session, a SIGKILLed test) leaves the fixture's fixed
# names behind (/run/netns/spx-*, its dockerds' pid files); with the lock held no live run owns
# them, so the fixture's own teardown clears them first (it stops only the pids it recorded).
if ip netns list | grep -q '^spx-' || ls /run/spx-n?.pid >/dev/null 2>&1; then
    echo "clearing a fixture an earlier run left behind"
    "$FIX/down.sh" >/dev/null 2>&1 || true
fi
"$FIX/net-up.sh" >/dev/null
"$FIX/nodes-up.sh" >/dev/null
"$FIX/image.sh" >/dev/null 2>&1

step "etcd: three members, one per host namespace"
cluster=""
for n in $NODES; do cluster+="${cluster:+,}e$n=http://$(ip_of $n):2380"; done
for n in $NODES; do
    ip=$(ip_of $n)
    setsid nsenter --net=/run/netns/$(ns $n) etcd --name e$n --data-dir "$P/etcd/e$n" \
        --listen-client-urls http://$ip:2379 --advertise-client-urls http://$ip:2379 \
        --listen-peer-urls http://$ip:2380 --initial-advertise-peer-urls http://$ip:2380 \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --heartbeat-interval 100 --election-timeout 1000 >"$P/etcd-e$n.log" 2>&1 </dev/null &
    pids+=($!)
done
for _ in $(seq 1 60); do
    ip netns exec spx-n1 env ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint health >/dev/null 2>&1 && break
    sleep 0.5
done
ip netns exec spx-n1 env ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint health >/dev/null || fail "etcd did not come up"

# The remote as host $1's plugin reaches it: start_remote N / stop_remote N (N's Garage node,
# or the one dvol serve), remote_env N (the plugin's environment for it).
declare -A remote_pid
if [ $REMOTE_KIND = garage ]; then
    step "shared remote: Garage, one node per host namespace (replication factor 3)"
    GARAGE_SH=$HERE/../support/garage.sh
    rpc_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    start_remote() {
        setsid nsenter --net=/run/netns/$(ns $1) garage -c "$P/garage/g$1/garage.toml" server \
            >>"$P/garage-g$1.log" 2>&1 </dev/null &
        remote_pid[$1]=$!
        pids+=($!)
    }
    for n in $NODES; do
        bash "$GARAGE_SH" config "$P/garage/g$n" "$(ip_of $n):3901" "$(ip_of $n):3900" "$rpc_secret" 3
        start_remote $n
    done
    cfgs=(); for n in $NODES; do cfgs+=("$P/garage/g$n/garage.toml"); done
    keys=$(GARAGE_EXEC="ip netns exec $(ns 1)" bash "$GARAGE_SH" setup "${cfgs[@]}") || fail "garage setup failed"
    remote_env() {
        echo AWS_ENDPOINT_URL=http://$(ip_of $1):3900 AWS_REGION=garage AWS_ALLOW_HTTP=true \
            AWS_ACCESS_KEY_ID=${keys% *} AWS_SECRET_ACCESS_KEY=${keys#* }
    }
    stop_remote() { kill "${remote_pid[$1]}"; while kill -0 "${remote_pid[$1]}" 2>/dev/null; do sleep 0.1; done; }
else
    step "shared remote: dvol serve in the hub namespace"
    printf '%s\n' "$TOKEN" > "$P/token"; chmod 600 "$P/token"
    ip -n "$HUB" addr add $REMOTE_IP/24 dev br0
    start_remote() {
        setsid ip netns exec "$HUB" "$DVOL" serve --listen $REMOTE_IP:7900 --token-file "$P/token" "$P/remote" \
            >>"$P/serve.log" 2>&1 </dev/null &
        remote_pid[0]=$!
        pids+=($!)
    }
    start_remote 0
    remote_env() { echo DVOL_TOKEN=$TOKEN; }
    stop_remote() { kill "${remote_pid[0]}"; while kill -0 "${remote_pid[0]}" 2>/dev/null; do sleep 0.1; done; }
fi

step "dvol plugin serve --cluster-* on every host"
# Docker integration on (DOCKER_HOST = the node's dockerd): background syncs pause the
# containers, a host that loses a lease stops them.
declare -A plugin_pid serving
# start_plugin N [VAR=VALUE... [-- FLAG...]]: extra environment and flags for this run only.
start_plugin() {
    local n=$1; shift
    local envs=() flags=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ $# -gt 0 ] && { shift; flags=("$@"); }
    serving[$n]=$(grep -c '"serving"\| serving ' "$P/n$n/dvol.log" 2>/dev/null || true)
    # shellcheck disable=SC2046 # remote_env prints VAR=VALUE words
    setsid nsenter -t "$(cat /run/spx-n$n.pid)" -m -n -u env $(remote_env $n) DVOL_LOG=info,dvol::cluster=debug \
        DOCKER_HOST=unix:///run/spx-n$n.sock "${envs[@]}" \
        "$DVOL" -p "$P/n$n/dvol" plugin serve \
        --socket /run/docker/plugins/dvol.sock --cluster-etcd "$ETCD" --cluster-remote $REMOTE \
        --host-name node$n --cluster-lease-ttl $TTL --cluster-mount-wait ${MOUNT_WAIT:-3} \
        --cluster-release-grace 10 "${flags[@]}" >>"$P/n$n/dvol.log" 2>&1 </dev/null &
    plugin_pid[$n]=$!
    pids+=($!)
}
wait_plugin() {
    local n=$1
    for _ in $(seq 1 40); do
        [ "$(grep -c '"serving"\| serving ' "$P/n$n/dvol.log" 2>/dev/null || true)" -gt "${serving[$n]:-0}" ] && return 0
        sleep 0.25
    done
    fail "plugin of node$n did not start"
}
for n in $NODES; do start_plugin $n; done
for n in $NODES; do wait_plugin $n; done
# Each dockerd must have used the plugin once so Swarm lists it on the node.
for n in $NODES; do dk $n volume create -d dvol dvol-warmup >/dev/null; done
"$FIX/swarm-up.sh" >/dev/null

restart_plugin() { local n=$1; shift; kill -KILL "${plugin_pid[$n]}"; start_plugin $n "$@"; wait_plugin $n; }
# runs_on SERVICE [NOT_NODE]: the node running the service's task (not NOT_NODE), within 90 s
runs_on() {
    local w
    for _ in $(seq 1 180); do
        w=$(dk 1 service ps "$1" -f desired-state=running --format '{{.Node}} {{.CurrentState}}')
        case "$w" in node*Running*) [ "${w%% *}" != "${2:-}" ] && { echo "${w%% *}"; return 0; };; esac
        sleep 0.5
    done
    fail "service $1 is not running${2:+ off $2}: $(dk 1 service ps "$1" --no-trunc)"
}
task_of() { dk ${2#node} ps -q -f label=com.docker.swarm.service.name=$1; }

# PostgreSQL: the local test image (tests/images/build.sh) on the worker hosts.
PG=dvol-test-postgres:15
load_pg_image() {
    docker image inspect $PG >/dev/null 2>&1 || fail "image $PG missing: run tests/images/build.sh (or set DVOL_SKIP_PG_TESTS=1)"
    for n in 2 3; do docker save $PG | dk $n load -q >/dev/null; done
}
psql_on() { local node=$1 cid=$2; shift 2; dk ${node#node} exec "$cid" psql -U postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }
# pg_ready SERVICE NODE: the container id once PostgreSQL answers there
pg_ready() {
    local c
    for _ in $(seq 1 240); do
        c=$(task_of "$1" "$2")
        [ -n "$c" ] && psql_on "$2" "$c" -c 'select 1' >/dev/null 2>&1 && { echo "$c"; return 0; }
        sleep 0.5
    done
    fail "PostgreSQL of $1 did not answer on $2"
}
