//! Pack index files on a remote (`packs/<hash>.idx`): which objects a pack holds and where.
//!
//! Layout (little-endian): `"DVOLIDX\0" u32:version u32:count`, then `count` entries of
//! `[32]id u8:kind u8:codec u16:0 u64:offset u32:clen u32:ulen` (52 bytes), then the 32-byte
//! blake3 of everything before it. Offsets point at the record header inside the pack.
//! Version 2 (written when a pack holds blocks) adds `u32:boff` to each entry (56 bytes):
//! `u32::MAX` for a record of its own, else the member's start in its block's data; then
//! `offset` is the block's and `clen` its member table and payload. Version 1 indexes (remotes
//! written by older dvols) stay readable; an index of a later version is refused by name.
//! Version 3 has version 2's layout and is written when a block in the pack is larger than
//! format 2 allowed (more than 16 chunks, up to [`MAX_BLOCK_CHUNKS`]), so a dvol that reads
//! only version 2 refuses the index by its version instead of failing on the block.

use super::RemoteError;
use crate::store::pack::{BLOCK_MEMBER_LEN, MAX_BLOCK_CHUNKS, V2_BLOCK_CHUNKS};
use crate::store::{Kind, ObjectId, CHUNK_SIZE, MAX_OBJECT_SIZE};
use crate::{Error, Result};

pub const IDX_MAGIC: &[u8; 8] = b"DVOLIDX\0";
pub const IDX_VERSION: u32 = 1;
/// Indexes of packs that hold blocks.
pub const IDX_VERSION_BLOCKS: u32 = 2;
/// Indexes of packs that hold a block larger than a format 2 block.
pub const IDX_VERSION_LARGE_BLOCKS: u32 = 3;
const ENTRY_LEN: usize = 52;
const ENTRY_LEN_BLOCKS: usize = 56;
/// Largest member table and payload of a block listed in an index: [`MAX_BLOCK_CHUNKS`]
/// members and a zstd frame of at most that many chunks (its worst-case expansion included).
pub const MAX_BLOCK_BODY: u32 = block_body_bound(MAX_BLOCK_CHUNKS);

/// The largest member table and payload of a block of `chunks` chunks.
const fn block_body_bound(chunks: usize) -> u32 {
    (chunks * BLOCK_MEMBER_LEN + 2 * chunks * CHUNK_SIZE) as u32
}

/// The index version `entries` need: 1 without blocks, 2 when every block fits format 2's
/// bounds (at most 16 members, 128 KiB of data), else 3. Members are counted per block
/// offset: short chunks (a content-defined file's) can put more than 16 in 128 KiB.
fn version_for(entries: &[IdxEntry]) -> u32 {
    let v2_data = (V2_BLOCK_CHUNKS * CHUNK_SIZE) as u64;
    let mut members: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut version = IDX_VERSION;
    for e in entries {
        if let Some(boff) = e.boff {
            version = IDX_VERSION_BLOCKS;
            let count = members.entry(e.offset).or_default();
            *count += 1;
            if *count > V2_BLOCK_CHUNKS
                || u64::from(boff) + u64::from(e.ulen) > v2_data
                || e.clen > block_body_bound(V2_BLOCK_CHUNKS)
            {
                return IDX_VERSION_LARGE_BLOCKS;
            }
        }
    }
    version
}

/// One object of a remote pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxEntry {
    pub id: ObjectId,
    pub kind: Kind,
    pub codec: u8,
    pub offset: u64,
    pub clen: u32,
    pub ulen: u32,
    /// For a block member: its start in the block's data (see the module header).
    pub boff: Option<u32>,
}

