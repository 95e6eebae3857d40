//! The object store: content-addressed, compressed, deduplicated, verified on every read.
//!
//! Objects (file chunks, chunk lists, trees, commits) are identified by the blake3 hash of their
//! uncompressed bytes, compressed with zstd, and appended to pack files under `ROOT/.dvol/packs`.
//! Where each object lives is recorded in the SQLite `objects` table, in the same transaction
//! that records what references it, so a crash leaves at most unreferenced pack files behind
//! (reclaimed by gc). The store never decides what is reachable; `repo` does.

mod chunk;
mod claims;
mod id;
pub mod index;
pub mod pack;

pub(crate) use chunk::check_node;
pub use chunk::{
    build_content, chunks, cut_of, decode_list, defined_cuts, is_zero_chunk, stored_bytes,
    zero_chunk_id, Chunks, Cut, ListBuilder, ListEntry, ListNode, CHUNK_SIZE, DEFINED_MAX,
    LIST_FANOUT, PAGE_MULTIPLE,
};
use claims::Claims;
pub use id::ObjectId;
pub use pack::{IndexEntry, Record, WrittenPack};

use crate::error::IoContext;
use crate::{Error, Result};
use pack::{
    BlockHeader, PackWriter, RecordHeader, BLOCK_MEMBER_LEN, CODEC_RAW, CODEC_ZSTD,
    RECORD_HEADER_LEN,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Open a connection to the metadata database `db` (the one file holding the store's index and
/// the repository's tables), waiting up to `busy` for another writer.
///
/// The last connection to close does not checkpoint: the WAL stays for the next process
/// instead of being copied into the database, fsynced and deleted at every exit, then created
/// and fsynced again (with its directory) by the next command's first write. Writes stay as
/// durable (synchronous=FULL syncs the WAL at each commit) and SQLite still checkpoints
/// automatically once the WAL passes its size limit. Copies of a root must take
/// `dvol.db-wal` with `dvol.db`.
///
/// Each connection caches up to [`INDEX_CACHE_KIB`] of database pages (SQLite's default is
/// 2 MiB): the object index of a few GiB of data is larger than that, and every new chunk's
/// lookup and insert lands on a random page of it, so a small cache re-reads the index many
/// times over in one commit.
pub fn connect(db: &Path, busy: std::time::Duration) -> Result<Connection> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "cache_size", -INDEX_CACHE_KIB)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    Ok(conn)
}

/// Page cache of every database connection, in KiB (see [`connect`]).
pub const INDEX_CACHE_KIB: i64 = 32 << 10;

/// Largest object accepted anywhere (bounded decompression for untrusted input).
pub const MAX_OBJECT_SIZE: usize = 64 << 20;
/// zstd level. 2 on blocks of up to 32 chunks (256 KiB: zstd picks its parameters for
/// inputs of that size) stores real PostgreSQL data 8-18% smaller than level 1 on 16 chunks
/// for about 13% more compression time (docs/benchmarks.md, "The experiment").
const ZSTD_LEVEL: i32 = 2;

/// What an object is. Recorded in pack headers and the index for fsck and transfers; the id
/// depends only on the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Chunk = 0,
    List = 1,
    Tree = 2,
    Commit = 3,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0 => Kind::Chunk,
            1 => Kind::List,
            2 => Kind::Tree,
            3 => Kind::Commit,
            _ => return None,
        })
    }
}

/// Location of an object, from the index.
#[derive(Clone, Debug)]
pub struct Location {
    pub pack: String,
    pub offset: u64,
    pub kind: Kind,
    pub clen: u32,
    pub ulen: u32,
    /// A block member's start in its block's data (`offset`, `clen`: the block's).
    pub boff: Option<u32>,
}

/// Read access to the packs plus the means to start writing new ones.
pub struct Store {
    packs_dir: PathBuf,
    db: PathBuf,
    index: Mutex<Connection>,
    open_packs: Mutex<HashMap<String, Arc<File>>>,
}

impl Store {
    /// Open the store whose packs live in `packs_dir` and whose index is the SQLite file `db`.
    pub fn open(packs_dir: &Path, db: &Path) -> Result<Store> {
        std::fs::create_dir_all(packs_dir).at("create", packs_dir)?;
        let conn = connect(db, std::time::Duration::from_secs(60))?;
        Ok(Store {
            packs_dir: packs_dir.to_path_buf(),
            db: db.to_path_buf(),
            index: Mutex::new(conn),
            open_packs: Mutex::new(HashMap::new()),
        })
    }

    pub fn packs_dir(&self) -> &Path {
        &self.packs_dir
    }

    /// Where `id` is stored, if it is.
    pub fn locate(&self, id: &ObjectId) -> Result<Option<Location>> {
        Ok(self.locate_many(std::slice::from_ref(id))?.pop().flatten())
    }

