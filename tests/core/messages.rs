//! Exact texts that scripts written for ClusterHQ's dvol parse.

use crate::support::Env;

#[test]
fn init_list_switch() {
    let env = Env::new();
    assert_eq!(env.ok(&["list"]), "  VOLUME   BRANCH   CONTAINERS\n");
    assert_eq!(
        env.ok(&["init", "foo"]),
        "Created volume foo\nCreated branch foo/master\n"
    );
    assert!(env
        .fails(&["init", "foo"])
        .contains("Error: volume foo already exists"));
    env.ok(&["init", "bar"]);
    assert_eq!(
        env.ok(&["ls"]),
        "  VOLUME   BRANCH   CONTAINERS\n* bar      master\n  foo      master\n"
    );
    env.ok(&["switch", "foo"]);
    assert!(env.ok(&["list"]).contains("* foo      master"));
    assert!(env
        .fails(&["switch", "nope"])
        .contains("Error: nope does not exist"));
}

#[test]
fn no_active_volume() {
    let env = Env::new();
    for args in [
        &["commit", "-m", "x"][..],
        &["log"],
        &["branch"],
        &["status"],
    ] {
        assert!(env
            .fails(args)
            .contains("No active volume: use dvol switch to choose one"));
    }
}

#[test]
fn invalid_names_are_rejected_and_nothing_is_created() {
    let env = Env::new();
    let long = "a".repeat(129);
    for bad in [
        "a/b",
        "..",
        "../x",
        ".hidden",
        "-x",
        "a b",
        "caf\u{e9}",
        "",
        long.as_str(),
    ] {
        let err = env.fails(&["init", bad]);
        assert!(err.contains("invalid volume name"), "{bad:?}: {err}");
    }
    assert_eq!(env.ok(&["list"]), "  VOLUME   BRANCH   CONTAINERS\n");
    let entries: Vec<_> = std::fs::read_dir(env.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from(".dvol")]);
    env.ok(&["init", "ok"]);
    assert!(env
        .fails(&["checkout", "-b", "x/y"])
        .contains("invalid branch name"));
}

#[test]
fn commit_messages_and_ids() {
    let env = Env::new();
    env.init("v");
    assert!(env
        .fails(&["commit"])
        .contains("You must provide a commit message"));
    let id = env.commit("empty is fine");
    assert!(
        id.len() >= 12
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let id2 = env.commit("checkpoint");
    assert_ne!(id, id2);
}

#[test]
fn log_format() {
    let env = Env::new();
    env.init("v");
    env.ok(&["config", "user.name", "Ada Lovelace"]);
    env.ok(&["config", "user.email", "ada@example.com"]);
    let a = env.commit("first");
    let b = env.commit("second\nline two");
    let log = env.ok(&["log"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], format!("commit {b}"));
    assert_eq!(lines[1], "Author: Ada Lovelace <ada@example.com>");
    assert!(
        lines[2].starts_with("Date: ") && lines[2].len() > 20,
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "");
    assert_eq!(lines[4], "    second");
    assert_eq!(lines[5], "    line two");
    assert_eq!(lines[6], "");
    assert_eq!(lines[7], format!("commit {a}"));
    assert_eq!(lines[11], "    first");
    let oneline = env.ok(&["log", "--oneline"]);
    assert_eq!(
        oneline,
        format!("{} second\n{} first\n", &b[..12], &a[..12])
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["log", "--json"])).unwrap();
    assert_eq!(json[0]["id"], b.as_str());
    assert_eq!(json[1]["message"], "first");
}

#[test]
fn config_get_set_list() {
    let env = Env::new();
    env.ok(&["config", "user.name", "Bob"]);
    assert_eq!(env.ok(&["config", "user.name"]), "Bob\n");
    assert!(env.ok(&["config", "-l"]).contains("user.name=Bob\n"));
    assert!(env
        .fails(&["config", "nope.key", "x"])
        .contains("unknown config key"));
}

#[test]
fn branch_and_checkout_messages() {
    let env = Env::new();
    env.init("v");
    assert_eq!(env.ok(&["branch"]), "* master\n");
    assert!(env
        .fails(&["checkout", "-b", "dev"])
        .contains("You must commit ('dvol commit') before you can branch ('dvol checkout -b')"));
    env.commit("c1");
    env.ok(&["checkout", "-b", "dev"]);
    assert_eq!(env.ok(&["branch"]), "* dev\n  master\n");
    assert!(env
        .fails(&["checkout", "-b", "master"])
        .contains("Cannot create existing branch master"));
    assert!(env
        .fails(&["checkout", "nope"])
        .contains("Cannot switch to a non-existing branch nope"));
    env.ok(&["checkout", "master"]);
    assert_eq!(env.ok(&["branch"]), "  dev\n* master\n");
    assert!(env
        .fails(&["branch", "-d", "master"])
        .contains("Cannot delete the current branch master"));
    env.ok(&["branch", "-d", "dev"]);
    assert_eq!(env.ok(&["branch"]), "* master\n");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["branch", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "master");
    assert_eq!(json[0]["current"], true);
}

#[test]
fn reset_requires_hard() {
    let env = Env::new();
    env.init("v");
    env.commit("c1");
    let err = env.fails(&["reset", "HEAD"]);
    assert!(err.contains("Please specify --hard to confirm you intend to lose data (to save your state, commit and branch, then come back to reset)"));
}

#[test]
fn rm_volume() {
    let env = Env::new();
    let live = env.init("v");
    assert!(env
        .fails(&["rm", "-f", "nope"])
        .contains("Volume 'nope' does not exist, cannot remove it"));
    // Without -f and without a terminal, refuse.
    let err = env.fails(&["rm", "v"]);
    assert!(err.contains("-f"), "{err}");
    assert!(live.exists());
    assert_eq!(env.ok(&["rm", "-f", "v"]), "Deleting volume 'v'\n");
    assert!(!live.exists());
    assert_eq!(env.ok(&["list"]), "  VOLUME   BRANCH   CONTAINERS\n");
    // The name can be reused.
    env.ok(&["init", "v"]);
}

#[test]
fn volume_flag_overrides_current() {
    let env = Env::new();
    env.init("a");
    let b_live = env.init("b");
    std::fs::write(b_live.join("f"), "b").unwrap();
    env.ok(&["--volume", "a", "commit", "-m", "on a"]);
    assert_eq!(
        env.ok(&["--volume", "a", "log", "--oneline"])
            .lines()
            .count(),
        1
    );
    assert_eq!(env.ok(&["log", "--oneline"]), "");
    assert!(env
        .fails(&["--volume", "zz", "log"])
        .contains("Error: zz does not exist"));
    assert!(env.ok(&["path", "a"]).trim().ends_with("a/branches/master"));
}

#[test]
fn help_and_version() {
    let env = Env::new();
    assert!(env.ok(&["--help"]).contains("commit"));
    assert!(env.ok(&["--version"]).starts_with("dvol "));
}
