//! The one place pack records and pack indexes cross the wire: building and uploading a pack
//! with its index ([`PackOut`]), reading an index ([`get_idx`]) and reading records back with
//! coalesced ranged reads, each checked against its index entry ([`read_objects`]).
//!
//! Chunks travel in blocks (runs of up to 16 compressed as one zstd frame, as the local store
//! keeps them): a block is one record in a remote pack, listed once per member in a version
//! 2 index. A reader reads a block once for all its wanted members, bounds it by its header,
//! decompresses it and hashes every member against its id before handing any of it out.

use super::index::RemoteIndex;
use crate::failpoint::hit;
use crate::remote::crypt::Seal;
use crate::remote::idx::{self, IdxEntry};
use crate::remote::{Backend, RemoteError};
use crate::repo::reach::Edge;
use crate::store::pack::{pack_header, pack_header_of, RecordHeader, CODEC_RAW, CODEC_ZSTD};
use crate::store::pack::{PACK_VERSION_BLOCKS, RECORD_HEADER_LEN};
use crate::store::{decode_payload, Kind, ObjectId, RawBlock, MAX_OBJECT_SIZE};
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Largest coalesced range read by fetch.
const MAX_RANGE: u64 = 8 << 20;
/// Ranges closer than this are read as one.
const RANGE_GAP: u64 = 64 << 10;

/// Download and decode the index `key` (`packs/<hash>.idx`); `None` when it vanished.
pub fn get_idx(
    backend: &dyn Backend,
    key: &str,
    seal: &Seal,
) -> Result<Option<(Vec<u8>, Vec<IdxEntry>)>> {
    let Some(bytes) = backend.get(key)? else {
        return Ok(None);
    };
    let entries = idx::decode(key, &seal.open_index(key, bytes.clone())?)?;
    Ok(Some((bytes, entries)))
}

/// An in-memory pack being built for upload (at most about [`PUSH_PACK_SIZE`]).
pub struct PackOut {
    pub buf: Vec<u8>,
    pub entries: Vec<IdxEntry>,
}

impl Default for PackOut {
    fn default() -> PackOut {
        PackOut::new()
    }
}

impl PackOut {
    pub fn new() -> PackOut {
        PackOut {
            buf: pack_header().to_vec(),
            entries: Vec::new(),
        }
    }

    pub fn append(&mut self, header: &RecordHeader, payload: &[u8], seal: &Seal) {
        self.entries.push(IdxEntry {
            id: seal.remote_id(&header.id),
            kind: header.kind,
            codec: header.codec,
            offset: self.buf.len() as u64,
            clen: payload.len() as u32,
            ulen: header.ulen,
            boff: None,
        });
        seal.append_record(&mut self.buf, header, payload);
    }

    /// Append a block (verified by the caller), listing each member under its remote id.
    pub fn append_block(&mut self, block: &RawBlock, seal: &Seal) {
        let bytes = block.encode();
        let offset = self.buf.len() as u64;
        let clen = u32::try_from(bytes.len() - RECORD_HEADER_LEN).expect("bounded block");
        for (id, boff, ulen) in block.offsets() {
            self.entries.push(IdxEntry {
                id: seal.remote_id(&id),
                kind: Kind::Chunk,
                codec: CODEC_ZSTD,
                offset,
                clen,
                ulen,
                boff: Some(boff),
            });
        }
        self.buf[..16].copy_from_slice(&pack_header_of(PACK_VERSION_BLOCKS));
        seal.append_block(&mut self.buf, &bytes);
    }

    /// Upload the pack, then its index. Returns the bytes sent.
    pub fn upload(self, backend: &dyn Backend, seal: &Seal) -> Result<u64> {
        let name = blake3::hash(&self.buf).to_hex().to_string();
        let idx = seal.seal_index(&name, idx::encode(&self.entries));
        let sent = (self.buf.len() + idx.len()) as u64;
        backend.put(&format!("packs/{name}.pack"), self.buf)?;
        hit("push.after-pack-upload");
        backend.put(&format!("packs/{name}.idx"), idx)?;
        hit("push.after-idx-upload");
        Ok(sent)
    }
}

