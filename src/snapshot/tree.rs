//! Trees: one object per directory (its own metadata plus sorted entries), so unchanged
//! subtrees keep their id and are shared between commits, and diffs skip them.
//!
//! A directory of more than [`TREE_PART_ENTRIES`] entries is stored split (tree format 2): an
//! index object ([`SPLIT_MAGIC`] + postcard [`SplitTree`]) listing parts, each part a plain tree
//! holding a run of the sorted entries (or, past [`TREE_PART_FANOUT`] parts, another index), so
//! no tree object approaches the object size limit whatever the directory holds. Plain trees
//! (format 1) are unchanged, so stores and remotes written before keep working.

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
        if bytes.starts_with(SPLIT_MAGIC) {
            return Err(bad("a split tree index, not a plain tree".into()));
        }
        let tree: Tree =
            postcard::from_bytes(bytes).map_err(|e| bad(format!("not a tree: {e}")))?;
        if tree.meta.mode > 0o7777 {
            return Err(bad("mode out of range".into()));
        }
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

    /// Store the tree through `sink` and return its id; a directory of more than
    /// [`TREE_PART_ENTRIES`] entries is stored split into parts.
    pub fn put(&self, sink: &dyn ObjectSink) -> Result<ObjectId> {
        if self.entries.len() <= TREE_PART_ENTRIES {
            return sink.put(Kind::Tree, &self.encode());
        }
        let mut level: Vec<(ObjectId, u64)> = Vec::new();
        for run in self.entries.chunks(TREE_PART_ENTRIES) {
            let part = Tree {
                meta: self.meta,
                entries: run.to_vec(),
            };
            level.push((sink.put(Kind::Tree, &part.encode())?, run.len() as u64));
        }
        loop {
            let mut up = Vec::new();
            for group in level.chunks(TREE_PART_FANOUT) {
                let split = SplitTree {
                    meta: self.meta,
                    entries: group.iter().map(|p| p.1).sum(),
                    parts: group.iter().map(|p| p.0).collect(),
                };
                up.push((sink.put(Kind::Tree, &split.encode())?, split.entries));
            }
            if up.len() == 1 {
                return Ok(up[0].0);
            }
            level = up;
        }
    }

    /// Load and validate a stored tree (joining the parts of a split one).
    pub fn load(store: &Store, id: &ObjectId) -> Result<Tree> {
        Tree::assemble(id, &|part| store.get(part))
    }

    /// Load a tree whose objects `get` returns, joining the parts of a split tree in order
    /// (iteratively; parts must continue the strict name order and nest at most
    /// [`MAX_SPLIT_LEVELS`] indexes deep).
    pub fn assemble(id: &ObjectId, get: &dyn Fn(&ObjectId) -> Result<Vec<u8>>) -> Result<Tree> {
        let split = match TreeObject::decode(id, &get(id)?)? {
            TreeObject::Plain(t) => return Ok(t),
            TreeObject::Split(s) => s,
        };
        let bad = |detail: String| Error::CorruptObject {
            id: id.to_hex(),
            detail,
        };
        let mut out = Tree {
            meta: split.meta,
            entries: Vec::new(),
        };
        // Explicit stack of (part, index level), visited in order.
        let mut stack: Vec<(ObjectId, usize)> = split.parts.iter().rev().map(|p| (*p, 1)).collect();
        while let Some((part, level)) = stack.pop() {
            match TreeObject::decode(&part, &get(&part)?)? {
                TreeObject::Plain(t) => {
                    if let (Some(last), Some(first)) = (out.entries.last(), t.entries.first()) {
                        if last.name >= first.name {
                            return Err(bad(format!("part {part} breaks the entry order")));
                        }
                    }
                    if out.entries.len() + t.entries.len() > split.entries as usize {
                        return Err(bad("parts hold more entries than the index says".into()));
                    }
                    out.entries.extend(t.entries);
                }
                TreeObject::Split(s) if level < MAX_SPLIT_LEVELS => {
                    stack.extend(s.parts.iter().rev().map(|p| (*p, level + 1)));
                }
                TreeObject::Split(_) => {
                    return Err(bad(format!(
                        "split tree nested more than {MAX_SPLIT_LEVELS} levels"
                    )))
                }
            }
        }
        if out.entries.len() as u64 != split.entries {
            return Err(bad("parts hold fewer entries than the index says".into()));
        }
        Ok(out)
    }
}

