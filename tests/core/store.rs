//! Store guarantees: dedup, verify-on-read, fsck, gc, kill -9, concurrency.

use crate::support::{listing, noise, write, Env};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn packs_size(env: &Env) -> u64 {
    std::fs::read_dir(env.root().join(".dvol/packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn pack_files(env: &Env) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(env.root().join(".dvol/packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn identical_chunks_are_stored_once_across_volumes_and_a_page_change_stores_little() {
    let env = Env::new();
    let a = env.init("a");
    let data = noise(7, 8 << 20);
    write(&a.join("db"), &data);
    env.commit("a");
    let after_a = packs_size(&env);
    let b = env.init("b");
    write(&b.join("copy"), &data);
    env.commit("b");
    let after_b = packs_size(&env);
    assert!(
        after_b - after_a < 64 << 10,
        "second copy added {} bytes",
        after_b - after_a
    );
    // Rewrite one 8 KiB page in place.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(b.join("copy"))
        .unwrap();
    std::os::unix::fs::FileExt::write_at(&f, &noise(9, 8192), 8192 * 300).unwrap();
    drop(f);
    env.commit("page");
    let grew = packs_size(&env) - after_b;
    assert!(grew < 32 << 10, "one page change stored {grew} bytes");
}

#[test]
fn corruption_is_detected_named_and_contained() {
    let env = Env::new();
    let a = env.init("a");
    write(&a.join("f"), noise(1, 1 << 20));
    env.commit("a");
    let a_pack = pack_files(&env);
    let b = env.init("b");
    write(&b.join("g"), noise(2, 1 << 20));
    env.commit("b");
    assert!(env.ok(&["fsck"]).contains("no problems"));
    // Flip one byte in the middle of volume a's pack.
    let pack = &a_pack[0];
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(pack, bytes).unwrap();
    let out = env.dvol().arg("fsck").output().unwrap();
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("is corrupt"), "{report}");
    assert!(report.contains("a branch master"), "{report}");
    assert!(!report.contains("b branch master"), "{report}");
    // Reading damaged data fails and names the object; nothing wrong is written.
    std::fs::remove_file(a.join("f")).unwrap();
    let err = env.fails(&["--volume", "a", "reset", "--hard", "HEAD"]);
    assert!(err.contains("object ") && err.contains("corrupt"), "{err}");
    // The undamaged volume still works.
    std::fs::remove_file(b.join("g")).unwrap();
    env.ok(&["--volume", "b", "reset", "--hard", "HEAD"]);
    assert_eq!(std::fs::read(b.join("g")).unwrap(), noise(2, 1 << 20));
}

#[test]
fn gc_reclaims_what_nothing_reaches() {
    let env = Env::new();
    let live = env.init("v");
    env.commit("base");
    env.ok(&["checkout", "-b", "tmp"]);
    write(&env.live().join("junk"), noise(5, 4 << 20));
    env.commit("junk");
    let before = packs_size(&env);
    env.ok(&["checkout", "master"]);
    env.ok(&["branch", "-d", "tmp"]);
    let out = env.ok(&["gc"]);
    assert!(out.contains("reclaimed"), "{out}");
    assert!(
        packs_size(&env) < before / 4,
        "gc left {} of {before}",
        packs_size(&env)
    );
    assert!(env.ok(&["fsck"]).contains("no problems"));
    assert!(live.exists());
}

fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    env.process()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill_after(mut child: std::process::Child, delay: Duration) {
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn big_tree(live: &Path, seed: u64) {
    for i in 0..6 {
        write(&live.join(format!("seg/{i}")), noise(seed + i, 6 << 20));
    }
    for i in 0..200 {
        write(
            &live.join(format!("small/{}/{i}", i % 7)),
            format!("{seed} {i}"),
        );
    }
}

#[test]
fn kill_9_during_commit_and_reset_keeps_the_repository_valid() {
    let env = Env::new();
    let live = env.init("v");
    big_tree(&live, 1);
    env.commit("one");
    let one = listing(&live);
    let mut kills = 0;
    for round in 0..12u64 {
        big_tree(&live, 100 + round);
        let child = spawn(&env, &["commit", "-m", "interrupted"]);
        kill_after(child, Duration::from_millis(5 + round * 15));
        kills += 1;
        let fsck = env.dvol().arg("fsck").output().unwrap();
        assert!(
            fsck.status.success(),
            "fsck after kill: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        // Either the commit landed fully or not at all; a reset to HEAD~0 always works.
        let n = env.ok(&["log", "--oneline"]).lines().count();
        assert!(n >= 1);
        // Interrupt a reset, then re-run it: it finishes.
        let child = spawn(&env, &["reset", "--hard", "HEAD"]);
        kill_after(child, Duration::from_millis(3 + round * 10));
        env.ok(&["reset", "--hard", "HEAD"]);
        let head_listing = listing(&live);
        env.ok(&["reset", "--hard", "HEAD"]);
        assert_eq!(listing(&live), head_listing);
    }
    // The first commit reads back bit for bit.
    let first = env
        .ok(&["log", "--oneline"])
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    env.ok(&["reset", "--hard", &first]);
    assert_eq!(listing(&live), one);
    env.ok(&["gc"]);
    assert!(env.ok(&["fsck"]).contains("no problems"));
    assert_eq!(kills, 12);
}

#[test]
fn concurrent_commits_and_gc_lose_nothing() {
    let env = Env::new();
    let live = env.init("v");
    env.init("w");
    write(&live.join("f"), "0");
    let children: Vec<_> = (0..6)
        .map(|i| {
            let vol = if i % 2 == 0 { "v" } else { "w" };
            env.process()
                .args(["--volume", vol, "commit", "-m", &format!("c{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .chain((0..2).map(|_| {
            env.process()
                .arg("gc")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        }))
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        env.ok(&["--volume", "v", "log", "--oneline"])
            .lines()
            .count(),
        3
    );
    assert_eq!(
        env.ok(&["--volume", "w", "log", "--oneline"])
            .lines()
            .count(),
        3
    );
    assert!(env.ok(&["fsck"]).contains("no problems"));
}
