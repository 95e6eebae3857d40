//! File contents as chunks, and the tree of chunk-list nodes over them (fixed fanout, so a
//! changed chunk changes only one list node per level). Owns the rule that decides how a file
//! is cut ([`cut_of`]): page files (database files: a whole number of 4 KiB) in fixed 8 KiB
//! blocks aligned to the file start, so a rewritten page changes exactly the chunks it covers;
//! other files in content-defined pieces cut in 8 KiB chunks ([`defined_cuts`]), so an
//! insertion changes only the chunks around it. Reading files is not done here (snapshot::scan).
//! See docs/format.md for the rule and its measurements.

use super::{Kind, ObjectId, ObjectSink, Store};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Chunk size in bytes: the size of a fixed block, and the largest content-defined chunk.
pub const CHUNK_SIZE: usize = 8192;
/// A file whose size is a whole number of these is a page file (fixed blocks).
pub const PAGE_MULTIPLE: u64 = 4096;
/// Smallest content-defined piece (except a file's last).
pub const DEFINED_MIN: usize = 4096;
/// Average content-defined piece the FastCDC masks aim at.
pub const DEFINED_AVG: usize = 16384;
/// Largest content-defined piece.
pub const DEFINED_MAX: usize = 65536;

/// How a file's contents are cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// 8 KiB blocks aligned to the start of the file (page files, and files of one chunk).
    Fixed,
    /// Content-defined pieces (FastCDC 2020, 4 to 64 KiB), each cut in 8 KiB chunks from its
    /// start.
    Defined,
}

/// Files larger than this are cut in fixed blocks whatever their size's remainder: a hole is
/// added without being read either way, but a content-defined file adds it a zero chunk at a
/// time (its cuts are not aligned), so this bounds what a sparse file of a huge apparent size
/// (made by a container, or `/var/log/lastlog`) costs to about a second.
pub const DEFINED_MAX_FILE: u64 = 64 << 30;

/// How a file of `size` bytes whose first bytes are `head` (at least its first 262 bytes, or
/// all of it) is cut: a file of at most one chunk is one chunk; a file whose size is a whole
/// number of 4 KiB is a page file (database pages are 4, 8 or 16 KiB), cut in fixed blocks,
/// unless it is a tar archive (`ustar` at offset 257: GNU tar pads archives to 10 KiB, half of
/// them a multiple of 4 KiB); so is a file over [`DEFINED_MAX_FILE`]; everything else is cut
/// where its content says.
pub fn cut_of(size: u64, head: &[u8]) -> Cut {
    let tar = head.get(257..262) == Some(b"ustar".as_slice());
    if size <= CHUNK_SIZE as u64
        || size > DEFINED_MAX_FILE
        || (size.is_multiple_of(PAGE_MULTIPLE) && !tar)
    {
        Cut::Fixed
    } else {
        Cut::Defined
    }
}

/// Lengths of the content-defined chunks at the start of `data`, in order. The file is cut
/// into pieces where its content says — FastCDC 2020 (crate `fastcdc` 3.2.1, gear table of
/// seed 0, normalization level 1) with min 4 KiB, average 16 KiB and max 64 KiB — and each
/// piece into 8 KiB chunks from its start (its last chunk shorter): an insertion changes the
/// piece it falls in and the next cut or two, every chunk fits the bounds every reader since
/// format 1 checks, and most chunks are full-size, so blocks compress as well as fixed
/// blocks. Unless `eof` (the file ends with `data`), a piece is only cut where a whole
/// maximal piece's worth of bytes follows its start, so the cuts depend on the file's bytes
/// alone, never on how it was read; at `eof` all of `data` is cut.
pub fn defined_cuts(data: &[u8], eof: bool) -> Vec<usize> {
    let cdc = fastcdc::v2020::FastCDC::new(
        data,
        DEFINED_MIN as u32,
        DEFINED_AVG as u32,
        DEFINED_MAX as u32,
    );
    let mut lens = Vec::with_capacity(data.len() / CHUNK_SIZE + 8);
    let mut pos = 0;
    while pos < data.len() && (eof || data.len() - pos >= DEFINED_MAX) {
        // The end of the piece, as an offset into `data`.
        let (_, end) = cdc.cut(pos, data.len() - pos);
        let piece = end - pos;
        lens.extend(std::iter::repeat_n(CHUNK_SIZE, piece / CHUNK_SIZE));
        if piece % CHUNK_SIZE != 0 {
            lens.push(piece % CHUNK_SIZE);
        }
        pos = end;
    }
    lens
}

