//! Containers dvol holds are always let go, and dvol never hangs on them: `commit --pause`
//! racing `docker exec` in a loop, an unpause that fails (the plugin retries it by itself), an
//! unpause Docker never answers (the command fails in bounded time, the next one lets go), and
//! two holds of one container (unpaused once, when the last lets go).

use super::groups::{killed, status, Private, IDLE};
use super::thin::{freezes, unix_now};
use super::*;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Rounds of the exec race (`DVOL_TEST_EXEC_RACE_ROUNDS`, default 120).
fn race_rounds() -> u64 {
    std::env::var("DVOL_TEST_EXEC_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120)
}

/// Run `cmd` to its end, failing the test if it takes longer than `limit` (it is killed).
fn run_within(mut cmd: std::process::Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} hung for {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child.wait_with_output().expect("output"), start.elapsed())
}

/// The records in `root`'s journal of held containers.
fn records(root: &Path) -> usize {
    std::fs::read_dir(root.join(".dvol/held"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// What the exec loop saw.
#[derive(Default)]
struct Execs {
    done: AtomicU64,
    refused: AtomicU64,
    slowest_ms: AtomicU64,
}

/// `docker exec c true` in a loop until `stop`; an exec taking over a minute fails the test.
fn exec_loop(c: String, stop: Arc<AtomicBool>, seen: Arc<Execs>) {
    while !stop.load(Ordering::SeqCst) {
        let mut cmd = std::process::Command::new("docker");
        cmd.args(["exec", &c, "true"]);
        let (out, took) = run_within(cmd, Duration::from_secs(60));
        let counter = if out.status.success() {
            &seen.done
        } else {
            &seen.refused
        };
        counter.fetch_add(1, Ordering::SeqCst);
        seen.slowest_ms
            .fetch_max(took.as_millis() as u64, Ordering::SeqCst);
    }
}

/// `commit --pause` while `docker exec` runs into the same container all the time: every
/// commit ends (succeeds, or fails with a one-line error) within a minute, the container is
/// never left paused, and no exec hangs.
#[test]
fn commit_pause_racing_docker_exec_never_leaves_the_container_paused() {
    if !crate::support::require_docker() {
        return;
    }
    let scope = Scope::new("execrace");
    let s = Private::new();
    let c = s.run_busybox(&scope, "app", "a", IDLE);
    wait_for(Duration::from_secs(20), "running", || {
        status(&c) == "running"
    });
    let live = s.live("a");
    let (stop, seen) = (Arc::new(AtomicBool::new(false)), Arc::new(Execs::default()));
    let execs = {
        let (c, stop, seen) = (c.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || exec_loop(c, stop, seen))
    };
    let rounds = race_rounds();
    let (mut ok, mut failed, mut thawed, mut slowest) = (0, 0, 0, Duration::ZERO);
    let start = Instant::now();
    for round in 0..rounds {
        std::fs::write(live.join("n"), round.to_string()).expect("write");
        let mut cmd = s.dvol();
        cmd.env("DVOL_LOG", "warn").args([
            "commit",
            "--pause",
            "--volume",
            "a",
            "-m",
            &format!("r{round}"),
        ]);
        let (out, took) = run_within(cmd, Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        slowest = slowest.max(took);
        thawed += usize::from(err.contains("thawed"));
        if out.status.success() {
            ok += 1;
        } else {
            failed += 1;
            assert!(err.contains("Error: "), "round {round}: {err}");
            eprintln!("round {round} failed cleanly: {err}");
        }
        assert_ne!(status(&c), "paused", "round {round} left it paused: {err}");
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    execs.join().expect("exec loop");
    eprintln!(
        "exec race: {rounds} rounds in {:.1} s: {ok} commits, {failed} failed cleanly, \
        {thawed} thawed directly, slowest commit {} ms; {} execs done, {} refused \
        (container paused), slowest exec {} ms",
        elapsed.as_secs_f64(),
        slowest.as_millis(),
        seen.done.load(Ordering::SeqCst),
        seen.refused.load(Ordering::SeqCst),
        seen.slowest_ms.load(Ordering::SeqCst),
    );
    assert!(ok > 0, "no commit succeeded");
    assert_eq!(status(&c), "running");
    assert_eq!(records(s.root()), 0);
}

/// The plugin lets go by itself a container whose unpause fails: a `commit --pause` killed
/// with the container paused leaves a record; the plugin rolls it forward on its own (every
/// 30 s; the test makes it 0.5 s), its first three unpauses are refused (failing point), and
/// it retries with backoff until the container runs.
#[test]
fn the_plugin_retries_a_failed_unpause_until_the_container_runs() {
    if !crate::support::require_docker() {
        return;
    }
    let scope = Scope::new("retry");
    let s = Private::new();
    let c = s.run_busybox(&scope, "app", "a", IDLE);
    wait_for(Duration::from_secs(20), "running", || {
        status(&c) == "running"
    });
    let plugin = s.serve(&[
        ("DVOL_FAILPOINT_FAIL", "docker.unpause:3"),
        ("DVOL_TEST_HELD_RECOVER_MS", "500"),
    ]);
    killed(
        &s,
        "guard.after-hold",
        "0",
        &["commit", "--pause", "--volume", "a", "-m", "x"],
    );
    let start = Instant::now();
    assert_eq!(status(&c), "paused");
    wait_for(Duration::from_secs(60), "the plugin to let it go", || {
        status(&c) == "running"
    });
    let took = start.elapsed();
    let log = read(&plugin.log);
    assert!(log.contains("retried in the background"), "{log}");
    assert!(log.contains("let go containers after 4 tries"), "{log}");
    wait_for(Duration::from_secs(10), "the record dropped", || {
        records(s.root()) == 0
    });
    eprintln!(
        "plugin retry: container running {} ms after the kill",
        took.as_millis()
    );
}

/// An unpause Docker never answers: dvol thaws the container's cgroup itself and has Docker
/// agree (the commit succeeds); when Docker never answers at all, the commit fails within
/// its bounds naming the container, the record stays, and the next command lets it go.
#[test]
fn an_unpause_docker_never_answers_does_not_hang_dvol() {
    if !crate::support::require_docker() {
        return;
    }
    let scope = Scope::new("hung");
    let s = Private::new();
    let c = s.run_busybox(&scope, "app", "a", IDLE);
    wait_for(Duration::from_secs(20), "running", || {
        status(&c) == "running"
    });
    let commit = |hangs: &str| {
        let mut cmd = s.dvol();
        cmd.env(
            "DVOL_FAILPOINT_FAIL",
            format!("docker.unpause.hang:{hangs}"),
        )
        .env("DVOL_TEST_DOCKER_LIMIT_MS", "2000")
        .env("DVOL_LOG", "warn")
        .args(["commit", "--pause", "--volume", "a", "-m", "x"]);
        run_within(cmd, Duration::from_secs(60))
    };

    let (out, took) = commit("1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("thawed"), "{err}");
    assert_eq!(status(&c), "running");
    eprintln!("one hung unpause: commit took {} ms", took.as_millis());

    let (out, took) = commit("100");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("/{c}")) && err.contains("no answer within 2000 ms"),
        "{err}"
    );
    assert_eq!(records(s.root()), 1);
    eprintln!(
        "every unpause hung: commit failed after {} ms",
        took.as_millis()
    );
    s.dvol_ok(&["status", "--volume", "a"]);
    assert_eq!(status(&c), "running");
    assert_eq!(records(s.root()), 0);
}

/// A `commit --pause` stopped at its scan of the live data (pause point `live.open`).
fn paused_commit(s: &Private, volume: &str, marker: &Path) -> std::process::Child {
    s.dvol()
        .env("DVOL_FAILPOINT_PAUSE", "live.open")
        .env("DVOL_FAILPOINT_PAUSE_FILE", marker)
        .args(["commit", "--pause", "--volume", volume, "-m", "held"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dvol")
}

/// Let `child` run past every pause point to its end; whether it succeeded.
fn run_on(child: std::process::Child, marker: &Path) -> bool {
    let mut child = child;
    let start = Instant::now();
    loop {
        let _ = std::fs::remove_file(marker);
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the commit hung");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Two commits of two volumes one container uses, both with `--pause`: the second finds the
/// container paused by the first and holds it too (not taken for the user's pause); when the
/// first ends the container stays paused, and it is unpaused exactly once, when the second
/// ends.
#[test]
fn two_holds_of_one_container_unpause_it_once_when_the_last_lets_go() {
    if !crate::support::require_docker() {
        return;
    }
    let scope = Scope::new("twoholds");
    let s = Private::new();
    s.dvol_ok(&["init", "a"]);
    s.dvol_ok(&["init", "b"]);
    let (la, lb) = (s.live("a"), s.live("b"));
    std::fs::write(la.join("f"), "a").expect("write");
    std::fs::write(lb.join("f"), "b").expect("write");
    let c = scope.container("both");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "-v",
        &format!("{}:/a", la.display()),
        "-v",
        &format!("{}:/b", lb.display()),
        BUSYBOX,
        "sh",
        "-c",
        IDLE,
    ]);
    wait_for(Duration::from_secs(20), "running", || {
        status(&c) == "running"
    });
    let markers = tempfile::tempdir().expect("tempdir");
    let (m1, m2) = (markers.path().join("1"), markers.path().join("2"));
    let since = unix_now();

    let first = paused_commit(&s, "a", &m1);
    wait_for(Duration::from_secs(30), "the first commit's scan", || {
        m1.exists()
    });
    assert_eq!(status(&c), "paused");
    let second = paused_commit(&s, "b", &m2);
    wait_for(Duration::from_secs(30), "the second commit's scan", || {
        m2.exists()
    });

    assert!(run_on(first, &m1), "the first commit failed");
    assert_eq!(
        status(&c),
        "paused",
        "the first hold let go a container the second still holds"
    );
    assert!(run_on(second, &m2), "the second commit failed");
    assert_eq!(status(&c), "running");
    assert_eq!(freezes(&c, &since), ["pause", "unpause"]);
    assert_eq!(records(s.root()), 0);
}
