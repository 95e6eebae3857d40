//! Chunks travel in blocks (runs of up to 32 compressed as one zstd frame, as the local store
//! keeps them): push sends a block once and the remote keeps it; fetch hashes every member
//! before storing anything; a remote that lies about a block is refused.

use super::{bytes_sent, laptop_and_dir_remote, same_tree, Host, Vars};
use crate::support::handmade::HandPack;
use crate::support::{noise, rows, write};
use dvol::remote::idx::IdxEntry;
use dvol::repo::Commit;
use dvol::snapshot::{Entry, Meta, Node, Tree};
use dvol::store::pack::MAX_BLOCK_CHUNKS;
use dvol::store::{make_block, make_record, Kind, ListEntry, ListNode, ObjectId, RawBlock};
use std::path::Path;

const CHUNK: usize = 8192;

/// What the chunks of `data` take sent one record each (header and own zstd frame).
fn per_chunk_bytes(data: &[u8]) -> u64 {
    data.chunks(CHUNK)
        .map(|c| {
            48 + make_record(ObjectId::hash(c), Kind::Chunk, c)
                .unwrap()
                .payload
                .len() as u64
        })
        .sum()
}

/// What the chunks of `data` take sent in blocks of [`MAX_BLOCK_CHUNKS`] (header, member
/// table, frame).
fn block_bytes(data: &[u8]) -> u64 {
    data.chunks(MAX_BLOCK_CHUNKS * CHUNK)
        .map(|run| {
            let members: Vec<(ObjectId, &[u8])> =
                run.chunks(CHUNK).map(|c| (ObjectId::hash(c), c)).collect();
            let block = make_block(&members).unwrap();
            (48 + 36 * members.len() + block.payload.len()) as u64
        })
        .sum()
}

/// Versions of the remote's pack indexes.
fn idx_versions(remote: &Path) -> Vec<u32> {
    std::fs::read_dir(remote.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .map(|p| {
            let b = std::fs::read(p).unwrap();
            u32::from_le_bytes(b[8..12].try_into().unwrap())
        })
        .collect()
}

fn holds_block(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        std::fs::read(e.unwrap().path())
            .unwrap()
            .windows(4)
            .any(|w| w == b"DVBK")
    })
}