    /// Locations of many objects with one hold of the index (`None` for missing ones).
    /// One read transaction for them all: a statement outside one takes and drops SQLite's
    /// file locks (two `fcntl` and a `stat`) each time, which per chunk cost restore more
    /// than the lookups.
    pub fn locate_many(&self, ids: &[ObjectId]) -> Result<Vec<Option<Location>>> {
        let conn = self.index.lock().expect("index lock poisoned");
        let _read = conn.unchecked_transaction()?;
        let mut stmt = conn.prepare_cached(
            "SELECT p.name, o.offset, o.kind, o.clen, o.ulen, o.boff FROM objects o \
             JOIN packs p ON p.id = o.pack WHERE o.id = ?1",
        )?;
        ids.iter()
            .map(|id| {
                let row = stmt
                    .query_row([&id.0[..]], |r| {
                        Ok((
                            r.get::<_, u8>(2)?,
                            Location {
                                pack: r.get(0)?,
                                offset: r.get::<_, i64>(1)? as u64,
                                kind: Kind::Chunk,
                                clen: r.get(3)?,
                                ulen: r.get(4)?,
                                boff: r.get(5)?,
                            },
                        ))
                    })
                    .optional()?;
                row.map(|(kind, loc)| {
                    Ok(Location {
                        kind: known_kind(id, kind)?,
                        ..loc
                    })
                })
                .transpose()
            })
            .collect()
    }

