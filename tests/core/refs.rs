//! Issue 9: refs and names that cannot be misread. A malformed head or an edited `commits` row
//! makes `fsck` fail naming it and `gc` delete nothing; an empty revision is an error; new
//! branch and tag names cannot read as a revision; names and messages with control characters
//! are quoted in human output and exact in `--json`.

use crate::support::{write, Env};
use std::path::Path;

fn db(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.root().join(".dvol/dvol.db")).expect("open dvol.db")
}

/// Pack files and index rows: what gc would delete.
fn store_size(env: &Env) -> (usize, i64, i64) {
    let packs = std::fs::read_dir(env.root().join(".dvol/packs"))
        .unwrap()
        .count();
    let conn = db(env);
    let objects = conn
        .query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
        .unwrap();
    let commits = conn
        .query_row("SELECT count(*) FROM commits", [], |r| r.get(0))
        .unwrap();
    (packs, objects, commits)
}

/// A volume whose `dev` branch holds two commits nothing else reaches.
fn volume_with_dev(env: &Env) -> (String, String) {
    env.init("app");
    write(&env.live().join("a"), "a\n");
    env.commit("base");
    env.ok(&["checkout", "-b", "dev"]);
    write(&env.live().join("dev1"), "only on dev\n");
    let first = env.commit("dev 1");
    write(&env.live().join("dev2"), "more\n");
    let second = env.commit("dev 2");
    env.ok(&["checkout", "master"]);
    (first, second)
}

#[test]
fn malformed_head_fails_fsck_and_gc_deletes_nothing() {
    let env = Env::new();
    let (_, dev_head) = volume_with_dev(&env);
    let bad = format!("{}zz", &dev_head[..62]);
    db(&env)
        .execute("UPDATE branches SET head = ?1 WHERE name = 'dev'", [&bad])
        .unwrap();
    let before = store_size(&env);
    let out = env.dvol().arg("fsck").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("head of app/dev") && stdout.contains("is not a commit id"),
        "{stdout}"
    );
    let err = env.fails(&["gc"]);
    assert!(
        err.contains("gc refused to run, nothing was deleted") && err.contains("head of app/dev"),
        "{err}"
    );
    assert_eq!(store_size(&env), before, "gc deleted something");
    // The branch does not read as "no commits yet" either.
    env.ok(&["checkout", "dev"]);
    let err = env.fails(&["log"]);
    assert!(err.contains("head of app/dev"), "{err}");
    let err = env.fails(&["commit", "-m", "on a broken head"]);
    assert!(err.contains("head of app/dev"), "{err}");
    // Repaired, everything works again and gc keeps dev's commits.
    db(&env)
        .execute(
            "UPDATE branches SET head = ?1 WHERE name = 'dev'",
            [&dev_head],
        )
        .unwrap();
    env.ok(&["fsck"]);
    env.ok(&["gc"]);
    assert_eq!(env.ok(&["log", "--oneline"]).lines().count(), 3);
}

#[test]
fn edited_commit_row_fails_fsck_and_gc_deletes_nothing() {
    let env = Env::new();
    let (first, second) = volume_with_dev(&env);
    // Point the row of `second` at the tree of `first`: log would show one thing and reset
    // would write another.
    let conn = db(&env);
    let tree: String = conn
        .query_row("SELECT tree FROM commits WHERE id = ?1", [&first], |r| {
            r.get(0)
        })
        .unwrap();
    conn.execute(
        "UPDATE commits SET tree = ?1 WHERE id = ?2",
        [&tree, &second],
    )
    .unwrap();
    drop(conn);
    let before = store_size(&env);
    let out = env.dvol().arg("fsck").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("commits row {second}")) && stdout.contains("tree differs"),
        "{stdout}"
    );
    let err = env.fails(&["gc"]);
    assert!(err.contains(&format!("commits row {second}")), "{err}");
    assert_eq!(store_size(&env), before, "gc deleted something");
}

#[test]
fn malformed_tag_and_remote_ref_and_dangling_head_are_named() {
    let env = Env::new();
    let (first, _) = volume_with_dev(&env);
    env.ok(&["tag", "v1", &first]);
    let conn = db(&env);
    conn.execute("UPDATE tags SET target = 'nope' WHERE name = 'v1'", [])
        .unwrap();
    conn.execute(
        "INSERT INTO remote_refs(volume, remote, branch, head) VALUES ('app', 'origin', 'x', ?1)",
        [&"ab".repeat(32)],
    )
    .unwrap();
    drop(conn);
    let before = store_size(&env);
    let stdout =
        String::from_utf8_lossy(&env.dvol().arg("fsck").output().unwrap().stdout).into_owned();
    assert!(
        stdout.contains("tag v1 of app: \"nope\" is not a commit id"),
        "{stdout}"
    );
    assert!(
        stdout.contains("remote-tracking ref origin/x of app (abababababab): no such commit"),
        "{stdout}"
    );
    let err = env.fails(&["gc"]);
    assert!(err.contains("2 problems"), "{err}");
    assert_eq!(store_size(&env), before);
}

