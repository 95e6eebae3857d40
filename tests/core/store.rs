//! Store guarantees: dedup, verify-on-read, fsck, gc, kill -9, concurrency.

use crate::support::{listing, noise, rows, write, Env};
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

/// Offset of the first block record ("DVBK") in `bytes`.
fn first_block(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"DVBK")
}

#[test]
fn runs_of_new_chunks_are_compressed_together_and_damage_names_the_objects() {
    let env = Env::new();
    let live = env.init("a");
    let text = rows(40_000);
    write(&live.join("table"), &text);
    env.commit("rows");
    // 1.5 MiB of rows: blocks of chunks compress far better than chunks one by one.
    let packs = pack_files(&env);
    let with_block = packs
        .iter()
        .find(|p| first_block(&std::fs::read(p).unwrap()).is_some())
        .expect("a pack holding a block")
        .clone();
    assert!(
        packs_size(&env) < text.len() as u64 / 10,
        "{} bytes stored for {}",
        packs_size(&env),
        text.len()
    );
    std::fs::remove_file(live.join("table")).unwrap();
    env.ok(&["reset", "--hard", "HEAD"]);
    assert!(std::fs::read_to_string(live.join("table")).unwrap() == text);
    assert!(env.ok(&["fsck"]).contains("no problems"));
    // One flipped byte in the middle of a block's compressed data: fsck and reads name the
    // objects.
    let mut bytes = std::fs::read(&with_block).unwrap();
    let at = first_block(&bytes).unwrap();
    let count = usize::from(u16::from_le_bytes([bytes[at + 38], bytes[at + 39]]));
    let clen = u32::from_le_bytes(bytes[at + 44..at + 48].try_into().unwrap()) as usize;
    bytes[at + 48 + count * 36 + clen / 2] ^= 0x40;
    std::fs::write(&with_block, bytes).unwrap();
    let out = env.dvol().arg("fsck").output().unwrap();
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("is corrupt"), "{report}");
    std::fs::remove_file(live.join("table")).unwrap();
    let err = env.fails(&["reset", "--hard", "HEAD"]);
    assert!(err.contains("object ") && err.contains("corrupt"), "{err}");
    assert!(!live.join("table").exists());
}

#[test]
fn a_format_1_store_keeps_working_and_is_upgraded_in_place() {
    // Made by dvol before blocks (format 1): volume db, two commits of `base/table` (4000
    // rows) and PG_VERSION ("15\n", then "15\nmore\n"); live data removed.
    let env = Env::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/store-format-1.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(env.dir.path())
        .arg("-xzf")
        .arg(&fixture)
        .status()
        .unwrap();
    assert!(st.success());
    let log = env.ok(&["--volume", "db", "log"]);
    assert!(
        log.contains("v1 second") && log.contains("v1 first"),
        "{log}"
    );
    env.ok(&["--volume", "db", "reset", "--hard", "HEAD"]);
    let live = env.root().join("db/branches/master");
    assert_eq!(
        std::fs::read_to_string(live.join("base/table")).unwrap(),
        rows(4000)
    );
    assert_eq!(
        std::fs::read_to_string(live.join("PG_VERSION")).unwrap(),
        "15\nmore\n"
    );
    // New commits write blocks beside the old records; both read back and verify.
    write(&live.join("base/more"), rows(20_000));
    env.ok(&["--volume", "db", "commit", "-m", "format 2"]);
    assert!(env.ok(&["fsck"]).contains("no problems"));
    env.ok(&["--volume", "db", "checkout", "-b", "copy"]);
    let copy = env.root().join("db/branches/copy");
    assert_eq!(
        std::fs::read_to_string(copy.join("base/more")).unwrap(),
        rows(20_000)
    );
    assert_eq!(
        std::fs::read_to_string(copy.join("base/table")).unwrap(),
        rows(4000)
    );
    env.ok(&["gc"]);
    assert!(env.ok(&["fsck"]).contains("no problems"));
}

/// Chunk records ("DVOB" of kind chunk) in the store's packs: chunks not kept in a block.
fn chunk_records(env: &Env) -> usize {
    pack_files(env)
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes
                .windows(37)
                .filter(|w| &w[..4] == b"DVOB" && w[36] == 0)
                .count()
        })
        .sum()
}

