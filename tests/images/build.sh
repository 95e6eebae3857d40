#!/usr/bin/env bash
# Build the local Docker images used by dvol's integration tests, without any
# container registry (nothing is pulled).  See tests/images/README.md.
#
#   dvol-test-busybox:latest   FROM scratch + Debian's static busybox
#   dvol-test-postgres:15      debootstrapped Debian bookworm + postgresql-15
#
# Idempotent: each image carries a label `dvol.input-hash`; if an image with the
# expected hash already exists, it is not rebuilt.  The debootstrapped rootfs is
# cached in $DVOL_CI_CACHE (default /var/cache/dvol-ci) between runs.
#
# The Debian mirror for debootstrap is the machine's own: the first `.../debian` URI of
# /etc/apt/sources.list, /etc/apt/sources.list.d/*.list or *.sources (one serving the suite
# if any). There is no fallback: without one the script stops and says so.
#
# Env knobs:
#   DVOL_SKIP_PG_IMAGE=1     skip the postgres image (the slow one)
#   DVOL_CI_CACHE=DIR        cache dir (default /var/cache/dvol-ci)
#   DVOL_IMAGES_FORCE=1      rebuild even if the hash matches
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${DVOL_CI_CACHE:-/var/cache/dvol-ci}"
BUSYBOX_IMAGE="dvol-test-busybox:latest"
PG_IMAGE="dvol-test-postgres:15"
PG_SUITE="bookworm"
PG_PACKAGES="postgresql-15"
LABEL_KEY="dvol.input-hash"

t0=$(date +%s)
log() { printf '[images %s +%4ss] %s\n' "$(date -u +%H:%M:%S)" "$(( $(date +%s) - t0 ))" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, docker)"
command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "docker daemon not reachable"

mkdir -p "$CACHE"
# Serialise concurrent invocations (e.g. CI + a test helper).
exec 9>"$CACHE/build.lock"
flock 9

image_hash() {  # image -> label value or empty
    docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$1" 2>/dev/null || true
}

up_to_date() {  # image hash
    [ "${DVOL_IMAGES_FORCE:-0}" != 1 ] && [ "$(image_hash "$1")" = "$2" ]
}

# Remove a directory tree safely: never follow into (leftover) mounts.
safe_rm() {
    local d="$1"
    [ -e "$d" ] || return 0
    # Unmount anything a failed debootstrap may have left mounted below $d.
    awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$d"
}

# --------------------------------------------------------------------------
# busybox
# --------------------------------------------------------------------------
build_busybox() {
    local bb=/bin/busybox hash tmp
    { [ -x "$bb" ] && "$bb" --list-full >/dev/null 2>&1; } ||
        die "$bb missing: apt-get install busybox-static (see .ci/install-deps.sh)"
    file_is_static "$bb" || die "$bb is not statically linked (need busybox-static, not busybox)"

    hash=$( { sha256sum "$bb"; declare -f build_busybox; } | sha256sum | cut -c1-32)
    if up_to_date "$BUSYBOX_IMAGE" "$hash"; then
        log "$BUSYBOX_IMAGE is up to date ($hash)"
        return 0
    fi
    log "building $BUSYBOX_IMAGE ($hash)"
    tmp=$(mktemp -d)
    mkdir -p "$tmp/rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp,home,proc,sys,dev}
    chmod 1777 "$tmp/rootfs/tmp" "$tmp/rootfs/var/tmp"
    chmod 0700 "$tmp/rootfs/root"
    cp "$bb" "$tmp/rootfs/bin/busybox"
    chmod 0755 "$tmp/rootfs/bin/busybox"
    local applet
    for applet in $("$bb" --list-full); do
        [ "$applet" = bin/busybox ] && continue
        ln -sf /bin/busybox "$tmp/rootfs/$applet"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
        >"$tmp/rootfs/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$tmp/rootfs/etc/group"
    tar -C "$tmp/rootfs" --numeric-owner --owner=0 --group=0 -c . |
        docker import \
            --change "LABEL $LABEL_KEY=$hash" \
            --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'WORKDIR /' \
            --change 'CMD ["/bin/sh"]' \
            --message "dvol test busybox image" \
            - "$BUSYBOX_IMAGE" >/dev/null
    rm -rf "$tmp"
    docker run --rm "$BUSYBOX_IMAGE" sh -c 'echo ok && sleep 0 && seq 1 3 | wc -l >/dev/null' |
        grep -qx ok || die "$BUSYBOX_IMAGE smoke test failed"
    log "built $BUSYBOX_IMAGE"
}

file_is_static() {
    # ldd (libc-bin, essential) refuses static executables.
    ! ldd "$1" >/dev/null 2>&1
}