    /// Whether `id` is already stored.
    pub fn contains(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.contains_many(std::slice::from_ref(id))?[0])
    }

    /// Whether each of `ids` is already stored, in one read transaction.
    pub fn contains_many(&self, ids: &[ObjectId]) -> Result<Vec<bool>> {
        let conn = self.index.lock().expect("index lock poisoned");
        let _read = (ids.len() > 1)
            .then(|| conn.unchecked_transaction())
            .transpose()?;
        let mut stmt = conn.prepare_cached("SELECT 1 FROM objects WHERE id = ?1")?;
        ids.iter().map(|id| Ok(stmt.exists([&id.0[..]])?)).collect()
    }

    /// Whether the store holds `id` with everything it reaches as a `kind`: a chunk (a leaf)
    /// whatever role its bytes were stored in, any other kind only when stored as that kind
    /// (every writer stores an object after what it reaches in the role it stores it in; the
    /// same bytes stored in another role say nothing of what they reach as this one).
    pub fn holds(&self, id: &ObjectId, kind: Kind) -> Result<bool> {
        let conn = self.index.lock().expect("index lock poisoned");
        let mut stmt = conn.prepare_cached("SELECT kind FROM objects WHERE id = ?1")?;
        let label: Option<u8> = stmt.query_row([&id.0[..]], |r| r.get(0)).optional()?;
        Ok(label.is_some_and(|l| kind == Kind::Chunk || l == kind as u8))
    }

    /// Read, decompress and verify an object.
    pub fn get(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let loc = self
            .locate(id)?
            .ok_or(Error::MissingObject { id: id.to_hex() })?;
        self.read_at(id, &loc)
    }

    /// Read the raw (still compressed) record of an object, header checked but not decompressed.
    pub fn get_raw(&self, id: &ObjectId) -> Result<(RecordHeader, Vec<u8>)> {
        let loc = self
            .locate(id)?
            .ok_or(Error::MissingObject { id: id.to_hex() })?;
        self.read_record(id, &loc)
    }

    /// Read and verify many objects (in parallel); missing ones are an error naming them.
    /// A block holding several of them is read and decompressed once.
    pub fn get_many(&self, ids: &[ObjectId]) -> Result<Vec<Vec<u8>>> {
        use rayon::prelude::*;
        let locs = self.locate_many(ids)?;
        let mut slots: HashMap<(&str, u64), usize> = HashMap::new();
        let mut wanted: Vec<&Location> = Vec::new();
        for loc in locs.iter().flatten().filter(|l| l.boff.is_some()) {
            slots.entry((&loc.pack, loc.offset)).or_insert_with(|| {
                wanted.push(loc);
                wanted.len() - 1
            });
        }
        let blocks: Vec<std::result::Result<Block, String>> =
            wanted.par_iter().map(|l| self.read_block(l)).collect();
        ids.par_iter()
            .zip(locs.par_iter())
            .map(|(id, loc)| match loc {
                Some(loc) if loc.boff.is_some() => {
                    match &blocks[slots[&(&*loc.pack, loc.offset)]] {
                        Ok(block) => block.member(id, loc),
                        Err(detail) => Err(Error::CorruptObject {
                            id: id.to_hex(),
                            detail: detail.clone(),
                        }),
                    }
                }
                Some(loc) => self.read_at(id, loc),
                None => Err(Error::MissingObject { id: id.to_hex() }),
            })
            .collect()
    }

    /// Read the object described by `loc` and check it hashes to `id`.
    pub fn read_at(&self, id: &ObjectId, loc: &Location) -> Result<Vec<u8>> {
        if loc.boff.is_some() {
            let block = self
                .read_block(loc)
                .map_err(|detail| Error::CorruptObject {
                    id: id.to_hex(),
                    detail,
                })?;
            return block.member(id, loc);
        }
        let (header, payload) = self.read_record(id, loc)?;
        decode_payload(id, &header, &payload)
    }

    /// Read a block (header, member table, payload) and decompress it, all bounded by its
    /// checked header; the error says what is wrong with it (callers name the object).
    fn read_block(&self, loc: &Location) -> std::result::Result<Block, String> {
        let (raw, data) = self.read_raw_block(loc)?;
        Ok(Block {
            members: raw.members,
            data,
        })
    }

    /// The stored bytes of the block at `loc` (checked against the index) and its data.
    fn read_raw_block(&self, loc: &Location) -> std::result::Result<(RawBlock, Vec<u8>), String> {
        let corrupt = |detail: String| format!("{detail} in pack {}", loc.pack);
        let file = self.pack_file(&loc.pack).map_err(|e| e.to_string())?;
        let mut head = [0u8; RECORD_HEADER_LEN];
        file.read_exact_at(&mut head, loc.offset)
            .map_err(|e| corrupt(format!("cannot read block: {e}")))?;
        let header = BlockHeader::decode(&head).map_err(corrupt)?;
        if header.clen != loc.clen {
            return Err(corrupt("block header does not match the index".into()));
        }
        let mut buf = vec![0u8; header.body_len()];
        file.read_exact_at(&mut buf, loc.offset + RECORD_HEADER_LEN as u64)
            .map_err(|e| corrupt(format!("cannot read block: {e}")))?;
        RawBlock::split(&header, buf).map_err(corrupt)
    }

    /// The block holding `id` as stored (compressed), every member re-hashed against its id:
    /// what push sends, so it never moves a corrupt chunk.
    pub fn verified_block(&self, id: &ObjectId, loc: &Location) -> Result<RawBlock> {
        Ok(self.open_block(id, loc)?.0)
    }

    /// The block holding `id` as stored and its data, every member re-hashed against its id.
    pub fn open_block(&self, id: &ObjectId, loc: &Location) -> Result<(RawBlock, Vec<u8>)> {
        let corrupt = |detail: String| Error::CorruptObject {
            id: id.to_hex(),
            detail,
        };
        let (raw, data) = self.read_raw_block(loc).map_err(corrupt)?;
        let held = raw
            .offsets()
            .any(|(m, at, len)| m == *id && Some(at) == loc.boff && len == loc.ulen);
        if !held {
            return Err(corrupt(format!(
                "block does not hold the object where the index says in pack {}",
                loc.pack
            )));
        }
        raw.check_members(&data)
            .map_err(|d| corrupt(format!("{d} in pack {}", loc.pack)))?;
        Ok((raw, data))
    }

    /// The raw record of an object: as stored, or, for a block member, a record of its own
    /// (compressed alone), which is what remotes and repacking take.
    fn read_record(&self, id: &ObjectId, loc: &Location) -> Result<(RecordHeader, Vec<u8>)> {
        if loc.boff.is_some() {
            let data = self.read_at(id, loc)?;
            let rec = make_record(*id, loc.kind, &data)?;
            let header = RecordHeader {
                id: *id,
                kind: rec.kind,
                codec: rec.codec,
                ulen: rec.ulen,
                clen: u32::try_from(rec.payload.len()).expect("one chunk"),
            };
            return Ok((header, rec.payload));
        }
        let corrupt = |detail: String| Error::CorruptObject {
            id: id.to_hex(),
            detail: format!("{detail} in pack {}", loc.pack),
        };
        let file = self.pack_file(&loc.pack)?;
        let mut buf = vec![0u8; RECORD_HEADER_LEN + loc.clen as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| corrupt(format!("cannot read record: {e}")))?;
        let header = RecordHeader::decode(&buf[..RECORD_HEADER_LEN]).map_err(corrupt)?;
        if header.id != *id || header.clen != loc.clen || header.ulen != loc.ulen {
            return Err(corrupt("record header does not match the index".into()));
        }
        buf.drain(..RECORD_HEADER_LEN);
        Ok((header, buf))
    }

    fn pack_file(&self, name: &str) -> Result<Arc<File>> {
        let mut open = self.open_packs.lock().expect("pack cache poisoned");
        if let Some(f) = open.get(name) {
            return Ok(f.clone());
        }
        let path = self.packs_dir.join(name);
        let f = Arc::new(File::open(&path).at("open pack", &path)?);
        if open.len() > 256 {
            open.clear();
        }
        open.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Forget open pack handles (after gc replaced packs).
    pub fn forget_open_packs(&self) {
        self.open_packs.lock().expect("pack cache poisoned").clear();
    }

    /// Start writing new objects that become visible only when the caller records the
    /// returned packs ([`Store::record`]) in the transaction that references them. For objects
    /// whose order is not children-first (fetched from a remote).
    pub fn writer(self: &Arc<Self>) -> Result<WriteSession> {
        self.start_writer(false, WriterLimits::default())
    }

    /// Start writing new objects, each pack indexed (in its own transaction) as soon as it is
    /// durable, overlapping index writes with the rest of the work. Only for writers that put
    /// every object after everything it refers to (a commit: chunks, then lists, then trees),
    /// so an indexed object always has all it reaches indexed too; until something references
    /// them, these objects are garbage that gc may reclaim.
    pub fn writer_indexing(self: &Arc<Self>) -> Result<WriteSession> {
        self.start_writer(true, WriterLimits::default())
    }

    fn start_writer(
        self: &Arc<Self>,
        index_early: bool,
        limits: WriterLimits,
    ) -> Result<WriteSession> {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Record>>(32);
        let mut packer = PackWriter::with_target(&self.packs_dir, limits.pack_target);
        let mut index = connect(&self.db, std::time::Duration::from_secs(120))?;
        let failure = Arc::new(Mutex::new(None));
        let failure_in_thread = failure.clone();
        let claimed: Arc<Claims> = Arc::default();
        let claimed_in_thread = claimed.clone();
        let thread = std::thread::Builder::new()
            .name("dvol-pack-writer".into())
            .spawn(move || -> Result<Vec<WrittenPack>> {
                let mut written = Vec::new();
                // Indexed packs are returned without their entries: memory stays bounded by
                // one batch's index, not the whole commit's.
                let mut batch = IndexBatch::default();
                // Records appended since the last index batch: a second copy of one of them
                // (see `claims`) is dropped.
                let mut appended = HashSet::new();
                let mut index_closed = |packs: Vec<WrittenPack>,
                                        last: bool,
                                        appended: &mut HashSet<ObjectId>|
                 -> Result<()> {
                    if !index_early {
                        written.extend(packs);
                        return Ok(());
                    }
                    batch.add(packs);
                    if batch.entries < limits.index_batch && !last {
                        return Ok(());
                    }
                    written.extend(batch.index(&mut index, &claimed_in_thread)?);
                    appended.clear();
                    Ok(())
                };
                let result = rx
                    .iter()
                    .try_for_each(|batch| {
                        for rec in batch {
                            if rec.members.is_empty() && !appended.insert(rec.id) {
                                continue;
                            }
                            packer.append(rec)?;
                        }
                        index_closed(packer.take_closed(), false, &mut appended)
                    })
                    .and_then(|()| index_closed(packer.finish()?, true, &mut appended))
                    .map(|()| written);
                if let Err(e) = &result {
                    *failure_in_thread.lock().expect("failure lock") = Some(e.to_string());
                }
                result
            })
            .map_err(|source| Error::Spawn {
                what: "pack writer",
                source,
            })?;
        Ok(WriteSession {
            store: self.clone(),
            claimed,
            sender: Some(tx),
            thread: Some(thread),
            failure,
        })
    }

    /// Record written packs in the index, inside the caller's transaction.
    pub fn record(tx: &rusqlite::Transaction, packs: &[WrittenPack]) -> Result<()> {
        let mut add_pack =
            tx.prepare_cached("INSERT OR IGNORE INTO packs(name, size) VALUES (?1, ?2)")?;
        let mut pack_id = tx.prepare_cached("SELECT id FROM packs WHERE name = ?1")?;
        let mut add_obj = tx.prepare_cached(
            "INSERT OR IGNORE INTO objects(id, pack, offset, kind, clen, ulen, boff) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut entries: Vec<(i64, &IndexEntry)> = Vec::new();
        for pack in packs {
            add_pack.execute(params![pack.name, pack.size as i64])?;
            let pid: i64 = pack_id.query_row([&pack.name], |r| r.get(0))?;
            entries.extend(pack.entries.iter().map(|e| (pid, e)));
        }
        // Inserting in key order, all packs together, keeps the B-tree appends cheap and
        // each index page written once per batch.
        entries.sort_unstable_by_key(|(_, e)| e.id);
        for (pid, e) in entries {
            add_obj.execute(params![
                &e.id.0[..],
                pid,
                e.offset as i64,
                e.kind as u8,
                e.clen,
                e.ulen,
                e.boff
            ])?;
        }
        Ok(())
    }
}

/// Index entries an indexing writer gathers before it writes them in one transaction. Each
/// new chunk lands on a random page of the object index, so indexing every pack alone rewrote
/// most of the index's pages once per pack (quadratic in the commit's size once the index is
/// bigger than a pack's entries); a batch of [`INDEX_BATCH_ENTRIES`] writes each page once per
/// batch, and memory stays bounded by one batch.
#[derive(Default)]
struct IndexBatch {
    packs: Vec<WrittenPack>,
    entries: usize,
}

/// Entries per index transaction of an indexing writer (about 1 GiB of 8 KiB chunks; their
/// entries and claims take ~16 MiB).
const INDEX_BATCH_ENTRIES: usize = 128 << 10;

/// Sizes a write session works in (the defaults; tests make them tiny).
#[derive(Clone, Copy)]
struct WriterLimits {
    /// Pack files close at this size.
    pack_target: u64,
    /// An indexing writer indexes closed packs once they hold this many entries.
    index_batch: usize,
}

impl Default for WriterLimits {
    fn default() -> Self {
        WriterLimits {
            pack_target: pack::PACK_TARGET_SIZE,
            index_batch: INDEX_BATCH_ENTRIES,
        }
    }
}

impl IndexBatch {
    fn add(&mut self, packs: Vec<WrittenPack>) {
        self.entries += packs.iter().map(|p| p.entries.len()).sum::<usize>();
        self.packs.extend(packs);
    }

    /// Index the gathered packs in one transaction, then forget their claims (the index
    /// answers for them from now on, so the session's claims cover unindexed packs only; a
    /// writer that checked the index just before this commit and claims one of them now
    /// writes a second copy, which the index ignores: nothing is lost). Returns the packs
    /// without their entries.
    fn index(&mut self, conn: &mut Connection, claimed: &Claims) -> Result<Vec<WrittenPack>> {
        let mut packs = std::mem::take(&mut self.packs);
        self.entries = 0;
        if packs.is_empty() {
            return Ok(packs);
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Store::record(&tx, &packs)?;
        tx.commit()?;
        claimed.forget(packs.iter().flat_map(|p| p.entries.iter().map(|e| &e.id)));
        packs.iter_mut().for_each(|p| p.entries = Vec::new());
        Ok(packs)
    }
}

/// The objects a record holds: its own id, or a block's members.
fn record_ids(rec: &Record) -> Vec<ObjectId> {
    if rec.members.is_empty() {
        vec![rec.id]
    } else {
        rec.members.iter().map(|m| m.0).collect()
    }
}

/// Decompress a payload and check length and hash against `id`.
pub fn decode_payload(id: &ObjectId, header: &RecordHeader, payload: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::CorruptObject {
        id: id.to_hex(),
        detail,
    };
    let data = match header.codec {
        CODEC_RAW => payload.to_vec(),
        CODEC_ZSTD => decompress(payload, header.ulen as usize)
            .map_err(|e| corrupt(format!("cannot decompress: {e}")))?,
        other => return Err(corrupt(format!("unknown codec {other}"))),
    };
    if data.len() != header.ulen as usize {
        return Err(corrupt("wrong length after decompression".into()));
    }
    if ObjectId::hash(&data) != *id {
        return Err(corrupt("content does not match its blake3 id".into()));
    }
    Ok(data)
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Compress with a per-thread zstd context; `None` when compression does not help.
fn compress(data: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let out = zstd_frame(data)?;
    Ok((out.len() < data.len()).then_some(out))
}

/// One zstd frame of `data`, with a per-thread context.
fn zstd_frame(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        c.as_mut().expect("set above").compress(data)
    })
}

/// A decompressed block: its member table and data.
struct Block {
    members: Vec<(ObjectId, u32)>,
    data: Vec<u8>,
}

impl Block {
    /// The bytes of member `id`, which the index places at `loc.boff`, checked against the
    /// member table and its id.
    fn member(&self, id: &ObjectId, loc: &Location) -> Result<Vec<u8>> {
        let corrupt = |detail: &str| Error::CorruptObject {
            id: id.to_hex(),
            detail: format!("{detail} in pack {}", loc.pack),
        };
        let boff = loc.boff.unwrap_or(u32::MAX);
        let mut at = 0u32;
        for (m, len) in &self.members {
            if at == boff && m == id && *len == loc.ulen {
                let bytes = &self.data[at as usize..(at + len) as usize];
                if ObjectId::hash(bytes) != *id {
                    return Err(corrupt("content does not match its blake3 id"));
                }
                return Ok(bytes.to_vec());
            }
            at += len;
        }
        Err(corrupt(
            "block does not hold the object where the index says",
        ))
    }
}

/// A block as stored: its members (id, length) and one zstd frame of their bytes.
#[derive(Clone, Debug)]
pub struct RawBlock {
    pub members: Vec<(ObjectId, u32)>,
    pub ulen: u32,
    pub payload: Vec<u8>,
}

impl RawBlock {
    /// Parse a block from untrusted bytes (header, member table, payload and nothing else):
    /// bounded by its checked header before anything is allocated, decompressed, and every
    /// member hashed against its id. Returns the block and its data.
    pub fn open(bytes: &[u8]) -> std::result::Result<(RawBlock, Vec<u8>), String> {
        if bytes.len() < RECORD_HEADER_LEN {
            return Err("truncated block".into());
        }
        let header = BlockHeader::decode(&bytes[..RECORD_HEADER_LEN])?;
        let body = &bytes[RECORD_HEADER_LEN..];
        if body.len() != header.body_len() {
            return Err("block length does not match its header".into());
        }
        let (raw, data) = RawBlock::split(&header, body.to_vec())?;
        raw.check_members(&data)?;
        Ok((raw, data))
    }

    /// Member table and payload (`body`, exactly [`BlockHeader::body_len`] bytes) of a block
    /// whose header was checked: members bounded and adding up, data decompressed.
    fn split(
        header: &BlockHeader,
        mut body: Vec<u8>,
    ) -> std::result::Result<(RawBlock, Vec<u8>), String> {
        let table_len = usize::from(header.count) * BLOCK_MEMBER_LEN;
        let members: Vec<(ObjectId, u32)> = body[..table_len]
            .chunks_exact(BLOCK_MEMBER_LEN)
            .map(|m| {
                let id = ObjectId::from_slice(&m[..32]).expect("32 bytes");
                (id, u32::from_le_bytes(m[32..].try_into().expect("4 bytes")))
            })
            .collect();
        let total = members.iter().try_fold(0u32, |acc, m| {
            (m.1 as usize <= CHUNK_SIZE)
                .then(|| acc.checked_add(m.1))
                .flatten()
        });
        if total != Some(header.ulen) {
            return Err("block members do not add up to its length".into());
        }
        let payload = body.split_off(table_len);
        let data = decompress(&payload, header.ulen as usize)
            .map_err(|e| format!("cannot decompress block: {e}"))?;
        if data.len() != header.ulen as usize {
            return Err("block has the wrong length after decompression".into());
        }
        let raw = RawBlock {
            members,
            ulen: header.ulen,
            payload,
        };
        Ok((raw, data))
    }

    /// Every member of `data` (this block's data) hashes to its id.
    fn check_members(&self, data: &[u8]) -> std::result::Result<(), String> {
        let mut at = 0usize;
        for (id, len) in &self.members {
            let end = at + *len as usize;
            if ObjectId::hash(&data[at..end]) != *id {
                return Err(format!("block member {id} does not match its blake3 id"));
            }
            at = end;
        }
        Ok(())
    }

    /// Where each member starts in the block's data.
    pub fn offsets(&self) -> impl Iterator<Item = (ObjectId, u32, u32)> + '_ {
        self.members.iter().scan(0u32, |at, (id, len)| {
            let start = *at;
            *at += len;
            Some((*id, start, *len))
        })
    }

    /// The bytes as in a pack: block header, member table, payload.
    pub fn encode(&self) -> Vec<u8> {
        let header = BlockHeader {
            count: u16::try_from(self.members.len()).expect("at most MAX_BLOCK_CHUNKS members"),
            ulen: self.ulen,
            clen: u32::try_from(self.payload.len()).expect("bounded payload"),
        };
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + header.body_len());
        out.extend_from_slice(&header.encode());
        for (id, len) in &self.members {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// The block as a record to append to a pack.
    pub fn into_record(self) -> Record {
        Record {
            id: self.members[0].0,
            kind: Kind::Chunk,
            codec: CODEC_ZSTD,
            ulen: self.ulen,
            payload: self.payload,
            members: self.members,
        }
    }
}

/// Turn a run of new chunks into one block record (a single chunk into a plain record).
pub fn make_block(chunks: &[(ObjectId, &[u8])]) -> Result<Record> {
    if let [(id, data)] = chunks {
        return make_record(*id, Kind::Chunk, data);
    }
    let mut data = Vec::with_capacity(chunks.iter().map(|c| c.1.len()).sum());
    for (_, bytes) in chunks {
        data.extend_from_slice(bytes);
    }
    let payload = zstd_frame(&data).map_err(Error::Compress)?;
    Ok(Record {
        id: chunks[0].0,
        kind: Kind::Chunk,
        codec: CODEC_ZSTD,
        ulen: u32::try_from(data.len()).expect("at most MAX_BLOCK_CHUNKS chunks"),
        payload,
        members: chunks
            .iter()
            .map(|(id, c)| (*id, u32::try_from(c.len()).expect("one chunk")))
            .collect(),
    })
}

/// Decompress into exactly `ulen` bytes at most (bounded for untrusted input).
fn decompress(payload: &[u8], ulen: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut()
            .expect("set above")
            .decompress(payload, ulen.min(MAX_OBJECT_SIZE))
    })
}

