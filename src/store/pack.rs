//! Pack files: many compressed objects appended to one file, each behind a fixed header that
//! repeats its id so a pack can be verified (and its index rebuilt) on its own.
//!
//! Layout (all integers little-endian), see docs/format.md:
//! `"DVOLPACK" u32:version u32:0`, then records `"DVOB" [32]id u8:kind u8:codec u16:0
//! u32:ulen u32:clen payload[clen]`. Codec 0 = raw, 1 = zstd.
//! Pack version 2 (the local store, format 2) adds blocks: `"DVBK" [32]0 u8:kind(chunk)
//! u8:codec(zstd) u16:count u32:ulen u32:clen`, then `count` members `[32]id u32:len`, then
//! one zstd frame of the members' bytes concatenated (`ulen`), `clen` bytes. Runs of up to
//! [`MAX_BLOCK_CHUNKS`] new chunks are compressed together; dedup stays per chunk.
//! A pack is written under a temporary name, fsynced, and renamed to `<blake3 of its index>.pack`
//! (the hash of every record header it holds: unique, and cheap compared to hashing the data
//! again; each record's payload is verified against its own id on read).

use super::{Kind, ObjectId, MAX_OBJECT_SIZE};
use crate::error::IoContext;
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub const PACK_MAGIC: &[u8; 8] = b"DVOLPACK";
/// Packs of per-object records only: every remote pack, and local packs before format 2.
pub const PACK_VERSION: u32 = 1;
/// Local packs that may hold blocks.
pub const PACK_VERSION_BLOCKS: u32 = 2;
pub const BLOCK_MAGIC: &[u8; 4] = b"DVBK";
/// Chunks compressed together in one block at most (256 KiB of data; format 3).
pub const MAX_BLOCK_CHUNKS: usize = 32;
/// The most members a format 2 block held (128 KiB): what dvols before format 3 accept.
pub const V2_BLOCK_CHUNKS: usize = 16;
/// Bytes of one member-table entry: id and length.
pub const BLOCK_MEMBER_LEN: usize = 36;
pub const PACK_HEADER_LEN: u64 = 16;
pub const RECORD_MAGIC: &[u8; 4] = b"DVOB";
pub const RECORD_HEADER_LEN: usize = 48;
/// Packs are closed once they pass this size.
pub const PACK_TARGET_SIZE: u64 = 64 << 20;

pub const CODEC_RAW: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

/// One object ready to be appended: id, kind and its (possibly compressed) payload; or a
/// block of chunks (`members` not empty: their ids and lengths, `payload` one zstd frame of
/// them all, `ulen` their total, `id` unused).
pub struct Record {
    pub id: ObjectId,
    pub kind: Kind,
    pub codec: u8,
    pub ulen: u32,
    pub payload: Vec<u8>,
    pub members: Vec<(ObjectId, u32)>,
}

/// Where an object landed inside a pack.
#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub id: ObjectId,
    pub kind: Kind,
    pub offset: u64,
    pub clen: u32,
    pub ulen: u32,
    /// For a block member: where its bytes start in the block's uncompressed data (then
    /// `offset` and `clen` are the block's).
    pub boff: Option<u32>,
}

/// A finished, durable pack file and the objects in it.
#[derive(Debug)]
pub struct WrittenPack {
    pub name: String,
    pub size: u64,
    pub entries: Vec<IndexEntry>,
}

/// The fixed header in front of every record.
#[derive(Debug, PartialEq)]
pub struct RecordHeader {
    pub id: ObjectId,
    pub kind: Kind,
    pub codec: u8,
    pub ulen: u32,
    pub clen: u32,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(RECORD_MAGIC);
        h[4..36].copy_from_slice(&self.id.0);
        h[36] = self.kind as u8;
        h[37] = self.codec;
        h[40..44].copy_from_slice(&self.ulen.to_le_bytes());
        h[44..48].copy_from_slice(&self.clen.to_le_bytes());
        h
    }

    /// Decode and sanity-check a header; never trusts lengths beyond the object size limit.
    pub fn decode(h: &[u8]) -> std::result::Result<Self, String> {
        if h.len() < RECORD_HEADER_LEN || &h[0..4] != RECORD_MAGIC {
            return Err("bad record magic".into());
        }
        let kind = Kind::from_u8(h[36]).ok_or_else(|| format!("unknown kind {}", h[36]))?;
        let codec = h[37];
        if codec > CODEC_ZSTD {
            return Err(format!("unknown codec {codec}"));
        }
        let ulen = u32::from_le_bytes(h[40..44].try_into().expect("4 bytes"));
        let clen = u32::from_le_bytes(h[44..48].try_into().expect("4 bytes"));
        if ulen as usize > MAX_OBJECT_SIZE || clen as usize > MAX_OBJECT_SIZE + 1024 {
            return Err(format!("object length {ulen}/{clen} over the limit"));
        }
        if codec == CODEC_RAW && ulen != clen {
            return Err("raw record with differing lengths".into());
        }
        Ok(RecordHeader {
            id: ObjectId::from_slice(&h[4..36]).expect("32 bytes"),
            kind,
            codec,
            ulen,
            clen,
        })
    }
}

