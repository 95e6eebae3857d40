//! Hostile remotes (issue 10): hand-built path remotes whose objects declare sizes and depths
//! they do not have, and corrupt pushes. Every case must fail with a clear message or restore
//! in bounded memory, never crash or exhaust the host. Memory is the child's peak RSS
//! (`wait4` rusage), asserted against a bound.

use crate::remote::{fill, free_port, start_with_line, Daemon, Host, Vars};
use crate::support::handmade::HandPack;
use dvol::repo::Commit;
use dvol::snapshot::{Entry, Meta, Node, Tree};
use dvol::store::{Kind, ListEntry, ListNode, ObjectId, CHUNK_SIZE};
use std::path::Path;
use std::process::Command;

fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime_sec: 1,
        mtime_nsec: 0,
    }
}

/// Objects of a hand-built remote, deduplicated by id.
#[derive(Default)]
struct Objects(Vec<(Kind, Vec<u8>)>, std::collections::HashSet<ObjectId>);

impl Objects {
    fn put(&mut self, kind: Kind, data: Vec<u8>) -> ObjectId {
        let id = ObjectId::hash(&data);
        if self.1.insert(id) {
            self.0.push((kind, data));
        }
        id
    }

    fn list(&mut self, level: u8, entries: Vec<ListEntry>) -> ListEntry {
        let len = entries.iter().map(|e| e.len).sum();
        let id = self.put(
            Kind::List,
            postcard::to_stdvec(&ListNode { level, entries }).unwrap(),
        );
        ListEntry { id, len }
    }

    /// A commit whose root holds `entries`; returns its id.
    fn commit(&mut self, entries: Vec<Entry>) -> ObjectId {
        let tree = self.put(
            Kind::Tree,
            Tree {
                meta: meta(0o755),
                entries,
            }
            .encode(),
        );
        self.commit_tree(tree)
    }

    fn commit_tree(&mut self, tree: ObjectId) -> ObjectId {
        let c = Commit {
            tree,
            parents: vec![],
            author: "Mallory <m@example.com>".into(),
            time: 0,
            tz_offset_min: 0,
            message: "hostile".into(),
        };
        self.put(Kind::Commit, c.encode())
    }

    /// Write them as a path remote with `db/master` at `head`.
    fn write(&self, dir: &Path, head: ObjectId) {
        let mut pack = HandPack::default();
        for (kind, data) in &self.0 {
            pack.record(*kind, data);
        }
        pack.write_remote(dir, "db", head);
    }
}

fn file(name: &str, size: u64, content: Option<ObjectId>) -> Entry {
    Entry {
        name: name.as_bytes().to_vec(),
        node: Node::File {
            meta: meta(0o644),
            size,
            content,
        },
    }
}

/// A chunk-list tree repeating `chunk` (of `CHUNK_SIZE` bytes) until it covers 2^`log2`
/// bytes: every node lists one child 32 times (the top one fewer).
fn repeated(objs: &mut Objects, chunk: ObjectId, log2: u32) -> ListEntry {
    let mut node = ListEntry {
        id: chunk,
        len: CHUNK_SIZE as u64,
    };
    let mut level = 0u8;
    let mut covered = 13; // log2(CHUNK_SIZE)
    while covered < log2 {
        let step = (log2 - covered).min(5);
        node = objs.list(level, vec![node; 1 << step]);
        covered += step;
        level += 1;
    }
    node
}

/// Run a dvol command of `host` under GNU time, returning (success, stderr, peak RSS in KiB).
fn run_measured(host: &Host, args: &[&str]) -> (bool, String, u64) {
    let rss_file = host.env.dir.path().join("rss");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_dvol"))
        .arg("--disable-docker-integration")
        .args(args)
        .env("DVOL_ROOT", host.env.root())
        .env_remove("DVOL_LOG")
        .env("DVOL_LOCK_TIMEOUT", "20")
        .envs(host.vars.iter().cloned())
        .output()
        .expect("run /usr/bin/time dvol");
    let rss = std::fs::read_to_string(&rss_file).unwrap();
    let rss = rss.lines().last().unwrap().trim().parse().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rss,
    )
}