#[test]
fn gc_keeps_blocks_when_it_rewrites_a_pack() {
    let env = Env::new();
    let live = env.init("v");
    env.commit("base");
    // 48 chunks of rows on a side branch: three blocks of 16.
    let text = rows(25_000);
    let chunk = 8192;
    assert!(text.len() >= 48 * chunk);
    let text = &text.as_bytes()[..48 * chunk];
    env.ok(&["checkout", "-b", "side"]);
    write(&live.join("table"), text);
    env.commit("rows");
    assert_eq!(chunk_records(&env), 0, "new chunks are written in blocks");
    // master keeps the first 20 chunks (one block whole, four of the next), then side goes.
    env.ok(&["checkout", "master"]);
    write(&live.join("table"), &text[..20 * chunk]);
    env.commit("head of the table");
    env.ok(&["branch", "-d", "side"]);
    let before = packs_size(&env);
    let out = env.ok(&["gc"]);
    assert!(out.contains("reclaimed"), "{out}");
    assert!(packs_size(&env) < before, "gc reclaimed nothing: {out}");
    assert_eq!(
        chunk_records(&env),
        0,
        "gc split a block into chunk records"
    );
    assert!(env.ok(&["fsck"]).contains("no problems"));
    std::fs::remove_file(live.join("table")).unwrap();
    env.ok(&["reset", "--hard", "HEAD"]);
    assert!(std::fs::read(live.join("table")).unwrap() == text[..20 * chunk]);
}

/// The store's `meta.format_version`, read or set behind dvol's back.
fn store_format(env: &Env, set: Option<&str>) -> String {
    let db = rusqlite::Connection::open(env.root().join(".dvol/dvol.db")).unwrap();
    if let Some(v) = set {
        db.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'format_version'",
            [v],
        )
        .unwrap();
    }
    db.query_row(
        "SELECT value FROM meta WHERE key = 'format_version'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_format_2_store_is_upgraded_and_a_newer_format_is_refused_by_name() {
    let env = Env::new();
    env.ok(&["init", "db"]);
    let live = env.root().join("db/branches/master");
    write(&live.join("base/table"), rows(50_000));
    env.ok(&["--volume", "db", "commit", "-m", "one"]);
    assert_eq!(store_format(&env, Some("2")), "2");
    // Opening it upgrades it (format 3 only allows larger blocks); everything still reads.
    assert!(env.ok(&["--volume", "db", "log"]).contains("one"));
    assert_eq!(store_format(&env, None), "3");
    env.ok(&["--volume", "db", "checkout", "-b", "copy"]);
    assert_eq!(
        std::fs::read_to_string(env.root().join("db/branches/copy/base/table")).unwrap(),
        rows(50_000)
    );
    store_format(&env, Some("4"));
    let err = env.fails(&["--volume", "db", "log"]);
    assert!(
        err.contains("has format version 4; this dvol reads version 3"),
        "{err}"
    );
}

/// Issue 11: 100 KiB inserted in the middle of a 64 MiB dump (its size is not a whole number
/// of 4 KiB, so it is cut where its content says) stores about the insertion, not the 32 MiB
/// after it; one page rewritten in a page file (fixed 8 KiB blocks) stores about one page;
/// both versions of both restore exactly.
#[test]
fn an_insertion_in_a_dump_stores_about_the_insertion_and_a_page_rewrite_about_a_page() {
    let env = Env::new();
    let live = env.init("v");
    let dump = noise(21, (64 << 20) + 1234);
    let pages = noise(22, 16 << 20);
    write(&live.join("dump.sql"), &dump);
    write(&live.join("base/16384"), &pages);
    env.commit("first");
    env.ok(&["tag", "first"]);
    let first = packs_size(&env);
    let mut inserted = dump[..(32 << 20) + 777].to_vec();
    inserted.extend(noise(23, 100 << 10));
    inserted.extend(&dump[(32 << 20) + 777..]);
    write(&live.join("dump.sql"), &inserted);
    env.commit("insert");
    let grew = packs_size(&env) - first;
    assert!(
        grew < 256 << 10,
        "100 KiB inserted in a 64 MiB dump stored {grew} bytes"
    );
    let mut rewritten = pages.clone();
    rewritten[8192 * 700..8192 * 701].copy_from_slice(&noise(24, 8192));
    write(&live.join("base/16384"), &rewritten);
    let before = packs_size(&env);
    env.commit("page");
    let grew = packs_size(&env) - before;
    assert!(grew < 32 << 10, "one page rewrite stored {grew} bytes");
    std::fs::remove_file(live.join("dump.sql")).unwrap();
    std::fs::remove_dir_all(live.join("base")).unwrap();
    env.ok(&["reset", "--hard", "HEAD"]);
    assert!(std::fs::read(live.join("dump.sql")).unwrap() == inserted);
    assert!(std::fs::read(live.join("base/16384")).unwrap() == rewritten);
    env.ok(&["reset", "--hard", "first"]);
    assert!(std::fs::read(live.join("dump.sql")).unwrap() == dump);
    assert!(std::fs::read(live.join("base/16384")).unwrap() == pages);
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["modified"], serde_json::json!([]), "{status}");
}
