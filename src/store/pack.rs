//! Pack files: many compressed objects appended to one file, each behind a fixed header that
//! repeats its id so a pack can be verified (and its index rebuilt) on its own.
//!
//! Layout (all integers little-endian), see docs/format.md:
//! `"DVOLPACK" u32:version u32:0`, then records `"DVOB" [32]id u8:kind u8:codec u16:0
//! u32:ulen u32:clen payload[clen]`. Codec 0 = raw, 1 = zstd.
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
pub const PACK_VERSION: u32 = 1;
pub const PACK_HEADER_LEN: u64 = 16;
pub const RECORD_MAGIC: &[u8; 4] = b"DVOB";
pub const RECORD_HEADER_LEN: usize = 48;
/// Packs are closed once they pass this size.
pub const PACK_TARGET_SIZE: u64 = 64 << 20;

pub const CODEC_RAW: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

/// One object ready to be appended: id, kind and its (possibly compressed) payload.
pub struct Record {
    pub id: ObjectId,
    pub kind: Kind,
    pub codec: u8,
    pub ulen: u32,
    pub payload: Vec<u8>,
}

/// Where an object landed inside a pack.
#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub id: ObjectId,
    pub kind: Kind,
    pub offset: u64,
    pub clen: u32,
    pub ulen: u32,
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

/// Encode the 16-byte pack header.
pub fn pack_header() -> [u8; PACK_HEADER_LEN as usize] {
    let mut h = [0u8; PACK_HEADER_LEN as usize];
    h[0..8].copy_from_slice(PACK_MAGIC);
    h[8..12].copy_from_slice(&PACK_VERSION.to_le_bytes());
    h
}

/// Check a pack header read from disk or the network.
pub fn check_pack_header(h: &[u8], what: &str) -> Result<()> {
    if h.len() < PACK_HEADER_LEN as usize || &h[0..8] != PACK_MAGIC {
        return Err(Error::Format(format!("{what} is not a dvol pack")));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != PACK_VERSION {
        return Err(Error::Format(format!(
            "{what} has pack version {version}; this dvol reads version {PACK_VERSION}"
        )));
    }
    Ok(())
}

/// Appends records to a sequence of pack files in `dir`, closing each at [`PACK_TARGET_SIZE`].
pub struct PackWriter {
    dir: PathBuf,
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
        PackWriter {
            dir: dir.to_path_buf(),
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
        let header = RecordHeader {
            id: rec.id,
            kind: rec.kind,
            codec: rec.codec,
            ulen: rec.ulen,
            clen: rec.payload.len() as u32,
        }
        .encode();
        let offset = pack.size;
        pack.hasher.update(&header);
        pack.write(&header, &self.dir)?;
        pack.write(&rec.payload, &self.dir)?;
        pack.entries.push(IndexEntry {
            id: rec.id,
            kind: rec.kind,
            offset,
            clen: rec.payload.len() as u32,
            ulen: rec.ulen,
        });
        crate::failpoint::hit("pack.after-record");
        if pack.size >= PACK_TARGET_SIZE {
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
        pack.write(&pack_header(), &self.dir)?;
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
