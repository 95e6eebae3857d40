#!/usr/bin/env bash
# Build the Debian package: target/debian/dvol_<version>-1_<arch>.deb.
#
#   packaging/build-deb.sh              # from the `dist` profile (what users install)
#   DVOL_DEB_PROFILE=release packaging/build-deb.sh   # quicker, for trying things out
#
# 1. cargo build --profile dist (LTO, one codegen unit, stripped: Cargo.toml)
# 2. that binary writes its man pages and shell completions (`dvol generate-assets DIR`,
#    hidden): they come from the same clap definitions as the binary's --help
# 3. cargo deb --no-build packages them with the systemd units (packaging/systemd) and the
#    maintainer scripts (packaging/debian), per [package.metadata.deb] in Cargo.toml.
# Needs cargo-deb (`cargo install cargo-deb --locked`, done by .ci/install-deps.sh).
# Prints the path of the package on the last line of stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

profile=${DVOL_DEB_PROFILE:-dist}
log() { printf '[build-deb] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cargo deb --version >/dev/null 2>&1 || die "cargo-deb missing: cargo install cargo-deb --locked"

t0=$(date +%s)
log "cargo build --locked --profile $profile --bin dvol"
cargo build --locked --profile "$profile" --bin dvol >&2
target=${CARGO_TARGET_DIR:-target}
bin="$target/$profile/dvol"
[ -x "$bin" ] || die "no binary at $bin"
size=$(stat -c %s "$bin")
log "binary: $bin, $size bytes, built in $(( $(date +%s) - t0 ))s"
# What users install stays small (issue 13: under 20 MB).
if [ "$profile" = dist ] && [ "$size" -ge 20000000 ]; then
    die "the dist binary is $size bytes: over the 20 MB budget"
fi

# Cargo.toml's assets name target/dvol-assets (relative to the crate, whatever the target dir).
rm -rf target/dvol-assets
"$bin" generate-assets target/dvol-assets
log "generated $(find target/dvol-assets/man -name '*.1' | wc -l) man pages and $(find target/dvol-assets/completions -type f | wc -l) completion files"

rm -f "$target"/debian/dvol_*.deb
# cargo deb prints the package's path on stdout.
deb=$(cargo deb --locked --profile "$profile" --no-build | tail -n1)
[ -n "$deb" ] && [ -f "$deb" ] || die "cargo deb produced no package"
log "package: $deb ($(stat -c %s "$deb") bytes)"
echo "$deb"
