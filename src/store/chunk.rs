//! File contents as chunks: fixed 8 KiB blocks aligned to the start of the file (database pages
//! are 4, 8 or 16 KiB, so a rewritten page changes exactly the chunks it covers), and a tree of
//! chunk-list nodes with a fixed fanout so a page rewrite also changes only one list node per
//! level. See docs/format.md for why fixed blocks beat content-defined chunking here.

use super::{Kind, ObjectId, ObjectSink, Store};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
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

/// The chunks of a file, in order, given its content id and size.
pub fn read_list(store: &Store, content: &ObjectId, size: u64) -> Result<Vec<ListEntry>> {
    if size <= CHUNK_SIZE as u64 {
        return Ok(vec![ListEntry {
            id: *content,
            len: size,
        }]);
    }
    let mut out = Vec::with_capacity((size / CHUNK_SIZE as u64 + 1) as usize);
    expand(store, content, None, &mut out)?;
    let total: u64 = out.iter().map(|e| e.len).sum();
    if total != size {
        return Err(Error::CorruptObject {
            id: content.to_hex(),
            detail: format!("chunk list covers {total} bytes, file has {size}"),
        });
    }
    Ok(out)
}

/// Visit every list node id below (and including) `root`, for reachability walks.
pub fn list_node_ids(
    store: &Store,
    root: &ObjectId,
    out: &mut Vec<(ObjectId, ListNode)>,
) -> Result<()> {
    let node = decode_list(root, &store.get(root)?)?;
    if node.level > 0 {
        for e in &node.entries {
            list_node_ids(store, &e.id, out)?;
        }
    }
    out.push((*root, node));
    Ok(())
}

fn expand(
    store: &Store,
    id: &ObjectId,
    want_level: Option<u8>,
    out: &mut Vec<ListEntry>,
) -> Result<()> {
    let node = decode_list(id, &store.get(id)?)?;
    if want_level.is_some_and(|l| l != node.level) {
        return Err(Error::CorruptObject {
            id: id.to_hex(),
            detail: "chunk list levels do not nest".into(),
        });
    }
    if node.level == 0 {
        out.extend_from_slice(&node.entries);
    } else {
        for e in &node.entries {
            expand(store, &e.id, Some(node.level - 1), out)?;
        }
    }
    Ok(())
}
