//! File contents as chunks: fixed 8 KiB blocks aligned to the start of the file (database pages
//! are 4, 8 or 16 KiB, so a rewritten page changes exactly the chunks it covers), and a tree of
//! chunk-list nodes with a fixed fanout so a page rewrite also changes only one list node per
//! level. See docs/format.md for why fixed blocks beat content-defined chunking here.

use super::{Kind, ObjectId, ObjectSink, Store};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Chunk size in bytes.
pub const CHUNK_SIZE: usize = 8192;
/// Entries per chunk-list node.
pub const LIST_FANOUT: usize = 32;

/// One entry of a list node: a chunk (level 0) or a child node, and the bytes it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub id: ObjectId,
    pub len: u64,
}

/// A node in the chunk-list tree of a file larger than one chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListNode {
    /// 0: entries are chunks; n: entries are nodes of level n-1.
    pub level: u8,
    pub entries: Vec<ListEntry>,
}

/// The id of an all-zero chunk of full size (written back as a hole).
pub fn zero_chunk_id() -> ObjectId {
    static ZERO: OnceLock<ObjectId> = OnceLock::new();
    *ZERO.get_or_init(|| ObjectId::hash(&[0u8; CHUNK_SIZE]))
}

/// Whether `id` is the full-size all-zero chunk.
pub fn is_zero_chunk(id: &ObjectId) -> bool {
    *id == zero_chunk_id()
}

/// Store the list tree for a file's chunks and return the file's content id: the chunk itself
/// for a single-chunk file, otherwise the root list node. `None` for an empty file.
pub fn build_content(session: &dyn ObjectSink, chunks: Vec<ListEntry>) -> Result<Option<ObjectId>> {
    if chunks.len() <= 1 {
        return Ok(chunks.first().map(|c| c.id));
    }
    let mut level = 0u8;
    let mut entries = chunks;
    loop {
        let mut parents = Vec::with_capacity(entries.len() / LIST_FANOUT + 1);
        for group in entries.chunks(LIST_FANOUT) {
            let node = ListNode {
                level,
                entries: group.to_vec(),
            };
            let bytes = postcard::to_stdvec(&node).expect("list node serializes");
            let id = session.put(Kind::List, &bytes)?;
            parents.push(ListEntry {
                id,
                len: group.iter().map(|e| e.len).sum(),
            });
        }
        if parents.len() == 1 {
            return Ok(Some(parents[0].id));
        }
        entries = parents;
        level += 1;
    }
}

/// Decode a list node, rejecting malformed input.
pub fn decode_list(id: &ObjectId, bytes: &[u8]) -> Result<ListNode> {
    let node: ListNode = postcard::from_bytes(bytes).map_err(|e| Error::CorruptObject {
        id: id.to_hex(),
        detail: format!("not a chunk list: {e}"),
    })?;
    if node.entries.is_empty() || node.entries.len() > LIST_FANOUT || node.level > 16 {
        return Err(Error::CorruptObject {
            id: id.to_hex(),
            detail: "chunk list node out of bounds".into(),
        });
    }
    Ok(node)
}

/// The chunks of a file in order, read one list node at a time, so memory is bounded by the
/// list's depth (at most 17 nodes) whatever the file's size: a 64 GiB sparse file of one
/// repeated zero chunk streams like any other. Each node must cover exactly the bytes its
/// parent (or, for the root, the file entry) declares and sit one level below its parent;
/// the root is checked when the iterator is made, before anything is written.
pub struct Chunks<'a> {
    store: &'a Store,
    /// Nodes being read, with the index of their next entry.
    stack: Vec<(ListNode, usize)>,
    single: Option<ListEntry>,
    /// Recently read nodes: a list repeating a child (a sparse file) reads it once.
    recent: HashMap<ObjectId, ListNode>,
}

/// The chunks of a file of `size` bytes whose content is `content` (see [`Chunks`]).
pub fn chunks<'a>(store: &'a Store, content: &ObjectId, size: u64) -> Result<Chunks<'a>> {
    if size <= CHUNK_SIZE as u64 {
        return Ok(Chunks {
            store,
            stack: Vec::new(),
            single: Some(ListEntry {
                id: *content,
                len: size,
            }),
            recent: HashMap::new(),
        });
    }
    let root = load_node(store, content, None, size)?;
    Ok(Chunks {
        store,
        stack: vec![(root, 0)],
        single: None,
        recent: HashMap::new(),
    })
}