# --------------------------------------------------------------------------
# postgres
# --------------------------------------------------------------------------
debian_mirror() {
    # deb822 (*.sources) and one-line (*.list) formats.  Prefer a URI serving
    # exactly $PG_SUITE, else any non-security Debian URI.
    local f exact="" any=""
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        while read -r uri suites; do
            case "$uri" in *debian-security*|*security.debian*) continue ;; esac
            case "$uri" in */debian|*/debian/) ;; *) continue ;; esac
            [ -n "$any" ] || any="$uri"
            case " $suites " in *" $PG_SUITE "*) [ -n "$exact" ] || exact="$uri" ;; esac
        done < <(awk '
            /^[ \t]*#/ { next }
            /^deb[ \t]/ { u = ""; s = "";
                for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { u = $i; s = $(i+1); break }
                if (u != "") print u, s; next }
            /^URIs:/    { n = split($0, a, /[ \t]+/); uri = a[2] }
            /^Suites:/  { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            /^Types:/   { types = $0 }
            /^[ \t]*$/  { if (uri != "" && types ~ /deb( |$)/) print uri, suites; uri = ""; suites = ""; types = "" }
            END         { if (uri != "" && types ~ /deb( |$)/) print uri, suites }
        ' "$f")
    done
    [ -n "$exact$any" ] || return 1
    echo "${exact:-$any}"
}

build_pg_rootfs() {  # -> sets PG_ROOTFS, PG_ROOTFS_STAMP
    local recipe rootfs="$CACHE/pg-rootfs" tmp mirror
    recipe=$( { echo "$PG_SUITE $PG_PACKAGES"; declare -f build_pg_rootfs; } | sha256sum | cut -c1-32)
    PG_ROOTFS="$rootfs"
    if [ "${DVOL_IMAGES_FORCE:-0}" != 1 ] && [ -f "$rootfs/.dvol-rootfs-stamp" ] &&
        [ "$(cut -d' ' -f1 "$rootfs/.dvol-rootfs-stamp")" = "$recipe" ]; then
        PG_ROOTFS_STAMP=$(cat "$rootfs/.dvol-rootfs-stamp")
        log "reusing cached rootfs $rootfs"
        return 0
    fi
    command -v debootstrap >/dev/null || die "debootstrap missing (see .ci/install-deps.sh)"
    mirror=$(debian_mirror) || die "no Debian mirror in the machine's apt sources \
(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list, *.sources): add one, then run again"
    tmp="$rootfs.tmp"
    safe_rm "$tmp"
    mkdir -p "$CACHE/debootstrap-debs"
    log "debootstrap --variant=minbase $PG_SUITE from $mirror (+ $PG_PACKAGES); log: $CACHE/debootstrap.log"
    if ! debootstrap --variant=minbase --include="$PG_PACKAGES" \
            --cache-dir="$CACHE/debootstrap-debs" \
            "$PG_SUITE" "$tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 30 "$CACHE/debootstrap.log" >&2
        [ -f "$tmp/debootstrap/debootstrap.log" ] && tail -n 30 "$tmp/debootstrap/debootstrap.log" >&2
        safe_rm "$tmp"
        die "debootstrap failed"
    fi
    # The package's postinst created a default cluster (15/main): not wanted.
    rm -rf "$tmp/var/lib/postgresql/15" "$tmp/etc/postgresql/15"
    mkdir -p "$tmp/var/lib/postgresql/data" "$tmp/run/postgresql"
    chroot "$tmp" chown postgres:postgres /var/lib/postgresql/data /run/postgresql
    chmod 0700 "$tmp/var/lib/postgresql/data"
    # Slim down: package caches, indexes, docs.
    rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"* \
        "$tmp/usr/share/doc/"* "$tmp/usr/share/man/"* "$tmp/usr/share/info/"* \
        "$tmp/usr/share/locale/"*
    # LLVM JIT (~130 MB with libz3): postgres disables JIT by itself when
    # llvmjit.so cannot be loaded, and tests never need it.
    rm -rf "$tmp/usr/lib/postgresql/15/lib/llvmjit"* "$tmp/usr/lib/postgresql/15/lib/bitcode" \
        "$tmp/usr/lib/x86_64-linux-gnu/"libLLVM* "$tmp/usr/lib/x86_64-linux-gnu/"libz3.so*
    echo "$recipe $(date -u +%Y%m%dT%H%M%SZ)" >"$tmp/.dvol-rootfs-stamp"
    safe_rm "$rootfs"
    mv "$tmp" "$rootfs"
    PG_ROOTFS_STAMP=$(cat "$rootfs/.dvol-rootfs-stamp")
    log "rootfs ready ($(du -sh --one-file-system "$rootfs" | cut -f1))"
}

build_postgres() {
    local entry="$HERE/postgres-entrypoint.sh" hash
    [ -f "$entry" ] || die "$entry missing"
    build_pg_rootfs
    hash=$( { echo "$PG_ROOTFS_STAMP"; sha256sum <"$entry"; declare -f build_postgres; } | sha256sum | cut -c1-32)
    if up_to_date "$PG_IMAGE" "$hash"; then
        log "$PG_IMAGE is up to date ($hash)"
        return 0
    fi
    log "importing $PG_IMAGE ($hash)"
    install -m 0755 "$entry" "$PG_ROOTFS/usr/local/bin/dvol-pg-entrypoint"
    tar -C "$PG_ROOTFS" --numeric-owner \
        --exclude=./.dvol-rootfs-stamp --exclude='./dev/*' --exclude='./proc/*' \
        --exclude='./sys/*' --exclude=./debootstrap -c . |
        docker import \
            --change "LABEL $LABEL_KEY=$hash" \
            --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV PGDATA=/var/lib/postgresql/data' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'WORKDIR /var/lib/postgresql' \
            --change 'EXPOSE 5432' \
            --change 'ENTRYPOINT ["/usr/local/bin/dvol-pg-entrypoint"]' \
            --change 'CMD []' \
            --message "dvol test postgres 15 image" \
            - "$PG_IMAGE" >/dev/null
    docker run --rm "$PG_IMAGE" postgres --version | grep -q 'PostgreSQL) 15' ||
        die "$PG_IMAGE smoke test failed"
    log "built $PG_IMAGE"
}

build_busybox
if [ "${DVOL_SKIP_PG_IMAGE:-0}" = 1 ]; then
    log "skipping $PG_IMAGE (DVOL_SKIP_PG_IMAGE=1)"
else
    build_postgres
fi
# Drop dangling layers left behind by re-imports under the same tag.
docker image prune -f --filter "label=$LABEL_KEY" >/dev/null 2>&1 || true
log "done"
