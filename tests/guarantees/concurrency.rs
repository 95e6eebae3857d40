//! Issue 9: no command loses another's commit. A loop of `dvol commit` runs beside `pull`,
//! `reset --hard`, `checkout -b` and `gc` on the same volume, many rounds; afterwards every
//! commit that printed an id is reachable from a branch, or the other command failed and
//! changed nothing. Reachability is checked with the library on the same root. Through the
//! plugin socket, `VolumeDriver.Create` with `from=` beside the loop makes a copy at a commit the
//! source really had, and the source loses nothing.
//!
//! `DVOL_TEST_BIN` runs these tests against another build of `dvol` (used once to show that
//! the pull test fails on the code before the fix; see docs/guarantees.md).

use super::plugin_input::{call, TestPlugin};
use crate::support::{bin, write, Env};
use dvol::repo::Repo;
use dvol::store::ObjectId;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// `dvol` on `root`, Docker integration off.
fn dvol_at(root: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("DVOL_ROOT", root)
        .env_remove("DVOL_LOG")
        .arg("--disable-docker-integration");
    c
}

fn id(hex: &str) -> ObjectId {
    ObjectId::from_hex(hex.trim()).unwrap_or_else(|| panic!("not a commit id: {hex:?}"))
}

/// A `dvol commit` loop on a root in a thread; each commit writes a new small file first when
/// `write_files`. Returns the printed ids, in order, when stopped.
struct CommitLoop {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<ObjectId>>,
}

impl CommitLoop {
    fn start(root: &Path, round: usize, write_files: bool) -> CommitLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (root, flag) = (root.to_path_buf(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut printed = Vec::new();
            let mut n = 0;
            while !flag.load(Ordering::SeqCst) {
                n += 1;
                if write_files {
                    // The live directory follows the current branch (checkout -b moves it).
                    let out = dvol_at(&root).arg("path").output().unwrap();
                    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                    write(
                        &dir.join(format!("loop-{round}-{n}")),
                        format!("{round} {n}\n"),
                    );
                }
                let msg = format!("loop {round}.{n}");
                let out = dvol_at(&root)
                    .args(["commit", "-m", &msg])
                    .output()
                    .unwrap();
                if out.status.success() {
                    printed.push(id(&String::from_utf8_lossy(&out.stdout)));
                }
            }
            printed
        });
        CommitLoop { stop, handle }
    }

    /// Let a few more commits land, then stop and return the printed ids.
    fn finish(self) -> Vec<ObjectId> {
        std::thread::sleep(Duration::from_millis(60));
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("commit loop")
    }
}

/// Run `other` (a dvol command on `env`) beside a commit loop: the loop starts first and
/// `other` after `delay`, or (negative delay) the other way round. Returns what `other` printed
/// and the commits the loop printed.
fn race(
    env: &Arc<Env>,
    round: usize,
    write_files: bool,
    delay_ms: i64,
    other: &[&str],
) -> (Output, Vec<ObjectId>) {
    let pause = Duration::from_millis(delay_ms.unsigned_abs());
    let (other, commits) = if delay_ms >= 0 {
        let commits = CommitLoop::start(&env.root(), round, write_files);
        std::thread::sleep(pause);
        (env.process().args(other).output().unwrap(), commits)
    } else {
        let child = env.process().args(other).spawn_output();
        std::thread::sleep(pause);
        let commits = CommitLoop::start(&env.root(), round, write_files);
        (child.join().unwrap(), commits)
    };
    (other, commits.finish())
}

/// Spawn a command and collect its output in a thread.
trait SpawnOutput {
    fn spawn_output(&mut self) -> JoinHandle<Output>;
}

impl SpawnOutput for Command {
    fn spawn_output(&mut self) -> JoinHandle<Output> {
        let child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::spawn(move || child.wait_with_output().unwrap())
    }
}