impl Iterator for Chunks<'_> {
    type Item = Result<ListEntry>;

    fn next(&mut self) -> Option<Result<ListEntry>> {
        if let Some(single) = self.single.take() {
            return Some(Ok(single));
        }
        loop {
            let (node, next) = self.stack.last_mut()?;
            let Some(entry) = node.entries.get(*next).copied() else {
                self.stack.pop();
                continue;
            };
            *next += 1;
            let level = node.level;
            let step = if level == 0 {
                check_chunk_entry(&entry).map(|()| Some(entry))
            } else {
                self.child(&entry, level - 1).map(|child| {
                    self.stack.push((child, 0));
                    None
                })
            };
            match step {
                Ok(Some(chunk)) => return Some(Ok(chunk)),
                Ok(None) => {}
                Err(e) => {
                    self.stack.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Chunks<'_> {
    /// The child node `entry` of a node at `level + 1`, read or from the recent ones.
    fn child(&mut self, entry: &ListEntry, level: u8) -> Result<ListNode> {
        if let Some(node) = self.recent.get(&entry.id) {
            check_node(&entry.id, node, Some(level), entry.len)?;
            return Ok(node.clone());
        }
        let node = load_node(self.store, &entry.id, Some(level), entry.len)?;
        if self.recent.len() >= 64 {
            self.recent.clear();
        }
        self.recent.insert(entry.id, node.clone());
        Ok(node)
    }
}

/// Read list node `id`, which must be at `level` (any for a root) and cover `len` bytes.
fn load_node(store: &Store, id: &ObjectId, level: Option<u8>, len: u64) -> Result<ListNode> {
    let node = decode_list(id, &store.get(id)?)?;
    check_node(id, &node, level, len)?;
    Ok(node)
}

/// Check that list node `id` is at `level` (any for a root) and covers `len` bytes.
pub(crate) fn check_node(
    id: &ObjectId,
    node: &ListNode,
    level: Option<u8>,
    len: u64,
) -> Result<()> {
    let corrupt = |detail: String| Error::CorruptObject {
        id: id.to_hex(),
        detail,
    };
    if level.is_some_and(|l| l != node.level) {
        return Err(corrupt("chunk list levels do not nest".into()));
    }
    let covered = node
        .entries
        .iter()
        .try_fold(0u64, |acc, e| acc.checked_add(e.len));
    if covered != Some(len) {
        return Err(corrupt(format!(
            "chunk list covers {} bytes where {len} are declared",
            covered.map_or("too many".into(), |c| c.to_string())
        )));
    }
    Ok(())
}

/// A level-0 entry: at most one chunk long, and the zero chunk (a hole) exactly one chunk.
fn check_chunk_entry(e: &ListEntry) -> Result<()> {
    if e.len > CHUNK_SIZE as u64 || (is_zero_chunk(&e.id) && e.len != CHUNK_SIZE as u64) {
        return Err(Error::CorruptObject {
            id: e.id.to_hex(),
            detail: format!("chunk list entry of {} bytes", e.len),
        });
    }
    Ok(())
}

/// Bytes of a file that are not holes (its non-zero chunks), for a free-space check before
/// restoring it. Each distinct list node is read once, so a list repeating one child costs
/// one read per distinct node, not per repetition.
pub fn stored_bytes(store: &Store, content: &ObjectId, size: u64) -> Result<u64> {
    if size <= CHUNK_SIZE as u64 {
        return Ok(if is_zero_chunk(content) { 0 } else { size });
    }
    let mut memo: HashMap<ObjectId, u64> = HashMap::new();
    let mut stack: Vec<(ObjectId, Option<ListNode>)> = vec![(*content, None)];
    while let Some((id, node)) = stack.pop() {
        if memo.contains_key(&id) {
            continue;
        }
        match node {
            None => {
                let node = decode_list(&id, &store.get(&id)?)?;
                let below: Vec<ObjectId> = match node.level {
                    0 => Vec::new(),
                    _ => node.entries.iter().map(|e| e.id).collect(),
                };
                stack.push((id, Some(node)));
                stack.extend(below.into_iter().map(|c| (c, None)));
            }
            Some(node) => {
                let bytes = node.entries.iter().fold(0u64, |acc, e| {
                    let part = match node.level {
                        0 if is_zero_chunk(&e.id) => 0,
                        0 => e.len,
                        _ => memo.get(&e.id).copied().unwrap_or(0),
                    };
                    acc.saturating_add(part)
                });
                memo.insert(id, bytes);
            }
        }
    }
    Ok(memo[content])
}
