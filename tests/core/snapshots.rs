//! What a snapshot keeps, and that reset/checkout bring it back exactly.

use crate::support::{listing, noise, write, Env};
use proptest::prelude::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with every kind of entry a database directory can hold.
fn populate(live: &Path) {
    write(&live.join("PG_VERSION"), "15\n");
    write(&live.join("base/1/1259"), noise(1, 3 * 8192 + 17));
    write(&live.join("base/1/big"), noise(2, 3 << 20));
    chmod(&live.join("base/1/1259"), 0o600);
    std::fs::create_dir_all(live.join("pg_tblspc/empty")).unwrap();
    chmod(&live.join("pg_tblspc"), 0o700);
    std::os::unix::fs::symlink("../PG_VERSION", live.join("base/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", live.join("dangling")).unwrap();
    write(&live.join("bin.dat"), [0u8, 255, 0, 1, 2]);
    chmod(&live.join("bin.dat"), 0o4755);
    write(&live.join("empty"), "");
    chmod(live, 0o700);
}

#[test]
fn reset_restores_everything_exactly() {
    let env = Env::new();
    let live = env.init("db");
    populate(&live);
    env.commit("populated");
    let before = listing(&live);
    // Mutate every kind of thing.
    write(&live.join("PG_VERSION"), "16\n");
    std::fs::remove_dir_all(live.join("pg_tblspc")).unwrap();
    std::fs::remove_file(live.join("base/link")).unwrap();
    std::fs::create_dir(live.join("base/link")).unwrap();
    write(&live.join("new/file"), "x");
    chmod(&live.join("bin.dat"), 0o644);
    chmod(&live, 0o755);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(live.join("base/1/big"))
        .unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"changed page", 8192 * 100).unwrap();
    drop(f);
    let status = env.ok(&["status"]);
    for p in [
        "PG_VERSION",
        "new/file",
        "pg_tblspc/empty/",
        "base/1/big",
        "bin.dat",
    ] {
        assert!(status.contains(p), "status misses {p}:\n{status}");
    }
    env.ok(&["reset", "--hard", "HEAD"]);
    assert_eq!(listing(&live), before);
    assert!(env.ok(&["status"]).contains("nothing to commit"));
}

#[test]
fn reset_to_older_commits_by_every_syntax() {
    let env = Env::new();
    let live = env.init("v");
    let mut ids = Vec::new();
    for i in 0..4 {
        write(&live.join("n"), format!("{i}"));
        ids.push(env.commit(&format!("c{i}")));
    }
    env.ok(&["reset", "--hard", "HEAD^"]);
    assert_eq!(std::fs::read_to_string(live.join("n")).unwrap(), "2");
    env.ok(&["reset", "--hard", "HEAD~2"]);
    assert_eq!(std::fs::read_to_string(live.join("n")).unwrap(), "0");
    env.ok(&["reset", "--hard", &ids[3]]);
    assert_eq!(std::fs::read_to_string(live.join("n")).unwrap(), "3");
    env.ok(&["reset", "--hard", &ids[1][..10]]);
    assert_eq!(std::fs::read_to_string(live.join("n")).unwrap(), "1");
    assert_eq!(env.ok(&["log", "--oneline"]).lines().count(), 2);
    assert!(env
        .fails(&["reset", "--hard", "nosuchref"])
        .contains("nosuchref"));
    assert!(env
        .fails(&["reset", "--hard", "HEAD~5"])
        .contains("no parent"));
}

#[test]
fn dropped_commits_survive_while_another_branch_reaches_them() {
    let env = Env::new();
    let live = env.init("v");
    write(&live.join("a"), "one");
    env.commit("one");
    write(&live.join("a"), "two");
    let two = env.commit("two");
    env.ok(&["branch", "keep"]);
    env.ok(&["reset", "--hard", "HEAD^"]);
    env.ok(&["gc"]);
    env.ok(&["reset", "--hard", &two]);
    assert_eq!(std::fs::read_to_string(live.join("a")).unwrap(), "two");
    assert!(env.ok(&["fsck"]).contains("no problems"));
}

#[test]
fn branches_keep_their_own_live_data() {
    let env = Env::new();
    let master = env.init("v");
    write(&master.join("f"), "base");
    env.commit("base");
    env.ok(&["checkout", "-b", "dev"]);
    let dev = env.live();
    assert!(dev.ends_with("v/branches/dev"));
    assert_eq!(std::fs::read_to_string(dev.join("f")).unwrap(), "base");
    write(&dev.join("f"), "dev work, uncommitted");
    write(&master.join("f"), "master work, uncommitted");
    env.ok(&["checkout", "master"]);
    env.ok(&["checkout", "dev"]);
    assert_eq!(
        std::fs::read_to_string(dev.join("f")).unwrap(),
        "dev work, uncommitted"
    );
    assert_eq!(
        std::fs::read_to_string(master.join("f")).unwrap(),
        "master work, uncommitted"
    );
}

