#!/usr/bin/env bash
# Source freeze of a reflink clone: a busybox container rewrites a file of a committed volume
# (SIZE_MIB in FILES files) on a loop-mounted XFS; `dvol branch` pauses it for the clone.
# Prints the time the container was held (dvol::freeze) and the whole command. Root, dockerd,
# the dvol-test-busybox image. Usage: thin-freeze.sh DVOL [SIZE_MIB] [FILES]
set -euo pipefail
B=$1; MIB=${2:-1024}; FILES=${3:-8}
D=$(mktemp -d /tmp/thin2fz.XXXX); DEV=; C=thin2-freeze-$$
cleanup(){ docker rm -f $C >/dev/null 2>&1 || true; umount -R $D/m 2>/dev/null || umount -R -l $D/m || true; [ -z "$DEV" ] || losetup -d $DEV; rm -rf $D; }
trap cleanup EXIT
truncate -s 8G $D/img; mkfs.xfs -q -m reflink=1 $D/img; mkdir $D/m; DEV=$(losetup --find --show $D/img); mount $DEV $D/m
export DVOL_ROOT=$D/m/root
d(){ $B -q "$@"; }
d --disable-docker-integration init v >/dev/null; L=$(d --disable-docker-integration path)
for i in $(seq 1 $FILES); do head -c $((MIB/FILES))M /dev/urandom > $L/seg$i; done
sleep 0.1; d --disable-docker-integration commit -m base >/dev/null
docker run -d --name $C -v $L:/data dvol-test-busybox:latest sh -c 'i=0; while true; do i=$((i+1)); echo $i > /data/counter; done' >/dev/null
sleep 1
t0=$(date +%s.%N)
DVOL_LOG=dvol=debug d branch qa 2>&1 | grep -i "freeze\|reflink clone\|held" | cut -c12-200
t1=$(date +%s.%N)
echo "branch total $(python3 -c "print(round($t1-$t0,2))") s"
