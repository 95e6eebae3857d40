//! Remotes built by hand, byte by byte, for the hostile-remote tests: a pack of records (and
//! whatever else a test appends to it, such as a block) with its index, the remote's marker
//! and one branch. Nothing here checks what it writes: lying is the point.

use dvol::remote::idx::{self, IdxEntry};
use dvol::store::pack::{pack_header, RecordHeader};
use dvol::store::{make_record, Kind, ObjectId};
use std::path::Path;

/// A pack being written by hand: its bytes and its index entries, in order.
pub struct HandPack {
    pub bytes: Vec<u8>,
    pub entries: Vec<IdxEntry>,
}

impl Default for HandPack {
    fn default() -> HandPack {
        HandPack {
            bytes: pack_header().to_vec(),
            entries: Vec::new(),
        }
    }
}

impl HandPack {
    /// Append `data` as a record of `kind` (compressed when that helps) and index it.
    pub fn record(&mut self, kind: Kind, data: &[u8]) -> ObjectId {
        let rec = make_record(ObjectId::hash(data), kind, data).unwrap();
        let header = RecordHeader {
            id: rec.id,
            kind: rec.kind,
            codec: rec.codec,
            ulen: rec.ulen,
            clen: rec.payload.len() as u32,
        };
        self.entries.push(IdxEntry {
            id: rec.id,
            kind: rec.kind,
            codec: rec.codec,
            offset: self.bytes.len() as u64,
            clen: header.clen,
            ulen: rec.ulen,
            boff: None,
        });
        self.bytes.extend_from_slice(&header.encode());
        self.bytes.extend_from_slice(&rec.payload);
        rec.id
    }

    /// Write a path remote at `dir` holding this pack, with `volume`'s `master` at `head`.
    pub fn write_remote(&self, dir: &Path, volume: &str, head: ObjectId) {
        let name = blake3::hash(&self.bytes).to_hex().to_string();
        let heads = dir.join(format!("refs/{volume}/heads"));
        std::fs::create_dir_all(dir.join("packs")).unwrap();
        std::fs::create_dir_all(&heads).unwrap();
        std::fs::write(
            dir.join("dvol-remote.json"),
            r#"{"format":"dvol-remote","version":1}"#,
        )
        .unwrap();
        std::fs::write(dir.join(format!("packs/{name}.pack")), &self.bytes).unwrap();
        std::fs::write(
            dir.join(format!("packs/{name}.idx")),
            idx::encode(&self.entries),
        )
        .unwrap();
        std::fs::write(heads.join("master"), format!("{}\n", head.to_hex())).unwrap();
    }
}
