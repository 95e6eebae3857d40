//! `dvol prune --remote` on carriers other than a path (tests/core/prune.rs covers path
//! remotes in depth): s3:// (s3s-fs), where remote gc must see every volume of the bucket, and
//! `dvol serve` with an admin token (tests/remote/scoped.rs: refused to lesser tokens).

use super::s3::{aws_vars, s3s_fs, AK, SK};
use super::{Host, Vars};
use crate::support::{noise, rows, write};

fn commits(host: &Host, n: u64, seed: u64) {
    for i in 0..n {
        write(&host.live().join("data"), noise(seed + i, 128 << 10));
        host.commit(&format!("c{i}"));
    }
}

/// `dvol prune --remote origin --keep-last KEEP --grace 0`.
fn remote_gc_args(keep: &str) -> [&str; 7] {
    [
        "prune",
        "--remote",
        "origin",
        "--keep-last",
        keep,
        "--grace",
        "0",
    ]
}

/// A host with volume `db` and remote `origin` at a path in the returned directory.
fn host_with_path_remote() -> (tempfile::TempDir, String, Host) {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("r").to_str().unwrap().to_string();
    let host = Host::new(&Vec::new());
    host.ok(&["init", "db"]);
    host.ok(&["remote", "add", "origin", &url]);
    (dir, url, host)
}

fn expired_count(host: &Host) -> usize {
    host.ok(&["log", "--oneline"])
        .lines()
        .filter(|l| l.contains("(expired)"))
        .count()
}

#[test]
fn remote_prune_on_s3_keeps_other_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = s3s_fs(dir.path());
    let vars = aws_vars(port, AK, SK);
    let url = "s3://bucket/shared";
    let prod = Host::new(&vars);
    prod.ok(&["init", "db"]);
    commits(&prod, 4, 0);
    prod.ok(&["remote", "add", "origin", url]);
    prod.ok(&["push"]);
    prod.ok(&["init", "other"]);
    commits(&prod, 2, 100);
    prod.ok(&["remote", "add", "origin", url]);
    prod.ok(&["push"]);

    prod.ok(&["switch", "db"]);
    let out = prod.ok(&remote_gc_args("1"));
    assert!(out.contains("expired 3 commits"), "{out}");
    assert!(out.contains("rewrote 1 packs"), "{out}");

    let qa = Host::new(&vars);
    qa.ok(&["clone", url, "db"]);
    assert_eq!(expired_count(&qa), 3);
    assert_eq!(
        std::fs::read(qa.live().join("data")).unwrap(),
        noise(3, 128 << 10)
    );
    qa.ok(&["clone", url, "other"]);
    assert_eq!(expired_count(&qa), 0, "the other volume keeps all its data");
    qa.ok(&["reset", "--hard", "HEAD^"]);
    assert_eq!(
        std::fs::read(qa.live().join("data")).unwrap(),
        noise(100, 128 << 10)
    );
    assert!(qa.ok(&["fsck"]).contains("no problems"));
}

#[test]
fn remote_prune_over_dvol_serve_with_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_server, port) = super::http::server(&store, None);
    let vars: Vars = vec![("DVOL_TOKEN".into(), super::http::TOKEN.into())];
    let url = format!("http://127.0.0.1:{port}");
    let host = Host::new(&vars);
    host.ok(&["init", "db"]);
    commits(&host, 3, 0);
    host.ok(&["remote", "add", "origin", &url]);
    host.ok(&["push"]);
    // The single-token file's token is admin on every volume: the server lists the volumes
    // (ListVolumes) and remote gc runs.
    let out = host.ok(&remote_gc_args("1"));
    assert!(out.contains("expired 2 commits"), "{out}");
    assert!(store.join("expired/db").exists());
    let qa = Host::new(&vars);
    qa.ok(&["clone", &url, "db"]);
    assert_eq!(expired_count(&qa), 2);
    // Local prune and a push of the expiry still work over http.
    host.ok(&["prune", "--keep-last", "1"]);
    host.ok(&["gc"]);
    commits(&host, 1, 50);
    host.ok(&["push"]);
    qa.ok(&["pull"]);
}

#[test]
fn remote_gc_deletes_nothing_when_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("r");
    let host = Host::new(&Vec::new());
    host.ok(&["init", "db"]);
    host.ok(&["remote", "add", "origin", url.to_str().unwrap()]);
    commits(&host, 1, 0);
    host.ok(&["push"]);
    let first: Vec<std::path::PathBuf> = std::fs::read_dir(url.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    commits(&host, 2, 10);
    host.ok(&["push"]);
    // The first push's index disappears: the kept first commit's tree is no longer listed.
    let idx = first
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .unwrap();
    std::fs::remove_file(idx).unwrap();
    let packs_before = std::fs::read_dir(url.join("packs")).unwrap().count();
    let err = host.fails(&remote_gc_args("3"));
    assert!(err.contains("the remote is incomplete"), "{err}");
    assert_eq!(
        std::fs::read_dir(url.join("packs")).unwrap().count(),
        packs_before
    );
    assert!(!url.join("gc").exists(), "nothing recorded either");
}