/// The fixed header in front of a block (then its member table and payload).
#[derive(Debug, PartialEq)]
pub struct BlockHeader {
    pub count: u16,
    pub ulen: u32,
    pub clen: u32,
}

impl BlockHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(BLOCK_MAGIC);
        h[36] = Kind::Chunk as u8;
        h[37] = CODEC_ZSTD;
        h[38..40].copy_from_slice(&self.count.to_le_bytes());
        h[40..44].copy_from_slice(&self.ulen.to_le_bytes());
        h[44..48].copy_from_slice(&self.clen.to_le_bytes());
        h
    }

    /// Bytes after the header: member table and payload.
    pub fn body_len(&self) -> usize {
        usize::from(self.count) * BLOCK_MEMBER_LEN + self.clen as usize
    }

    /// Decode and bound a block header: 1..=[`MAX_BLOCK_CHUNKS`] members of at most one chunk each, and a
    /// payload no larger than the object size limit, before anything is allocated.
    pub fn decode(h: &[u8]) -> std::result::Result<Self, String> {
        if h.len() < RECORD_HEADER_LEN || &h[0..4] != BLOCK_MAGIC {
            return Err("bad block magic".into());
        }
        if h[36] != Kind::Chunk as u8 || h[37] != CODEC_ZSTD {
            return Err(format!("block of kind {} codec {}", h[36], h[37]));
        }
        let count = u16::from_le_bytes([h[38], h[39]]);
        let ulen = u32::from_le_bytes(h[40..44].try_into().expect("4 bytes"));
        let clen = u32::from_le_bytes(h[44..48].try_into().expect("4 bytes"));
        let most = MAX_BLOCK_CHUNKS * super::CHUNK_SIZE;
        if count == 0 || usize::from(count) > MAX_BLOCK_CHUNKS || ulen as usize > most {
            return Err(format!(
                "block of {count} members, {ulen} bytes, over the limit"
            ));
        }
        if clen as usize > MAX_OBJECT_SIZE {
            return Err(format!("block payload of {clen} bytes over the limit"));
        }
        Ok(BlockHeader { count, ulen, clen })
    }
}