/// Entries per chunk-list node (the most a node of a content-defined file holds).
pub const LIST_FANOUT: usize = 32;
/// A list node of a content-defined file closes at an entry whose id ends in 3 zero bits once
/// it holds at least this many entries (so a run of one repeated chunk cannot deepen the tree
/// more than a level per factor of 8): nodes of 8 to 32 entries, about 16 on average.
const DEFINED_NODE_MIN: usize = 8;

/// Whether a list node of a content-defined file holding `len` entries, the last `last`,
/// ends there.
fn closes_defined(len: usize, last: &ObjectId) -> bool {
    len >= DEFINED_NODE_MIN && last.0[31].trailing_zeros() >= 3
}

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
    let mut list = ListBuilder::new(session);
    for c in chunks {
        list.push(c)?;
    }
    list.finish()
}

/// Builds a file's chunk-list tree while its chunks arrive, storing each node as soon as it
/// is full: memory is one unfinished node per level, whatever the file's size. A run of
/// all-zero chunks (a hole) is appended without visiting each chunk: where the run is
/// aligned, whole all-zero subtrees are added at once. The tree is the same, node for node,
/// as the one built from the chunks one at a time.
///
/// For a file cut in fixed blocks every node but the last of a level holds 32 entries, so a
/// rewritten block changes one node per level. For a content-defined file a node also ends
/// where its entries' ids say ([`closes_defined`]), so an insertion, which shifts every later
/// chunk by its count, still changes only the nodes around it.
pub struct ListBuilder<'a> {
    sink: &'a dyn ObjectSink,
    /// Node boundaries follow entry ids too (a content-defined file).
    defined: bool,
    /// `pending[l]`: entries of level `l` (chunks for 0) not yet in a node.
    pending: Vec<Vec<ListEntry>>,
    /// `pushed[l]`: entries ever added at level `l`.
    pushed: Vec<u64>,
    /// `zeros[j]`: the entry covering `LIST_FANOUT^j` zero chunks (stored once it is made).
    zeros: Vec<ListEntry>,
}

/// Deepest level a zero subtree is added at (a level-15 subtree covers 2^75 chunks).
const MAX_ZERO_LEVEL: usize = 15;

impl<'a> ListBuilder<'a> {
    pub fn new(sink: &'a dyn ObjectSink) -> Self {
        Self::for_cut(sink, Cut::Fixed)
    }

    /// A builder for a file cut by `cut`.
    pub fn for_cut(sink: &'a dyn ObjectSink, cut: Cut) -> Self {
        ListBuilder {
            sink,
            defined: cut == Cut::Defined,
            pending: Vec::new(),
            pushed: Vec::new(),
            zeros: Vec::new(),
        }
    }

    /// Appends the next chunk of the file.
    pub fn push(&mut self, chunk: ListEntry) -> Result<()> {
        self.push_at(0, chunk)
    }

    /// Appends `count` full-size all-zero chunks (a file cut in fixed blocks only).
    pub fn push_zeros(&mut self, mut count: u64) -> Result<()> {
        debug_assert!(!self.defined, "zero runs are aligned to fixed blocks");
        let fanout = LIST_FANOUT as u64;
        while count > 0 {
            // The highest level whose whole subtree fits and below which nothing is pending.
            let mut level = 0;
            while level < MAX_ZERO_LEVEL
                && self.pending.get(level).is_none_or(Vec::is_empty)
                && fanout.pow(level as u32 + 1) <= count
            {
                level += 1;
            }
            let entry = self.zero_entry(level)?;
            self.push_at(level, entry)?;
            count -= fanout.pow(level as u32);
        }
        Ok(())
    }