/// The kind an index row gives `id`; an unknown kind is corruption, never a guess.
pub fn known_kind(id: &ObjectId, kind: u8) -> Result<Kind> {
    Kind::from_u8(kind).ok_or_else(|| Error::CorruptObject {
        id: id.to_hex(),
        detail: format!("the index gives it unknown kind {kind}"),
    })
}

/// Turn an object into a pack record (compressing it when that helps).
pub fn make_record(id: ObjectId, kind: Kind, data: &[u8]) -> Result<Record> {
    if data.len() > MAX_OBJECT_SIZE {
        return Err(Error::ObjectTooLarge {
            id: id.to_hex(),
            size: data.len(),
        });
    }
    let (codec, payload) = match compress(data).map_err(Error::Compress)? {
        Some(c) => (CODEC_ZSTD, c),
        None => (CODEC_RAW, data.to_vec()),
    };
    Ok(Record {
        id,
        kind,
        codec,
        ulen: data.len() as u32,
        payload,
        members: Vec::new(),
    })
}

/// Where new objects go: a [`WriteSession`] stores them; [`HashOnly`] only computes ids (for
/// `status` and `diff` against live data, which must not write).
pub trait ObjectSink: Sync {
    /// Claim and encode `data`, already hashed to `id`, for a later [`ObjectSink::submit`];
    /// `None` when nothing needs writing (already stored, or a sink that stores nothing).
    fn prepare(&self, id: ObjectId, kind: Kind, data: &[u8]) -> Result<Option<Record>>;

