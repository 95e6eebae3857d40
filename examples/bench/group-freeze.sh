#!/usr/bin/env bash
# Freeze time of a group commit of three volumes beside three single commits (issue 16).
#
#   examples/bench/group-freeze.sh [DVOL_BINARY] [RUNS] [MIB_PER_VOLUME] [MIB_CHANGED]
#
# Three dvol volumes of MIB_PER_VOLUME MiB each (deterministic incompressible data), each used
# by a running busybox container (bind mount of the live directory, appending a line every
# 10 ms). Before every measurement MIB_CHANGED MiB of each volume are rewritten, so every
# commit has the same work. Then, alternating, RUNS times:
#   - `dvol group commit` (containers of all three volumes paused together, members scanned
#     in parallel);
#   - three `dvol commit --pause`, one volume after the other.
# The freeze is what dvol logs at `DVOL_LOG=dvol::freeze=info`: from the first pause to the
# last unpause of one guarded operation. For the single commits the figures are the sum of
# the three freezes (how long some part of the app was frozen) and the span from the first
# freeze to the last thaw (the window in which the app's volumes are at different instants).
# Needs root, dockerd and the dvol-test-busybox image (tests/images/build.sh). Stops and
# removes only the containers it started.
set -euo pipefail
DVOL="${1:-target/release/dvol}"
RUNS="${2:-5}"
MIB="${3:-256}"
CHANGED="${4:-32}"
IMAGE="dvol-test-busybox:latest"
WORK="$(mktemp -d /var/tmp/dvol-group-bench.XXXXXX)"
ROOT="$WORK/root"
CONTAINERS=()
cleanup() {
    for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
dvol() { "$DVOL" -p "$ROOT" "$@"; }

fill() { # volume seed MiB: deterministic incompressible files of 4 MiB
    local live="$ROOT/$1/branches/master" i
    for ((i = 0; i < $3 / 4; i++)); do
        { openssl enc -aes-128-ctr -nosalt -pass "pass:$2-$i" </dev/zero 2>/dev/null || true; } |
            head -c $((4 << 20)) >"$live/seg$i"
    done
}

for v in v1 v2 v3; do
    dvol init "$v" >/dev/null
    fill "$v" "$v" "$MIB"
    c="dvol-group-bench-$$-$v"
    docker run -d --name "$c" -v "$ROOT/$v/branches/master:/data" "$IMAGE" \
        sh -c 'while true; do date >> /data/log; sleep 0.01; done' >/dev/null
    CONTAINERS+=("$c")
done
dvol group create app v1 v2 v3 >/dev/null
dvol group commit app -m base >/dev/null

freeze_ms() { # command...: run it, print the logged freeze in ms
    DVOL_LOG=dvol::freeze=info "$@" 2>&1 >/dev/null | sed -n 's/.*ms=\([0-9.]*\).*/\1/p'
}
change() { # run: rewrite CHANGED MiB of every volume
    local v
    for v in v1 v2 v3; do fill "$v" "$v-$1" "$CHANGED"; done
}

echo "run group_ms single_sum_ms single_span_ms single_ms..."
for ((r = 1; r <= RUNS; r++)); do
    change "g$r"
    g=$(freeze_ms dvol group commit app -m "run $r")
    change "s$r"
    start=$(date +%s%N)
    s1=$(freeze_ms dvol commit --pause --volume v1 -m "run $r")
    s2=$(freeze_ms dvol commit --pause --volume v2 -m "run $r")
    s3=$(freeze_ms dvol commit --pause --volume v3 -m "run $r")
    span=$(( ($(date +%s%N) - start) / 1000000 ))
    sum=$(echo "$s1 + $s2 + $s3" | bc)
    echo "$r $g $sum $span $s1 $s2 $s3"
done
