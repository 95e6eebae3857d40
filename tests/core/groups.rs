//! Groups of volumes without Docker: group commit, log, reset, checkout -b, tags; a member
//! committed alone leaves the group where it was; kill -9 during a group commit or reset
//! leaves the old group state or the new one (the next group command rolls an interrupted
//! reset forward); fsck checks group commits; push and clone of a group on a path remote,
//! kill -9 before the group ref moves, and a tampered group commit refused.

use crate::support::{noise, write, Env};
use std::path::{Path, PathBuf};

/// Volumes `a` and `b` in group `app`; returns their live directories.
fn app(env: &Env) -> (PathBuf, PathBuf) {
    let a = env.init("a");
    let b = env.init("b");
    env.ok(&["group", "create", "app", "a", "b"]);
    (a, b)
}

/// Write generation `n` into both members: `a/n` names the file `b/<n>`.
fn generation(a: &Path, b: &Path, n: u32) {
    write(&a.join("n"), n.to_string());
    write(&b.join(format!("{n}")), "payload");
}

/// The generation in `a` and whether `b` has its file, plus b's file count.
fn state(a: &Path, b: &Path) -> (String, bool, usize) {
    let n = std::fs::read_to_string(a.join("n")).unwrap_or_default();
    let count = std::fs::read_dir(b).map(|d| d.count()).unwrap_or(0);
    (n.clone(), b.join(&n).exists(), count)
}

/// The app group with generation 1 committed, and where its remote will be.
fn app_at_one(env: &Env) -> (PathBuf, PathBuf, PathBuf) {
    let (a, b) = app(env);
    generation(&a, &b, 1);
    group_commit(env, "one");
    (env.dir.path().join("remote"), a, b)
}

fn group_commit(env: &Env, msg: &str) -> String {
    env.ok(&["group", "commit", "app", "-m", msg])
        .trim()
        .to_string()
}

/// The member commits of group commit `id` (from `group log --json`), and the heads.
fn heads(env: &Env) -> (String, String, String) {
    let head = |v: &str| {
        let log = env.ok(&["log", "--volume", v, "--oneline"]);
        log.lines()
            .next()
            .unwrap_or("")
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["group", "show", "app", "--json"])).unwrap();
    (
        show["head"].as_str().unwrap_or("").to_string(),
        head("a"),
        head("b"),
    )
}

