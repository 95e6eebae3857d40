//! Trees: one object per directory (its own metadata plus sorted entries), so unchanged
//! subtrees keep their id and are shared between commits, and diffs skip them.

use crate::store::{Kind, ObjectId, ObjectSink, Store};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// Ownership, permissions and modification time of a file, directory or symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
}

impl Meta {
    pub fn from_metadata(md: &Metadata) -> Meta {
        Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime_sec: md.mtime(),
            mtime_nsec: md.mtime_nsec() as u32,
        }
    }
}

/// What a directory entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    /// A regular file; `content` is a chunk or a chunk-list root, `None` when empty.
    File {
        meta: Meta,
        size: u64,
        content: Option<ObjectId>,
    },
    /// A subdirectory; its metadata lives in its own tree.
    Dir { tree: ObjectId },
    /// A symbolic link, stored as written and never followed.
    Symlink {
        meta: Meta,
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

/// One named entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub node: Node,
}

/// A directory: its own metadata and its entries sorted by name bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub meta: Meta,
    pub entries: Vec<Entry>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("tree serializes")
    }

    /// Decode and validate a tree from stored or received bytes: names must be single,
    /// non-empty path components without NUL, strictly sorted (no duplicates).
    pub fn decode(id: &ObjectId, bytes: &[u8]) -> Result<Tree> {
        let bad = |detail: String| Error::CorruptObject {
            id: id.to_hex(),
            detail,
        };
        let tree: Tree =
            postcard::from_bytes(bytes).map_err(|e| bad(format!("not a tree: {e}")))?;
        for (i, e) in tree.entries.iter().enumerate() {
            check_entry_name(&e.name).map_err(|r| bad(r.to_string()))?;
            if i > 0 && tree.entries[i - 1].name >= e.name {
                return Err(bad("tree entries are not strictly sorted".into()));
            }
            if let Node::Symlink { target, .. } = &e.node {
                if target.is_empty() || target.contains(&0) {
                    return Err(bad("invalid symlink target".into()));
                }
            }
        }
        Ok(tree)
    }

    /// Store the tree through `sink` and return its id.
    pub fn put(&self, sink: &dyn ObjectSink) -> Result<ObjectId> {
        sink.put(Kind::Tree, &self.encode())
    }

    /// Load and validate a stored tree.
    pub fn load(store: &Store, id: &ObjectId) -> Result<Tree> {
        Tree::decode(id, &store.get(id)?)
    }
}

/// Reject names that could escape the directory they are written into.
pub fn check_entry_name(name: &[u8]) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty entry name");
    }
    if name == b"." || name == b".." {
        return Err("entry named . or ..");
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err("entry name contains a slash or NUL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 1,
            mtime_nsec: 2,
        }
    }

    fn file(name: &[u8]) -> Entry {
        Entry {
            name: name.to_vec(),
            node: Node::File {
                meta: meta(),
                size: 0,
                content: None,
            },
        }
    }

    #[test]
    fn round_trip() {
        let t = Tree {
            meta: meta(),
            entries: vec![file(b"a"), file(b"b")],
        };
        let id = ObjectId::hash(&t.encode());
        assert_eq!(Tree::decode(&id, &t.encode()).unwrap(), t);
    }

    #[test]
    fn rejects_escaping_names_and_disorder() {
        for entries in [
            vec![file(b"..")],
            vec![file(b"a/b")],
            vec![file(b"")],
            vec![file(b"b"), file(b"a")],
            vec![file(b"a"), file(b"a")],
        ] {
            let t = Tree {
                meta: meta(),
                entries,
            };
            assert!(Tree::decode(&ObjectId::hash(b""), &t.encode()).is_err());
        }
    }
}
