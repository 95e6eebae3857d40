#!/usr/bin/env bash
# Build and install dvol as a Docker *managed* plugin.
#
#   plugin/build.sh [PLUGIN_NAME]        # default dvol:latest
#
# Env: DVOL_BIN (binary to package; default the newest of target/{dist,release,debug}/dvol),
#      DVOL_HOST_ROOT (host directory holding the data; default /var/lib/dvol).
#
# 1. Build a rootfs with our binary and the shared libraries it links (ldd), stripped.
# 2. `docker plugin create NAME DIR` (rootfs + plugin/config.json), then
# 3. make DVOL_HOST_ROOT a shared mount (overlay clones mounted below it by the host CLI or
#    the plugin then show on both sides), bind-mount it onto the plugin's propagated-mount
#    directory and
#    `docker plugin enable NAME`: the plugin serves /var/lib/dvol, which IS the host's
#    DVOL_HOST_ROOT, so the host `dvol` CLI sees the same volumes and history.
#
# The bind mount does not survive a reboot or `docker plugin disable`: run
# `plugin/build.sh --remount [NAME]` before enabling again (docs/docker.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
remount_only=0
if [ "${1:-}" = --remount ]; then remount_only=1; shift; fi
name=${1:-dvol:latest}
host_root=${DVOL_HOST_ROOT:-/var/lib/dvol}
docker_root=$(docker info -f '{{.DockerRootDir}}')

log() { printf '[plugin/build.sh] %s\n' "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

bind_and_enable() {
    local id prop
    id=$(docker plugin inspect -f '{{.Id}}' "$name")
    prop="$docker_root/plugins/$id/propagated-mount"
    mkdir -p "$host_root" "$prop"
    # Overlay clones are mounted below the root by whichever side makes them (the host CLI or
    # the plugin): make the root a shared mount first, so the bind below joins its peer group
    # and mounts propagate both ways.
    if ! mountpoint -q "$host_root"; then
        mount --bind "$host_root" "$host_root"
    fi
    mount --make-rshared "$host_root"
    if ! mountpoint -q "$prop"; then
        mount --bind "$host_root" "$prop"
    fi
    if [ "$(docker plugin inspect -f '{{.Enabled}}' "$name")" != true ]; then
        docker plugin enable "$name" >/dev/null
    fi
    log "enabled $name; data: $host_root (plugin $id)"
}

if [ "$remount_only" = 1 ]; then
    bind_and_enable
    exit 0
fi

bin=${DVOL_BIN:-}
if [ -z "$bin" ]; then
    # The newest of the dist, release and debug builds.
    bin="$top/target/dist/dvol"
    for b in "$top/target/release/dvol" "$top/target/debug/dvol"; do
        if [ ! -x "$bin" ] || [ "$b" -nt "$bin" ]; then bin="$b"; fi
    done
fi
[ -x "$bin" ] || die "no dvol binary at $bin (cargo build --release)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{usr/local/bin,run/docker/plugins,var/lib/dvol,tmp,etc,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
cp "$bin" "$rootfs/usr/local/bin/dvol"
strip "$rootfs/usr/local/bin/dvol" 2>/dev/null || true
# Shared libraries (none when the binary is static).
if ldd "$bin" >/dev/null 2>&1; then
    ldd "$bin" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
    done
fi
printf 'root:x:0:0:root:/root:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
cp "$here/config.json" "$work/config.json"

if docker plugin inspect "$name" >/dev/null 2>&1; then
    log "replacing existing plugin $name"
    docker plugin disable -f "$name" >/dev/null 2>&1 || true
    docker plugin rm -f "$name" >/dev/null
fi
docker plugin create "$name" "$work" >/dev/null
log "created $name from $bin"
bind_and_enable