/// Remote gc walks through the shared walker, so a directory stored split into parts (more
/// than 4096 entries) is followed like any tree: its files stay, and gc deletes what only the
/// expired commits held.
#[test]
fn remote_gc_follows_split_trees() {
    let (_dir, url, host) = host_with_path_remote();
    let url = url.as_str();
    let big = host.live().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..4200 {
        write(&big.join(format!("f{i}")), format!("file {i}"));
    }
    commits(&host, 3, 70);
    host.ok(&["push"]);
    let out = host.ok(&remote_gc_args("1"));
    assert!(out.contains("remote gc: deleted"), "{out}");
    let qa = Host::new(&Vec::new());
    qa.ok(&["clone", url, "db"]);
    assert!(qa.ok(&["fsck"]).contains("no problems"));
    assert_eq!(
        std::fs::read_to_string(qa.live().join("big/f4199")).unwrap(),
        "file 4199"
    );
}

/// Kill remote gc (kill -9) after it copied the reachable objects, and after it deleted an
/// index but not its pack: the remote stays complete (clones work), and the next run finishes.
#[test]
fn remote_gc_killed_midway_leaves_a_complete_remote() {
    for point in ["remote-gc.after-copy", "remote-gc.after-idx-delete"] {
        let (dir, url, host) = host_with_path_remote();
        let url = url.as_str();
        for round in 0..3 {
            commits(&host, 2, round * 10);
            host.ok(&["push"]);
        }
        let args = remote_gc_args("2");
        let out = host
            .env
            .dvol()
            .env("DVOL_FAILPOINT", point)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: not killed");
        let check = |what: &str| {
            let qa = Host::new(&Vec::new());
            qa.ok(&["clone", url, "db"]);
            assert!(qa.ok(&["fsck"]).contains("no problems"), "{point} {what}");
            assert_eq!(
                std::fs::read(qa.live().join("data")).unwrap(),
                noise(21, 128 << 10),
                "{point} {what}"
            );
            qa.ok(&["reset", "--hard", "HEAD^"]);
        };
        check("after the kill");
        let out = host.ok(&args);
        assert!(out.contains("remote gc: deleted"), "{point}: {out}");
        check("after the re-run");
        // Every pack left has its index, and nothing waits any more.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("r/packs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let packs = names.iter().filter(|n| n.ends_with(".pack")).count();
        let idxs = names.iter().filter(|n| n.ends_with(".idx")).count();
        assert_eq!(packs, idxs, "{point}: {names:?}");
        let again = host.ok(&args);
        assert!(
            again.contains("deleted 0 packs") && again.contains("rewrote 0 packs"),
            "{again}"
        );
    }
}

/// Bytes of the remote's packs.
fn packs_bytes(remote: &std::path::Path) -> u64 {
    std::fs::read_dir(remote.join("packs"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Remote gc rewrites a pack holding dead objects: the live chunks it rescues from blocks are
/// compressed together again, so the remote after gc is no larger than a fresh push of the
/// same data (one record per chunk would take far more for table rows).
#[test]
fn remote_gc_keeps_rescued_chunks_in_blocks() {
    let (dir, _url, host) = host_with_path_remote();
    write(&host.live().join("table"), rows(60_000));
    commits(&host, 2, 90);
    host.ok(&["push"]);
    let out = host.ok(&remote_gc_args("1"));
    assert!(out.contains("rewrote 1 packs"), "{out}");
    let after_gc = packs_bytes(&dir.path().join("r"));
    eprintln!("remote after gc: {after_gc} bytes");

    let (fresh_dir, _, fresh) = host_with_path_remote();
    write(&fresh.live().join("table"), rows(60_000));
    write(&fresh.live().join("data"), noise(91, 128 << 10));
    fresh.commit("only the live state");
    fresh.ok(&["push"]);
    let fresh_bytes = packs_bytes(&fresh_dir.path().join("r"));
    assert!(
        after_gc <= fresh_bytes + fresh_bytes / 10 + (16 << 10),
        "remote after gc {after_gc} bytes, a fresh push of the live data {fresh_bytes}"
    );
    let qa = Host::new(&Vec::new());
    qa.ok(&["clone", dir.path().join("r").to_str().unwrap(), "db"]);
    assert_eq!(
        std::fs::read_to_string(qa.live().join("table")).unwrap(),
        rows(60_000)
    );
}
