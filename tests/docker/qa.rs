//! examples/qa-workflow.sh end to end: production PostgreSQL snapshotted with the timer's
//! command to a remote, QA pulls, masks once, gives testers copies, resets and drops them.
//! Production uses its own root (its live directory bind-mounted), QA the test plugin's root;
//! the remote is S3 on Garage (a single node). A developer machine without Garage runs it on
//! s3s-fs instead and says so; CI (`DVOL_TEST_REQUIRE_ALL=1`) requires Garage.

use super::*;

#[test]
fn qa_workflow_example_runs() {
    if std::env::var("DVOL_SKIP_PG_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping PostgreSQL test (DVOL_SKIP_PG_TESTS=1)");
        return;
    }
    let s = Scope::new("qa");
    assert!(
        docker(&["image", "inspect", POSTGRES]).status.success(),
        "image {POSTGRES} missing: run tests/images/build.sh (or set DVOL_SKIP_PG_TESTS=1)"
    );
    for c in ["prod", "mask", "alice", "bob"] {
        s.container(c);
    }
    for v in ["qa", "alice", "bob"] {
        s.track_volume(&format!("{}-{v}", s.tag));
    }
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/qa-workflow.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .envs(s3.vars())
        .env("REMOTE_URL", "s3://bucket/prod")
        .env("PROD_ROOT", dir.path().join("prod"))
        .env("QA_ROOT", s.root())
        .env("QA_DRIVER", s.driver())
        .env("DVOL", env!("CARGO_BIN_EXE_dvol"))
        .env("NAME", &s.tag)
        .env("PG_IMAGE", POSTGRES)
        .env_remove("DVOL_ROOT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qa-workflow.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ok: customers before masking = 4",
        "ok: alice sees personal emails = 0",
        "ok: bob sees personal emails = 0",
        "ok: alice after deleting gold customers = 1",
        "ok: bob is not affected = 4",
        "ok: alice after reset = 4",
        "QA workflow complete",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // Production's two scheduled snapshots reached the remote; QA's masked branch stays local.
    let qa_vol = format!("{}-qa", s.tag);
    let log = s.dvol_ok(&["log", "--volume", &qa_vol, "--oneline"]);
    assert!(
        log.lines()
            .next()
            .unwrap()
            .contains("masked: no personal data"),
        "{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("scheduled snapshot"))
            .count(),
        2,
        "{log}"
    );
    // What the remote holds, read back through dvol from a third host: production's
    // history, and nothing of QA's (no volume, so no masked branch).
    let third = dir.path().join("third");
    let on_third = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dvol"))
            .arg("-p")
            .arg(&third)
            .arg("--disable-docker-integration")
            .args(args)
            .envs(s3.vars())
            .output()
            .unwrap()
    };
    let prod_vol = format!("{}-prod", s.tag);
    let cloned = on_third(&["clone", "s3://bucket/prod", &prod_vol, "copy"]);
    assert!(cloned.status.success(), "{cloned:?}");
    let prod_log = on_third(&["log", "--volume", "copy", "--oneline"]);
    let prod_log = String::from_utf8_lossy(&prod_log.stdout);
    assert_eq!(
        prod_log
            .lines()
            .filter(|l| l.contains("scheduled snapshot"))
            .count(),
        2,
        "{prod_log}"
    );
    assert!(!prod_log.contains("masked"), "{prod_log}");
    let qa_there = on_third(&["clone", "s3://bucket/prod", &qa_vol, "qa"]);
    assert!(
        !qa_there.status.success(),
        "QA's volume reached the remote: {qa_there:?}"
    );
    // The testers' volumes are gone from dvol too.
    let list = s.dvol_ok(&["list"]);
    assert!(!list.contains(&format!("{}-alice", s.tag)), "{list}");
    s.dvol_ok(&["rm", "-f", &qa_vol]);
}

/// The S3 remote of the workflow: Garage when installed, else s3s-fs on a developer machine.
enum S3 {
    Garage(crate::remote::s3::Garage),
    S3sFs {
        _server: crate::remote::Daemon,
        port: u16,
    },
}

impl S3 {
    fn start(dir: &Path) -> S3 {
        if crate::support::find_binary("garage").is_some() {
            return S3::Garage(crate::remote::s3::garage(1));
        }
        // Fails under DVOL_TEST_REQUIRE_ALL; elsewhere says the remote is s3s-fs instead.
        crate::support::skip("garage (cargo install garage --locked) for S3; using s3s-fs");
        let (server, port) = crate::remote::s3::s3s_fs(&dir.join("s3"));
        S3::S3sFs {
            _server: server,
            port,
        }
    }

    fn vars(&self) -> crate::remote::Vars {
        match self {
            S3::Garage(g) => g.vars(0),
            S3::S3sFs { port, .. } => {
                crate::remote::s3::aws_vars(*port, crate::remote::s3::AK, crate::remote::s3::SK)
            }
        }
    }
}
