//! Pack index files on a remote (`packs/<hash>.idx`): which objects a pack holds and where.
//!
//! Layout (little-endian): `"DVOLIDX\0" u32:version u32:count`, then `count` entries of
//! `[32]id u8:kind u8:codec u16:0 u64:offset u32:clen u32:ulen` (52 bytes), then the 32-byte
//! blake3 of everything before it. Offsets point at the record header inside the pack.

use super::RemoteError;
use crate::store::{Kind, ObjectId, MAX_OBJECT_SIZE};
use crate::{Error, Result};

pub const IDX_MAGIC: &[u8; 8] = b"DVOLIDX\0";
pub const IDX_VERSION: u32 = 1;
const ENTRY_LEN: usize = 52;

/// One object of a remote pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxEntry {
    pub id: ObjectId,
    pub kind: Kind,
    pub codec: u8,
    pub offset: u64,
    pub clen: u32,
    pub ulen: u32,
}

/// Encode an index.
pub fn encode(entries: &[IdxEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * ENTRY_LEN + 32);
    out.extend_from_slice(IDX_MAGIC);
    out.extend_from_slice(&IDX_VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id.0);
        out.push(e.kind as u8);
        out.push(e.codec);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.clen.to_le_bytes());
        out.extend_from_slice(&e.ulen.to_le_bytes());
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
    if version != IDX_VERSION {
        return Err(bad(&format!(
            "version {version}, this dvol reads {IDX_VERSION}"
        )));
    }
    let count = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let body_len = 16 + count * ENTRY_LEN;
    if bytes.len() != body_len + 32 {
        return Err(bad("wrong length"));
    }
    if blake3::hash(&bytes[..body_len]).as_bytes() != &bytes[body_len..] {
        return Err(bad("checksum mismatch"));
    }
    let mut out = Vec::with_capacity(count);
    for e in bytes[16..body_len].chunks_exact(ENTRY_LEN) {
        let kind = Kind::from_u8(e[32]).ok_or_else(|| bad("unknown object kind"))?;
        let clen = u32::from_le_bytes(e[44..48].try_into().expect("4 bytes"));
        let ulen = u32::from_le_bytes(e[48..52].try_into().expect("4 bytes"));
        if ulen as usize > MAX_OBJECT_SIZE || clen as usize > MAX_OBJECT_SIZE + 1024 {
            return Err(bad("object length over the limit"));
        }
        out.push(IdxEntry {
            id: ObjectId::from_slice(&e[..32]).expect("32 bytes"),
            kind,
            codec: e[33],
            offset: u64::from_le_bytes(e[36..44].try_into().expect("8 bytes")),
            clen,
            ulen,
        });
    }
    Ok(out)
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
        };
        let bytes = encode(std::slice::from_ref(&e));
        assert_eq!(decode("x", &bytes).unwrap(), vec![e]);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(decode("x", &bad).is_err());
    }
}
