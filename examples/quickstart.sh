#!/usr/bin/env bash
# Build dvol and run its main job on the embedded default store (a temporary root):
# create a volume, commit, branch, change data, reset, and verify the store.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
dvol() { ./target/release/dvol --disable-docker-integration "$@"; }
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
