//! The stat cache on disk (one SQLite row per directory, per branch): a commit trusts it for
//! unchanged files and never for anything else, whatever happened to the file (damaged,
//! foreign, old format, killed commands, renamed or replaced directories); its files are
//! private; the old DVSTAT01 file is imported once and removed.

use crate::support::{listing, write, Env};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Run `dvol args…` with debug logs; assert success; the files the commit (or status) read
/// instead of trusting the cache.
fn files_read(env: &Env, args: &[&str]) -> u64 {
    let out = env
        .dvol()
        .env("DVOL_LOG", "dvol=debug")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dvol {args:?}: {stderr}");
    let at = stderr.find("files_read=").expect("scan log line") + "files_read=".len();
    stderr[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn commit_reads(env: &Env, msg: &str) -> u64 {
    files_read(env, &["commit", "-m", msg])
}

/// Timestamps older than the racy window, so the cache may vouch for them.
fn age() {
    std::thread::sleep(std::time::Duration::from_millis(60));
}

fn cache_file(env: &Env, branch: &str) -> PathBuf {
    env.root()
        .join(".dvol/statcache/v")
        .join(format!("{branch}.db"))
}

/// Overwrite `path` with `bytes` (the same length) and put its mtime back: only ctime (and
/// the content) tell the change.
fn rewrite_keeping_size_and_mtime(path: &Path, bytes: &[u8]) {
    let md = std::fs::metadata(path).unwrap();
    assert_eq!(md.len(), bytes.len() as u64);
    let mtime = filetime::FileTime::from_last_modification_time(&md);
    std::fs::write(path, bytes).unwrap();
    filetime::set_file_mtime(path, mtime).unwrap();
}

/// The committed content of `rel` at HEAD, read back through a fresh branch.
fn committed(env: &Env, branch: &str, rel: &str) -> Vec<u8> {
    env.ok(&["branch", branch]);
    let path = env.root().join("v/branches").join(branch).join(rel);
    std::fs::read(path).unwrap()
}

fn volume_with_files(env: &Env) -> PathBuf {
    let live = env.init("v");
    write(&live.join("f"), "aaaa");
    for i in 0..10 {
        write(&live.join(format!("d/sub/{i}")), format!("{i}"));
    }
    age();
    live
}

#[test]
fn unchanged_files_are_trusted_and_each_branch_keeps_its_own_cache() {
    let env = Env::new();
    let live = volume_with_files(&env);
    assert_eq!(commit_reads(&env, "one"), 11);
    assert_eq!(commit_reads(&env, "same"), 0);
    env.ok(&["checkout", "-b", "dev"]);
    let dev = env.live();
    write(&dev.join("f"), "bbbb");
    age();
    assert_eq!(commit_reads(&env, "dev work"), 1);
    assert_eq!(commit_reads(&env, "dev same"), 0);
    env.ok(&["checkout", "master"]);
    // Master's cache was not replaced by dev's.
    assert_eq!(commit_reads(&env, "master same"), 0);
    assert_eq!(std::fs::read(live.join("f")).unwrap(), b"aaaa");
    rewrite_keeping_size_and_mtime(&live.join("f"), b"cccc");
    assert_eq!(commit_reads(&env, "master change"), 1);
    assert_eq!(committed(&env, "check", "f"), b"cccc");
    assert_eq!(
        std::fs::metadata(cache_file(&env, "dev")).unwrap().mode() & 0o777,
        0o600
    );
}

/// Something done to a cache file.
type Damage = dyn Fn(&Path);

/// Damaged, foreign and missing caches only make the next commit read every file again; a
/// change that keeps size and mtime is still seen.
#[test]
fn a_damaged_or_foreign_cache_is_only_a_re_hash() {
    let env = Env::new();
    let live = volume_with_files(&env);
    env.commit("one");
    let db = cache_file(&env, "master");
    let damages: [(&str, &Damage); 4] = [
        ("header", &|p| {
            let mut b = std::fs::read(p).unwrap();
            b[..16].copy_from_slice(b"not sqlite at al");
            std::fs::write(p, b).unwrap();
        }),
        ("pages", &|p| {
            let mut b = std::fs::read(p).unwrap();
            // Every page, the schema's included (the 100-byte file header aside).
            for x in &mut b[100..] {
                *x ^= 0x5a;
            }
            std::fs::write(p, b).unwrap();
        }),
        ("foreign", &|p| {
            std::fs::remove_file(p).unwrap();
            let c = rusqlite::Connection::open(p).unwrap();
            c.execute_batch(
                "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
                 INSERT INTO meta VALUES ('format', 'SOMETHING-ELSE');
                 CREATE TABLE dirs(path BLOB PRIMARY KEY, row BLOB);",
            )
            .unwrap();
        }),
        ("missing", &|p| std::fs::remove_file(p).unwrap()),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        damage(&db);
        let content = format!("{i:04}");
        rewrite_keeping_size_and_mtime(&live.join("f"), content.as_bytes());
        age();
        assert_eq!(commit_reads(&env, what), 11, "{what}");
        assert_eq!(
            commit_reads(&env, what),
            0,
            "{what}: the cache was not remade"
        );
        assert_eq!(committed(&env, &format!("c{i}"), "f"), content.as_bytes());
        assert_eq!(
            env.ok(&["status"]).lines().nth(1).unwrap(),
            "nothing to commit, live data clean"
        );
    }
}

/// The old one-file cache (DVSTAT01) is imported once (its entries trusted), then removed;
/// a damaged one is removed without being trusted.
#[test]
fn the_old_cache_file_is_imported_once_and_removed() {
    let env = Env::new();
    let live = env.init("v");
    let files = ["e1", "dir/e2", "dir/deeper/x"];
    for f in files {
        write(&live.join(f), "x");
    }
    age();
    env.commit("one");
    let legacy = env.root().join(".dvol/cache/v/master");
    let write_legacy = |damaged: bool| {
        let mut map = std::collections::HashMap::new();
        for f in files {
            let md = std::fs::metadata(live.join(f)).unwrap();
            map.insert(
                f.as_bytes().to_vec(),
                (
                    md.len(),
                    md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                    md.ctime() * 1_000_000_000 + md.ctime_nsec(),
                    md.ino(),
                    Some(dvol::ObjectId::hash(b"x")),
                ),
            );
        }
        let mut bytes = postcard::to_extend(&map, b"DVSTAT01".to_vec()).unwrap();
        let sum = blake3::hash(&bytes[8..]);
        bytes.extend_from_slice(sum.as_bytes());
        if damaged {
            bytes[10] ^= 1;
        }
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        std::fs::write(&legacy, bytes).unwrap();
        std::fs::remove_file(cache_file(&env, "master")).unwrap();
    };
    write_legacy(true);
    assert_eq!(commit_reads(&env, "damaged"), 3);
    assert!(!legacy.exists());
    write_legacy(false);
    assert_eq!(commit_reads(&env, "imported"), 0);
    assert!(!legacy.exists());
    assert_eq!(commit_reads(&env, "again"), 0);
    assert_eq!(committed(&env, "check", "dir/deeper/x"), b"x");
}

/// A commit killed before its objects are durable, or a reset killed mid-way, leaves no row
/// a later commit trusts for content it does not have: the next commit stores what the files
/// hold, even when a change kept size and mtime.
#[test]
fn killed_commits_and_resets_leave_no_row_that_lies() {
    for point in [
        "commit.after-scan",
        "pack.after-record",
        "commit.before-transaction",
        "commit.before-cache-save",
    ] {
        let env = Env::new();
        let live = volume_with_files(&env);
        env.commit("one");
        rewrite_keeping_size_and_mtime(&live.join("f"), b"bbbb");
        write(&live.join("d/sub/new"), "new");
        age();
        env.run_killed(point, &["commit", "-m", "killed"]);
        // Unchanged since the killed scan: what the commit stores must be in the store.
        env.commit("unchanged");
        assert_eq!(committed(&env, "check", "f"), b"bbbb", "{point}");
        let fsck = env.process().arg("fsck").output().unwrap();
        assert!(fsck.status.success(), "{point}: fsck failed");
        rewrite_keeping_size_and_mtime(&live.join("f"), b"cccc");
        age();
        env.commit("after");
        assert_eq!(committed(&env, "check2", "f"), b"cccc", "{point}");
    }
    for point in [
        "materialize.after-file",
        "materialize.before-cache",
        "reset.before-head-move",
    ] {
        let env = Env::new();
        let live = volume_with_files(&env);
        env.commit("one");
        write(&live.join("f"), "bbbb");
        write(&live.join("d/sub/3"), "changed");
        age();
        env.commit("two");
        env.run_killed(point, &["reset", "--hard", "HEAD^"]);
        env.ok(&["reset", "--hard", "HEAD^"]);
        assert_eq!(std::fs::read(live.join("f")).unwrap(), b"aaaa", "{point}");
        rewrite_keeping_size_and_mtime(&live.join("f"), b"dddd");
        age();
        env.commit("after");
        assert_eq!(committed(&env, "check", "f"), b"dddd", "{point}");
    }
}

/// The rows of the cache (directory paths) of a branch.
fn cached_dirs(env: &Env) -> Vec<String> {
    let c = rusqlite::Connection::open(cache_file(env, "master")).unwrap();
    let mut s = c.prepare("SELECT path FROM dirs ORDER BY path").unwrap();
    let rows = s.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
    rows.map(|r| String::from_utf8(r.unwrap()).unwrap())
        .collect()
}

/// A renamed directory, a file replaced by a directory of the same name and the reverse are
/// committed as they are, and the rows of directories that are gone are dropped.
#[test]
fn renamed_and_replaced_directories_are_committed_as_they_are() {
    let env = Env::new();
    let live = volume_with_files(&env);
    write(&live.join("x/inside"), "1");
    // Old enough to be cached: a directory with no cached file has no row.
    age();
    env.commit("one");
    assert_eq!(cached_dirs(&env), ["", "d", "d/sub", "x"]);
    let before = listing(&live);
    std::fs::rename(live.join("d"), live.join("e")).unwrap();
    std::fs::remove_file(live.join("f")).unwrap();
    write(&live.join("f/now-a-dir"), "2");
    std::fs::remove_dir_all(live.join("x")).unwrap();
    write(&live.join("x"), "now a file");
    age();
    let two = env.commit("two");
    assert_eq!(cached_dirs(&env), ["", "e", "e/sub", "f"]);
    let after = listing(&live);
    assert_eq!(
        env.ok(&["status"]).lines().nth(1).unwrap(),
        "nothing to commit, live data clean"
    );
    env.ok(&["reset", "--hard", "HEAD^"]);
    assert_eq!(listing(&live), before);
    assert_eq!(cached_dirs(&env), ["", "d", "d/sub", "x"]);
    env.ok(&["reset", "--hard", &two]);
    assert_eq!(listing(&live), after);
}

/// No other local user can read a cache: every file of the cache directory is 0600 and
/// its directories 0700.
#[test]
fn cache_files_are_private() {
    let env = Env::new();
    volume_with_files(&env);
    env.commit("one");
    env.ok(&["checkout", "-b", "dev"]);
    env.commit("two");
    for e in walkdir::WalkDir::new(env.root().join(".dvol/statcache")) {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().mode() & 0o777;
        let want = if e.file_type().is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", e.path().display());
    }
}

/// Warnings about entries a commit cannot store are capped: the first 100 named, the rest
/// counted.
#[test]
fn skipped_entry_messages_are_capped() {
    let env = Env::new();
    let live = env.init("v");
    let mut mkfifo = std::process::Command::new("mkfifo");
    for i in 0..130 {
        mkfifo.arg(live.join(format!("p{i:03}")));
    }
    assert!(mkfifo.status().unwrap().success());
    let out = env.dvol().args(["commit", "-m", "fifos"]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let named = stderr
        .lines()
        .filter(|l| l.contains("skipped FIFO"))
        .count();
    assert_eq!(named, 100, "{stderr}");
    assert!(stderr.contains("skipped 30 more"), "{stderr}");
    let status = env.ok(&["status"]);
    assert_eq!(
        status.lines().filter(|l| l.starts_with("warning:")).count(),
        101
    );
}