    /// The file's content id (see [`build_content`]).
    pub fn finish(mut self) -> Result<Option<ObjectId>> {
        let mut level = 0;
        loop {
            let higher = self.pushed.iter().skip(level + 1).any(|&n| n > 0);
            let here = self.pending.get(level).map_or(0, Vec::len);
            if !higher && (here == 1 || (level == 0 && here == 0)) {
                return Ok(self
                    .pending
                    .get(level)
                    .and_then(|p| p.first())
                    .map(|e| e.id));
            }
            if here > 0 {
                let node = self.close(level)?;
                self.push_at(level + 1, node)?;
            }
            level += 1;
        }
    }

    fn push_at(&mut self, level: usize, entry: ListEntry) -> Result<()> {
        if self.pending.len() <= level {
            self.pending.resize_with(level + 1, Vec::new);
            self.pushed.resize(level + 1, 0);
        }
        self.pending[level].push(entry);
        self.pushed[level] += 1;
        let len = self.pending[level].len();
        if len == LIST_FANOUT || (self.defined && closes_defined(len, &entry.id)) {
            let node = self.close(level)?;
            self.push_at(level + 1, node)?;
        }
        Ok(())
    }

    /// Stores the pending entries of `level` as one node; returns its entry one level up.
    fn close(&mut self, level: usize) -> Result<ListEntry> {
        let entries = std::mem::take(&mut self.pending[level]);
        self.store_node(level, entries)
    }

    fn store_node(&self, level: usize, entries: Vec<ListEntry>) -> Result<ListEntry> {
        let len = entries.iter().map(|e| e.len).sum();
        let node = ListNode {
            level: u8::try_from(level).expect("list depth below 256"),
            entries,
        };
        let bytes = postcard::to_stdvec(&node).expect("list node serializes");
        let id = self.sink.put(Kind::List, &bytes)?;
        Ok(ListEntry { id, len })
    }

    /// The entry for `LIST_FANOUT^level` zero chunks, storing it (and those below) once.
    fn zero_entry(&mut self, level: usize) -> Result<ListEntry> {
        while self.zeros.len() <= level {
            let entry = match self.zeros.last() {
                None => {
                    let chunk = [0u8; CHUNK_SIZE];
                    self.sink.put_hashed(zero_chunk_id(), Kind::Chunk, &chunk)?;
                    ListEntry {
                        id: zero_chunk_id(),
                        len: CHUNK_SIZE as u64,
                    }
                }
                Some(&below) => self.store_node(self.zeros.len() - 1, vec![below; LIST_FANOUT])?,
            };
            self.zeros.push(entry);
        }
        Ok(self.zeros[level])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HashOnly;

    /// The content id of `entries` as format 1 defines it: all chunks grouped by 32 into
    /// level-0 nodes, those by 32 into level-1 nodes, until one node is left (the reference
    /// the streaming builder must match).
    fn flat(entries: &[ListEntry]) -> Option<ObjectId> {
        if entries.len() <= 1 {
            return entries.first().map(|c| c.id);
        }
        let mut level = 0u8;
        let mut entries = entries.to_vec();
        loop {
            let parents: Vec<ListEntry> = entries
                .chunks(LIST_FANOUT)
                .map(|group| {
                    let node = ListNode {
                        level,
                        entries: group.to_vec(),
                    };
                    ListEntry {
                        id: ObjectId::hash(&postcard::to_stdvec(&node).unwrap()),
                        len: group.iter().map(|e| e.len).sum(),
                    }
                })
                .collect();
            if parents.len() == 1 {
                return Some(parents[0].id);
            }
            entries = parents;
            level += 1;
        }
    }

    fn data_chunk(i: u64) -> ListEntry {
        ListEntry {
            id: ObjectId::hash(&i.to_le_bytes()),
            len: CHUNK_SIZE as u64,
        }
    }

    fn zero() -> ListEntry {
        ListEntry {
            id: zero_chunk_id(),
            len: CHUNK_SIZE as u64,
        }
    }

    /// Holes added as zero runs give the same tree as zero chunks added one by one, for runs
    /// aligned or not, at the start, middle and end, and spanning several levels.
    #[test]
    fn zero_runs_build_the_same_tree_as_zero_chunks() {
        let shapes: &[&[(bool, u64)]] = &[
            &[(false, 1)],
            &[(false, 32)],
            &[(false, 33)],
            &[(false, 1024)],
            &[(false, 1025)],
            &[(true, 1), (false, 3)],
            &[(true, 31), (false, 1), (false, 40)],
            &[(true, 5), (false, 2000), (true, 7)],
            &[(true, 3000), (true, 32 * 32 * 3 + 17)],
            &[(true, 32), (true, 1024)],
        ];
        for shape in shapes {
            let mut reference = Vec::new();
            let sink = HashOnly::default();
            let mut list = ListBuilder::new(&sink);
            let mut next = 0;
            for &(data, n) in *shape {
                if data {
                    for _ in 0..n {
                        let c = data_chunk(next);
                        next += 1;
                        reference.push(c);
                        list.push(c).unwrap();
                    }
                } else {
                    reference.extend(std::iter::repeat_n(zero(), n as usize));
                    list.push_zeros(n).unwrap();
                }
            }
            assert_eq!(list.finish().unwrap(), flat(&reference), "{shape:?}");
        }
    }

    /// Bytes that look like a text dump: rows of digits and words from a fixed generator.
    fn dump(len: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(
                format!("INSERT INTO t VALUES ({x}, 'n{}');\n", x % 977).as_bytes(),
            );
        }
        out.truncate(len);
        out
    }