/// Encode the 16-byte pack header of `version`.
pub fn pack_header_of(version: u32) -> [u8; PACK_HEADER_LEN as usize] {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    h[0..8].copy_from_slice(PACK_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h
}

/// Encode the 16-byte header of a pack of per-object records (what remotes hold).
pub fn pack_header() -> [u8; PACK_HEADER_LEN as usize] {
    pack_header_of(PACK_VERSION)
}

/// Check a pack header read from disk or the network.
pub fn check_pack_header(h: &[u8], what: &str) -> Result<()> {
    if h.len() < PACK_HEADER_LEN as usize || &h[0..8] != PACK_MAGIC {
        return Err(Error::Format(format!("{what} is not a dvol pack")));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if !(PACK_VERSION..=PACK_VERSION_BLOCKS).contains(&version) {
        return Err(Error::Format(format!(
            "{what} has pack version {version}; this dvol reads versions {PACK_VERSION} and \
             {PACK_VERSION_BLOCKS}"
        )));
    }
    Ok(())
}

/// Appends records to a sequence of pack files in `dir`, closing each at [`PACK_TARGET_SIZE`].
pub struct PackWriter {
    dir: PathBuf,
    target: u64,
    current: Option<OpenPack>,
    done: Vec<WrittenPack>,
}

struct OpenPack {
    tmp: tempfile::NamedTempFile,
    out: BufWriter<File>,
    hasher: blake3::Hasher,
    size: u64,
    entries: Vec<IndexEntry>,
}

impl PackWriter {
    pub fn new(dir: &Path) -> Self {
        PackWriter::with_target(dir, PACK_TARGET_SIZE)
    }

    /// A writer closing each pack once it reaches `target` bytes.
    pub fn with_target(dir: &Path, target: u64) -> Self {
        PackWriter {
            dir: dir.to_path_buf(),
            target,
            current: None,
            done: Vec::new(),
        }
    }

    /// Append one record, rolling over to a new pack when the current one is full.
    pub fn append(&mut self, rec: Record) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(self.open()?);
        }
        let pack = self.current.as_mut().expect("opened above");
        let offset = pack.size;
        let clen = u32::try_from(rec.payload.len()).expect("payload bounded by the object limit");
        if rec.members.is_empty() {
            let header = RecordHeader {
                id: rec.id,
                kind: rec.kind,
                codec: rec.codec,
                ulen: rec.ulen,
                clen,
            }
            .encode();
            pack.hasher.update(&header);
            pack.write(&header, &self.dir)?;
            pack.entries.push(IndexEntry {
                id: rec.id,
                kind: rec.kind,
                offset,
                clen,
                ulen: rec.ulen,
                boff: None,
            });
        } else {
            let header = BlockHeader {
                count: u16::try_from(rec.members.len()).expect("at most 16 members"),
                ulen: rec.ulen,
                clen,
            }
            .encode();
            let mut table = Vec::with_capacity(rec.members.len() * BLOCK_MEMBER_LEN);
            let mut boff = 0u32;
            for (id, len) in &rec.members {
                table.extend_from_slice(&id.0);
                table.extend_from_slice(&len.to_le_bytes());
                pack.entries.push(IndexEntry {
                    id: *id,
                    kind: Kind::Chunk,
                    offset,
                    clen,
                    ulen: *len,
                    boff: Some(boff),
                });
                boff += len;
            }
            pack.hasher.update(&header);
            pack.hasher.update(&table);
            pack.write(&header, &self.dir)?;
            pack.write(&table, &self.dir)?;
        }
        pack.write(&rec.payload, &self.dir)?;
        crate::failpoint::hit("pack.after-record");
        if pack.size >= self.target {
            self.close_current()?;
        }
        Ok(())
    }

    /// Packs closed (durable) since the last call.
    pub fn take_closed(&mut self) -> Vec<WrittenPack> {
        std::mem::take(&mut self.done)
    }

    /// Make every pack durable and return those not yet taken.
    pub fn finish(mut self) -> Result<Vec<WrittenPack>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }

    fn open(&self) -> Result<OpenPack> {
        let tmp = tempfile::Builder::new()
            .prefix("tmp-")
            .suffix(".pack")
            .tempfile_in(&self.dir)
            .at("create pack in", &self.dir)?;
        let file = tmp.reopen().at("open pack", tmp.path())?;
        let mut pack = OpenPack {
            out: BufWriter::with_capacity(1 << 20, file),
            tmp,
            hasher: blake3::Hasher::new(),
            size: 0,
            entries: Vec::new(),
        };
        pack.write(&pack_header_of(PACK_VERSION_BLOCKS), &self.dir)?;
        Ok(pack)
    }

    fn close_current(&mut self) -> Result<()> {
        let Some(mut pack) = self.current.take() else {
            return Ok(());
        };
        pack.out.flush().at("write pack in", &self.dir)?;
        pack.out
            .get_ref()
            .sync_all()
            .at("fsync pack in", &self.dir)?;
        let name = format!("{}.pack", pack.hasher.finalize().to_hex());
        let path = self.dir.join(&name);
        pack.tmp
            .persist(&path)
            .map_err(|e| e.error)
            .at("rename pack to", &path)?;
        sync_dir(&self.dir)?;
        self.done.push(WrittenPack {
            name,
            size: pack.size,
            entries: pack.entries,
        });
        Ok(())
    }
}

impl OpenPack {
    fn write(&mut self, bytes: &[u8], dir: &Path) -> Result<()> {
        self.out.write_all(bytes).at("write pack in", dir)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

/// fsync a directory so renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("fsync directory", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_limits() {
        let h = RecordHeader {
            id: ObjectId::hash(b"x"),
            kind: Kind::Tree,
            codec: CODEC_ZSTD,
            ulen: 10,
            clen: 7,
        };
        assert_eq!(RecordHeader::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(RecordHeader::decode(&bad).is_err());
        assert!(RecordHeader::decode(b"short").is_err());
    }
}
