//! The container-aware CLI: list, commit (stop or pause), checkout, reset, rm.

use super::*;

/// A busybox service that exits on SIGTERM (PID 1 ignores signals it does not trap).
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

/// A busybox service that counts its starts and writes `flushed` on SIGTERM.
const FLUSHER: &str = "trap 'echo flushed > /data/flushed; exit 0' TERM; \
     echo start >> /data/starts; while true; do sleep 0.1; done";

fn starts(s: &Scope, v: &str) -> usize {
    read(&s.live(v).join("starts")).lines().count()
}

#[test]
fn commit_stops_flushes_and_restarts_containers() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("commit");
    let v = s.volume("app");
    s.dvol_ok(&["init", &v]);
    s.dvol_ok(&["commit", "--volume", &v, "-m", "empty"]);
    let c = s.run_busybox("app", &v, FLUSHER);
    wait_for(Duration::from_secs(20), "first start", || {
        starts(&s, &v) == 1
    });

    let list = s.dvol_ok(&["list"]);
    let row = list.lines().find(|l| l.contains(&v)).expect("row");
    assert!(row.trim_end().ends_with(&format!("/{c}")), "{list}");

    let out = s.dvol_ok(&["commit", "--volume", &v, "-m", "with flush"]);
    let id = out.split_whitespace().last().unwrap();
    assert!(
        id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{out}"
    );
    // Started again by dvol, on the same volume.
    assert!(running(&c));
    wait_for(Duration::from_secs(20), "restart", || starts(&s, &v) == 2);
    // What the process flushed on SIGTERM is in the commit.
    let diff = s.dvol_ok(&["diff", "--volume", &v, "HEAD^", "HEAD"]);
    assert!(diff.lines().any(|l| l == "A\tflushed"), "{diff}");
    assert!(diff.lines().any(|l| l == "A\tstarts"), "{diff}");
}

#[test]
fn commit_pause_freezes_without_restarting() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("pause");
    let v = s.volume("app");
    let c = s.run_busybox("app", &v, FLUSHER);
    wait_for(Duration::from_secs(20), "start", || starts(&s, &v) == 1);
    let before = started_at(&c);
    s.dvol_ok(&["commit", "--volume", &v, "--pause", "-m", "paused"]);
    assert_eq!(started_at(&c), before, "--pause restarted the container");
    assert_eq!(inspect(&c, "{{.State.Status}}"), "running");
    assert!(!s.live(&v).join("flushed").exists());
}

#[test]
fn checkout_and_reset_restart_containers_on_the_new_data() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("switch");
    let v = s.volume("app");
    let c = s.run_busybox("app", &v, IDLE);
    let master = s.live(&v);
    std::fs::write(master.join("who"), "master").unwrap();
    s.dvol_ok(&["commit", "--volume", &v, "-m", "master data"]);
    let cat = || docker_ok(&["exec", &c, "cat", "/data/who"]);
    assert_eq!(cat(), "master");

    let t0 = started_at(&c);
    s.dvol_ok(&["checkout", "--volume", &v, "-b", "feature"]);
    assert!(running(&c));
    assert_ne!(started_at(&c), t0, "checkout did not restart the container");
    let feature = s.live(&v);
    assert!(feature.ends_with("branches/feature"));
    std::fs::write(feature.join("who"), "feature").unwrap();
    assert_eq!(cat(), "feature");

    s.dvol_ok(&["checkout", "--volume", &v, "master"]);
    assert_eq!(cat(), "master");
    let list = s.dvol_ok(&["list"]);
    let row = list.lines().find(|l| l.contains(&v)).expect("row");
    let cols: Vec<&str> = row.split_whitespace().filter(|w| *w != "*").collect();
    assert_eq!(cols, [v.as_str(), "master", &format!("/{c}")], "{list}");

    // reset --hard rewrites the live data under a stopped container.
    docker_ok(&[
        "exec",
        &c,
        "sh",
        "-c",
        "echo dirty > /data/who; touch /data/junk",
    ]);
    let t1 = started_at(&c);
    s.dvol_ok(&["reset", "--volume", &v, "--hard", "HEAD"]);
    assert_ne!(started_at(&c), t1);
    assert_eq!(cat(), "master");
    assert!(!master.join("junk").exists());

    // Errors found before touching containers do not stop them.
    let t2 = started_at(&c);
    s.dvol_fails(&["checkout", "--volume", &v, "nope"]);
    s.dvol_fails(&["reset", "--volume", &v, "--hard", "HEAD~5"]);
    assert_eq!(started_at(&c), t2);
}