    /// The cut points are part of content ids: these are the ones every dvol since content-
    /// defined chunking computes for this input. A `fastcdc` upgrade that moves them fails here.
    #[test]
    fn defined_cuts_are_stable() {
        let data = dump(1 << 20, 7);
        let lens = defined_cuts(&data, true);
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        assert!(lens.iter().all(|&l| l <= CHUNK_SIZE));
        let full = lens.iter().filter(|&&l| l == CHUNK_SIZE).count();
        assert!(
            full * 3 > lens.len() * 2,
            "{full} of {} chunks full",
            lens.len()
        );
        // A run of zeros is cut in whole blocks: the zero chunk, restored as a hole.
        assert_eq!(defined_cuts(&vec![0u8; 65536], true), vec![CHUNK_SIZE; 8]);
        let digest = blake3::hash(&postcard::to_stdvec(&lens).unwrap());
        assert_eq!(
            (lens.len(), &lens[..6], digest.to_hex().to_string()),
            (
                153,
                &[8192usize, 7928, 8192, 8192, 8192, 643][..],
                "1354df3428b869f6a865de1da80418a8c6eddda69c6d50c54a237d4556f578ef".to_string()
            ),
        );
    }

    /// Cutting a stream piece by piece (as the reader does, carrying the uncut tail over)
    /// gives the cuts of the whole, whatever the piece size.
    #[test]
    fn defined_cuts_do_not_depend_on_the_buffer() {
        let data = dump(3 << 20, 11);
        let whole = defined_cuts(&data, true);
        for piece in [2 * DEFINED_MAX, 3 * DEFINED_MAX + 17, 1 << 20] {
            let (mut lens, mut start) = (Vec::new(), 0);
            loop {
                let end = (start + piece).min(data.len());
                let got = defined_cuts(&data[start..end], end == data.len());
                start += got.iter().sum::<usize>();
                lens.extend(got);
                if end == data.len() && start == end {
                    break;
                }
            }
            assert_eq!(lens, whole, "piece {piece}");
        }
    }

    #[test]
    fn cut_rule() {
        let tar = {
            let mut h = vec![0u8; 512];
            h[257..262].copy_from_slice(b"ustar");
            h
        };
        assert_eq!(cut_of(8192, &[]), Cut::Fixed);
        assert_eq!(cut_of(5000, &[]), Cut::Fixed);
        assert_eq!(cut_of(64 << 20, &[]), Cut::Fixed);
        assert_eq!(cut_of(3 * 4096, &[]), Cut::Fixed);
        assert_eq!(cut_of((64 << 20) + 1, &[]), Cut::Defined);
        assert_eq!(cut_of(10240 * 2, &tar), Cut::Defined);
        assert_eq!(cut_of(8192, &tar), Cut::Fixed);
        assert_eq!(cut_of(DEFINED_MAX_FILE - 1, &[]), Cut::Defined);
        assert_eq!(cut_of(DEFINED_MAX_FILE + 1, &[]), Cut::Fixed);
    }

    #[test]
    fn empty_and_single_chunk_contents() {
        assert_eq!(flat(&[]), None);
        let c = data_chunk(7);
        assert_eq!(flat(&[c]), Some(c.id));
    }
}
