#!/usr/bin/env bash
# Cost of encryption at rest: push and clone of one volume to a path remote (and to s3s-fs when
# it is installed), plain and with `remote add --encrypt`, in the same run, best of RUNS.
# Usage: bash examples/bench-encryption.sh [SIZE_MIB (256)] [RUNS (3)] [DVOL (target/release/dvol)]
# The data: half incompressible (random), half compressible (repeated text), in 8 files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-256}
runs=${2:-3}
bin=${3:-target/release/dvol}
[ -x "$bin" ] || cargo build --release --quiet --bin dvol
bin=$(realpath "$bin")
work=$(mktemp -d /tmp/dvol-bench-crypt.XXXXXX)
trap 'kill $s3pid 2>/dev/null || true; rm -rf "$work"' EXIT
s3pid=
export DVOL_PASSPHRASE="benchmark passphrase"
dvol() { "$bin" --disable-docker-integration -q "$@"; }

# The source volume, committed once.
export DVOL_ROOT=$work/src
dvol init data >/dev/null
live=$(dvol path)
per=$((size / 8))
for i in 1 2 3 4; do head -c "${per}M" /dev/urandom >"$live/random$i.bin"; done
for i in 1 2 3 4; do
    (set +o pipefail; yes "row $i: the quick brown fox jumps over the lazy dog" | head -c "${per}M" >"$live/text$i.txt")
done
dvol commit -m data >/dev/null

# time_cmd VAR CMD...: run CMD; VAR gets "wall cpu" in seconds (cpu = user + sys).
time_cmd() {
    local _var=$1 _times
    shift
    _times=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null; } 2>&1 | tail -1)
    printf -v "$_var" '%s' "$(echo "$_times" | awk '{printf "%.2f %.2f", $1, $2 + $3}')"
}
# best "wall cpu"...: the run with the least wall time, as "wall (cpu)".
best() { printf '%s\n' "$@" | sort -g | head -1 | awk '{printf "%s (%s)", $1, $2}'; }

carriers="path"
if command -v s3s-fs >/dev/null; then
    mkdir -p "$work/s3/bucket"
    port=$((20000 + RANDOM % 20000))
    s3s-fs --host 127.0.0.1 --port "$port" --access-key benchkey --secret-key benchsecret0123456789 "$work/s3" >/dev/null 2>&1 &
    s3pid=$!
    sleep 1
    export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=benchkey \
        AWS_SECRET_ACCESS_KEY=benchsecret0123456789 AWS_ALLOW_HTTP=true
    carriers="path s3"
fi

echo "| carrier | mode | push: wall (CPU) s | clone: wall (CPU) s | remote size (MiB) |"
echo "| --- | --- | --- | --- | --- |"
for carrier in $carriers; do
    for mode in plain encrypted; do
        push=() clone=()
        for r in $(seq "$runs"); do
            case $carrier in
                path) url=$work/remote-$mode-$r ;;
                s3) url=s3://bucket/$mode-$r ;;
            esac
            flag=(); [ "$mode" = encrypted ] && flag=(--encrypt)
            export DVOL_ROOT=$work/src
            dvol remote add "${flag[@]}" "r$carrier$mode$r" "$url"
            time_cmd t dvol push "r$carrier$mode$r"
            push+=("$t")
            export DVOL_ROOT=$work/clone-$carrier-$mode-$r
            time_cmd t dvol clone "$url" data
            clone+=("$t")
            rm -rf "$DVOL_ROOT"
        done
        case $carrier in
            path) mib=$(du -sm "$work/remote-$mode-1" | cut -f1) ;;
            s3) mib=$(du -sm "$work/s3/bucket/$mode-1" | cut -f1) ;;
        esac
        echo "| $carrier | $mode | $(best "${push[@]}") | $(best "${clone[@]}") | $mib |"
    done
done