/// The member commits a group commit names, by `group log --json`.
fn members_of(env: &Env, id: &str) -> Vec<String> {
    let log: serde_json::Value =
        serde_json::from_str(&env.ok(&["group", "log", "app", "--json"])).unwrap();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the group log: {log}"));
    entry["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[1].as_str().unwrap().to_string())
        .collect()
}

/// Every member head is the member commit the group head names (no mix).
fn assert_consistent(env: &Env, what: &str) {
    let (group, a, b) = heads(env);
    let members = members_of(env, &group);
    assert!(
        members[0].starts_with(&a) && members[1].starts_with(&b),
        "{what}: group {group} names {members:?}, members are at {a} and {b}"
    );
    let out = env.process().arg("fsck").output().unwrap();
    assert!(
        out.status.success(),
        "{what}: fsck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn group_commit_log_reset_checkout_and_tag() {
    let env = Env::new();
    let (a, b) = app(&env);
    generation(&a, &b, 1);
    let one = group_commit(&env, "one");
    generation(&a, &b, 2);
    let two = group_commit(&env, "two");
    assert_consistent(&env, "after two group commits");
    let log = env.ok(&["group", "log", "app", "--oneline"]);
    assert_eq!(log, format!("{} two\n{} one\n", &two[..12], &one[..12]));

    // A member committed alone moves its branch, never the group.
    write(&a.join("alone"), "x");
    env.ok(&["commit", "--volume", "a", "-m", "alone"]);
    assert_eq!(heads(&env).0, two);

    env.ok(&["group", "tag", "app", "v1", &one[..8]]);
    assert_eq!(env.ok(&["group", "tag", "app"]), "v1\n");
    let out = env.ok(&["group", "reset", "app", "--hard", "HEAD^"]);
    assert!(out.contains(&one[..12]), "{out}");
    assert_eq!(state(&a, &b), ("1".into(), true, 1));
    assert!(!a.join("alone").exists());
    assert_consistent(&env, "after reset");
    env.ok(&["group", "reset", "app", "--hard", &two]);
    assert_eq!(state(&a, &b), ("2".into(), true, 2));

    env.ok(&["group", "checkout", "app", "-b", "old"]);
    env.ok(&["group", "reset", "app", "--hard", "v1"]);
    assert_eq!(env.ok(&["branch", "--volume", "b"]), "  master\n* old\n");
    let live = |v: &str| PathBuf::from(env.ok(&["path", v]).trim());
    assert_eq!(state(&live("a"), &live("b")), ("1".into(), true, 1));
    env.ok(&["group", "checkout", "app", "master"]);
    let a_master = PathBuf::from(env.ok(&["path", "a"]).trim());
    assert_eq!(std::fs::read_to_string(a_master.join("n")).unwrap(), "2");
    assert_eq!(env.ok(&["group", "branch", "app"]), "* master\n  old\n");

    // A member stays a member: removing it alone is refused; gc keeps what groups reach.
    let err = env.fails(&["rm", "-f", "a"]);
    assert!(err.contains("member of group app"), "{err}");
    env.ok(&["gc"]);
    env.ok(&["group", "reset", "app", "--hard", "old"]);
    assert_eq!(state(&live("a"), &live("b")).0, "1");
    assert_consistent(&env, "after gc");
    env.ok(&["group", "rm", "app"]);
    env.ok(&["rm", "-f", "a"]);
}

#[test]
fn group_input_errors_name_what_is_wrong() {
    let env = Env::new();
    env.init("a");
    let err = env.fails(&["group", "create", "g", "a", "nope"]);
    assert!(err.contains("nope does not exist"), "{err}");
    let err = env.fails(&["group", "create", "../g", "a"]);
    assert!(err.contains("invalid group name"), "{err}");
    env.ok(&["group", "create", "g", "a"]);
    let err = env.fails(&["group", "create", "g", "a"]);
    assert!(err.contains("group g already exists"), "{err}");
    let err = env.fails(&["group", "reset", "g", "--hard", "HEAD"]);
    assert!(err.contains("no group commit yet"), "{err}");
    let err = env.fails(&["group", "commit", "g"]);
    assert!(err.contains("commit message"), "{err}");
    let err = env.fails(&["group", "log", "nope"]);
    assert!(err.contains("group nope does not exist"), "{err}");
    env.init("c");
    std::fs::write(env.live().join("f"), "x").unwrap();
    env.commit("c");
    env.ok(&["checkout", "--volume", "c", "-b", "x"]);
    let err = env.fails(&["group", "create", "h", "a", "c"]);
    assert!(err.contains("on different branches"), "{err}");
}

#[test]
fn kill_during_a_group_commit_leaves_the_old_or_the_new_group_state() {
    for (point, new) in [
        ("commit.after-scan", false),
        ("group-commit.before-transaction", false),
        ("group-commit.before-cache-save", true),
    ] {
        let env = Env::new();
        let (a, b) = app(&env);
        generation(&a, &b, 1);
        let one = group_commit(&env, "one");
        generation(&a, &b, 2);
        env.run_killed(point, &["group", "commit", "app", "-m", "two"]);
        let (group, _, _) = heads(&env);
        assert_eq!(group == one, !new, "{point}: group head {group}");
        assert_consistent(&env, point);
        let count = env
            .ok(&["log", "--volume", "b", "--oneline"])
            .lines()
            .count();
        assert_eq!(count, if new { 2 } else { 1 }, "{point}");
        group_commit(&env, "again");
        assert_consistent(&env, &format!("{point}, committed again"));
    }
}

#[test]
fn kill_during_a_group_reset_is_rolled_forward_by_the_next_group_command() {
    for (point, skip) in [
        ("group-reset.after-pending", "0"),
        ("reset.before-head-move", "0"),
        ("group-reset.after-member", "0"),
        ("reset.before-head-move", "1"),
    ] {
        let env = Env::new();
        let (a, b) = app(&env);
        generation(&a, &b, 1);
        let one = group_commit(&env, "one");
        generation(&a, &b, 2);
        group_commit(&env, "two");
        let out = env
            .process()
            .env("DVOL_FAILPOINT", point)
            .env("DVOL_FAILPOINT_SKIP", skip)
            .args(["group", "reset", "app", "--hard", &one])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{point}/{skip}: reset was not killed"
        );
        // A member's own commit refuses while its reset is pending.
        if point == "reset.before-head-move" && skip == "0" {
            let err = env.fails(&["commit", "--volume", "a", "-m", "x"]);
            assert!(err.contains("reset"), "{err}");
        }
        // The next group command finishes the reset: the new state, never a mix.
        env.ok(&["group", "show", "app"]);
        assert_eq!(heads(&env).0, one, "{point}/{skip}");
        assert_consistent(&env, point);
        assert_eq!(state(&a, &b), ("1".into(), true, 1), "{point}/{skip}");
        env.ok(&["group", "commit", "app", "-m", "after"]);
        assert_consistent(&env, point);
    }
}

#[test]
fn fsck_reports_a_group_commit_that_does_not_match_and_a_dangling_group_ref() {
    let env = Env::new();
    let (a, b) = app(&env);
    generation(&a, &b, 1);
    let one = group_commit(&env, "one");
    env.ok(&["fsck"]);
    let db = rusqlite::Connection::open(env.root().join(".dvol/dvol.db")).unwrap();
    db.execute("UPDATE group_commits SET body = x'00'", [])
        .unwrap();
    db.execute(
        "INSERT INTO group_tags(grp, name, target) VALUES ('app', 't', ?1)",
        ["ab".repeat(32)],
    )
    .unwrap();
    let out = env.process().arg("fsck").output().unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(&format!("group app commit {one}")), "{text}");
    assert!(text.contains("tag t of group app"), "{text}");
    let err = env.fails(&["gc"]);
    assert!(err.contains("group app"), "{err}");
}