/// What a reader gets for one wanted object.
pub enum Piece {
    /// A record of its own: header and still-compressed payload (the caller verifies it).
    Record(RecordHeader, Vec<u8>),
    /// A chunk from a block already verified (every member hashed): the member's plain id,
    /// and the block with its data, shared by the block's members read together.
    Member(ObjectId, Arc<(RawBlock, Vec<u8>)>),
}

impl Piece {
    /// The object's plain id.
    pub fn id(&self) -> ObjectId {
        match self {
            Piece::Record(h, _) => h.id,
            Piece::Member(id, _) => *id,
        }
    }

    /// As a record of its own; a block member becomes a raw (uncompressed) record.
    pub fn into_record(self) -> (RecordHeader, Vec<u8>) {
        match self {
            Piece::Record(h, payload) => (h, payload),
            Piece::Member(id, block) => {
                let (raw, data) = &*block;
                let (_, at, len) = raw
                    .offsets()
                    .find(|m| m.0 == id)
                    .expect("a member is in its block");
                let header = RecordHeader {
                    id,
                    kind: Kind::Chunk,
                    codec: CODEC_RAW,
                    ulen: len,
                    clen: len,
                };
                (header, data[at as usize..(at + len) as usize].to_vec())
            }
        }
    }
}

/// Read the records of `wanted` from the remote, each as a record of its own (block members
/// uncompressed); see [`read_pieces`].
pub fn read_objects(
    remote: &Remote,
    wanted: &[ObjectId],
    mut f: impl FnMut(RecordHeader, Vec<u8>) -> Result<()>,
) -> Result<u64> {
    read_pieces(remote, wanted, |piece| {
        let (header, payload) = piece.into_record();
        f(header, payload)
    })
}

/// Read the objects of `wanted` from the remote with coalesced range reads, checking each
/// record against its index entry (a block wholly, once), and hand them to `f` (which verifies
/// a record's content hash and decodes it in the role it was reached in). A record's kind is
/// only the role its bytes were first stored in: an id names bytes, and the same bytes may be
/// wanted in another role (see [`crate::repo::reach`]), so it is not checked here.
/// A copy found corrupt (by these checks or by `f`) is retried from the object's next copy,
/// if the remote has one. Returns the bytes read.
pub fn read_pieces(
    remote: &Remote,
    wanted: &[ObjectId],
    mut f: impl FnMut(Piece) -> Result<()>,
) -> Result<u64> {
    let Remote {
        backend,
        index,
        seal,
    } = *remote;
    let mut todo: Vec<&IdxEntry> = Vec::with_capacity(wanted.len());
    for id in wanted {
        let loc = index.get(&seal.remote_id(id)).ok_or_else(|| {
            Error::from(RemoteError::Unindexed {
                what: "object",
                id: *id,
                note: "",
            })
        })?;
        todo.push(&loc.entry);
    }
    let mut bytes = 0;
    let mut copy = 0;
    let mut todo_packs = group(index, &todo, 0);
    loop {
        let mut corrupt: Vec<(ObjectId, Error)> = Vec::new();
        for (pack, entries) in todo_packs {
            bytes += read_pack_records(backend, seal, &pack, entries, &mut |e, rec| {
                let checked = rec.and_then(&mut f);
                match checked {
                    Err(err @ Error::CorruptObject { .. }) => corrupt.push((e.id, err)),
                    other => other?,
                }
                Ok(())
            })?;
        }
        if corrupt.is_empty() {
            return Ok(bytes);
        }
        copy += 1;
        let mut next = Vec::new();
        for (id, err) in corrupt {
            match index.copy(&id, copy) {
                Some(loc) => next.push(&loc.entry),
                None => return Err(err),
            }
        }
        todo_packs = group(index, &next, copy);
    }
}