#[test]
fn empty_revision_is_refused_and_changes_nothing() {
    let env = Env::new();
    let live = env.init("app");
    write(&live.join("a"), "committed\n");
    env.commit("one");
    write(&live.join("a"), "uncommitted work\n");
    for spec in ["", " ", "^", "~1"] {
        let err = env.fails(&["reset", "--hard", spec]);
        assert!(err.contains("empty revision"), "{spec:?}: {err}");
        let err = env.fails(&["diff", spec]);
        assert!(err.contains("empty revision"), "{spec:?}: {err}");
    }
    assert!(env.fails(&["tag", "t", ""]).contains("empty revision"));
    assert_eq!(
        std::fs::read(live.join("a")).unwrap(),
        b"uncommitted work\n"
    );
}

#[test]
fn new_refs_cannot_read_as_revisions_but_old_ones_work() {
    let env = Env::new();
    let live = env.init("app");
    write(&live.join("a"), "a\n");
    let id = env.commit("one");
    for name in [
        "HEAD",
        "abcd",
        "DEADBEEF",
        &id[..12],
        &id,
        "HEAD~1",
        "HEAD^",
        "x@{1}",
        "a:b",
    ] {
        let err = env.fails(&["checkout", "-b", name]);
        assert!(err.contains("invalid branch name"), "{name}: {err}");
        let err = env.fails(&["branch", name]);
        assert!(err.contains("invalid branch name"), "{name}: {err}");
        let err = env.fails(&["tag", name]);
        assert!(err.contains("invalid tag name"), "{name}: {err}");
    }
    assert!(env
        .fails(&["checkout", "-b", "HEAD"])
        .contains("it is HEAD"));
    assert!(env
        .fails(&["tag", "cafe"])
        .contains("it looks like a commit id"));
    // Names made before the rule (here: written into the database) keep working, marked.
    let conn = db(&env);
    conn.execute(
        "INSERT INTO branches(volume, name, head) VALUES ('app', 'HEAD', ?1)",
        [&id],
    )
    .unwrap();
    drop(conn);
    std::fs::create_dir_all(env.root().join("app/branches/HEAD")).unwrap();
    assert_eq!(
        env.ok(&["branch"]),
        "  HEAD (reads as a revision: it is HEAD; rename it with checkout -b)\n* master\n"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["branch", "--json"])).unwrap();
    assert_eq!(json[0]["reads_as_revision"], "it is HEAD");
    assert_eq!(json[1]["reads_as_revision"], serde_json::Value::Null);
    env.ok(&["checkout", "HEAD"]);
    env.ok(&["checkout", "master"]);
    env.ok(&["branch", "-d", "HEAD"]);
}

fn hostile_names(live: &Path) {
    write(&live.join("evil\nadded:    fake"), "x\n");
    write(&live.join("\u{1b}[2Jclear"), "x\n");
    write(&live.join("tab\there"), "x\n");
    write(&live.join("plain"), "x\n");
}

#[test]
fn control_characters_are_quoted_in_human_output_and_exact_in_json() {
    let env = Env::new();
    let live = env.init("app");
    write(&live.join("base"), "b\n");
    env.commit("base");
    hostile_names(&live);
    let status = env.ok(&["status"]);
    assert!(
        status.contains("\tadded:    \"evil\\nadded:    fake\"\n"),
        "{status}"
    );
    assert!(status.contains("\"\\033[2Jclear\""), "{status}");
    assert!(status.contains("\"tab\\there\""), "{status}");
    assert!(status.contains("\tadded:    plain\n"), "{status}");
    assert!(!status.contains('\u{1b}'), "{status}");
    assert_eq!(status.lines().count(), 5, "{status}");
    let diff = env.ok(&["diff"]);
    assert!(diff.contains("A\t\"evil\\nadded:    fake\"\n"), "{diff}");
    assert!(!diff.contains('\u{1b}'), "{diff}");
    let stat = env.ok(&["diff", "--stat"]);
    assert!(
        !stat.contains('\u{1b}') && stat.contains("\"\\033[2Jclear\""),
        "{stat}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    let added: Vec<&str> = json["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(added.contains(&"evil\nadded:    fake"), "{added:?}");
    assert!(added.contains(&"\u{1b}[2Jclear"), "{added:?}");

    // Commit messages, including ones that come from a remote, are escaped in log.
    let msg = "fix\u{1b}]0;pwned\u{7}\nsecond\rline";
    env.ok(&["commit", "-m", msg]);
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().join("r");
    env.ok(&["remote", "add", "origin", url.to_str().unwrap()]);
    env.ok(&["push"]);
    let other = Env::new();
    other.ok(&["clone", url.to_str().unwrap(), "app"]);
    for e in [&env, &other] {
        let log = e.ok(&["log"]);
        assert!(
            log.contains("    fix\\033]0;pwned\\a\n    second\\rline\n"),
            "{log}"
        );
        assert!(!log.contains('\u{1b}') && !log.contains('\r'), "{log}");
        let oneline = e.ok(&["log", "--oneline"]);
        assert!(oneline.contains(" fix\\033]0;pwned\\a\n"), "{oneline}");
        let json: serde_json::Value = serde_json::from_str(&e.ok(&["log", "--json"])).unwrap();
        assert_eq!(json[0]["message"], msg);
    }
}
