#!/usr/bin/env bash
# Install everything the dvol test-suite needs on a fresh Debian 12 machine.
#
# Idempotent and fast when everything is already there: apt packages are only
# installed when missing, cargo tools only when their binary is not on PATH.
#
# Env knobs:
#   DVOL_CI_SKIP_GARAGE=1   do not install Garage (S3 server, ~8-10 min build)
#   DVOL_CI_SKIP_S3S=1      do not install s3s-fs
#   DVOL_CI_LOG_DIR=DIR     where background build logs go (default /tmp/dvol-ci)
set -euo pipefail

# Pinned tool versions (verified to build with rustc 1.95 and --locked).
S3S_FS_VERSION=0.14.1
CARGO_DEB_VERSION=3.8.0
GARAGE_VERSION=2.5.0

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
LOG_DIR="${DVOL_CI_LOG_DIR:-/tmp/dvol-ci}"
mkdir -p "$LOG_DIR"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

t0=$(date +%s)
log() { printf '[install-deps %s +%4ss] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - t0 ))" "$*"; }

# --------------------------------------------------------------------------
# 1. Garage: the slowest item, so start it first in the background and wait
#    for it at the very end (overlaps with apt + s3s-fs).
# --------------------------------------------------------------------------
garage_pid=""
garage_log="$LOG_DIR/cargo-install-garage.log"
cleanup() {
    if [ -n "$garage_pid" ] && kill -0 "$garage_pid" 2>/dev/null; then
        log "aborting background garage build (pid $garage_pid)"
        kill "$garage_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [ "${DVOL_CI_SKIP_GARAGE:-0}" = 1 ]; then
    log "garage: skipped (DVOL_CI_SKIP_GARAGE=1)"
elif command -v garage >/dev/null 2>&1; then
    log "garage: already installed ($(garage --version 2>/dev/null | head -n1 || echo '?'))"
else
    log "garage: building garage@$GARAGE_VERSION in the background (log: $garage_log)"
    cargo install "garage@$GARAGE_VERSION" --locked >"$garage_log" 2>&1 &
    garage_pid=$!
fi

# --------------------------------------------------------------------------
# 2. Debian packages (only the missing ones).
# --------------------------------------------------------------------------
want_pkgs=(openssh-server openssh-client rsync restic borgbackup zstd
           busybox-static debootstrap docker-compose iproute2 hyperfine time
           systemd  # systemd: systemd-analyze verify for the package's unit files
           xfsprogs btrfs-progs curl  # thin-clone tests and bench: XFS/btrfs images, plugin calls
           etcd-server etcd-client  # cluster mode (issue 15): a 3-member etcd in the multihost test
           bc util-linux)  # the multihost fixture (../shared/multihost): bc, nsenter, unshare
missing=()
for p in "${want_pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# Only pull Debian's docker.io if there is no docker at all (do not fight a
# docker-ce installation).
if ! command -v docker >/dev/null 2>&1; then
    missing+=(docker.io)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    # Retry once with a fresh index if the cached lists are stale/absent.
    if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >"$LOG_DIR/apt.log" 2>&1; then
        log "apt: install failed with current lists, running apt-get update"
        $SUDO apt-get update -q >>"$LOG_DIR/apt.log" 2>&1
        if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1; then
            tail -n 40 "$LOG_DIR/apt.log" >&2
            log "apt: FAILED"
            exit 1
        fi
    fi
    log "apt: done"
else
    log "apt: all packages already installed"
fi

# --------------------------------------------------------------------------
# 3. s3s-fs (small S3 server backed by a directory), foreground.
# --------------------------------------------------------------------------
if [ "${DVOL_CI_SKIP_S3S:-0}" = 1 ]; then
    log "s3s-fs: skipped (DVOL_CI_SKIP_S3S=1)"
elif command -v s3s-fs >/dev/null 2>&1; then
    log "s3s-fs: already installed"
else
    log "s3s-fs: cargo install s3s-fs@$S3S_FS_VERSION"
    if ! cargo install "s3s-fs@$S3S_FS_VERSION" --locked --features binary \
            >"$LOG_DIR/cargo-install-s3s-fs.log" 2>&1; then
        tail -n 40 "$LOG_DIR/cargo-install-s3s-fs.log" >&2
        log "s3s-fs: FAILED"
        exit 1
    fi
    log "s3s-fs: done"
fi

# --------------------------------------------------------------------------
# 4. cargo-deb (builds the Debian package: packaging/build-deb.sh), foreground.
# --------------------------------------------------------------------------
if cargo deb --version >/dev/null 2>&1; then
    log "cargo-deb: already installed"
else
    log "cargo-deb: cargo install cargo-deb@$CARGO_DEB_VERSION"
    if ! cargo install "cargo-deb@$CARGO_DEB_VERSION" --locked \
            >"$LOG_DIR/cargo-install-cargo-deb.log" 2>&1; then
        tail -n 40 "$LOG_DIR/cargo-install-cargo-deb.log" >&2
        log "cargo-deb: FAILED"
        exit 1
    fi
    log "cargo-deb: done"
fi

# --------------------------------------------------------------------------
# 5. Wait for the background garage build.
# --------------------------------------------------------------------------
if [ -n "$garage_pid" ]; then
    log "garage: waiting for background build"
    if wait "$garage_pid"; then
        garage_pid=""
        log "garage: done ($(garage --version 2>/dev/null | head -n1 || echo '?'))"
    else
        garage_pid=""
        tail -n 40 "$garage_log" >&2
        log "garage: FAILED"
        exit 1
    fi
fi

log "all dependencies installed"
