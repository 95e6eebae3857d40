//! s3:// against real S3-compatible servers started by the tests: s3s-fs always, Garage
//! (single node and a three-node cluster with one node stopped) when it is installed.

use super::{free_port, need_binary, round_trip, wait_port, Daemon, Host, Vars};
use std::process::{Command, Stdio};

pub(crate) const AK: &str = "dvoltestaccesskey";
pub(crate) const SK: &str = "dvoltestsecretkey0123456789";

pub(crate) fn aws_vars(port: u16, key: &str, secret: &str) -> Vars {
    vec![
        (
            "AWS_ENDPOINT_URL".into(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("AWS_REGION".into(), "garage".into()),
        ("AWS_ACCESS_KEY_ID".into(), key.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
    ]
}

pub(crate) fn s3s_fs(dir: &std::path::Path) -> (Daemon, u16) {
    let bin = need_binary(
        "s3s-fs",
        "cargo install s3s-fs@0.14.1 --locked --features binary",
    );
    std::fs::create_dir_all(dir.join("bucket")).unwrap();
    let port = free_port();
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", AK, "--secret-key", SK])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port, &mut child, "s3s-fs");
    (Daemon(child), port)
}

/// An s3s-fs server on `dir` (bucket `bucket`) and the environment to reach it.
pub(super) fn s3s_fs_server(dir: &std::path::Path) -> (Daemon, Vars) {
    let (server, port) = s3s_fs(dir);
    (server, aws_vars(port, AK, SK))
}

#[test]
fn remote_s3s_fs_round_trip() {
    if !(crate::support::require_binary(
        "s3s-fs",
        "cargo install s3s-fs@0.14.1 --locked --features binary",
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = s3s_fs(dir.path());
    round_trip("s3://bucket/some/prefix", &aws_vars(port, AK, SK));
}

#[test]
fn group_round_trip_over_s3s_fs() {
    if !(crate::support::require_binary(
        "s3s-fs",
        "cargo install s3s-fs@0.14.1 --locked --features binary",
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = s3s_fs(dir.path());
    super::group_round_trip("s3://bucket/grouped", &aws_vars(port, AK, SK));
}

#[test]
fn remote_s3s_fs_conditional_writes() {
    if !(crate::support::require_binary(
        "s3s-fs",
        "cargo install s3s-fs@0.14.1 --locked --features binary",
    )) {
        return;
    }
    // s3s-fs 0.14.1 honours If-None-Match: * and If-Match on PutObject: no warning.
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = s3s_fs(dir.path());
    let host = Host::new(&aws_vars(port, AK, SK));
    host.ok(&["init", "db"]);
    std::fs::write(host.live().join("f"), "x").unwrap();
    host.commit("one");
    host.ok(&["remote", "add", "origin", "s3://bucket/cas"]);
    let out = host.run(&["push"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("NOT safe"), "{stderr}");
    // Wrong credentials are an error, not a silent success.
    let bad = Host::new(&aws_vars(port, AK, "wrong-secret-key-0000000"));
    let err = bad.fails(&["clone", "s3://bucket/cas", "db"]);
    assert!(err.contains("s3://bucket/cas"), "{err}");
}

/// A Garage cluster of `n` nodes on loopback ports (replication factor `n`).
pub(crate) struct Garage {
    nodes: Vec<Option<Daemon>>,
    s3_ports: Vec<u16>,
    key: String,
    secret: String,
    _dir: tempfile::TempDir,
}

/// `tests/support/garage.sh ARGS`, which knows the test configuration and cluster setup; its
/// standard output.
fn garage_sh(bin: &std::path::Path, args: &[&std::ffi::OsStr]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/garage.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .env("GARAGE_BIN", bin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "garage.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Garage {
    /// The S3 settings of node `i`'s API.
    pub(crate) fn vars(&self, i: usize) -> Vars {
        aws_vars(self.s3_ports[i], &self.key, &self.secret)
    }

    /// Where node `i` keeps object data (uncompressed: `compression_level = "none"`).
    pub(super) fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self._dir.path().join(format!("node{i}")).join("data")
    }
}

/// A Garage cluster of `n` nodes on loopback with bucket `bucket` and a key for it.
pub(crate) fn garage(n: usize) -> Garage {
    let bin = need_binary("garage", "cargo install garage --locked");
    let dir = tempfile::tempdir().unwrap();
    let secret = hex_secret();
    let mut nodes = Vec::new();
    let mut s3_ports = Vec::new();
    let mut cfgs = Vec::new();
    for i in 0..n {
        let (rpc, s3) = (free_port(), free_port());
        let d = dir.path().join(format!("node{i}"));
        let (rpc_addr, s3_addr) = (format!("127.0.0.1:{rpc}"), format!("127.0.0.1:{s3}"));
        let replicas = n.to_string();
        let args: [&std::ffi::OsStr; 6] = [
            "config".as_ref(),
            d.as_os_str(),
            rpc_addr.as_ref(),
            s3_addr.as_ref(),
            secret.as_ref(),
            replicas.as_ref(),
        ];
        garage_sh(&bin, &args);
        let cfg = d.join("garage.toml");
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&cfg)
            .arg("server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_port(s3, &mut child, "garage");
        nodes.push(Some(Daemon(child)));
        s3_ports.push(s3);
        cfgs.push(cfg);
    }
    let mut args: Vec<&std::ffi::OsStr> = vec!["setup".as_ref()];
    args.extend(cfgs.iter().map(|c| c.as_os_str()));
    let out = garage_sh(&bin, &args);
    let (key, secret) = out
        .trim()
        .split_once(' ')
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .unwrap_or_else(|| panic!("garage.sh setup printed {out:?}"));
    Garage {
        nodes,
        s3_ports,
        key,
        secret,
        _dir: dir,
    }
}

fn hex_secret() -> String {
    crate::support::noise(rand_seed(), 32)
        .iter()
        .fold(String::new(), |s, b| s + &format!("{b:02x}"))
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn remote_garage_round_trip_and_cas_warning() {
    if !crate::support::require_binary("garage", "cargo install garage --locked") {
        return;
    }
    let g = garage(1);
    let vars = aws_vars(g.s3_ports[0], &g.key, &g.secret);
    round_trip("s3://bucket/dvol", &vars);
    // Garage 2.x ignores If-None-Match / If-Match on PutObject: dvol must say so.
    let host = Host::new(&vars);
    host.ok(&["init", "db2"]);
    std::fs::write(host.live().join("f"), "x").unwrap();
    host.commit("one");
    host.ok(&["remote", "add", "origin", "s3://bucket/dvol"]);
    let out = host.run(&["push"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not honour") && stderr.contains("concurrent pushes"),
        "{stderr}"
    );
}

#[test]
fn remote_garage_three_nodes_one_stopped_during_push() {
    if !crate::support::require_binary("garage", "cargo install garage --locked") {
        return;
    }
    let mut g = garage(3);
    let vars = aws_vars(g.s3_ports[0], &g.key, &g.secret);
    let laptop = Host::new(&vars);
    laptop.ok(&["init", "db"]);
    crate::support::write(
        &laptop.live().join("big.bin"),
        crate::support::noise(7, 6 << 20),
    );
    super::fill(&laptop.live(), 7);
    laptop.commit("big");
    laptop.ok(&["remote", "add", "origin", "s3://bucket/cluster"]);
    let mut push = laptop.env.dvol();
    for (k, v) in &vars {
        push.env(k, v);
    }
    let child = Command::new(push.get_program())
        .args(push.get_args())
        .envs(push.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("DVOL_TEST_PACK_SIZE", "262144")
        .arg("push")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Stop the third node while packs are being uploaded.
    g.nodes[2] = None;
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        // A request in flight may fail: re-running completes the push.
        eprintln!(
            "first push failed while a node stopped: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        laptop.ok(&["push"]);
    }
    // Clone through another node's S3 endpoint: two of three nodes hold everything.
    let qa = Host::new(&aws_vars(g.s3_ports[1], &g.key, &g.secret));
    qa.ok(&["clone", "s3://bucket/cluster", "db"]);
    super::same_tree(&laptop.live(), &qa.live());
}
