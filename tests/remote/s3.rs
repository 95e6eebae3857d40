//! s3:// against real S3-compatible servers started by the tests: s3s-fs always, Garage
//! (single node and a three-node cluster with one node stopped) when it is installed.

use super::{free_port, need_binary, round_trip, wait_port, Daemon, Host, Vars};
use std::process::{Command, Stdio};

const AK: &str = "dvoltestaccesskey";
const SK: &str = "dvoltestsecretkey0123456789";

fn aws_vars(port: u16, key: &str, secret: &str) -> Vars {
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

fn s3s_fs(dir: &std::path::Path) -> (Daemon, u16) {
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

#[test]
fn remote_s3s_fs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = s3s_fs(dir.path());
    round_trip("s3://bucket/some/prefix", &aws_vars(port, AK, SK));
}

#[test]
fn remote_s3s_fs_conditional_writes() {
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