/// `app` with two group commits and remote `origin` at `remote`.
fn pushed_app(env: &Env, remote: &Path) -> (String, String) {
    let (a, b) = app(env);
    generation(&a, &b, 1);
    let one = group_commit(env, "one");
    generation(&a, &b, 2);
    let two = group_commit(env, "two");
    env.ok(&["group", "remote", "app", "origin", remote.to_str().unwrap()]);
    (one, two)
}

#[test]
fn group_push_and_clone_round_trip_on_a_path_remote() {
    let env = Env::new();
    let remote = env.dir.path().join("remote");
    let (one, two) = pushed_app(&env, &remote);
    // Killed before the group ref moves: the members are there, the group is not.
    env.run_killed("group-push.before-ref-cas", &["group", "push", "app"]);
    assert!(remote.join("refs/a/heads/master").exists());
    assert!(!remote.join("groups/app/refs/master").exists());
    let other = Env::new();
    let err = other.fails(&["group", "clone", remote.to_str().unwrap(), "app"]);
    assert!(err.contains("remote group app does not exist"), "{err}");
    let out = env.ok(&["group", "push", "app"]);
    assert!(out.contains(&format!("(new) -> {}", &two[..12])), "{out}");
    assert!(env.ok(&["group", "push", "app"]).contains("up to date"));

    let out = other.ok(&["group", "clone", remote.to_str().unwrap(), "app", "copy"]);
    assert!(out.contains("member a as volume copy-a"), "{out}");
    let log = other.ok(&["group", "log", "copy", "--oneline"]);
    assert_eq!(log, format!("{} two\n{} one\n", &two[..12], &one[..12]));
    let live = |v: &str| PathBuf::from(other.ok(&["path", v]).trim());
    assert_eq!(
        state(&live("copy-a"), &live("copy-b")),
        ("2".into(), true, 2)
    );
    other.ok(&["group", "reset", "copy", "--hard", "HEAD^"]);
    assert_eq!(
        state(&live("copy-a"), &live("copy-b")),
        ("1".into(), true, 1)
    );
    other.ok(&["fsck"]);

    // A member pushed ahead alone does not change what the group names.
    let a = PathBuf::from(env.ok(&["path", "a"]).trim());
    write(&a.join("n"), "3");
    env.ok(&["commit", "--volume", "a", "-m", "alone"]);
    env.ok(&["push", "--volume", "a"]);
    let third = Env::new();
    third.ok(&["group", "clone", remote.to_str().unwrap(), "app"]);
    let live = |v: &str| PathBuf::from(third.ok(&["path", v]).trim());
    assert_eq!(state(&live("a"), &live("b")), ("2".into(), true, 2));
}

