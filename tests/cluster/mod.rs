//! Cluster mode (issue 15) end to end: `tests/cluster/multihost.sh` brings up three Docker
//! hosts (the multihost fixture), a 3-member etcd, the shared remote (a 3-node Garage, one node
//! per host) and the dvol plugin in cluster mode on every host, runs the scenarios (a volume
//! moves between hosts through the remote, fencing of Mount and CLI, a lease race of many
//! rounds, transfers longer than the lease TTL, a Swarm drain, a PostgreSQL service under
//! pgbench drained with every acknowledged transaction, a partitioned holder, a holder
//! cut from etcd only) and tears everything down. Without Garage (a developer machine) the
//! remote is `dvol serve` and the test says so; CI (`DVOL_TEST_REQUIRE_ALL=1`) requires it.

use crate::support::{bin, require_binary, require_docker, skip};
use std::path::PathBuf;

/// The multihost fixture: `DVOL_MULTIHOST_FIXTURE`, else `shared/multihost` beside the project
/// (or beside the worktree directory holding it).
fn fixture() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("DVOL_MULTIHOST_FIXTURE")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            manifest.join("../shared/multihost"),
            manifest.join("../../shared/multihost"),
        ])
        .find(|d| d.join("nodes-up.sh").is_file() && d.join("down.sh").is_file())
}

#[test]
fn cluster_volumes_follow_containers_between_hosts() {
    if !require_docker()
        || !require_binary("etcd", "apt-get install etcd-server")
        || !require_binary("etcdctl", "apt-get install etcd-client")
        || !require_binary("nsenter", "apt-get install util-linux")
    {
        return;
    }
    let Some(fixture) = fixture() else {
        skip("the multihost fixture (../shared/multihost, or DVOL_MULTIHOST_FIXTURE=DIR)");
        return;
    };
    let remote = if crate::support::find_binary("garage").is_some() {
        "garage"
    } else {
        // Fails under DVOL_TEST_REQUIRE_ALL; elsewhere says the remote is dvol serve instead.
        skip("garage (cargo install garage --locked) for the shared remote; using dvol serve");
        "serve"
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/multihost.sh");
    let out = std::process::Command::new("bash")
        .env("DVOL_CLUSTER_REMOTE_KIND", remote)
        .arg(&script)
        .arg(bin())
        .arg(&fixture)
        .output()
        .expect("run tests/cluster/multihost.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "multihost cluster scenarios failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("PASSED all cluster scenarios"), "{stdout}");
    // The scenario timings, shown with --nocapture.
    println!("{stdout}");
}