#[test]
fn sockets_are_reported_not_silently_skipped() {
    let env = Env::new();
    let live = env.init("v");
    let _sock = std::os::unix::net::UnixListener::bind(live.join("mysql.sock")).unwrap();
    let out = env
        .dvol()
        .args(["commit", "-m", "with socket"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("socket mysql.sock"), "{stderr}");
}

#[test]
fn sparse_files_stay_sparse() {
    let env = Env::new();
    let live = env.init("v");
    let f = std::fs::File::create(live.join("sparse")).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"end", (64 << 20) - 3).unwrap();
    drop(f);
    env.commit("sparse");
    std::fs::remove_file(live.join("sparse")).unwrap();
    env.ok(&["reset", "--hard", "HEAD"]);
    let md = std::fs::metadata(live.join("sparse")).unwrap();
    assert_eq!(md.len(), 64 << 20);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "holes were filled: {} blocks",
        md.blocks()
    );
    let data = std::fs::read(live.join("sparse")).unwrap();
    assert_eq!(&data[data.len() - 3..], b"end");
}

/// A 64 GiB file holding 64 MiB of data: commit finds the data with SEEK_DATA/SEEK_HOLE
/// instead of reading 64 GiB of holes (reading them would also list 8 million zero chunks,
/// hundreds of MiB), status sees it unchanged, and reset brings it back sparse and exact.
#[test]
fn a_64_gib_sparse_file_commits_without_reading_its_holes() {
    let env = Env::new();
    let live = env.init("v");
    let path = live.join("disk.img");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 30).unwrap();
    // 1 MiB at every GiB, the last region starting off a chunk boundary.
    let regions: Vec<(u64, Vec<u8>)> = (0..64u64)
        .map(|i| {
            (
                i << 30 | if i == 63 { 12_345 } else { 0 },
                noise(i, 1 << 20),
            )
        })
        .collect();
    for (at, data) in &regions {
        std::os::unix::fs::FileExt::write_at(&f, data, *at).unwrap();
    }
    drop(f);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let rss = env.ok_measured(&["commit", "-m", "sparse"]);
    assert!(rss < 200 * 1024, "commit took {rss} KiB");
    // A new ctime (same mode, same mtime) makes status hash the file again, holes and all.
    chmod(
        &path,
        std::fs::metadata(&path).unwrap().permissions().mode(),
    );
    let status: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["modified"], serde_json::json!([]), "{status}");
    restores_sparse(&env, &path, 64 << 30, 80 << 20, &regions);
}

/// A sparse file whose size is not a whole number of 4 KiB (cut where its content says, like
/// `/var/log/lastlog`) is not read through its holes either: 60 GiB of apparent size commit in
/// seconds (a read of every byte takes minutes here), its content id is the one a re-hash of
/// every byte gives (status), and it restores sparse and exact.
#[test]
fn a_sparse_file_cut_by_content_commits_without_reading_its_holes() {
    let env = Env::new();
    let live = env.init("v");
    let path = live.join("lastlog");
    let len = (60u64 << 30) + 292;
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    let regions: Vec<(u64, Vec<u8>)> = [0, (20 << 30) + 777, len - 100_000]
        .iter()
        .enumerate()
        .map(|(i, &at)| (at, noise(40 + i as u64, 100_000)))
        .collect();
    for (at, data) in &regions {
        std::os::unix::fs::FileExt::write_at(&f, data, *at).unwrap();
    }
    drop(f);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let started = std::time::Instant::now();
    env.commit("sparse dump");
    let took = started.elapsed();
    // A hang guard, not a benchmark: reading 60 GiB of holes and cutting them takes minutes.
    assert!(
        took < std::time::Duration::from_secs(30),
        "commit took {took:?}"
    );
    restores_sparse(&env, &path, len, 64 << 20, &regions);
}

/// Remove the sparse file at `path`, `reset --hard HEAD`, and check it is back `len` bytes
/// long with fewer than `most` bytes allocated and every data region exact.
fn restores_sparse(env: &Env, path: &Path, len: u64, most: u64, regions: &[(u64, Vec<u8>)]) {
    std::fs::remove_file(path).unwrap();
    env.ok(&["reset", "--hard", "HEAD"]);
    let f = std::fs::File::open(path).unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(md.len(), len);
    assert!(
        md.blocks() * 512 < most,
        "holes were filled: {} blocks",
        md.blocks()
    );
    for (at, data) in regions {
        let mut back = vec![0u8; data.len()];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, *at).unwrap();
        assert!(back == *data, "region at {at} differs");
    }
}

