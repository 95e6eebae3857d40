//! A hostile remote: hand-crafted packs serving a tree entry named `../evil`, and a pack whose
//! bytes do not match their ids. Both are refused before anything is written to live data.

use super::{fill, Host, Vars};
use crate::support::handmade::HandPack;
use dvol::repo::Commit;
use dvol::snapshot::{Entry, Meta, Node, Tree};
use dvol::store::{Kind, ObjectId};
use std::path::Path;

fn meta() -> Meta {
    Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_sec: 1,
        mtime_nsec: 0,
    }
}

/// Write a remote holding `objects` in one pack and `volume/master` pointing at `head`.
fn write_remote(dir: &Path, volume: &str, objects: &[(Kind, Vec<u8>)], head: ObjectId) {
    let mut pack = HandPack::default();
    for (kind, data) in objects {
        pack.record(*kind, data);
    }
    pack.write_remote(dir, volume, head);
}

fn find_named(dir: &Path, name: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        e.file_name() == name
            || (e.file_type().map(|t| t.is_dir()).unwrap_or(false) && find_named(&e.path(), name))
    })
}

#[test]
fn remote_malicious_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let payload = b"pwned\n".to_vec();
    for evil in [&b"../evil"[..], b"/evil", b".."] {
        let _ = std::fs::remove_dir_all(&remote);
        let tree = Tree {
            meta: meta(),
            entries: vec![Entry {
                name: evil.to_vec(),
                node: Node::File {
                    meta: meta(),
                    size: payload.len() as u64,
                    content: Some(ObjectId::hash(&payload)),
                },
            }],
        };
        let tree_bytes = tree.encode();
        let commit = Commit {
            tree: ObjectId::hash(&tree_bytes),
            parents: vec![],
            author: "Mallory <m@example.com>".into(),
            time: 0,
            tz_offset_min: 0,
            message: "evil".into(),
        };
        let commit_bytes = commit.encode();
        let head = ObjectId::hash(&commit_bytes);
        write_remote(
            &remote,
            "mal",
            &[
                (Kind::Chunk, payload.clone()),
                (Kind::Tree, tree_bytes),
                (Kind::Commit, commit_bytes),
            ],
            head,
        );
        let host = Host::new(&Vars::new());
        let err = host.fails(&["clone", remote.to_str().unwrap(), "mal"]);
        assert!(
            err.contains("corrupt") || err.contains("slash") || err.contains(".."),
            "{err}"
        );
        assert_eq!(host.ok(&["list"]), "  VOLUME   BRANCH   CONTAINERS\n");
        assert!(!find_named(dir.path(), "evil"), "a file escaped");

        // Pull into an existing volume: refused, live data untouched.
        host.ok(&["init", "db"]);
        fill(&host.live(), 3);
        host.commit("mine");
        host.ok(&[
            "remote",
            "add",
            "origin",
            remote.to_str().unwrap(),
            "--remote-volume",
            "mal",
        ]);
        let err = host.fails(&["pull", "origin", "master"]);
        assert!(err.contains("corrupt"), "{err}");
        assert!(!find_named(dir.path(), "evil"), "a file escaped");
        assert!(!find_named(host.env.dir.path(), "evil"), "a file escaped");
        assert_eq!(
            std::fs::read_to_string(host.live().join("hello.txt")).unwrap(),
            "hello 3\n"
        );
        host.ok(&["fsck"]);
    }
}

#[test]
fn remote_pack_bytes_not_matching_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let laptop = Host::new(&Vars::new());
    laptop.ok(&["init", "db"]);
    fill(&laptop.live(), 4);
    laptop.commit("one");
    laptop.ok(&["remote", "add", "origin", remote.to_str().unwrap()]);
    laptop.ok(&["push"]);
    // Flip one byte near the end of every pack (inside the last record's payload).
    for e in std::fs::read_dir(remote.join("packs")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pack") {
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n - 3] ^= 0x55;
            std::fs::write(&p, b).unwrap();
        }
    }
    let qa = Host::new(&Vars::new());
    let err = qa.fails(&["clone", remote.to_str().unwrap(), "db"]);
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(qa.ok(&["list"]), "  VOLUME   BRANCH   CONTAINERS\n");
    assert!(!qa.env.root().join("db").exists());
}

#[test]
fn remote_chunk_served_as_a_commit_is_refused() {
    // A chunk served where a commit is expected (the ref points at it). The record's kind
    // label is not trusted either way: decoding in the role reached refuses it.
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote");
    let data = b"not a commit".to_vec();
    write_remote(
        &remote,
        "db",
        &[(Kind::Chunk, data.clone())],
        ObjectId::hash(&data),
    );
    let host = Host::new(&Vars::new());
    let err = host.fails(&["clone", remote.to_str().unwrap(), "db"]);
    assert!(err.contains("is corrupt (not a commit"), "{err}");
}