#[test]
fn failure_midway_starts_containers_again() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("fail");
    let v = s.volume("app");
    let c = s.run_busybox("app", &v, FLUSHER);
    wait_for(Duration::from_secs(20), "start", || starts(&s, &v) == 1);
    // Another process holds the volume lock: the commit fails before anything is stopped.
    let lock = s.root().join(format!(".dvol/locks/{v}.lock"));
    let holder = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    holder.lock().unwrap();
    let out = s
        .dvol()
        .env("DVOL_LOCK_TIMEOUT", "1")
        .args(["commit", "--volume", &v, "-m", "blocked"])
        .output()
        .unwrap();
    holder.unlock().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locked by another dvol command"), "{err}");
    assert!(running(&c));
    assert_eq!(
        starts(&s, &v),
        1,
        "a command that could not lock stopped containers"
    );
    // A failure inside the rewrite (the target's snapshot was expired by prune, found once
    // the containers are stopped): the containers start again. (The store is shared with the
    // other Docker tests, so nothing in it is damaged to make the failure.)
    s.dvol_ok(&["commit", "--volume", &v, "-m", "one"]);
    wait_for(Duration::from_secs(20), "restart", || starts(&s, &v) == 2);
    s.dvol_ok(&["commit", "--volume", &v, "-m", "two"]);
    wait_for(Duration::from_secs(20), "restart", || starts(&s, &v) == 3);
    s.dvol_ok(&["prune", "--volume", &v, "--keep-last", "1"]);
    let out = s.dvol_fails(&["reset", "--volume", &v, "--hard", "HEAD^"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("containers /{c} were started again")),
        "{err}"
    );
    assert!(running(&c));
    wait_for(Duration::from_secs(20), "restart", || starts(&s, &v) == 4);
}

#[test]
fn pull_restarts_containers_on_the_new_data() {
    let s = Scope::new("pull");
    let v = s.volume("app");
    let c = s.run_busybox("app", &v, IDLE);
    std::fs::write(s.live(&v).join("who"), "old").unwrap();
    s.dvol_ok(&["commit", "--volume", &v, "-m", "old"]);
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().join("r");
    let url = url.to_str().unwrap();
    s.dvol_ok(&["remote", "--volume", &v, "add", "origin", url]);
    s.dvol_ok(&["push", "--volume", &v]);
    let other = crate::support::Env::new();
    other.ok(&["clone", url, &v]);
    std::fs::write(other.live().join("who"), "new").unwrap();
    other.commit("new");
    other.ok(&["push"]);
    let cat = || docker_ok(&["exec", &c, "cat", "/data/who"]);
    assert_eq!(cat(), "old");
    let t0 = started_at(&c);
    let out = s.dvol_ok(&["pull", "--volume", &v]);
    assert!(out.contains("Fast-forward"), "{out}");
    assert_ne!(started_at(&c), t0, "pull did not restart the container");
    assert!(running(&c));
    assert_eq!(cat(), "new");
}

#[test]
fn rm_refuses_while_in_use_and_force_stops_containers() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("rm");
    let v = s.volume("app");
    let c = s.run_busybox("app", &v, IDLE);
    wait_for(Duration::from_secs(20), "running", || running(&c));
    let out = s.dvol_fails(&["rm", "-f", "--disable-docker-integration", "nonexistent-x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Volume 'nonexistent-x' does not exist"));

    let out = s.dvol_fails(&["rm", &v]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("volume {v} is in use by /{c}")),
        "{err}"
    );
    assert!(running(&c));
    assert!(s.live(&v).exists());

    let out = s.dvol_ok(&["rm", "-f", &v]);
    assert!(
        out.contains(&format!("Stopping containers using volume '{v}': /{c}")),
        "{out}"
    );
    assert!(out.contains("left stopped, not removed"), "{out}");
    assert!(
        out.lines().any(|l| l == format!("Deleting volume '{v}'")),
        "{out}"
    );
    assert!(!running(&c));
    assert!(!s.dvol_ok(&["list"]).contains(&v));
}