/// Read commits from the remote breadth-first from `start` through their parents (each once,
/// verified), handing each to `visit`, which returns false to end the walk. A commit that is
/// not in any index fails the walk (the remote is incomplete).
pub fn walk_commits(
    remote: &Remote,
    start: &[ObjectId],
    mut visit: impl FnMut(ObjectId, &crate::repo::Commit) -> Result<bool>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut queue: Vec<ObjectId> = start.to_vec();
    let mut going = true;
    while going && !queue.is_empty() {
        let mut want: Vec<ObjectId> = queue.drain(..).filter(|id| seen.insert(*id)).collect();
        want.sort();
        let mut next = Vec::new();
        read_objects(remote, &want, |h, payload| {
            if !going {
                return Ok(());
            }
            let c = crate::repo::Commit::decode(&h.id, &decode_payload(&h.id, &h, &payload)?)?;
            next.extend(c.parents.iter().copied());
            going = visit(h.id, &c)?;
            Ok(())
        })?;
        queue = next;
    }
    Ok(())
}

/// Entries grouped by the pack holding copy `copy` of each.
fn group<'a>(
    index: &'a RemoteIndex,
    entries: &[&'a IdxEntry],
    copy: usize,
) -> HashMap<Arc<str>, Vec<&'a IdxEntry>> {
    let mut by_pack: HashMap<Arc<str>, Vec<&IdxEntry>> = HashMap::new();
    for e in entries {
        let loc = index.copy(&e.id, copy).expect("entry has this copy");
        by_pack
            .entry(loc.pack.clone())
            .or_default()
            .push(&loc.entry);
    }
    by_pack
}

/// An object read back, or why its copy is corrupt.
pub type ReadRecord = Result<Piece>;

/// Read the records `entries` of one remote pack with coalesced range reads (gaps up to
/// [`RANGE_GAP`], ranges up to [`MAX_RANGE`] or one record; a block is read once for all its
/// listed members), checking each against its index entry, and hand each to `f`. Transport
/// errors and an impossible index fail the call; a record that does not match its entry is
/// handed to `f` as an error.
pub fn read_pack_records(
    backend: &dyn Backend,
    seal: &Seal,
    pack: &str,
    mut entries: Vec<&IdxEntry>,
    f: &mut dyn FnMut(&IdxEntry, ReadRecord) -> Result<()>,
) -> Result<u64> {
    entries.sort_by_key(|e| (e.offset, e.boff));
    let record_end = |e: &IdxEntry| e.offset.checked_add(seal.record_len(e.clen));
    if entries
        .iter()
        .any(|e| record_end(e).is_none() || e.clen as usize > MAX_OBJECT_SIZE + 1024)
    {
        return Err(RemoteError::BadIndex {
            name: pack.to_string(),
            why: "a record lies past the end or is too large".into(),
        }
        .into());
    }
    // Spans: the entries at one offset (a record, or the listed members of one block).
    let mut spans: Vec<&[&IdxEntry]> = Vec::new();
    let mut rest = &entries[..];
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|e| e.offset == first.offset).count();
        spans.push(&rest[..n]);
        rest = &rest[n..];
    }
    let span_end = |s: &[&IdxEntry]| record_end(s[0]).expect("checked above");
    let mut bytes = 0;
    let mut i = 0;
    while i < spans.len() {
        let start = spans[i][0].offset;
        let mut end = span_end(spans[i]);
        let mut j = i + 1;
        while j < spans.len() {
            let s_end = span_end(spans[j]);
            if spans[j][0].offset < end
                || spans[j][0].offset - end > RANGE_GAP
                || s_end - start > MAX_RANGE
            {
                break;
            }
            end = s_end;
            j += 1;
        }
        let data = backend.get_range(pack, start, end - start)?;
        bytes += data.len() as u64;
        for span in &spans[i..j] {
            let at = (span[0].offset - start) as usize;
            split_span(seal, pack, span, &data[at..], f)?;
        }
        i = j;
    }
    Ok(bytes)
}

