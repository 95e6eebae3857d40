#!/usr/bin/env bash
# Thin clones beside full copies: time and extra disk of `dvol checkout -b`, `docker volume
# create -o from=` (the plugin's Create, called on its socket), a 2nd and a 10th clone of the
# same commit, and a 1% page rewrite inside a clone, on loop-mounted XFS (reflink=1), btrfs and
# ext4, beside `--clone-method full` and `cp -a --reflink=always` (plain `cp -a` on ext4).
#
# Extra disk is the change in the file system's free space (statvfs, after sync), not du,
# which counts shared extents in full.
#
# Usage (as root): examples/bench/thin-clones.sh [SIZE_MIB] [WORK_DIR] [DVOL_BINARY]
#   SIZE_MIB: the volume's size (default 4096); WORK_DIR holds the images (default
#   /work/bench-thin); the binary defaults to target/release/dvol.
# Prints a Markdown table per file system. Cleans up the mounts and the loop devices it made.
set -euo pipefail

SIZE_MIB=${1:-4096}
WORK=${2:-/work/bench-thin}
DVOL=$(realpath "${3:-target/release/dvol}")
SEG_MIB=256                     # segment files, as a database keeps its tables
PAGE=8192
[ "$(id -u)" -eq 0 ] || { echo "run as root (it mounts loop devices)" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl (the plugin's Create is called on its socket)" >&2; exit 1; }
mkdir -p "$WORK"

dev=""; mnt=""; plugin_pid=""
cleanup() {
    if [ -n "$plugin_pid" ]; then kill "$plugin_pid" 2>/dev/null || true; wait "$plugin_pid" 2>/dev/null || true; fi
    plugin_pid=""
    if [ -n "$mnt" ] && mountpoint -q "$mnt"; then umount -R "$mnt" || umount -R -l "$mnt"; fi
    if [ -n "$dev" ]; then losetup -d "$dev" || true; fi
    dev=""; mnt=""
}
trap cleanup EXIT

free_bytes() { sync -f "$1"; echo $(( $(stat -f -c '%a' "$1") * $(stat -f -c '%S' "$1") )); }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
pct() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.2f%%", 100 * b / t }'; }

# measure LABEL CMD...: run CMD, print a table row with its time and the free-space change.
measure() {
    local label=$1; shift
    local before t0 t1 after used
    before=$(free_bytes "$mnt"); t0=$(now)
    "$@" >/dev/null
    t1=$(now); after=$(free_bytes "$mnt")
    used=$(( before > after ? before - after : 0 ))
    printf '| %s | %s s | %s MiB | %s |\n' "$label" "$(secs "$t0" "$t1")" "$(mib "$used")" "$(pct "$used" "$TOTAL")"
}

create_from() {   # the plugin's VolumeDriver.Create with -o from=v (and clone= if given)
    local opts="\"from\":\"v\""
    [ -n "${2:-}" ] && opts="$opts,\"clone\":\"$2\""
    local r
    r=$(curl -s --unix-socket "$SOCK" -X POST -d "{\"Name\":\"$1\",\"Opts\":{$opts}}" http://plugin/VolumeDriver.Create)
    case $r in *'"Err":""'*) ;; *) echo "Create $1: $r" >&2; return 1 ;; esac
}

rewrite_pages() {  # rewrite 1% of the pages of every segment in place, at random
    local dir=$1 f pages n i
    pages=$(( SEG_MIB * 1048576 / PAGE ))
    n=$(( pages / 100 ))
    for f in "$dir"/base/16384/*; do
        for i in $(shuf -i 0-$(( pages - 1 )) -n "$n" --random-source=<(yes)); do
            dd if=/dev/urandom of="$f" bs=$PAGE seek="$i" count=1 conv=notrunc status=none
        done
    done
}

run_fs() {
    local kind=$1 img="$WORK/$1.img"
    local img_gib=$(( SIZE_MIB * 6 / 1024 + 4 ))
    rm -f "$img"; truncate -s "${img_gib}G" "$img"
    case $kind in
        xfs) mkfs.xfs -q -m reflink=1 "$img" ;;
        btrfs) mkfs.btrfs -q "$img" ;;
        ext4) mkfs.ext4 -q -F "$img" ;;
    esac
    dev=$(losetup --find --show "$img"); mnt="$WORK/mnt-$kind"; mkdir -p "$mnt"; mount "$dev" "$mnt"
    export DVOL_ROOT="$mnt/root"
    local d=( "$DVOL" --disable-docker-integration -q )
    "${d[@]}" init v >/dev/null
    local live; live=$("${d[@]}" path)
    mkdir -p "$live/base/16384"
    local segs=$(( SIZE_MIB / SEG_MIB ))
    for i in $(seq 1 "$segs"); do head -c $(( SEG_MIB * 1048576 )) /dev/urandom > "$live/base/16384/$i"; done
    echo 15 > "$live/PG_VERSION"
    TOTAL=$(( segs * SEG_MIB * 1048576 ))
    "${d[@]}" commit -m data >/dev/null
    SOCK="$mnt/p.sock"
    "$DVOL" plugin serve --socket "$SOCK" 2>"$WORK/plugin-$kind.log" & plugin_pid=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
    local method; method=$("${d[@]}" checkout -b probe >/dev/null && "${d[@]}" info --json | grep -o '"method": *"[a-z]*"' | tail -1 | grep -o '[a-z]*"$' | tr -d '"')
    "${d[@]}" checkout master >/dev/null; "${d[@]}" branch -d probe >/dev/null; "${d[@]}" gc >/dev/null
    echo
    echo "### $kind ($(mib "$TOTAL") MiB volume, auto picks: $method)"
    echo
    echo '| operation | time | extra disk | of the volume |'
    echo '| --- | --- | --- | --- |'
    measure "checkout -b (1st clone of the commit)" "${d[@]}" checkout -b c1
    "${d[@]}" checkout master >/dev/null
    measure "-o from= (plugin Create)" create_from qa1
    measure "branch, 2nd clone" "${d[@]}" branch c2
    for i in 3 4 5 6 7 8 9; do "${d[@]}" branch "c$i" >/dev/null; done
    measure "branch, 10th clone" "${d[@]}" branch c10
    local c1; c1="$mnt/root/v/branches/c1"
    measure "1% page rewrite in a clone" rewrite_pages "$c1"
    "${d[@]}" checkout c1 >/dev/null
    measure "commit of that clone" "${d[@]}" commit -m rewrite
    "${d[@]}" checkout master >/dev/null
    measure "full copy (--clone-method full)" "${d[@]}" --clone-method full branch full
    if [ "$kind" = ext4 ]; then
        measure "cp -a" cp -a "$live" "$mnt/cp-copy"
    else
        measure "cp -a --reflink=always" cp -a --reflink=always "$live" "$mnt/cp-copy"
    fi
    local all_used
    all_used=$(( $(stat -f -c '%b' "$mnt") * $(stat -f -c '%S' "$mnt") - $(free_bytes "$mnt") ))
    echo
    echo "Disk used on the file system at the end (store, master, base, 10 clones, 1 qa volume, full copy, cp copy): $(mib "$all_used") MiB"
    unset DVOL_ROOT
    cleanup
    rm -f "$img"
}

for fs in xfs btrfs ext4; do run_fs "$fs"; done