/// Deepest directory nesting dvol stores, restores, compares or accepts from a remote.
pub const MAX_TREE_DEPTH: u32 = crate::live::MAX_DEPTH as u32;

/// Most entries in one stored tree object (larger directories are split into parts).
pub const TREE_PART_ENTRIES: usize = 4096;
/// Most parts listed by one split-tree index.
pub const TREE_PART_FANOUT: usize = 4096;
/// Most index levels in a split tree (4096^3 parts of 4096 entries: far past any directory).
pub const MAX_SPLIT_LEVELS: usize = 3;
/// First bytes of a split-tree index object. A plain tree starts with its mode as a postcard
/// varint of at most 0o7777, which can never begin with these bytes.
pub const SPLIT_MAGIC: &[u8; 8] = b"\xffDVTREE2";

/// The index of a directory stored in parts (tree format 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitTree {
    /// The directory's own metadata.
    pub meta: Meta,
    /// Entries in all parts together.
    pub entries: u64,
    /// Plain trees (or further indexes) holding consecutive runs of the sorted entries.
    pub parts: Vec<ObjectId>,
}

impl SplitTree {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = SPLIT_MAGIC.to_vec();
        out.extend(postcard::to_stdvec(self).expect("split tree serializes"));
        out
    }
}

/// One stored tree object: a plain tree or the index of a split one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeObject {
    Plain(Tree),
    Split(SplitTree),
}

impl TreeObject {
    /// Decode and validate one tree object (a split index is not expanded).
    pub fn decode(id: &ObjectId, bytes: &[u8]) -> Result<TreeObject> {
        let Some(body) = bytes.strip_prefix(SPLIT_MAGIC.as_slice()) else {
            return Tree::decode(id, bytes).map(TreeObject::Plain);
        };
        let bad = |detail: String| Error::CorruptObject {
            id: id.to_hex(),
            detail,
        };
        let split: SplitTree =
            postcard::from_bytes(body).map_err(|e| bad(format!("not a split tree: {e}")))?;
        if split.parts.is_empty() || split.parts.len() > TREE_PART_FANOUT {
            return Err(bad("split tree part count out of bounds".into()));
        }
        Ok(TreeObject::Split(split))
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
    fn split_tree_round_trips_and_rejects_repeated_parts() {
        let sink = crate::store::HashOnly::default();
        let names: Vec<Vec<u8>> = (0..10_000)
            .map(|i| format!("f{i:05}").into_bytes())
            .collect();
        let t = Tree {
            meta: meta(),
            entries: names.iter().map(|n| file(n)).collect(),
        };
        let id = t.put(&sink).unwrap();
        let get = |i: &ObjectId| sink.tree(i).ok_or(Error::MissingObject { id: i.to_hex() });
        assert_eq!(Tree::assemble(&id, &get).unwrap(), t);
        let TreeObject::Split(split) = TreeObject::decode(&id, &get(&id).unwrap()).unwrap() else {
            panic!("not split");
        };
        assert_eq!(split.parts.len(), 3);
        // The same part twice breaks the order and is refused.
        let evil = SplitTree {
            meta: meta(),
            entries: 2 * TREE_PART_ENTRIES as u64,
            parts: vec![split.parts[0], split.parts[0]],
        };
        let bytes = evil.encode();
        let evil_id = ObjectId::hash(&bytes);
        let get2 = |i: &ObjectId| {
            if *i == evil_id {
                Ok(bytes.clone())
            } else {
                get(i)
            }
        };
        assert!(Tree::assemble(&evil_id, &get2).is_err());
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