/// Peak RSS a clone may take, whatever the remote declares (KiB).
const RSS_BOUND_KIB: u64 = 200 * 1024;

#[test]
fn hostile_remote_file_declaring_2_pow_60_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let mut objs = Objects::default();
    let chunk = objs.put(Kind::Chunk, vec![7u8; CHUNK_SIZE]);
    let list = objs.list(
        0,
        vec![
            ListEntry {
                id: chunk,
                len: CHUNK_SIZE as u64
            };
            2
        ],
    );
    let head = objs.commit(vec![file("huge", 1 << 60, Some(list.id))]);
    objs.write(&remote, head);
    let host = Host::new(&Vars::new());
    for _ in 0..3 {
        let (ok, err, rss) = run_measured(&host, &["clone", remote.to_str().unwrap(), "db"]);
        assert!(!ok);
        assert!(
            err.contains("covers 16384 bytes where 1152921504606846976 are declared"),
            "{err}"
        );
        assert!(rss < RSS_BOUND_KIB, "clone took {rss} KiB");
    }
    host.ok(&["fsck"]);
    host.ok(&["gc"]);
}

#[test]
fn hostile_remote_list_repeating_one_child_is_bounded() {
    // Consistent sizes, 2^58 bytes of one non-zero chunk: refused for lack of space, having
    // read each distinct node once.
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let mut objs = Objects::default();
    let chunk = objs.put(Kind::Chunk, vec![7u8; CHUNK_SIZE]);
    let root = repeated(&mut objs, chunk, 58);
    let head = objs.commit(vec![file("big", root.len, Some(root.id))]);
    objs.write(&remote, head);
    let host = Host::new(&Vars::new());
    let (ok, err, rss) = run_measured(&host, &["clone", remote.to_str().unwrap(), "db"]);
    assert!(!ok);
    assert!(
        err.contains("needs 288230376151711744 bytes and the file system has"),
        "{err}"
    );
    assert!(rss < RSS_BOUND_KIB, "clone took {rss} KiB");
    eprintln!("repeated-child list clone: peak RSS {rss} KiB");
}

#[test]
fn hostile_remote_sparse_64gib_file_restores_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let mut objs = Objects::default();
    let zero = objs.put(Kind::Chunk, vec![0u8; CHUNK_SIZE]);
    let root = repeated(&mut objs, zero, 36);
    let head = objs.commit(vec![
        file("small", 3, Some(ObjectId::hash(b"abc"))),
        file("sparse", root.len, Some(root.id)),
    ]);
    objs.put(Kind::Chunk, b"abc".to_vec());
    objs.write(&remote, head);
    let host = Host::new(&Vars::new());
    let t = std::time::Instant::now();
    let (ok, err, rss) = run_measured(&host, &["clone", remote.to_str().unwrap(), "db"]);
    assert!(ok, "{err}");
    let f = host.live().join("sparse");
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!(md.len(), 64 << 30);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&md) < 1024,
        "not sparse"
    );
    assert!(rss < RSS_BOUND_KIB, "clone took {rss} KiB");
    eprintln!(
        "64 GiB sparse clone: {:.1} s, peak RSS {rss} KiB",
        t.elapsed().as_secs_f64()
    );
}

/// A chain of `depth` directories, each holding only the next.
fn deep_tree(objs: &mut Objects, depth: usize) -> ObjectId {
    let mut tree = objs.put(
        Kind::Tree,
        Tree {
            meta: meta(0o755),
            entries: vec![],
        }
        .encode(),
    );
    for _ in 0..depth {
        tree = objs.put(
            Kind::Tree,
            Tree {
                meta: meta(0o755),
                entries: vec![Entry {
                    name: b"d".to_vec(),
                    node: Node::Dir { tree },
                }],
            }
            .encode(),
        );
    }
    tree
}

