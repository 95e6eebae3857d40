//! Path and file:// remotes: the full workflow across laptop, QA and production roots.

use super::{bytes_sent, fill, round_trip, same_tree, Host, Vars};
use crate::support::{noise, write};

fn remote_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dvol-remote-")
        .tempdir()
        .unwrap()
}

#[test]
fn remote_path_round_trip() {
    let dir = remote_dir();
    round_trip(dir.path().join("store").to_str().unwrap(), &Vars::new());
}

#[test]
fn remote_file_url_round_trip() {
    let dir = remote_dir();
    round_trip(
        &format!("file://{}/store", dir.path().display()),
        &Vars::new(),
    );
}

#[test]
fn remote_three_roots_force_and_all() {
    let dir = remote_dir();
    let url = dir.path().join("r").to_str().unwrap().to_string();
    let vars = Vars::new();
    let (laptop, qa, prod) = (Host::new(&vars), Host::new(&vars), Host::new(&vars));
    laptop.ok(&["init", "app"]);
    fill(&laptop.live(), 1);
    laptop.commit("one");
    laptop.ok(&["checkout", "-b", "feature"]);
    write(&laptop.live().join("feature.txt"), "f\n");
    laptop.commit("feature work");
    laptop.ok(&["checkout", "master"]);
    laptop.ok(&["remote", "add", "origin", &url]);
    let out = laptop.ok(&["push", "--all"]);
    assert!(out.contains("master") && out.contains("feature"), "{out}");

    qa.ok(&["clone", &url, "app", "app-qa"]);
    assert_eq!(qa.ok(&["branch"]), "  feature\n* master\n");
    let list = qa.ok(&["list"]);
    assert!(
        list.contains("* app-qa"),
        "clone makes the volume current: {list}"
    );
    qa.ok(&["checkout", "feature"]);
    assert_eq!(
        std::fs::read(qa.live().join("feature.txt")).unwrap(),
        b"f\n"
    );
    qa.ok(&["checkout", "master"]);

    // QA pushes a fix; prod clones; laptop (behind) commits and cannot push without --force.
    write(&qa.live().join("fix.txt"), "fix\n");
    let fix = qa.commit("fix");
    qa.ok(&["push"]);
    prod.ok(&["clone", &url, "app"]);
    assert_eq!(prod.head(), fix[..12]);

    write(&laptop.live().join("other.txt"), "other\n");
    let other = laptop.commit("other");
    let err = laptop.fails(&["push", "origin", "master"]);
    assert!(
        err.contains("rejected") && err.contains("non-fast-forward"),
        "{err}"
    );
    let err = laptop.fails(&["pull"]);
    assert!(err.contains("diverged"), "{err}");
    laptop.ok(&["push", "--force"]);
    prod.ok(&["fetch"]);
    let err = prod.fails(&["pull"]);
    assert!(err.contains("diverged"), "{err}");
    // QA has not changed anything since: it is behind, and pulls... no: it is diverged too.
    qa.ok(&["reset", "--hard", "HEAD^"]);
    qa.ok(&["pull"]);
    assert_eq!(qa.head(), other[..12]);
    same_tree(&qa.live(), &laptop.live());

    // remote rm forgets the remote.
    qa.ok(&["remote", "rm", "origin"]);
    assert_eq!(qa.ok(&["remote", "-v"]), "");
    let err = qa.fails(&["push"]);
    assert!(err.contains("No such remote: 'origin'"), "{err}");
}

#[test]
fn remote_pull_refuses_dirty_live_data() {
    let dir = remote_dir();
    let url = dir.path().join("r").to_str().unwrap().to_string();
    let vars = Vars::new();
    let (laptop, qa) = (Host::new(&vars), Host::new(&vars));
    laptop.ok(&["init", "db"]);
    fill(&laptop.live(), 2);
    laptop.commit("one");
    laptop.ok(&["remote", "add", "origin", &url]);
    laptop.ok(&["push"]);
    qa.ok(&["clone", &url, "db"]);
    write(&laptop.live().join("hello.txt"), "new\n");
    laptop.commit("two");
    laptop.ok(&["push"]);
    write(&qa.live().join("scratch.txt"), "uncommitted\n");
    let err = qa.fails(&["pull"]);
    assert!(err.contains("uncommitted changes"), "{err}");
    assert_eq!(
        std::fs::read_to_string(qa.live().join("hello.txt")).unwrap(),
        "hello 2\n",
        "live data untouched"
    );
    std::fs::remove_file(qa.live().join("scratch.txt")).unwrap();
    qa.ok(&["pull"]);
    assert_eq!(
        std::fs::read_to_string(qa.live().join("hello.txt")).unwrap(),
        "new\n"
    );
}

