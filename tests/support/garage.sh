#!/bin/bash
# Garage for the tests: the one place that knows how a test Garage node is configured and how a
# fresh Garage cluster is set up. The Rust tests (`remote::s3::garage`, loopback) and
# tests/cluster/multihost.sh (one node per host namespace) start the nodes their own way and
# call this for the rest.
#
#   garage.sh config DIR RPC_ADDR S3_ADDR SECRET REPLICAS
#       write DIR/garage.toml (metadata and data under DIR, stored uncompressed)
#   garage.sh setup CFG...
#       once the nodes of these configurations are started: join them (the first one is
#       asked), give each 1G in zone dc1, apply the layout, create bucket "bucket" and key
#       "dvol" allowed on it; prints "KEY_ID SECRET_KEY"
#
# GARAGE_EXEC: a command prefix for the garage CLI (e.g. "ip netns exec NS" when the first
# node listens in a network namespace); GARAGE_BIN: the binary (default: garage on PATH).
set -euo pipefail
bin=${GARAGE_BIN:-garage}

g() {
    local cfg=$1; shift
    # shellcheck disable=SC2086 # GARAGE_EXEC is a command prefix, split on purpose
    ${GARAGE_EXEC:-} "$bin" -c "$cfg" "$@"
}

# The nodes answer a little after they listen: retry for up to 20 s.
retry() {
    local out="" i
    for i in $(seq 1 100); do
        if out=$(g "$@" 2>&1); then printf '%s\n' "$out"; return 0; fi
        sleep 0.2
    done
    echo "garage ${*:2}: $out" >&2
    return 1
}

case ${1:-} in
config)
    [ $# = 6 ] || { echo "usage: $0 config DIR RPC_ADDR S3_ADDR SECRET REPLICAS" >&2; exit 2; }
    dir=$2; mkdir -p "$dir"
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
compression_level = "none"
replication_factor = $6
rpc_bind_addr = "$3"
rpc_public_addr = "$3"
rpc_secret = "$5"
[s3_api]
s3_region = "garage"
api_bind_addr = "$4"
root_domain = ".s3.garage.localhost"
EOF
    ;;
setup)
    shift
    [ $# -ge 1 ] || { echo "usage: $0 setup CFG..." >&2; exit 2; }
    first=$1
    ids=()
    for cfg in "$@"; do ids+=("$(retry "$cfg" node id -q | tail -1)"); done
    for id in "${ids[@]:1}"; do retry "$first" node connect "$id" >/dev/null; done
    for id in "${ids[@]}"; do retry "$first" layout assign -z dc1 -c 1G "${id%%@*}" >/dev/null; done
    retry "$first" layout apply --version 1 >/dev/null
    retry "$first" bucket create bucket >/dev/null
    info=$(retry "$first" key create dvol)
    retry "$first" bucket allow --read --write --owner bucket --key dvol >/dev/null
    key=$(sed -n 's/^Key ID: *//p' <<<"$info" | head -1)
    secret=$(sed -n 's/^Secret key: *//p' <<<"$info" | head -1)
    [ -n "$key" ] && [ -n "$secret" ] || { echo "no key in: $info" >&2; exit 1; }
    echo "$key $secret"
    ;;
*)
    echo "usage: $0 config DIR RPC_ADDR S3_ADDR SECRET REPLICAS | setup CFG..." >&2
    exit 2
    ;;
esac