    /// Claim a run of consecutive chunks of a file and encode the new ones together as one
    /// block (see `pack`); nothing when none is new.
    fn prepare_run(&self, chunks: &[(ObjectId, &[u8])]) -> Result<Option<Record>> {
        let _ = chunks;
        Ok(None)
    }

    /// Write prepared records (one hand-off for many objects).
    fn submit(&self, records: Vec<Record>) -> Result<()>;

    /// Store `data`, already hashed to `id` (if new).
    fn put_hashed(&self, id: ObjectId, kind: Kind, data: &[u8]) -> Result<()> {
        if let Some(rec) = self.prepare(id, kind, data)? {
            self.submit(vec![rec])?;
        }
        Ok(())
    }

    /// Hash and store `data`; returns its id.
    fn put(&self, kind: Kind, data: &[u8]) -> Result<ObjectId> {
        let id = ObjectId::hash(data);
        self.put_hashed(id, kind, data)?;
        Ok(id)
    }

    /// Chunk ids of an earlier version of a file that are known to be stored, so a changed
    /// file's unchanged chunks need no index lookup. Empty when unknown.
    fn known_chunks(&self, _content: &ObjectId, _size: u64) -> HashSet<ObjectId> {
        HashSet::new()
    }
}

impl ObjectSink for WriteSession {
    fn prepare(&self, id: ObjectId, kind: Kind, data: &[u8]) -> Result<Option<Record>> {
        if self.claim(&id)? {
            return Ok(Some(make_record(id, kind, data)?));
        }
        Ok(None)
    }