/// `len` bytes of records drawing words from a vocabulary of random words: each chunk alone
/// has to spell the vocabulary out again, a block of sixteen once (as table pages do).
fn records(len: usize) -> Vec<u8> {
    let vocabulary: Vec<String> = noise(3, 400 * 6)
        .chunks(6)
        .map(|w| w.iter().map(|b| char::from(b'a' + b % 26)).collect())
        .collect();
    let mut out = Vec::with_capacity(len + 64);
    let picks = noise(4, len);
    let mut i = 0;
    while out.len() < len {
        let word = |k: usize| &vocabulary[usize::from(picks[(i * 3 + k) % len]) * 400 / 256];
        out.extend_from_slice(format!("{i:07}|{}|{}|{}\n", word(0), word(1), word(2)).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn remote_push_and_fetch_carry_blocks() {
    let (remote, url, laptop, live) = laptop_and_dir_remote();
    let url = url.as_str();
    let vars = Vars::new();
    let text = records(4 << 20);
    write(&live.join("base/table"), &text);
    laptop.commit("rows");
    laptop.ok(&["remote", "add", "origin", url]);
    let sent = bytes_sent(&laptop.ok(&["push"]));
    let per_chunk = per_chunk_bytes(&text);
    eprintln!(
        "push of {} bytes of rows: {sent} bytes sent, {per_chunk} one chunk per record",
        text.len()
    );
    let blocks = block_bytes(&text);
    eprintln!("in blocks of {MAX_BLOCK_CHUNKS}: {blocks} bytes");
    // Blocks, plus a few KiB of lists, tree, commit and index.
    assert!(
        blocks < per_chunk * 9 / 10 && sent < blocks + (64 << 10),
        "push sent {sent} bytes; in blocks {blocks}, chunk by chunk {per_chunk}"
    );
    // Blocks of more than 16 chunks: an index version that dvols reading only 16 refuse.
    assert!(idx_versions(remote.path()).contains(&3));
    assert!(holds_block(&remote.path().join("packs")));

    let qa = Host::new(&vars);
    qa.ok(&["clone", url, "db"]);
    same_tree(&live, &qa.live());
    assert!(
        holds_block(&qa.env.root().join(".dvol/packs")),
        "fetch split the blocks"
    );
    assert!(qa.ok(&["fsck"]).contains("no problems"));
    let report = qa.ok(&["fsck", "--remote", "origin"]);
    assert!(!report.contains("corrupt"), "{report}");

    // A one-page change travels as one chunk, and comes back.
    let qlive = qa.live();
    let mut data = std::fs::read(qlive.join("base/table")).unwrap();
    data[CHUNK * 40..CHUNK * 40 + 10].copy_from_slice(b"CHANGED...");
    std::fs::write(qlive.join("base/table"), &data).unwrap();
    qa.commit("page");
    let sent = bytes_sent(&qa.ok(&["push"]));
    assert!(sent < 8_000, "a one-page change sent {sent} bytes");
    laptop.ok(&["pull"]);
    same_tree(&live, &qlive);
}

fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime_sec: 1,
        mtime_nsec: 0,
    }
}

/// How a hand-built block lies.
#[derive(Clone, Copy, Debug)]
enum Lie {
    None,
    /// The member table names the chunks in the wrong order of their bytes.
    SwappedData,
    /// The header's total length is one more than its members'.
    Length,
    /// The header claims 60000 members.
    Count,
    /// The index places the second chunk at the first one's offset.
    IndexOffset,
    /// The block holds another chunk where the index lists the second.
    Foreign,
}

/// A plain remote whose volume `db` holds one file of two chunks, sent in one block built
/// with `lie`.
fn lying_remote(dir: &Path, lie: Lie) -> Vec<u8> {
    let text = rows(1_000);
    let (a, b) = (
        &text.as_bytes()[..CHUNK],
        &text.as_bytes()[CHUNK..2 * CHUNK],
    );
    let other = &text.as_bytes()[2 * CHUNK..3 * CHUNK];
    let (ia, ib) = (ObjectId::hash(a), ObjectId::hash(b));
    let list = postcard::to_stdvec(&ListNode {
        level: 0,
        entries: vec![
            ListEntry {
                id: ia,
                len: CHUNK as u64,
            },
            ListEntry {
                id: ib,
                len: CHUNK as u64,
            },
        ],
    })
    .unwrap();
    let tree = Tree {
        meta: meta(0o755),
        entries: vec![Entry {
            name: b"table".to_vec(),
            node: Node::File {
                meta: meta(0o644),
                size: 2 * CHUNK as u64,
                content: Some(ObjectId::hash(&list)),
            },
        }],
    }
    .encode();
    let commit = Commit {
        tree: ObjectId::hash(&tree),
        parents: vec![],
        author: "Mallory <m@example.com>".into(),
        time: 0,
        tz_offset_min: 0,
        message: "blocks".into(),
    }
    .encode();
    let members: Vec<(ObjectId, &[u8])> = match lie {
        Lie::SwappedData => vec![(ia, b), (ib, a)],
        Lie::Foreign => vec![(ia, a), (ObjectId::hash(other), other)],
        _ => vec![(ia, a), (ib, b)],
    };
    let rec = make_block(&members).unwrap();
    let mut block = RawBlock {
        members: rec.members,
        ulen: rec.ulen,
        payload: rec.payload,
    }
    .encode();
    match lie {
        Lie::Length => {
            let ulen = u32::from_le_bytes(block[40..44].try_into().unwrap()) + 1;
            block[40..44].copy_from_slice(&ulen.to_le_bytes());
        }
        Lie::Count => block[38..40].copy_from_slice(&60000u16.to_le_bytes()),
        _ => {}
    }
    let mut pack = HandPack::default();
    let boff_b = match lie {
        Lie::IndexOffset => 0,
        _ => CHUNK as u32,
    };
    for (id, boff) in [(ia, 0), (ib, boff_b)] {
        pack.entries.push(IdxEntry {
            id,
            kind: Kind::Chunk,
            codec: 1,
            offset: pack.bytes.len() as u64,
            clen: (block.len() - 48) as u32,
            ulen: CHUNK as u32,
            boff: Some(boff),
        });
    }
    pack.bytes.extend_from_slice(&block);
    for (kind, data) in [
        (Kind::List, &list),
        (Kind::Tree, &tree),
        (Kind::Commit, &commit),
    ] {
        pack.record(kind, data);
    }
    pack.write_remote(dir, "db", ObjectId::hash(&commit));
    text.as_bytes()[..2 * CHUNK].to_vec()
}

#[test]
fn remote_blocks_that_lie_are_refused() {
    let vars = Vars::new();
    // The honest remote proves the hand-built one is sound: every refusal below is the lie's.
    let remote = tempfile::tempdir().unwrap();
    let want = lying_remote(remote.path(), Lie::None);
    let host = Host::new(&vars);
    host.ok(&["clone", remote.path().to_str().unwrap(), "db"]);
    assert!(std::fs::read(host.live().join("table")).unwrap() == want);
    // (lie, the refusal, whether the block itself is genuine: a genuine block may land in a
    // pack file, unindexed, that gc removes; a false one never reaches the disk).
    let cases = [
        (Lie::SwappedData, "does not match its blake3 id", false),
        (Lie::Length, "do not add up", false),
        (Lie::Count, "over the limit", false),
        (Lie::IndexOffset, "does not hold the object", true),
        (Lie::Foreign, "does not hold the object", true),
    ];
    for (lie, why, genuine) in cases {
        let remote = tempfile::tempdir().unwrap();
        lying_remote(remote.path(), lie);
        let host = Host::new(&vars);
        let err = host.fails(&["clone", remote.path().to_str().unwrap(), "db"]);
        assert!(err.contains(why), "{lie:?}: {err}");
        let packs = host.env.root().join(".dvol/packs");
        if !genuine {
            assert!(
                !packs.exists() || !holds_block(&packs),
                "{lie:?}: a false block was stored"
            );
        }
        assert!(
            host.run(&["log"]).stdout.is_empty(),
            "{lie:?}: a commit was recorded"
        );
    }
}
