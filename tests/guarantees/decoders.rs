//! Hostile input: every decoder of stored or received bytes, fed random and mutated bytes,
//! returns an error instead of panicking or allocating without bound; plus the regression
//! corpus in tests/corpus.

use dvol::repo::Commit;
use dvol::snapshot::Tree;
use dvol::store::{decode_list, pack, ObjectId};
use proptest::prelude::*;

fn decode_all(bytes: &[u8]) {
    let id = ObjectId::hash(bytes);
    let _ = Tree::decode(&id, bytes);
    let _ = decode_list(&id, bytes);
    let _ = Commit::decode(&id, bytes);
    let _ = pack::RecordHeader::decode(bytes);
    let _ = pack::check_pack_header(bytes, "input");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_valid_objects_never_panic(seed in prop::collection::vec(any::<u8>(), 1..64), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        for mut bytes in corpus_seeds(&seed) {
            for (i, v) in &flips {
                let i = i.index(bytes.len());
                bytes[i] ^= v;
            }
            decode_all(&bytes);
        }
    }
}

/// Valid encodings to mutate.
fn corpus_seeds(seed: &[u8]) -> Vec<Vec<u8>> {
    let meta = dvol::snapshot::Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_sec: 1,
        mtime_nsec: 0,
    };
    let tree = Tree {
        meta,
        entries: vec![dvol::snapshot::Entry {
            name: seed.iter().map(|b| b'a' + b % 26).collect(),
            node: dvol::snapshot::Node::File {
                meta,
                size: seed.len() as u64,
                content: Some(ObjectId::hash(seed)),
            },
        }],
    };
    let commit = Commit {
        tree: ObjectId::hash(seed),
        parents: vec![ObjectId::hash(b"p")],
        author: "a <b>".into(),
        time: 1,
        tz_offset_min: 0,
        message: String::from_utf8_lossy(seed).into_owned(),
    };
    vec![tree.encode(), commit.encode(), pack::pack_header().to_vec()]
}

#[test]
fn regression_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/corpus exists") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        decode_all(&bytes);
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn escaping_tree_names_are_refused() {
    for name in [&b".."[..], b".", b"a/b", b"/etc", b"", b"x\0y"] {
        let meta = dvol::snapshot::Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 1,
            mtime_nsec: 0,
        };
        let t = Tree {
            meta,
            entries: vec![dvol::snapshot::Entry {
                name: name.to_vec(),
                node: dvol::snapshot::Node::Symlink {
                    meta,
                    target: b"x".to_vec(),
                },
            }],
        };
        let bytes = t.encode();
        assert!(
            Tree::decode(&ObjectId::hash(&bytes), &bytes).is_err(),
            "{name:?} accepted"
        );
    }
}