/// Every branch head of `volume`.
fn heads(repo: &Repo, volume: &str) -> Vec<ObjectId> {
    repo.branches(volume)
        .unwrap()
        .iter()
        .filter_map(|b| repo.branch_head(volume, b).unwrap())
        .collect()
}

fn reachable(repo: &Repo, volume: &str, c: &ObjectId) -> bool {
    heads(repo, volume)
        .iter()
        .any(|h| repo.is_ancestor(c, h).unwrap())
}

/// The first-parent chain of the current branch, newest first.
fn chain(env: &Env) -> Vec<ObjectId> {
    let log: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--json"])).unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| id(e["id"].as_str().unwrap()))
        .collect()
}

fn rounds(default: usize) -> usize {
    std::env::var("DVOL_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A little jitter so the other command lands at different points of the loop's commits:
/// from 60 ms before the loop starts to 90 ms after.
fn jitter(round: usize) -> i64 {
    (round as i64 * 37) % 150 - 60
}

/// Every commit the loop printed is reachable from a branch of `app`.
fn assert_all_reachable(env: &Env, printed: &[ObjectId], round: usize) {
    let repo = Repo::open(&env.root()).unwrap();
    for c in printed {
        assert!(reachable(&repo, "app", c), "round {round}: lost {c}");
    }
}

#[test]
fn concurrency_commit_loop_beside_pull_loses_nothing() {
    let remote = tempfile::Builder::new()
        .prefix("dvol-remote-")
        .tempdir()
        .unwrap();
    let url = remote.path().join("store");
    let url = url.to_str().unwrap();
    let (publisher, local) = (Env::new(), Arc::new(Env::new()));
    publisher.init("app");
    write(&publisher.live().join("base.txt"), "base\n");
    publisher.commit("base");
    publisher.ok(&["remote", "add", "origin", url]);
    publisher.ok(&["push"]);
    local.ok(&["clone", url, "app"]);
    let (mut lost, mut pulled, mut refused) = (0, 0, 0);
    let n = rounds(48);
    for round in 0..n {
        // The remote gets one commit ahead of the local branch.
        local.ok(&["push", "--force"]);
        let local_head = chain(&local)[0];
        publisher.ok(&["fetch"]);
        publisher.ok(&["reset", "--hard", &local_head.to_hex()]);
        write(&publisher.live().join(format!("p{round}")), "p\n");
        let theirs = id(&publisher.commit(&format!("publish {round}")));
        publisher.ok(&["push"]);

        let (pull, printed) = race(&local, round, false, jitter(round), &["pull"]);
        let repo = Repo::open(&local.root()).unwrap();
        lost += printed
            .iter()
            .filter(|c| !reachable(&repo, "app", c))
            .count();
        let head = repo.branch_head("app", "master").unwrap().unwrap();
        let err = String::from_utf8_lossy(&pull.stderr);
        if pull.status.success() {
            pulled += 1;
            assert!(
                repo.is_ancestor(&theirs, &head).unwrap(),
                "round {round}: pull succeeded but its commit is not on master"
            );
        } else {
            refused += 1;
            // Failed and changed nothing: master is the loop's last commit.
            assert_eq!(
                Some(&head),
                printed.last().or(Some(&local_head)),
                "round {round}: pull failed ({err}) but changed the head"
            );
        }
    }
    eprintln!(
        "pull beside commits: {n} rounds, {pulled} pulls done, {refused} refused, {lost} printed commits lost"
    );
    assert_eq!(lost, 0, "printed commits lost beside pull");
}

#[test]
fn concurrency_commit_loop_beside_reset_is_linear() {
    let env = Arc::new(Env::new());
    env.init("app");
    write(&env.live().join("a"), "a\n");
    let base = id(&env.commit("base"));
    env.ok(&["tag", "base"]);
    let n = rounds(20);
    let mut resets = 0;
    for round in 0..n {
        let (reset, printed) = race(
            &env,
            round,
            true,
            jitter(round),
            &["reset", "--hard", "base"],
        );
        if !reset.status.success() {
            assert_all_reachable(&env, &printed, round);
            continue;
        }
        resets += 1;
        // The reset happened between two of the loop's commits: the commits after it sit on
        // `base`, in order, and none of them is missing.
        let history = chain(&env);
        let after: Vec<ObjectId> = history
            .iter()
            .take_while(|c| **c != base)
            .copied()
            .collect();
        assert!(after.len() <= printed.len(), "round {round}: {after:?}");
        let mut expected = printed[printed.len() - after.len()..].to_vec();
        expected.reverse();
        assert_eq!(after, expected, "round {round}: commits after the reset");
    }
    eprintln!("reset beside commits: {n} rounds, {resets} resets done");
}

#[test]
fn concurrency_commit_loop_beside_checkout_b_loses_nothing() {
    let env = Arc::new(Env::new());
    env.init("app");
    write(&env.live().join("a"), "a\n");
    env.commit("base");
    let n = rounds(20);
    let mut made = 0;
    for round in 0..n {
        let branch = format!("b{round}");
        let (checkout, printed) = race(
            &env,
            round,
            true,
            jitter(round),
            &["checkout", "-b", &branch],
        );
        made += usize::from(checkout.status.success());
        assert_all_reachable(&env, &printed, round);
    }
    eprintln!("checkout -b beside commits: {n} rounds, {made} branches made");
}

#[test]
fn concurrency_commit_loop_beside_gc_loses_nothing() {
    let env = Arc::new(Env::new());
    env.init("app");
    write(&env.live().join("a"), "a\n");
    env.commit("base");
    let n = rounds(15);
    let mut collected = 0;
    for round in 0..n {
        // Something for gc to delete: a commit that only a dropped branch reached.
        let tmp = format!("tmp{round}");
        env.ok(&["checkout", "-b", &tmp]);
        write(&env.live().join("tmp"), format!("{round}\n"));
        env.commit("doomed");
        env.ok(&["checkout", "master"]);
        env.ok(&["branch", "-d", &tmp]);
        let (gc, printed) = race(&env, round, true, jitter(round), &["gc"]);
        collected += usize::from(gc.status.success());
        assert_all_reachable(&env, &printed, round);
    }
    env.ok(&["fsck"]);
    eprintln!("gc beside commits: {n} rounds, {collected} gc runs done");
}

#[test]
fn concurrency_commit_loop_beside_plugin_creates_from_it() {
    // Through the plugin socket: `docker volume create -o from=src` while src is committed to.
    let plugin = TestPlugin::start();
    let root = plugin.root.clone();
    let ok = |args: &[&str]| {
        let out = dvol_at(&root).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["init", "src"]);
    write(&PathBuf::from(ok(&["path"]).trim()).join("a"), "a\n");
    let base = id(&ok(&["commit", "-m", "base"]));
    let n = rounds(20);
    for round in 0..n {
        let commits = CommitLoop::start(&root, round, true);
        std::thread::sleep(Duration::from_millis((jitter(round) + 60) as u64));
        let copy = format!("copy{round}");
        let body = serde_json::json!({"Name": copy, "Opts": {"from": "src"}}).to_string();
        let reply = call(
            &plugin.socket,
            "POST",
            "VolumeDriver.Create",
            body.as_bytes(),
        );
        let printed = commits.finish();
        assert_eq!(reply.status, 200, "round {round}: {}", reply.json);
        let repo = Repo::open(&root).unwrap();
        let src = repo.branch_head("src", "master").unwrap().unwrap();
        for c in &printed {
            assert!(
                repo.is_ancestor(c, &src).unwrap(),
                "round {round}: lost {c}"
            );
        }
        // The copy starts at a commit src had: the base or one the loop printed.
        let at = repo.branch_head(&copy, "master").unwrap().unwrap();
        assert!(
            at == base || repo.is_ancestor(&at, &src).unwrap(),
            "round {round}: copy at {at}, not in src's history"
        );
    }
    eprintln!("plugin Create from=src beside commits: {n} rounds");
}