    fn prepare_run(&self, chunks: &[(ObjectId, &[u8])]) -> Result<Option<Record>> {
        let ids: Vec<ObjectId> = chunks.iter().map(|c| c.0).collect();
        let stored = self.store.contains_many(&ids)?;
        let unstored: Vec<&(ObjectId, &[u8])> = chunks
            .iter()
            .zip(stored)
            .filter_map(|(c, stored)| (!stored).then_some(c))
            .collect();
        let take = self.claimed.take_run(unstored.iter().map(|c| c.0));
        let new: Vec<(ObjectId, &[u8])> = unstored
            .into_iter()
            .zip(take)
            .filter_map(|(c, take)| take.then_some(*c))
            .collect();
        if new.is_empty() {
            return Ok(None);
        }
        Ok(Some(make_block(&new)?))
    }

    fn submit(&self, records: Vec<Record>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let sender = self.sender.as_ref().expect("session not finished");
        let ids: Vec<ObjectId> = records.iter().flat_map(record_ids).collect();
        if sender.send(records).is_err() {
            // The writer thread stopped: its error explains why.
            return Err(self.writer_error());
        }
        // Only once queued: a writer that sees them handed over may send what refers to them.
        self.claimed.hand_over(ids);
        Ok(())
    }

    fn known_chunks(&self, content: &ObjectId, size: u64) -> HashSet<ObjectId> {
        // A hint only: a damaged list just means no hint.
        chunks(&self.store, content, size)
            .map(|c| c.map_while(|e| e.ok().map(|e| e.id)).collect())
            .unwrap_or_default()
    }
}