#[test]
fn hostile_remote_50000_deep_tree_is_refused_and_gc_fsck_survive() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let mut objs = Objects::default();
    let tree = deep_tree(&mut objs, 50_000);
    let head = objs.commit_tree(tree);
    objs.write(&remote, head);
    let host = Host::new(&Vars::new());
    host.ok(&["init", "db"]);
    fill(&host.live(), 1);
    host.commit("mine");
    host.ok(&["remote", "add", "origin", remote.to_str().unwrap()]);
    for verb in [&["fetch", "origin"][..], &["pull", "origin", "master"]] {
        let (ok, err, rss) = run_measured(&host, verb);
        assert!(!ok);
        assert!(
            err.contains("nests directories deeper than 256 levels"),
            "{err}"
        );
        assert!(rss < RSS_BOUND_KIB, "{verb:?} took {rss} KiB");
    }
    let clone = Host::new(&Vars::new());
    let err = clone.fails(&["clone", remote.to_str().unwrap(), "db"]);
    assert!(err.contains("deeper than 256"), "{err}");
    for h in [&host, &clone] {
        h.ok(&["gc"]);
        h.ok(&["fsck"]);
    }
    let err = host.fails(&["fsck", "--remote", "origin"]);
    let out = String::from_utf8(host.run(&["fsck", "--remote", "origin"]).stdout).unwrap();
    assert!(out.contains("deeper than 256"), "{out}{err}");
}

#[test]
fn hostile_remote_deep_tree_within_the_limit_round_trips() {
    // 250 levels: below the limit (live::MAX_DEPTH, one open handle per level while live data
    // is written), so commit, push, clone, gc and fsck all work.
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let mut objs = Objects::default();
    let tree = deep_tree(&mut objs, 250);
    let head = objs.commit_tree(tree);
    objs.write(&remote, head);
    let host = Host::new(&Vars::new());
    host.ok(&["clone", remote.to_str().unwrap(), "db"]);
    host.ok(&["gc"]);
    host.ok(&["fsck"]);
    host.ok(&["fsck", "--remote", "origin"]);
}

/// Flip one byte inside the payload of the largest record of every pack under `packs`.
fn corrupt_packs(packs: &Path) {
    for e in std::fs::read_dir(packs).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pack") {
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n - 3] ^= 0x55;
            std::fs::write(&p, b).unwrap();
        }
    }
}

#[test]
fn hostile_corrupt_local_pack_is_not_pushed_and_repair_heals_the_remote() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    // Two hosts with the same data.
    let sick = Host::new(&Vars::new());
    let healthy = Host::new(&Vars::new());
    for h in [&sick, &healthy] {
        h.ok(&["init", "db"]);
        crate::support::write(&h.live().join("big.bin"), crate::support::noise(9, 300_000));
        h.commit("same");
        h.ok(&["remote", "add", "origin", remote.to_str().unwrap()]);
    }
    // A flipped byte in the sick host's pack: push refuses, naming the object; no ref moves.
    corrupt_packs(&sick.env.root().join(".dvol/packs"));
    let err = sick.fails(&["push"]);
    assert!(err.contains("push refused: local object"), "{err}");
    assert!(err.contains("is corrupt"), "{err}");
    assert!(!remote.join("refs/db/heads/master").exists());

    // The remote rots instead: the healthy host pushed, then a remote pack flipped a byte.
    healthy.ok(&["push"]);
    corrupt_packs(&remote.join("packs"));
    let out = String::from_utf8(healthy.run(&["fsck", "--remote", "origin"]).stdout).unwrap();
    assert!(out.contains("corrupt"), "{out}");
    let qa = Host::new(&Vars::new());
    let err = qa.fails(&["clone", remote.to_str().unwrap(), "db"]);
    assert!(err.contains("corrupt"), "{err}");
    // A plain push trusts the index (documented); --repair reads back and re-sends.
    let out = healthy.run(&["push", "--repair"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("repair: 1 objects"), "{stderr}");
    let out = healthy.ok(&["fsck", "--remote", "origin"]);
    assert!(out.contains("no problems"), "{out}");
    qa.ok(&["clone", remote.to_str().unwrap(), "db"]);
    crate::remote::same_tree(&qa.live(), &healthy.live());
}

