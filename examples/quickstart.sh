#!/usr/bin/env bash
# Run dvol's main job on the embedded default store (a temporary root): create a volume,
# commit, branch, change data, reset, and verify the store.
# In the source tree it builds dvol first; installed (the Debian package puts it in
# /usr/share/doc/dvol/examples/) it uses the `dvol` on PATH; DVOL_BIN=PATH picks a binary.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${DVOL_BIN:-}" ]; then
    bin="$DVOL_BIN"
elif [ -f "$top/Cargo.toml" ]; then
    cargo build --release --quiet --manifest-path "$top/Cargo.toml"
    bin="$top/target/release/dvol"
else
    bin="$(command -v dvol)" || { echo "dvol not found: install the package first" >&2; exit 1; }
fi
dvol() { "$bin" --disable-docker-integration "$@"; }
export DVOL_ROOT="${DVOL_ROOT:-$(mktemp -d /tmp/dvol-quickstart.XXXXXX)}"
echo "# root: $DVOL_ROOT"

dvol init demo
live=$(dvol path)
echo "id,name" > "$live/users.csv"
echo "1,ada" >> "$live/users.csv"
dvol commit -m "first user"
echo "2,grace" >> "$live/users.csv"
dvol commit -m "second user"
dvol log --oneline
dvol checkout -b experiment
echo "3,mallory" >> "$(dvol path)/users.csv"
dvol status
dvol reset --hard HEAD^
echo "# experiment after reset --hard HEAD^:"; cat "$(dvol path)/users.csv"
dvol checkout master
echo "# master is untouched:"; cat "$live/users.csv"
dvol list
dvol fsck