#[test]
fn a_tampered_group_commit_on_the_remote_is_refused() {
    let env = Env::new();
    let remote = env.dir.path().join("remote");
    let (_, two) = pushed_app(&env, &remote);
    env.ok(&["group", "push", "app"]);
    let stored = remote.join(format!("groups/app/commits/{two}"));
    let mut body = std::fs::read(&stored).unwrap();
    let last = body.len() - 1;
    body[last] ^= b'x';
    std::fs::write(&stored, body).unwrap();
    let other = Env::new();
    let err = other.fails(&["group", "clone", remote.to_str().unwrap(), "app"]);
    assert!(err.contains("does not match its id"), "{err}");
    assert_eq!(other.ok(&["group", "ls"]).lines().count(), 1);
    assert_eq!(other.ok(&["list"]).lines().count(), 1);
}

#[test]
fn remote_gc_keeps_what_group_commits_name() {
    let env = Env::new();
    let remote = env.dir.path().join("remote");
    let (one, _) = pushed_app(&env, &remote);
    env.ok(&["group", "push", "app"]);
    // Member a alone goes back to the first group commit and force-pushes a new history:
    // its remote branch no longer reaches the member commit the group head names.
    let first_a = members_of(&env, &one)[0].clone();
    env.ok(&["reset", "--volume", "a", "--hard", &first_a]);
    let a = PathBuf::from(env.ok(&["path", "a"]).trim());
    write(&a.join("other"), "x");
    env.ok(&["commit", "--volume", "a", "-m", "other"]);
    env.ok(&["push", "--volume", "a", "--force"]);
    let out = env.ok(&[
        "prune",
        "--volume",
        "a",
        "--remote",
        "origin",
        "--keep-last",
        "1",
        "--grace",
        "0",
    ]);
    assert!(out.contains("of group app"), "{out}");
    let other = Env::new();
    other.ok(&["group", "clone", remote.to_str().unwrap(), "app"]);
    let live = |v: &str| PathBuf::from(other.ok(&["path", v]).trim());
    assert_eq!(state(&live("a"), &live("b")), ("2".into(), true, 2));
    other.ok(&["fsck"]);
}

