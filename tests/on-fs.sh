#!/usr/bin/env bash
# Run dvol's end-to-end tests with every test root on a loop-mounted file system, so the
# suite exercises what that file system does (reflink clones on XFS and btrfs, overlay
# clones on ext4) instead of whatever /tmp is on. As root:
#
#   tests/on-fs.sh xfs|btrfs|ext4 [arguments for the test binary, e.g. core::]
#
# A sparse image (DVOL_TEST_FS_SIZE, default 8G) is made, formatted, attached to a loop
# device and mounted; the tests run with TMPDIR inside it (every test root is a temporary
# directory) and DVOL_TEST_FS=KIND, which the test support checks against the file system
# it finds. The mount, the loop device (this one, by name) and the image are removed at the
# end, whatever happened. The test binary must be built already
# (`cargo build --release --features failpoints --tests`).
set -euo pipefail

kind=${1:?usage: tests/on-fs.sh xfs|btrfs|ext4 [test arguments]}
shift
case $kind in
xfs) mkfs=(mkfs.xfs -q -m reflink=1) ;;
btrfs) mkfs=(mkfs.btrfs -q) ;;
ext4) mkfs=(mkfs.ext4 -q -F) ;;
*)
    echo "tests/on-fs.sh: unknown file system $kind (xfs, btrfs or ext4)" >&2
    exit 2
    ;;
esac
[ "$(id -u)" = 0 ] || { echo "tests/on-fs.sh: must run as root (losetup, mount)" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$(mktemp -d /tmp/dvol-on-fs.XXXXXX)
# Reachable by others, as /tmp is (tests check what other users can reach below it).
chmod 755 "$dir"
dev=
cleanup() {
    umount -R "$dir/mnt" 2>/dev/null || umount -R -l "$dir/mnt" 2>/dev/null || true
    [ -z "$dev" ] || losetup -d "$dev" || true
    rm -rf "$dir"
}
trap cleanup EXIT

truncate -s "${DVOL_TEST_FS_SIZE:-8G}" "$dir/image"
"${mkfs[@]}" "$dir/image"
dev=$(losetup --find --show "$dir/image")
mkdir "$dir/mnt"
mount "$dev" "$dir/mnt"
chmod 755 "$dir/mnt"
mkdir -m 1777 "$dir/mnt/tmp"

cd "$here"
TMPDIR="$dir/mnt/tmp" DVOL_TEST_FS=$kind \
    cargo test --release --features failpoints --test tests -- "$@"
