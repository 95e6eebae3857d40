#!/usr/bin/env bash
# Build the Debian package and prove it works where users install it:
#   - install it with dpkg into a clean Debian container (the debootstrapped bookworm image
#     tests/images/build.sh makes; no network), run the quickstart there with the installed
#     binary, check the default root (/var/lib/dvol, 0700), the man pages (one per command),
#     the bash/zsh/fish completions, the enabled systemd units, and that remove and purge
#     keep the data (purge saying where it is);
#   - check the unit files with `systemd-analyze verify` on this host, against the
#     package's own files.
#
#   packaging/test-deb.sh [PACKAGE.deb]     (default: build one with packaging/build-deb.sh)
#
# Env: DVOL_DEB_PROFILE (see build-deb.sh), DVOL_DEB_IMAGE (default dvol-test-postgres:15).
# Needs root and a running dockerd (as the rest of CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
image=${DVOL_DEB_IMAGE:-dvol-test-postgres:15}
log() { printf '[test-deb %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

docker image inspect "$image" >/dev/null 2>&1 ||
    die "image $image missing: run tests/images/build.sh (as root, with dockerd running)"
deb=${1:-$(packaging/build-deb.sh | tail -n1)}
[ -f "$deb" ] || die "no package at $deb"
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
log "package $deb ($(stat -c %s "$deb") bytes)"

# 1. The unit files, as packaged, checked by systemd itself (on the host: the image has no
#    systemd). The package is unpacked into a scratch root so ExecStart's binary exists.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/root"
units=$(find "$work/root" -path '*/systemd/system/dvol-plugin.*' | sort)
[ "$(echo "$units" | wc -l)" = 2 ] || die "expected dvol-plugin.service and .socket, got: $units"
# The targets the units order against (sysinit.target, sockets.target, ...) come from this
# host's systemd; `--man=no`: the man pages are checked in the container below. systemd
# reports a bad setting as a warning and exits 0, so any output fails.
unitdir=$(dirname "$(echo "$units" | head -n1)")
for sysdir in /usr/lib/systemd/system /lib/systemd/system; do
    [ -e "$sysdir/sysinit.target" ] && break
done
[ -e "$sysdir/sysinit.target" ] || die "no systemd unit directory on this host (apt-get install systemd)"
cp -n "$sysdir"/*.target "$unitdir/"
log "systemd-analyze verify $(basename -a $units | tr '\n' ' ')"
out=$(systemd-analyze verify --man=no --root="$work/root" $units 2>&1) || die "systemd-analyze verify: $out"
[ -z "$out" ] || die "systemd-analyze verify: $out"

# 2. Install into a clean container and use it.
log "installing into a clean $image container"
docker run --rm --network none -v "$deb:/tmp/dvol.deb:ro" --entrypoint /bin/bash "$image" -c '
set -euo pipefail
fail() { echo "FAILED: $*" >&2; exit 1; }
dpkg -i /tmp/dvol.deb
[ "$(command -v dvol)" = /usr/bin/dvol ] || fail "dvol not on PATH"
dvol --version
[ "$(stat -c %a /var/lib/dvol)" = 700 ] || fail "/var/lib/dvol is not 0700"
for page in dvol dvol-commit dvol-reset dvol-remote dvol-remote-add dvol-plugin-serve; do
    zcat "/usr/share/man/man1/$page.1.gz" | grep -q "^\.TH" || fail "man page $page missing"
done
echo "man pages: $(ls /usr/share/man/man1/dvol*.1.gz | wc -l)"
grep -q "dvol" /usr/share/bash-completion/completions/dvol || fail "bash completion"
grep -q "#compdef dvol" /usr/share/zsh/vendor-completions/_dvol || fail "zsh completion"
grep -q "complete -c dvol" /usr/share/fish/vendor_completions.d/dvol.fish || fail "fish completion"
bash -c "source /usr/share/bash-completion/completions/dvol && complete -p dvol" >/dev/null ||
    fail "bash completion does not load"
for u in dvol-plugin.service dvol-plugin.socket; do
    ls /lib/systemd/system/$u /usr/lib/systemd/system/$u 2>/dev/null | grep -q . || fail "unit $u missing"
done
# Enabled on install: the [Install] symlinks deb-systemd-helper made.
[ -L /etc/systemd/system/multi-user.target.wants/dvol-plugin.service ] || fail "dvol-plugin.service not enabled"
[ -L /etc/systemd/system/sockets.target.wants/dvol-plugin.socket ] || fail "dvol-plugin.socket not enabled"
echo "units enabled"
echo "--- quickstart with the installed binary"
bash /usr/share/doc/dvol/examples/quickstart.sh
echo "--- remove and purge keep the data"
dvol -p /var/lib/dvol --disable-docker-integration init kept >/dev/null
dpkg -r dvol >/dev/null
[ -d /var/lib/dvol/kept ] || [ -n "$(ls -A /var/lib/dvol)" ] || fail "remove deleted the data"
dpkg -P dvol 2>&1 | tee /tmp/purge.log
grep -q "kept in /var/lib/dvol" /tmp/purge.log || fail "purge did not say where the data is"
[ -n "$(ls -A /var/lib/dvol)" ] || fail "purge deleted the data"
echo "package OK"
'
log "package installed, quickstart ran, units verified: OK"