#[test]
fn group_pull_and_an_encrypted_remote_round_trip() {
    let env = Env::new();
    let (remote, a, b) = app_at_one(&env);
    let url = remote.to_str().unwrap();
    let pass = [("DVOL_PASSPHRASE", "correct horse")];
    let run = |e: &Env, args: &[&str]| {
        let out = e.dvol().envs(pass).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(
        &env,
        &["group", "remote", "app", "origin", url, "--encrypt"],
    );
    run(&env, &["group", "push", "app"]);
    // Sealed: the group commit's encoding and the member names inside it are not readable.
    for entry in walk(&remote.join("groups")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(3).any(|w| w == b"one"),
            "{}",
            entry.display()
        );
    }
    let other = Env::new();
    let err = other.fails(&["group", "clone", url, "app"]);
    assert!(err.contains("encrypted"), "{err}");
    run(&other, &["group", "clone", url, "app"]);
    let live = |e: &Env, v: &str| PathBuf::from(e.ok(&["path", v]).trim());
    assert_eq!(
        state(&live(&other, "a"), &live(&other, "b")),
        ("1".into(), true, 1)
    );

    generation(&a, &b, 2);
    let two = group_commit(&env, "two");
    run(&env, &["group", "push", "app"]);
    let out = run(&other, &["group", "pull", "app"]);
    assert!(out.contains(&two[..12]), "{out}");
    assert_eq!(
        state(&live(&other, "a"), &live(&other, "b")),
        ("2".into(), true, 2)
    );
    assert!(run(&other, &["group", "pull", "app"]).contains("Already up to date"));
    other.ok(&["fsck"]);

    // Diverged: both sides commit; the pull is refused and nothing changes.
    write(&live(&other, "a").join("n"), "x");
    group_commit(&other, "theirs");
    generation(&a, &b, 3);
    group_commit(&env, "three");
    run(&env, &["group", "push", "app"]);
    let out = other
        .dvol()
        .envs(pass)
        .args(["group", "pull", "app"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("diverged"), "{err}");
    assert_eq!(
        std::fs::read_to_string(live(&other, "a").join("n")).unwrap(),
        "x"
    );
}

/// Live directory of `volume`'s current branch.
fn live_of(env: &Env, volume: &str) -> PathBuf {
    PathBuf::from(env.ok(&["path", volume]).trim())
}

/// A group commit made while `group pull` downloads is not dropped: the pull's fast-forward is
/// a compare-and-swap against the head it looked at, so it fails naming both ids and the new
/// group commit stays the head (a pause point holds the pull between its check and its move).
#[test]
fn a_group_commit_made_during_a_pull_is_kept() {
    let env = Env::new();
    let remote = env.dir.path().join("remote");
    let url = remote.to_str().unwrap();
    pushed_app(&env, &remote);
    env.ok(&["group", "push", "app"]);
    let other = Env::new();
    other.ok(&["group", "clone", url, "app"]);
    let (a, b) = (live_of(&env, "a"), live_of(&env, "b"));
    generation(&a, &b, 3);
    group_commit(&env, "three");
    env.ok(&["group", "push", "app"]);

    let marker = other.dir.path().join("paused");
    let pull = other
        .process()
        .env("DVOL_FAILPOINT_PAUSE", "group-pull.before-reset")
        .env("DVOL_FAILPOINT_PAUSE_FILE", &marker)
        .args(["group", "pull", "app"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the pull never reached its pause point"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (oa, ob) = (live_of(&other, "a"), live_of(&other, "b"));
    generation(&oa, &ob, 7);
    let ours = group_commit(&other, "made during the pull");
    std::fs::remove_file(&marker).unwrap();
    let out = pull.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the pull dropped {ours}: {err}");
    assert!(err.contains("moved") && err.contains(&ours[..12]), "{err}");
    let (head, _, _) = heads(&other);
    assert_eq!(
        head, ours,
        "the group head is not the commit made meanwhile"
    );
    assert_eq!(state(&oa, &ob).0, "7");
    other.ok(&["fsck"]);
}

#[test]
fn gc_reclaims_group_commits_no_group_ref_reaches() {
    let env = Env::new();
    let (a, b) = app(&env);
    generation(&a, &b, 1);
    let one = group_commit(&env, "one");
    generation(&a, &b, 2);
    let two = group_commit(&env, "two");
    generation(&a, &b, 3);
    let three = group_commit(&env, "three");
    env.ok(&["group", "tag", "app", "keep", &two]);
    env.ok(&["group", "reset", "app", "--hard", &one]);
    // `three` is reached by no group branch, tag or pending reset any more; `two` by a tag.
    let out = env.ok(&["gc"]);
    assert!(out.contains("removed 1 group commits"), "{out}");
    let db = rusqlite::Connection::open(env.root().join(".dvol/dvol.db")).unwrap();
    let ids: Vec<String> = db
        .prepare("SELECT id FROM group_commits ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut want = vec![one.clone(), two.clone()];
    want.sort();
    assert_eq!(ids, want);
    env.fails(&["group", "reset", "app", "--hard", &three]);
    env.ok(&["group", "reset", "app", "--hard", "keep"]);
    assert_eq!(state(&a, &b), ("2".into(), true, 2));
    assert_consistent(&env, "after gc");
    assert!(!env.ok(&["gc"]).contains("group commits"));
}

/// The number in `... N bytes` on the last line of a group clone.
fn downloaded(out: &str) -> u64 {
    let last = out.lines().last().unwrap_or("");
    last.split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {out}"))
}

#[test]
fn group_clone_takes_every_branch_and_a_killed_clone_resumes() {
    let env = Env::new();
    let remote = env.dir.path().join("remote");
    let url = remote.to_str().unwrap();
    let (a, b) = app(&env);
    // Member a holds 2 MiB that does not compress; b a few bytes.
    write(&a.join("big"), noise(7, 2 << 20));
    generation(&a, &b, 1);
    group_commit(&env, "one");
    env.ok(&["group", "remote", "app", "origin", url]);
    env.ok(&["group", "push", "app"]);
    env.ok(&["group", "checkout", "app", "-b", "old"]);
    let live = |e: &Env, v: &str| PathBuf::from(e.ok(&["path", v]).trim());
    generation(&live(&env, "a"), &live(&env, "b"), 5);
    let five = group_commit(&env, "five");
    env.ok(&["group", "push", "app", "origin", "old"]);

    let full = Env::new().ok(&["group", "clone", url, "app"]);
    assert!(downloaded(&full) >= 2 << 20, "{full}");

    // Killed once member a is in place: the re-run finishes with b only.
    let other = Env::new();
    other.run_killed("group-clone.after-member", &["group", "clone", url, "app"]);
    let out = other.ok(&["group", "clone", url, "app"]);
    assert!(out.contains("Resumed an interrupted clone"), "{out}");
    assert!(downloaded(&out) < 1 << 20, "{out}");
    assert!(
        out.contains(&format!("branch old at {}", &five[..12])),
        "{out}"
    );
    assert_eq!(other.ok(&["group", "branch", "app"]), "* master\n  old\n");
    assert_eq!(state(&live(&other, "a"), &live(&other, "b")).0, "1");
    other.ok(&["group", "checkout", "app", "old"]);
    assert_eq!(
        state(&live(&other, "a"), &live(&other, "b")),
        ("5".into(), true, 2)
    );
    let log = other.ok(&["group", "log", "app", "--oneline"]);
    assert!(log.starts_with(&five[..12]), "{log}");
    other.ok(&["fsck"]);
    // A finished clone is not cloned again.
    let err = other.fails(&["group", "clone", url, "app"]);
    assert!(err.contains("group app already exists"), "{err}");
}

/// A resumed group clone drops nothing done in a member since the interruption: a member
/// branch with uncommitted changes, or at a commit the remote does not have, is refused and
/// left as it is; once that work is moved away, the clone finishes.
#[test]
fn a_resumed_group_clone_keeps_work_done_since_the_interruption() {
    let env = Env::new();
    let (remote, a, _) = app_at_one(&env);
    let url = remote.to_str().unwrap();
    env.ok(&["group", "remote", "app", "origin", url]);
    env.ok(&["group", "push", "app"]);
    // Member a's own branch on the remote moves past the group commit.
    write(&a.join("n"), "2");
    env.ok(&["commit", "--volume", "a", "-m", "a alone"]);
    env.ok(&["push", "--volume", "a"]);

    // Killed with member a cloned at its remote head, before it is set to the group's.
    let other = Env::new();
    other.run_killed(
        "group-clone.before-member-branches",
        &["group", "clone", url, "app"],
    );
    let live_a = PathBuf::from(other.ok(&["path", "a"]).trim());
    assert_eq!(std::fs::read_to_string(live_a.join("n")).unwrap(), "2");
    write(&live_a.join("mine"), "not committed");
    let err = other.fails(&["group", "clone", url, "app"]);
    assert!(
        err.contains(
            "Cannot resume the clone of group app: volume a has uncommitted changes on branch \
             master (e.g. mine)"
        ),
        "{err}"
    );
    assert!(live_a.join("mine").exists());
    other.ok(&["commit", "--volume", "a", "-m", "mine"]);
    let err = other.fails(&["group", "clone", url, "app"]);
    assert!(
        err.contains("branch master of volume a is at")
            && err.contains("a commit the remote does not have"),
        "{err}"
    );
    let log = other.ok(&["log", "--volume", "a", "--oneline"]);
    assert!(log.contains("mine"), "{log}");

    // The work kept on a branch of its own, master back at the remote's head: it finishes.
    other.ok(&["checkout", "--volume", "a", "-b", "kept"]);
    other.ok(&["checkout", "--volume", "a", "master"]);
    other.ok(&["reset", "--volume", "a", "--hard", "HEAD^"]);
    let out = other.ok(&["group", "clone", url, "app"]);
    assert!(out.contains("Resumed an interrupted clone"), "{out}");
    let live = |v: &str| PathBuf::from(other.ok(&["path", v]).trim());
    assert_eq!(state(&live("a"), &live("b")).0, "1");
    other.ok(&["checkout", "--volume", "a", "kept"]);
    assert!(live("a").join("mine").exists());
    other.ok(&["fsck"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
