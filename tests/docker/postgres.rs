//! The whole workflow on a real PostgreSQL 15 (image built by tests/images/build.sh).
//! Skipped only when DVOL_SKIP_PG_TESTS=1; a missing image is a failure.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn psql(c: &str, sql: &str) -> String {
    docker_ok(&[
        "exec",
        c,
        "psql",
        "-U",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-tAc",
        sql,
    ])
    .trim()
    .to_string()
}

fn wait_ready(c: &str) {
    wait_for(Duration::from_secs(90), "postgres ready", || {
        docker(&["exec", c, "pg_isready", "-U", "postgres", "-q"])
            .status
            .success()
            && docker(&["exec", c, "psql", "-U", "postgres", "-tAc", "select 1"])
                .status
                .success()
    });
}

fn rows(c: &str) -> String {
    psql(c, "select string_agg(x, ',' order by x) from t")
}

#[test]
fn postgres_commit_reset_branch_workflow() {
    if !crate::support::require_docker() {
        return;
    }
    if std::env::var("DVOL_SKIP_PG_TESTS").as_deref() == Ok("1") {
        eprintln!("skipping PostgreSQL test (DVOL_SKIP_PG_TESTS=1)");
        return;
    }
    let s = Scope::new("pg");
    assert!(
        docker(&["image", "inspect", POSTGRES]).status.success(),
        "image {POSTGRES} missing: run tests/images/build.sh (or set DVOL_SKIP_PG_TESTS=1)"
    );
    let v = s.volume("db");
    let c = s.container("db");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "--volume-driver",
        s.driver(),
        "-v",
        &format!("{v}:/var/lib/postgresql/data"),
        POSTGRES,
    ]);
    wait_ready(&c);
    psql(
        &c,
        "create table t(x text); insert into t values ('a'), ('b')",
    );
    s.dvol_ok(&["commit", "--volume", &v, "-m", "two rows"]);
    wait_ready(&c);
    psql(&c, "insert into t values ('c'), ('d'), ('e')");
    assert_eq!(rows(&c), "a,b,c,d,e");

    s.dvol_ok(&["reset", "--volume", &v, "--hard", "HEAD"]);
    wait_ready(&c);
    assert_eq!(rows(&c), "a,b");
    let logs = docker_ok(&["logs", &c]);
    let logs = logs + &String::from_utf8_lossy(&docker(&["logs", &c]).stderr);
    assert!(!logs.contains("PANIC"), "{logs}");
    assert!(!logs.contains("not properly shut down"), "{logs}");

    // Each branch keeps its own rows.
    s.dvol_ok(&["checkout", "--volume", &v, "-b", "feature"]);
    wait_ready(&c);
    psql(&c, "insert into t values ('feature-only')");
    s.dvol_ok(&["commit", "--volume", &v, "-m", "feature row"]);
    s.dvol_ok(&["checkout", "--volume", &v, "master"]);
    wait_ready(&c);
    assert_eq!(rows(&c), "a,b");
    s.dvol_ok(&["checkout", "--volume", &v, "feature"]);
    wait_ready(&c);
    assert_eq!(rows(&c), "a,b,feature-only");

    // Modes and owners survive in commits: a volume restored from the commit (no container
    // has touched it) has PGDATA 0700 owned by postgres, as PostgreSQL demands.
    let pg_uid: u32 = docker_ok(&["exec", &c, "id", "-u", "postgres"])
        .trim()
        .parse()
        .unwrap();
    let qa = s.volume("qa");
    docker_ok(&[
        "volume",
        "create",
        "-d",
        s.driver(),
        "-o",
        &format!("from={v}@feature"),
        &qa,
    ]);
    let qa_live = s.live(&qa);
    let md = std::fs::metadata(&qa_live).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    assert_eq!(md.uid(), pg_uid);
    assert_eq!(
        std::fs::metadata(qa_live.join("PG_VERSION")).unwrap().uid(),
        pg_uid
    );
    // ... and QA can run a server on it with the feature rows.
    let qc = s.container("qa");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &qc,
        "--volume-driver",
        s.driver(),
        "-v",
        &format!("{qa}:/var/lib/postgresql/data"),
        POSTGRES,
    ]);
    wait_ready(&qc);
    assert_eq!(rows(&qc), "a,b,feature-only");
    // The QA copy is a thin clone (the test root is on ext4: an overlay over the commit's
    // base), and what QA writes stays in it.
    let info = s.dvol_ok(&["--volume", &qa, "info", "--json"]);
    assert!(info.contains(r#""method": "overlay""#), "{info}");
    psql(&qc, "insert into t values ('qa-only')");
    assert_eq!(rows(&qc), "a,b,feature-only,qa-only");
    assert_eq!(rows(&c), "a,b,feature-only");
}