/// A sink that hashes and keeps trees in memory so they can be compared, storing nothing.
#[derive(Default)]
pub struct HashOnly {
    trees: Mutex<HashMap<ObjectId, Vec<u8>>>,
}

impl HashOnly {
    /// The bytes of a tree put into this sink, if any.
    pub fn tree(&self, id: &ObjectId) -> Option<Vec<u8>> {
        self.trees.lock().expect("tree map lock").get(id).cloned()
    }
}

impl ObjectSink for HashOnly {
    fn prepare(&self, id: ObjectId, kind: Kind, data: &[u8]) -> Result<Option<Record>> {
        if kind == Kind::Tree {
            self.trees
                .lock()
                .expect("tree map lock")
                .insert(id, data.to_vec());
        }
        Ok(None)
    }

    fn submit(&self, _records: Vec<Record>) -> Result<()> {
        Ok(())
    }
}

/// A batch of new objects being written to packs. `put` is safe to call from many threads;
/// an object already in the store or already put in this session is not written again.
pub struct WriteSession {
    store: Arc<Store>,
    /// Ids put in this session and not yet indexed (an indexing writer forgets the ids of
    /// each pack it has indexed).
    claimed: Arc<Claims>,
    sender: Option<crossbeam_channel::Sender<Vec<Record>>>,
    thread: Option<JoinHandle<Result<Vec<WrittenPack>>>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl WriteSession {
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Store an already-encoded record received from elsewhere, after verifying it, as a
    /// `kind`: the role the caller reached it in, never the sender's label (see
    /// [`Store::holds`]).
    pub fn put_verified_record(
        &self,
        kind: Kind,
        header: &RecordHeader,
        payload: Vec<u8>,
    ) -> Result<bool> {
        decode_payload(&header.id, header, &payload)?;
        if !self.claim(&header.id)? {
            return Ok(false);
        }
        self.submit(vec![Record {
            id: header.id,
            kind,
            codec: header.codec,
            ulen: header.ulen,
            payload,
            members: Vec::new(),
        }])?;
        Ok(true)
    }

    /// Store a block received from elsewhere and verified ([`RawBlock::open`]) when any of
    /// its members is new; members already stored keep their copy.
    pub fn put_verified_block(&self, block: RawBlock) -> Result<bool> {
        let mut new = false;
        for (id, _) in &block.members {
            new |= self.claim(id)?;
        }
        if new {
            self.submit(vec![block.into_record()])?;
        }
        Ok(new)
    }

    /// Whether the caller must write `id`: neither stored nor handed over by another writer of
    /// this session (see `claims`); marks it as taken.
    fn claim(&self, id: &ObjectId) -> Result<bool> {
        if self.claimed.handed_over(id) || self.store.contains(id)? {
            return Ok(false);
        }
        Ok(self.claimed.take(*id))
    }

    /// Whether this session already holds `id` or the store does.
    pub fn has(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.claimed.contains(id) || self.store.contains(id)?)
    }