/// Encode an index in the oldest version that can describe it ([`version_for`]).
pub fn encode(entries: &[IdxEntry]) -> Vec<u8> {
    let version = version_for(entries);
    let blocks = version != IDX_VERSION;
    let len = if blocks { ENTRY_LEN_BLOCKS } else { ENTRY_LEN };
    let mut out = Vec::with_capacity(16 + entries.len() * len + 32);
    out.extend_from_slice(IDX_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id.0);
        out.push(e.kind as u8);
        out.push(e.codec);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.clen.to_le_bytes());
        out.extend_from_slice(&e.ulen.to_le_bytes());
        if blocks {
            out.extend_from_slice(&e.boff.unwrap_or(u32::MAX).to_le_bytes());
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Decode and check an index read from a remote (untrusted).
pub fn decode(name: &str, bytes: &[u8]) -> Result<Vec<IdxEntry>> {
    let bad = |why: &str| -> Error {
        RemoteError::BadIndex {
            name: name.to_string(),
            why: why.to_string(),
        }
        .into()
    };
    if bytes.len() < 16 + 32 || &bytes[..8] != IDX_MAGIC {
        return Err(bad("not a dvol pack index"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let entry_len = match version {
        IDX_VERSION => ENTRY_LEN,
        IDX_VERSION_BLOCKS | IDX_VERSION_LARGE_BLOCKS => ENTRY_LEN_BLOCKS,
        _ => {
            return Err(bad(&format!(
                "version {version}, this dvol reads versions {IDX_VERSION} to \
                 {IDX_VERSION_LARGE_BLOCKS} (a newer dvol wrote it: upgrade dvol)"
            )))
        }
    };
    let count = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let body_len = count
        .checked_mul(entry_len)
        .and_then(|n| n.checked_add(16))
        .ok_or_else(|| bad("wrong length"))?;
    if bytes.len() != body_len + 32 {
        return Err(bad("wrong length"));
    }
    if blake3::hash(&bytes[..body_len]).as_bytes() != &bytes[body_len..] {
        return Err(bad("checksum mismatch"));
    }
    let mut out = Vec::with_capacity(count);
    for e in bytes[16..body_len].chunks_exact(entry_len) {
        let kind = Kind::from_u8(e[32]).ok_or_else(|| bad("unknown object kind"))?;
        let clen = u32::from_le_bytes(e[44..48].try_into().expect("4 bytes"));
        let ulen = u32::from_le_bytes(e[48..52].try_into().expect("4 bytes"));
        if ulen as usize > MAX_OBJECT_SIZE || clen as usize > MAX_OBJECT_SIZE + 1024 {
            return Err(bad("object length over the limit"));
        }
        let boff = match entry_len {
            ENTRY_LEN_BLOCKS => block_offset(e, clen, ulen).map_err(&bad)?,
            _ => None,
        };
        out.push(IdxEntry {
            id: ObjectId::from_slice(&e[..32]).expect("32 bytes"),
            kind,
            codec: e[33],
            offset: u64::from_le_bytes(e[36..44].try_into().expect("8 bytes")),
            clen,
            ulen,
            boff,
        });
    }
    Ok(out)
}

/// The block offset of a version 2 or 3 entry, bounded: a member is one chunk inside at
/// most [`MAX_BLOCK_CHUNKS`], in a block no larger than [`MAX_BLOCK_BODY`].
fn block_offset(e: &[u8], clen: u32, ulen: u32) -> std::result::Result<Option<u32>, &'static str> {
    let boff = u32::from_le_bytes(e[52..56].try_into().expect("4 bytes"));
    if boff == u32::MAX {
        return Ok(None);
    }
    let end = u64::from(boff) + u64::from(ulen);
    if e[32] != Kind::Chunk as u8
        || ulen as usize > CHUNK_SIZE
        || end > (MAX_BLOCK_CHUNKS * CHUNK_SIZE) as u64
        || clen > MAX_BLOCK_BODY
    {
        return Err("block member out of bounds");
    }
    Ok(Some(boff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let e = IdxEntry {
            id: ObjectId::hash(b"a"),
            kind: Kind::Tree,
            codec: 1,
            offset: 16,
            clen: 10,
            ulen: 20,
            boff: None,
        };
        let bytes = encode(std::slice::from_ref(&e));
        assert_eq!(decode("x", &bytes).unwrap(), vec![e.clone()]);
        let member = IdxEntry {
            kind: Kind::Chunk,
            boff: Some(8192),
            ..e.clone()
        };
        let both = vec![e.clone(), member.clone()];
        assert_eq!(decode("x", &encode(&both)).unwrap(), both);
        assert_eq!(
            encode(&both)[8],
            2,
            "a format 2 sized block keeps version 2"
        );
        let large = IdxEntry {
            boff: Some(20 * 8192),
            ..member
        };
        let bytes = encode(std::slice::from_ref(&large));
        assert_eq!(bytes[8], 3, "a block past 16 chunks needs version 3");
        assert_eq!(decode("x", &bytes).unwrap(), vec![large.clone()]);
        // Seventeen short members inside 128 KiB: more than a format 2 block held.
        let short: Vec<IdxEntry> = (0..17u32)
            .map(|i| IdxEntry {
                id: ObjectId::hash(&i.to_le_bytes()),
                boff: Some(i * 100),
                ulen: 100,
                ..large.clone()
            })
            .collect();
        assert_eq!(encode(&short)[8], 3, "17 members need version 3");
        assert_eq!(encode(&short[..16])[8], 2);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(decode("x", &bad).is_err());
    }
}