#[test]
fn unchanged_files_are_not_reread_and_reset_rewrites_only_changes() {
    let env = Env::new();
    let live = env.init("v");
    write(&live.join("big"), noise(3, 8 << 20));
    write(&live.join("small"), "a");
    // Let timestamps age past the racy window so the stat cache trusts them.
    std::thread::sleep(std::time::Duration::from_millis(100));
    env.commit("c1");
    let ino = std::fs::metadata(live.join("big")).unwrap().ino();
    write(&live.join("small"), "b");
    env.ok(&["reset", "--hard", "HEAD"]);
    assert_eq!(
        std::fs::metadata(live.join("big")).unwrap().ino(),
        ino,
        "unchanged file was rewritten"
    );
    assert_eq!(std::fs::read_to_string(live.join("small")).unwrap(), "a");
}

#[test]
fn diff_and_tags() {
    let env = Env::new();
    let live = env.init("v");
    write(&live.join("a"), "1");
    write(&live.join("gone"), "x");
    env.commit("c1");
    env.ok(&["tag", "v1"]);
    write(&live.join("a"), "22");
    std::fs::remove_file(live.join("gone")).unwrap();
    write(&live.join("new"), "n");
    env.commit("c2");
    assert_eq!(env.ok(&["diff", "v1", "HEAD"]), "M\ta\nD\tgone\nA\tnew\n");
    let stat = env.ok(&["diff", "--stat", "v1", "HEAD"]);
    assert!(stat.contains("a | 1 -> 2 bytes"), "{stat}");
    assert_eq!(env.ok(&["tag"]), "v1\n");
    assert!(env.fails(&["tag", "v1"]).contains("tag v1 already exists"));
    env.ok(&["reset", "--hard", "v1"]);
    assert_eq!(std::fs::read_to_string(live.join("a")).unwrap(), "1");
    write(&live.join("a"), "live");
    assert_eq!(env.ok(&["diff"]), "M\ta\n");
    env.ok(&["tag", "-d", "v1"]);
    assert_eq!(env.ok(&["tag"]), "");
}

#[test]
fn status_json() {
    let env = Env::new();
    let live = env.init("v");
    env.commit("empty");
    write(&live.join("x"), "1");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"])).unwrap();
    assert_eq!(v["added"][0], "x");
    assert_eq!(v["branch"], "master");
    let l: serde_json::Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    assert_eq!(l[0]["name"], "v");
}

#[derive(Debug, Clone)]
enum Item {
    File(Vec<u8>, u32),
    Dir(Vec<(String, Item)>, u32),
    Link(String),
}

fn item() -> impl Strategy<Value = Item> {
    let leaf = prop_oneof![
        (
            prop::collection::vec(any::<u8>(), 0..20000),
            prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o400])
        )
            .prop_map(|(d, m)| Item::File(d, m)),
        (0usize..3, any::<u64>())
            .prop_map(|(k, s)| Item::File(noise(s, [0, 8192, (1 << 20) + 5][k]), 0o640)),
        "[a-z./]{1,12}".prop_map(Item::Link),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        (
            prop::collection::vec(("[a-zA-Z0-9_ -]{1,8}", inner), 0..5),
            prop::sample::select(vec![0o755u32, 0o700, 0o750]),
        )
            .prop_map(|(kids, m)| Item::Dir(kids, m))
    })
}

fn create(path: &Path, item: &Item) {
    match item {
        Item::File(data, mode) => {
            std::fs::write(path, data).unwrap();
            chmod(path, *mode);
        }
        Item::Dir(kids, mode) => {
            std::fs::create_dir(path).unwrap();
            for (name, kid) in kids {
                let p = path.join(name);
                if !p.exists() && p.symlink_metadata().is_err() {
                    create(&p, kid);
                }
            }
            chmod(path, *mode);
        }
        Item::Link(target) => std::os::unix::fs::symlink(target, path).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
    #[test]
    fn random_trees_round_trip(a in item(), b in item()) {
        let env = Env::new();
        let live = env.init("p");
        create(&live.join("t"), &a);
        env.commit("a");
        let expected = listing(&live);
        std::fs::remove_dir_all(&live).ok();
        std::fs::create_dir(&live).unwrap();
        create(&live.join("t"), &b);
        env.ok(&["reset", "--hard", "HEAD"]);
        prop_assert_eq!(listing(&live), expected);
    }
}
