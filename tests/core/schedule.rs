//! The scheduled-snapshot units (packaging/systemd/dvol-snapshot@.{service,timer}): they pass
//! `systemd-analyze verify`, and the service's exact command line, with the environment its
//! unit file sets, commits, pushes, prunes and gcs a volume of a temporary root.

use crate::support::{write, Env};
use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd")
}

/// `Key=value` lines of a unit file's `[Service]` (or any) section, in order.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// The unit's ExecStart with the script path pointing into the repository.
fn exec_start(service: &str) -> String {
    let exec = unit_values(service, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart: {exec:?}");
    exec[0].replace(
        "/usr/lib/dvol/dvol-snapshot",
        unit_dir().join("dvol-snapshot").to_str().unwrap(),
    )
}

#[test]
fn snapshot_units_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: skipping unit verification");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(unit_dir().join("dvol-snapshot@.service")).unwrap();
    let fixed = service.replace(
        "/usr/lib/dvol/dvol-snapshot",
        unit_dir().join("dvol-snapshot").to_str().unwrap(),
    );
    // An instance whose name needs escaping: volume "my-db" is instance "my\x2ddb".
    let name = r"dvol-snapshot@my\x2ddb";
    std::fs::write(dir.path().join(format!("{name}.service")), fixed).unwrap();
    std::fs::copy(
        unit_dir().join("dvol-snapshot@.timer"),
        dir.path().join(format!("{name}.timer")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join(format!("{name}.service")))
        .arg(dir.path().join(format!("{name}.timer")))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The instance unescapes to the volume name.
    let esc = Command::new("systemd-escape")
        .args(["-u", r"my\x2ddb"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&esc.stdout).trim(), "my-db");
}

/// Run the service's ExecStart for instance `volume` the way systemd would: the unit's
/// `Environment=` lines with `%I` expanded, then the settings of the env file.
fn run_service(env: &Env, volume: &str, settings: &[(&str, &str)]) -> std::process::Output {
    let service = std::fs::read_to_string(unit_dir().join("dvol-snapshot@.service")).unwrap();
    let exec = exec_start(&service).replace("%I", volume);
    let mut words = exec.split_whitespace();
    let mut cmd = Command::new(words.next().unwrap());
    cmd.args(words)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap());
    for e in unit_values(&service, "Environment") {
        let (k, v) = e.split_once('=').unwrap();
        cmd.env(k, v.replace("%I", volume));
    }
    cmd.env("DVOL_ROOT", env.root())
        .env("DVOL", env!("CARGO_BIN_EXE_dvol"))
        // No Docker engine: the commit's --pause has no containers to freeze.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    for (k, v) in settings {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn snapshot_service_commits_pushes_prunes_and_gcs() {
    let env = Env::new();
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().join("r").to_str().unwrap().to_string();
    let live = env.init("my-db");
    env.ok(&["init", "other"]); // the current volume is not the one snapshotted
    env.ok(&["--volume", "my-db", "remote", "add", "origin", &url]);
    let settings = [
        ("REMOTE", "origin"),
        ("KEEP_LAST", "2"),
        ("PRUNE_REMOTE", "1"),
        ("GRACE", "0"),
    ];
    for round in 0..4 {
        write(&live.join("table"), format!("round {round}\n").repeat(5000));
        let out = run_service(&env, "my-db", &settings);
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A run with nothing changed does not fail the unit.
    let out = run_service(&env, "my-db", &settings);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = env.ok(&["--volume", "my-db", "log", "--oneline"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert!(
        lines.iter().all(|l| l.contains("scheduled snapshot 20")),
        "{log}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("(expired)")).count(),
        3,
        "{log}"
    );
    assert!(env.ok(&["fsck"]).contains("no problems"));
    // Pushed, and pruned on the remote too: a clone has the data of the kept snapshots only.
    let qa = Env::new();
    qa.ok(&["clone", &url, "my-db"]);
    assert_eq!(
        std::fs::read_to_string(qa.live().join("table")).unwrap(),
        "round 3\n".repeat(5000)
    );
    let qa_log = qa.ok(&["log", "--oneline"]);
    assert_eq!(
        qa_log.lines().filter(|l| l.contains("(expired)")).count(),
        3,
        "{qa_log}"
    );
    // The other volume was not touched.
    assert!(env
        .ok(&["--volume", "other", "log", "--oneline"])
        .is_empty());
}

#[test]
fn snapshot_service_without_settings_only_commits_and_gcs() {
    let env = Env::new();
    let live = env.init("db");
    write(&live.join("f"), "x");
    let out = run_service(&env, "db", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.ok(&["log", "--oneline"]).lines().count(), 1);
    // A volume that does not exist fails the unit with dvol's message.
    let out = run_service(&env, "nope", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope does not exist"));
}
