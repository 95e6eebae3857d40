#!/usr/bin/env bash
# dvol's commit, reset --hard and checkout -b speed beside an earlier build, in one run
# (issue 9: the handle-based live-data code must stay within 10% of the path-based build).
#
#   examples/bench-baseline.sh OLD_DVOL [NEW_DVOL] [-- extra bench arguments]
#
# Builds nothing but the benchmark: OLD_DVOL is a dvol binary of the earlier build (e.g.
# `git worktree add /tmp/base d13c730 && cargo build --release --bin dvol` there), NEW_DVOL
# defaults to target/release/dvol. Runs examples/bench on the same deterministic db set for
# both, interleaved (new, old, new, old) so drift on a shared machine hits both, with full
# copies for checkout -b (DVOL_CLONE_METHOD=full; an older build ignores it), then prints the
# medians and new/old ratios (DVOL_BASELINE_ROUNDS rounds, default 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
old=${1:?usage: examples/bench-baseline.sh OLD_DVOL [NEW_DVOL] [-- bench args]}
shift
new=target/release/dvol
if [ $# -gt 0 ] && [ "$1" != "--" ]; then new=$1; shift; fi
[ "${1:-}" = "--" ] && shift
out=${DVOL_BASELINE_OUT:-/tmp/dvol-baseline}
rm -rf "$out"
mkdir -p "$out"
export DVOL_CLONE_METHOD=full
cargo build --release --example bench >/dev/null
for round in $(seq 1 "${DVOL_BASELINE_ROUNDS:-3}"); do
    for side in new old; do
        bin=$new; [ $side = old ] && bin=$old
        echo "round $round: $side ($bin)" >&2
        target/release/examples/bench --tools dvol --sets db --no-chunking --runs 1 \
            --dvol "$bin" --out "$out/$side-$round" "$@" >"$out/$side-$round.log" 2>&1 \
            || { tail -20 "$out/$side-$round.log" >&2; exit 1; }
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys, glob, os
out = sys.argv[1]
def figures(side):
    got = {"commit": [], "commit after change": [], "checkout -b": [], "reset --hard": []}
    for path in sorted(glob.glob(os.path.join(out, f"{side}-*", "results.json"))):
        r = json.load(open(path))
        for t in r["tools"]:
            if t["tool"] == "dvol" and t["set"] == "db":
                got["commit"] += [m["secs"] for m in t["first"]]
                got["commit after change"] += [m["secs"] for m in t["incr"]]
                got["checkout -b"] += [m["secs"] for m in t["restore"]]
        for e in r["extras"]:
            if e["set"] == "db":
                got["reset --hard"] += [m["secs"] for m in e["reset"]]
    return {k: statistics.median(v) for k, v in got.items() if v}
new, old = figures("new"), figures("old")
print("| operation | earlier build (s) | this build (s) | this / earlier |")
print("| --- | --- | --- | --- |")
for k in new:
    if k in old:
        print(f"| {k} | {old[k]:.3f} | {new[k]:.3f} | {new[k] / old[k]:.2f} |")
PY
