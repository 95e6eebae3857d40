#!/usr/bin/env bash
# reset --hard of an overlay clone to its base on a loop-mounted ext4: a page rewritten in each
# of 8 segment files (all copied up), then the reset; prints its time, the free space it gave
# back and what is left in the upper directory. Root. Usage: thin-reset.sh DVOL [SIZE_MIB]
set -euo pipefail
B=$1; MIB=${2:-1024}
D=$(mktemp -d /tmp/thin2rb.XXXX); DEV=
cleanup(){ umount -R $D/m 2>/dev/null || umount -R -l $D/m || true; [ -z "$DEV" ] || losetup -d $DEV; rm -rf $D; }
trap cleanup EXIT
truncate -s 8G $D/img; mkfs.ext4 -q -F $D/img; mkdir $D/m; DEV=$(losetup --find --show $D/img); mount $DEV $D/m
export DVOL_ROOT=$D/m/root
d(){ $B --disable-docker-integration -q "$@"; }
free(){ sync -f $D/m; df -B1M --output=avail $D/m | tail -1; }
d init v >/dev/null; L=$(d path)
for i in $(seq 1 8); do head -c $((MIB/8))M /dev/urandom > $L/seg$i; done
sleep 0.1; d commit -m base >/dev/null
BASE=$(d log --json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["id"])')
d --clone-method overlay checkout -b qa >/dev/null; Q=$(d path)
# the tester rewrites a page in every segment (copy-up of everything), then resets to the base
for i in $(seq 1 8); do dd if=/dev/urandom of=$Q/seg$i bs=8k count=1 seek=3 conv=notrunc status=none; done
f0=$(free); t0=$(date +%s.%N)
d reset --hard $BASE >/dev/null
t1=$(date +%s.%N); f1=$(free)
up=$(du -sm $D/m/root/v/overlays/qa/upper | cut -f1)
echo "reset to base: $(python3 -c "print(round($t1-$t0,2))") s, free space change $((f1-f0)) MiB, upper after: $up MiB"
