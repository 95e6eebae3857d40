//! examples/qa-workflow.sh end to end: production PostgreSQL snapshotted with the timer's
//! command to a remote, QA pulls, masks once, gives testers copies, resets and drops them.
//! Production uses its own root (its live directory bind-mounted), QA the test plugin's root;
//! the remote is S3 (s3s-fs, as Garage is not always installed).

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
    let s3_dir = dir.path().join("s3");
    let (_s3, port) = crate::remote::s3::s3s_fs(&s3_dir);
    let remote = s3_dir.join("bucket/prod");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/qa-workflow.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .envs(crate::remote::s3::aws_vars(
            port,
            crate::remote::s3::AK,
            crate::remote::s3::SK,
        ))
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
    // (s3s-fs keeps each key as a file under the bucket's directory.)
    assert!(remote
        .join(format!("refs/{}-prod/heads/master", s.tag))
        .is_file());
    assert!(!remote.join("refs").join(&qa_vol).exists());
    // The testers' volumes are gone from dvol too.
    let list = s.dvol_ok(&["list"]);
    assert!(!list.contains(&format!("{}-alice", s.tag)), "{list}");
    s.dvol_ok(&["rm", "-f", &qa_vol]);
}
