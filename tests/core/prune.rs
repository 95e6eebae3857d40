//! `dvol prune`: retention rules, expired commits in `log`, `gc` freeing their data, reset /
//! diff / branch to an expired commit refused, and push / pull / clone staying fast-forward
//! across local and remote prunes. Commit dates come from `DVOL_TEST_COMMIT_TIME` (a test knob
//! of builds with the `failpoints` feature) so commits can be days apart.

use crate::support::{noise, write, Env};
use std::path::Path;

const DAY: u64 = 86_400;
/// Monday 2026-01-05 00:00:00 UTC.
const MONDAY: u64 = 1_767_571_200;

fn commit_at(env: &Env, time: u64, msg: &str) -> String {
    let out = env
        .dvol()
        .env("DVOL_TEST_COMMIT_TIME", time.to_string())
        .args(["commit", "-m", msg])
        .output()
        .expect("run dvol");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// (message, expired) of every commit of the current branch, newest first.
fn log(env: &Env) -> Vec<(String, bool)> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["message"].as_str().unwrap().to_string(),
                e["expired"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn expired(env: &Env) -> Vec<String> {
    log(env).into_iter().filter(|e| e.1).map(|e| e.0).collect()
}

fn dir_bytes(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Two commits a day for ten days (d0a, d0b, …, d9b), each with 256 KiB of new data.
fn ten_days(env: &Env) -> Vec<String> {
    let live = env.init("db");
    let mut ids = Vec::new();
    for day in 0..10u64 {
        for (i, half) in ["a", "b"].iter().enumerate() {
            write(&live.join("data"), noise(day * 2 + i as u64, 256 << 10));
            let t = MONDAY + day * DAY + 3600 * (1 + 6 * i as u64);
            ids.push(commit_at(env, t, &format!("d{day}{half}")));
        }
    }
    ids
}

#[test]
fn prune_retention_rules_keep_heads_tags_and_branch_points() {
    let env = Env::new();
    let ids = ten_days(&env);
    env.ok(&["tag", "v1", &ids[2]]); // d1a
                                     // A branch from d3b: d3b becomes a branch point.
    env.ok(&["reset", "--hard", &ids[7]]);
    env.ok(&["checkout", "-b", "side"]);
    write(&env.live().join("side"), "side");
    commit_at(&env, MONDAY + 3 * DAY + 20_000, "side work");
    env.ok(&["checkout", "master"]);
    env.ok(&["reset", "--hard", &ids[19]]);

    // Dry run: says what it would do, changes nothing.
    let dry = env.ok(&[
        "prune",
        "--keep-daily",
        "3",
        "--keep-last",
        "2",
        "--dry-run",
    ]);
    assert!(
        dry.contains("would expire 14 commits (dry run: nothing changed)"),
        "{dry}"
    );
    assert!(
        dry.contains("keep    ") && dry.contains("expire  "),
        "{dry}"
    );
    assert!(expired(&env).is_empty());

    let out = env.ok(&["prune", "--keep-daily", "3", "--keep-last", "2"]);
    assert!(
        out.contains("expired 14 commits; run dvol gc to free their data"),
        "{out}"
    );
    // Kept: d9b d9a (last 2; d9b is also daily and the branch head), d8b d7b (daily),
    // d3b (branch point), d1a (tag v1), and side's head. The other 14 expired.
    let kept: Vec<String> = log(&env)
        .into_iter()
        .filter(|e| !e.1)
        .map(|e| e.0)
        .collect();
    assert_eq!(kept, ["d9b", "d9a", "d8b", "d7b", "d3b", "d1a"]);
    assert!(out.contains("(tag v1)"), "{out}");
    assert!(out.contains("(branch point)"), "{out}");
    assert!(out.contains("(branch master, last, daily)"), "{out}");
    // The side branch's head is kept; its history is master's.
    env.ok(&["checkout", "side"]);
    assert_eq!(log(&env)[0], ("side work".to_string(), false));
    env.ok(&["checkout", "master"]);

    // Human log marks expired commits; ids and parents never change.
    let human = env.ok(&["log"]);
    assert!(
        human.contains(&format!("commit {} (expired)", ids[0])),
        "{human}"
    );
    let oneline = env.ok(&["log", "--oneline"]);
    assert!(
        oneline.contains(&format!("{} (expired) d0a", &ids[0][..12])),
        "{oneline}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--json"])).unwrap();
    let all: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.reverse();
    assert_eq!(all, want);

    // --json: every commit with its reasons, newest first.
    let json = env.ok(&["prune", "--keep-daily", "3", "--keep-last", "2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["expired"], 0);
    assert_eq!(v["commits"].as_array().unwrap().len(), 21);
    assert_eq!(
        v["commits"][0]["keep"],
        serde_json::json!(["branch master", "last", "daily"])
    );
    assert_eq!(v["commits"][20]["already_expired"], true, "{json}");

    // A second prune with the same rules expires nothing more.
    let again = env.ok(&["prune", "--keep-daily", "3", "--keep-last", "2"]);
    assert!(again.contains("expired 0 commits"), "{again}");
    assert!(again.contains("expired ") && again.lines().any(|l| l.starts_with("expired ")));

    // Weekly and monthly rules: the 10 days span 2 ISO weeks and 1 month.
    let env2 = Env::new();
    ten_days(&env2);
    env2.ok(&["prune", "--keep-weekly", "5", "--keep-monthly", "5"]);
    let kept: Vec<String> = log(&env2)
        .into_iter()
        .filter(|e| !e.1)
        .map(|e| e.0)
        .collect();
    assert_eq!(kept, ["d9b", "d6b"]); // newest of week 2 (and the month), newest of week 1
}

#[test]
fn prune_needs_a_rule() {
    let env = Env::new();
    env.init("db");
    env.commit("one");
    let err = env.fails(&["prune"]);
    assert!(
        err.contains("prune needs at least one of --keep-last"),
        "{err}"
    );
}

#[test]
fn prune_then_gc_frees_space_and_expired_commits_refuse_checkout() {
    let env = Env::new();
    let ids = ten_days(&env);
    let packs = env.root().join(".dvol/packs");
    let before = dir_bytes(&packs);
    env.ok(&["prune", "--keep-last", "2"]);
    let gc = env.ok(&["gc"]);
    assert!(gc.contains("removed"), "{gc}");
    let after = dir_bytes(&packs);
    // 18 of 20 snapshots of 256 KiB of incompressible data are gone.
    assert!(
        after < before / 4,
        "packs {before} -> {after} bytes after prune + gc"
    );
    let fsck = env.ok(&["fsck"]);
    assert!(fsck.contains("no problems"), "{fsck}");

    let old = &ids[3];
    let msg = format!("commit {old} was expired by prune; its data is gone");
    for args in [
        vec!["reset", "--hard", old.as_str()],
        vec!["diff", old.as_str()],
        vec!["diff", old.as_str(), "HEAD"],
    ] {
        let err = env.fails(&args);
        assert!(err.contains(&msg), "{args:?}: {err}");
    }
    // Kept commits still work, bit for bit.
    env.ok(&["reset", "--hard", &ids[18]]);
    assert_eq!(
        std::fs::read(env.live().join("data")).unwrap(),
        noise(18, 256 << 10)
    );
    env.ok(&["reset", "--hard", &ids[19]]);
    assert_eq!(
        std::fs::read(env.live().join("data")).unwrap(),
        noise(19, 256 << 10)
    );
    // Any revision syntax that lands on an expired commit is refused the same way.
    let err = env.fails(&["reset", "--hard", "HEAD~5"]);
    assert!(err.contains("was expired by prune"), "{err}");
    // The refused reset left the branch and its data alone.
    assert_eq!(
        std::fs::read(env.live().join("data")).unwrap(),
        noise(19, 256 << 10)
    );
}

fn remote_url(dir: &tempfile::TempDir) -> String {
    dir.path().join("remote").to_str().unwrap().to_string()
}

#[test]
fn push_pull_clone_stay_fast_forward_across_prunes() {
    let remote = tempfile::tempdir().unwrap();
    let url = remote_url(&remote);
    let prod = Env::new();
    let ids = ten_days(&prod);
    prod.ok(&["remote", "add", "origin", &url]);
    prod.ok(&["push"]);
    let qa = Env::new();
    qa.ok(&["clone", &url, "db"]);

    // Local prune + gc on prod; the next pushes are fast-forwards with the same ids.
    prod.ok(&["prune", "--keep-last", "3"]);
    prod.ok(&["gc"]);
    let live = prod.live();
    write(&live.join("data"), noise(100, 256 << 10));
    let c100 = commit_at(&prod, MONDAY + 11 * DAY, "d11");
    let push = prod.ok(&["push"]);
    assert!(!push.contains("rejected"), "{push}");
    // Commits made and expired before they were ever pushed go without their data.
    write(&live.join("data"), noise(101, 256 << 10));
    let c101 = commit_at(&prod, MONDAY + 12 * DAY, "d12");
    write(&live.join("data"), noise(102, 256 << 10));
    let c102 = commit_at(&prod, MONDAY + 13 * DAY, "d13");
    prod.ok(&["tag", "keepme", &c102]);
    write(&live.join("data"), noise(103, 256 << 10));
    commit_at(&prod, MONDAY + 14 * DAY, "d14");
    prod.ok(&["prune", "--keep-last", "1"]);
    assert!(expired(&prod).contains(&"d12".to_string()));
    prod.ok(&["gc"]);
    let push = prod.ok(&["push"]);
    assert!(!push.contains("rejected"), "{push}");
    let list = std::fs::read_to_string(remote.path().join("remote/expired/db")).unwrap();
    assert!(list.contains(&c101), "{list}");

    // QA pulls: a fast-forward; d12's data never travelled, so it is expired there too.
    let pull = qa.ok(&["pull"]);
    assert!(!pull.to_lowercase().contains("diverged"), "{pull}");
    assert_eq!(
        std::fs::read(qa.live().join("data")).unwrap(),
        noise(103, 256 << 10)
    );
    let qa_expired = expired(&qa);
    assert_eq!(
        qa_expired,
        ["d12"],
        "QA had d0..d11 and d13 data; d12 came without it"
    );
    let err = qa.fails(&["reset", "--hard", &c101]);
    assert!(
        err.contains("was expired by prune; its data is gone"),
        "{err}"
    );
    qa.ok(&["reset", "--hard", &c100]);
    qa.ok(&["reset", "--hard", "HEAD"]);
    assert!(qa.ok(&["fsck"]).contains("no problems"));

    // Remote prune: expire on the remote too, then remote gc deletes what nothing reaches.
    let before = dir_bytes(&remote.path().join("remote/packs"));
    let remote_prune = |extra: &[&str]| {
        let args = [
            &["prune", "--remote", "origin", "--keep-last", "2"][..],
            extra,
        ]
        .concat();
        prod.ok(&args)
    };
    let dry = remote_prune(&["--grace", "0", "--dry-run"]);
    assert!(dry.contains("would expire 21 commits"), "{dry}");
    let unchanged = || dir_bytes(&remote.path().join("remote/packs")) == before;
    assert!(unchanged(), "dry run deletes nothing");
    let list = || std::fs::read_to_string(remote.path().join("remote/expired/db")).unwrap();
    assert_eq!(list().lines().count(), 1, "dry run publishes nothing");
    // The default grace period: unreachable packs are noted, not deleted yet.
    let out = remote_prune(&[]);
    assert!(out.contains("expired 21 commits"), "{out}");
    assert!(
        out.contains("deleted 0 packs") && out.contains("2 unreachable packs waiting"),
        "{out}"
    );
    assert!(unchanged(), "nothing deleted within the grace period");
    assert_eq!(list().lines().count(), 22, "d12 and the 21 newly expired");
    let out = remote_prune(&["--grace", "0"]);
    assert!(out.contains("expired 0 commits"), "{out}");
    assert!(out.contains("rewrote 2 packs"), "{out}");
    let after = dir_bytes(&remote.path().join("remote/packs"));
    assert!(after < before / 2, "remote packs {before} -> {after} bytes");

    // A fresh clone gets the whole history, expired commits marked, kept ones intact.
    let fresh = Env::new();
    fresh.ok(&["clone", &url, "db"]);
    let fresh_log = log(&fresh);
    assert_eq!(fresh_log.len(), 24, "{fresh_log:?}");
    let kept: Vec<&str> = fresh_log
        .iter()
        .filter(|e| !e.1)
        .map(|e| e.0.as_str())
        .collect();
    assert_eq!(kept, ["d14", "d13"], "last 2 on the remote");
    assert!(fresh.ok(&["fsck"]).contains("no problems"));
    let err = fresh.fails(&["reset", "--hard", &ids[0]]);
    assert!(err.contains("was expired by prune"), "{err}");
    fresh.ok(&["reset", "--hard", &c102]);
    assert_eq!(
        std::fs::read(fresh.live().join("data")).unwrap(),
        noise(102, 256 << 10)
    );

    // And the existing clones keep pulling and pushing fast-forward.
    write(&prod.live().join("data"), noise(104, 1000));
    commit_at(&prod, MONDAY + 15 * DAY, "d15");
    prod.ok(&["push"]);
    let pull = qa.ok(&["pull"]);
    assert!(!pull.to_lowercase().contains("diverged"), "{pull}");
    assert_eq!(qa.ok(&["log", "--oneline"]).lines().count(), 25);
    // The remote now lists 22 commits as expired, but QA has their data: a remote's list never
    // makes a client drop data it holds (only commits fetched without a tree are marked).
    assert_eq!(expired(&qa), ["d12"]);
    qa.ok(&["reset", "--hard", &ids[0]]);
    assert_eq!(
        std::fs::read(qa.live().join("data")).unwrap(),
        noise(0, 256 << 10)
    );
    assert!(qa.ok(&["fsck"]).contains("no problems"));
}