    fn writer_error(&self) -> Error {
        let msg = self.failure.lock().expect("failure lock").clone();
        Error::PackWriter(msg.unwrap_or_else(|| "pack writer stopped".into()))
    }

    /// Close the session: every object put is now in durable pack files, not yet indexed.
    pub fn finish(mut self) -> Result<Vec<WrittenPack>> {
        drop(self.sender.take());
        let thread = self.thread.take().expect("finish once");
        thread
            .join()
            .map_err(|_| Error::PackWriter("pack writer panicked".into()))?
    }
}

impl Drop for WriteSession {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(t) = self.thread.take() {
            // Abandoned session: its packs are unreferenced and gc will remove them.
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a temporary directory.
    fn temp_store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("index.db");
        connect(&db, std::time::Duration::from_secs(5))
            .unwrap()
            .execute_batch(index::SCHEMA)
            .unwrap();
        let store = Arc::new(Store::open(&dir.path().join("packs"), &db).unwrap());
        (dir, store)
    }

    fn tiny(pack_target: u64, index_batch: usize) -> WriterLimits {
        WriterLimits {
            pack_target,
            index_batch,
        }
    }

    /// Two writers of one indexing session meet the same new chunk; the first is still
    /// encoding it (and is killed before it hands it over) when the second stores a list node
    /// referring to it. The node is indexed only with the chunk: the second wrote its own copy.
    #[test]
    fn a_node_is_never_indexed_without_a_chunk_another_writer_still_holds() {
        let (_dir, store) = temp_store();
        let limits = tiny(64, 1);
        let session = store.start_writer(true, limits).unwrap();
        let chunk = b"a chunk two files share".to_vec();
        let id = ObjectId::hash(&chunk);
        let held = session.prepare(id, Kind::Chunk, &chunk).unwrap();
        assert!(held.is_some(), "the first writer takes it");
        if let Some(copy) = session.prepare(id, Kind::Chunk, &chunk).unwrap() {
            session.submit(vec![copy]).unwrap();
        }
        let node = session.put(Kind::List, id.0.as_slice()).unwrap();
        drop(held);
        session.finish().unwrap();
        assert!(store.contains(&node).unwrap());
        assert!(
            store.contains(&id).unwrap(),
            "an indexed node's chunk is indexed"
        );
        // Once handed over, nobody writes it again.
        let session = store.start_writer(true, limits).unwrap();
        let other = b"another chunk".to_vec();
        let other_id = ObjectId::hash(&other);
        session.put_hashed(other_id, Kind::Chunk, &other).unwrap();
        assert!(session
            .prepare(other_id, Kind::Chunk, &other)
            .unwrap()
            .is_none());
        session.finish().unwrap();
    }

    /// An indexing writer with tiny packs and batches: every object ends up indexed, each
    /// batch is indexed before the session ends, and the session forgets what it indexed.
    #[test]
    fn indexing_writer_indexes_in_batches_and_forgets_its_claims() {
        let (_dir, store) = temp_store();
        let session = store.start_writer(true, tiny(2048, 10)).unwrap();
        // Incompressible, so each pack holds a few objects.
        let objects: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                let mut data = vec![0u8; 600];
                blake3::Hasher::new()
                    .update(&i.to_le_bytes())
                    .finalize_xof()
                    .fill(&mut data);
                data
            })
            .collect();
        let mut ids = Vec::new();
        for data in &objects {
            ids.push(session.put(Kind::Chunk, data).unwrap());
        }
        // The same bytes again write nothing new.
        assert_eq!(session.put(Kind::Chunk, &objects[0]).unwrap(), ids[0]);
        // The first batches are indexed while the session still runs, and forgotten by it.
        let t0 = std::time::Instant::now();
        while !store.contains(&ids[0]).unwrap() || session.claimed.contains(&ids[0]) {
            assert!(
                t0.elapsed().as_secs() < 30,
                "first batch never indexed and forgotten"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let packs = session.finish().unwrap();
        assert!(packs.len() > 20, "tiny packs: {}", packs.len());
        assert!(
            packs.iter().all(|p| p.entries.is_empty()),
            "indexed packs keep no entries"
        );
        assert!(store.contains_many(&ids).unwrap().into_iter().all(|b| b));
        for (id, data) in ids.iter().zip(&objects) {
            assert_eq!(&store.get(id).unwrap(), data);
        }
    }
}