/// Hand `f` each entry of a span whose bytes start `data`: a block is opened and verified
/// once for all its members.
fn split_span(
    seal: &Seal,
    pack: &str,
    span: &[&IdxEntry],
    data: &[u8],
    f: &mut dyn FnMut(&IdxEntry, ReadRecord) -> Result<()>,
) -> Result<()> {
    if span[0].boff.is_none() {
        for e in span {
            f(e, split_record(seal, pack, e, data))?;
        }
        return Ok(());
    }
    let block = open_block(seal, pack, span[0], data).map(Arc::new);
    for e in span {
        let piece = match &block {
            Ok(block) => member_of(seal, pack, e, span[0], block),
            Err(why) => Err(why.clone()),
        };
        f(
            e,
            piece.map_err(|detail| Error::CorruptObject {
                id: e.id.to_hex(),
                detail,
            }),
        )?;
    }
    Ok(())
}

/// The block at the start of `data` listed by `e`: opened, bounded by its header,
/// decompressed, every member hashed against its id.
fn open_block(
    seal: &Seal,
    pack: &str,
    e: &IdxEntry,
    data: &[u8],
) -> std::result::Result<(RawBlock, Vec<u8>), String> {
    let len = seal.record_len(e.clen) as usize;
    if data.len() < len {
        return Err(format!("block is cut short in remote {pack}"));
    }
    let bytes = seal.open_block(&data[..len], pack)?;
    RawBlock::open(&bytes).map_err(|why| format!("{why} in remote {pack}"))
}

/// Member `e` of `block` (listed at the offset of `first`), checked against its entry: the
/// block holds an object with that remote id, at that offset, of that length.
fn member_of(
    seal: &Seal,
    pack: &str,
    e: &IdxEntry,
    first: &IdxEntry,
    block: &Arc<(RawBlock, Vec<u8>)>,
) -> std::result::Result<Piece, String> {
    let found = block
        .0
        .offsets()
        .find(|(id, at, len)| seal.remote_id(id) == e.id && Some(*at) == e.boff && *len == e.ulen);
    match found {
        Some((id, _, _)) if e.clen == first.clen => Ok(Piece::Member(id, block.clone())),
        _ => Err(format!(
            "block does not hold the object the pack index lists in remote {pack}"
        )),
    }
}

/// The header and payload of the record `e` at the start of `data`, checked against `e`.
fn split_record(seal: &Seal, pack: &str, e: &IdxEntry, data: &[u8]) -> ReadRecord {
    let bad = |why: &str| Error::CorruptObject {
        id: e.id.to_hex(),
        detail: format!("{why} in remote {pack}"),
    };
    let len = seal.record_len(e.clen) as usize;
    if data.len() < len {
        return Err(bad("record is cut short"));
    }
    let (header, payload) = seal.open_record(&e.id, &data[..len], pack)?;
    if seal.remote_id(&header.id) != e.id
        || header.clen != e.clen
        || header.ulen != e.ulen
        || payload.len() != e.clen as usize
    {
        return Err(bad("record does not match the pack index"));
    }
    Ok(Piece::Record(header, payload))
}

/// The verified contents of `batch`, in order, as the shared walker
/// ([`reach::Visit::load`](crate::repo::reach::Visit::load)) wants them.
pub fn load_batch(remote: &Remote, batch: &[(ObjectId, Edge)]) -> Result<Vec<Vec<u8>>> {
    let wanted: HashSet<ObjectId> = batch.iter().map(|(id, _)| *id).collect();
    let wanted: Vec<ObjectId> = wanted.into_iter().collect();
    let mut got: HashMap<ObjectId, Vec<u8>> = HashMap::with_capacity(batch.len());
    read_objects(remote, &wanted, |h, payload| {
        got.insert(h.id, decode_payload(&h.id, &h, &payload)?);
        Ok(())
    })?;
    Ok(batch
        .iter()
        .map(|(id, _)| {
            got.get(id)
                .cloned()
                .expect("every wanted record is returned")
        })
        .collect())
}

/// The remote side of a read: carrier, index and seal.
#[derive(Clone, Copy)]
pub struct Remote<'a> {
    pub backend: &'a dyn Backend,
    pub index: &'a RemoteIndex,
    pub seal: &'a Seal,
}