/// Builds a hostile remote's objects and returns the head.
type Builder = dyn Fn(&mut Objects) -> ObjectId;

#[test]
fn hostile_remote_through_dvol_serve() {
    // The decoder cases through the HTTP server: a hostile store served by `dvol serve`.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let token = "hostile-serve-token";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let vars: Vars = vec![("DVOL_TOKEN".into(), token.into())];
    let cases: Vec<(Box<Builder>, &str)> = vec![
        (
            Box::new(|o: &mut Objects| {
                let chunk = o.put(Kind::Chunk, vec![7u8; CHUNK_SIZE]);
                let list = o.list(
                    0,
                    vec![
                        ListEntry {
                            id: chunk,
                            len: CHUNK_SIZE as u64
                        };
                        2
                    ],
                );
                o.commit(vec![file("huge", 1 << 60, Some(list.id))])
            }),
            "are declared",
        ),
        (
            Box::new(|o: &mut Objects| {
                let chunk = o.put(Kind::Chunk, vec![7u8; CHUNK_SIZE]);
                let root = repeated(o, chunk, 58);
                o.commit(vec![file("big", root.len, Some(root.id))])
            }),
            "bytes and the file system has",
        ),
        (
            Box::new(|o: &mut Objects| {
                let t = deep_tree(o, 50_000);
                o.commit_tree(t)
            }),
            "deeper than 256",
        ),
    ];
    for (build, expect) in cases {
        let _ = std::fs::remove_dir_all(&store);
        let mut objs = Objects::default();
        let head = build(&mut objs);
        objs.write(&store, head);
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvol"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token-file",
        ])
        .arg(&token_file)
        .arg(&store);
        let (_server, _line): (Daemon, String) = start_with_line(cmd, "Listening on");
        let host = Host::new(&vars);
        let url = format!("http://127.0.0.1:{port}");
        let (ok, err, rss) = run_measured(&host, &["clone", &url, "db"]);
        assert!(!ok);
        assert!(err.contains(expect), "{err}");
        assert!(rss < RSS_BOUND_KIB, "clone took {rss} KiB");
        host.ok(&["gc"]);
        host.ok(&["fsck"]);
    }
}

#[test]
fn split_tree_million_entry_directory_round_trips() {
    // One directory of 1,000,000 empty files: stored as a split tree (parts of 4096 entries),
    // pushed and cloned through a path remote.
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let host = Host::new(&Vars::new());
    host.ok(&["init", "db"]);
    let spool = host.live().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let t = std::time::Instant::now();
    for i in 0..1_000_000u32 {
        std::fs::File::create(spool.join(format!("m{i:07}"))).unwrap();
    }
    let created = t.elapsed();
    host.commit("a mail spool");
    host.ok(&["remote", "add", "origin", remote.to_str().unwrap()]);
    host.ok(&["push"]);
    let qa = Host::new(&Vars::new());
    qa.ok(&["clone", remote.to_str().unwrap(), "db"]);
    let n = std::fs::read_dir(qa.live().join("spool")).unwrap().count();
    assert_eq!(n, 1_000_000);
    qa.ok(&["fsck"]);
    qa.ok(&["fsck", "--remote", "origin"]);
    eprintln!(
        "1,000,000-entry directory: created in {:.1} s, commit+push+clone+fsck in {:.1} s",
        created.as_secs_f64(),
        t.elapsed().saturating_sub(created).as_secs_f64()
    );
}