/// The process status of a kill -9 by a failpoint.
#[cfg(feature = "failpoints")]
fn killed(out: &std::process::Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal() == Some(9)
}

#[cfg(feature = "failpoints")]
#[test]
fn remote_interrupted_push_resumes() {
    let dir = remote_dir();
    let url = dir.path().join("r").to_str().unwrap().to_string();
    let laptop = Host::new(&Vars::new());
    laptop.ok(&["init", "db"]);
    write(&laptop.live().join("big.bin"), noise(5, 3 << 20));
    laptop.commit("big");
    laptop.ok(&["remote", "add", "origin", &url]);
    // Small packs (one 128 KiB block of noise each) and a process killed after the tenth one
    // is indexed (failpoint).
    let out = laptop
        .env
        .dvol()
        .env("DVOL_TEST_PACK_SIZE", "262144")
        .env("DVOL_FAILPOINT", "push.after-idx-upload")
        .env("DVOL_FAILPOINT_SKIP", "9")
        .args(["push"])
        .output()
        .unwrap();
    assert!(killed(&out), "the push should die mid-way");
    assert!(
        !dir.path().join("r/refs/db/heads/master").exists(),
        "no ref before all objects"
    );
    // The remote stays valid: cloning says there is nothing yet.
    let qa = Host::new(&Vars::new());
    let err = qa.fails(&["clone", &url, "db"]);
    assert!(err.contains("does not exist"), "{err}");
    let out = laptop.ok(&["push"]);
    let sent = bytes_sent(&out);
    assert!(sent < 2_600_000, "resume re-sent everything ({sent} bytes)");
    qa.ok(&["clone", &url, "db"]);
    same_tree(&laptop.live(), &qa.live());
}

#[cfg(feature = "failpoints")]
#[test]
fn remote_interrupted_fetch_resumes() {
    let dir = remote_dir();
    let url = dir.path().join("r").to_str().unwrap().to_string();
    let laptop = Host::new(&Vars::new());
    laptop.ok(&["init", "db"]);
    write(&laptop.live().join("big.bin"), noise(6, 3 << 20));
    laptop.commit("big");
    laptop.ok(&["remote", "add", "origin", &url]);
    laptop.ok(&["push"]);
    let qa = Host::new(&Vars::new());
    qa.ok(&["init", "db"]);
    qa.ok(&["remote", "add", "origin", &url]);
    let out = qa
        .env
        .dvol()
        .env("DVOL_TEST_FETCH_CHECKPOINT", "262144")
        .env("DVOL_FAILPOINT", "fetch.after-checkpoint")
        .env("DVOL_FAILPOINT_SKIP", "3")
        .args(["fetch"])
        .output()
        .unwrap();
    assert!(killed(&out), "the fetch should die mid-way");
    // Local repository still valid and without the remote ref.
    qa.ok(&["fsck"]);
    let out = qa.ok(&["fetch"]);
    let received: u64 = out
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(3)
        .find(|w| w[1] == "bytes" && w[2] == "received")
        .map(|w| w[0].parse().unwrap())
        .expect("bytes received");
    assert!(
        received < 2_600_000,
        "resume re-fetched everything ({received} bytes)"
    );
    qa.ok(&["pull"]);
    same_tree(&laptop.live(), &qa.live());
    qa.ok(&["fsck"]);
}

#[test]
fn remote_push_sends_only_changed_pages() {
    // Scaled-down benchmark: rewrite 1% of the 8 KiB pages of a 16 MiB file.
    let dir = remote_dir();
    let url = dir.path().join("r").to_str().unwrap().to_string();
    let laptop = Host::new(&Vars::new());
    laptop.ok(&["init", "db"]);
    let file = laptop.live().join("pg/base.db");
    let mut data = noise(11, 16 << 20);
    write(&file, &data);
    laptop.commit("base");
    laptop.ok(&["remote", "add", "origin", &url]);
    laptop.ok(&["push"]);
    let pages = data.len() / 8192;
    let changed = pages / 100;
    for i in 0..changed {
        let p = (i * 97 + 13) % pages;
        data[p * 8192..(p + 1) * 8192].copy_from_slice(&noise(1000 + i as u64, 8192));
    }
    write(&file, &data);
    laptop.commit("1% of pages");
    let out = laptop.ok(&["push"]);
    let sent = bytes_sent(&out);
    let changed_bytes = (changed * 8192) as u64;
    assert!(
        sent < changed_bytes * 13 / 10 + 65536,
        "sent {sent} bytes for {changed_bytes} changed bytes"
    );
    let qa = Host::new(&Vars::new());
    qa.ok(&["clone", &url, "db"]);
    same_tree(&laptop.live(), &qa.live());
}
