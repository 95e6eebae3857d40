//! One directory's row of the stat cache: what was seen of its files (by name) and the names of
//! its subdirectories, encoded compactly (postcard varints, ctime as a delta from mtime) with a
//! checksum. Decoding never trusts a row that fails its checksum or its order: it gives `None`,
//! and the directory is treated as uncached. Knows nothing of SQLite.

use super::CacheEntry;
use crate::store::ObjectId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version byte at the start of every row.
const ROW_VERSION: u8 = 1;
/// Bytes of blake3 checksum at the end of every row.
const SUM_LEN: usize = 8;

/// What the cache holds for one name of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A regular file whose content is known for this stat.
    File(CacheEntry),
    /// A subdirectory (its own row lives under its path); listed so that a subdirectory that
    /// disappears has its rows removed.
    Dir,
}

/// The cached entries of one directory, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirCache {
    pub entries: BTreeMap<Vec<u8>, Slot>,
}

/// The encoded form of one entry.
#[derive(Serialize, Deserialize)]
enum Packed {
    File {
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        size: u64,
        mtime_ns: i64,
        /// `ctime_ns - mtime_ns`: usually zero or small.
        ctime_delta: i64,
        ino: u64,
        content: Option<ObjectId>,
    },
    Dir(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl DirCache {
    /// The cached entry of file `name`, if any.
    pub fn file(&self, name: &[u8]) -> Option<&CacheEntry> {
        match self.entries.get(name) {
            Some(Slot::File(e)) => Some(e),
            _ => None,
        }
    }

    /// Names of the subdirectories the row lists.
    pub fn dirs(&self) -> impl Iterator<Item = &[u8]> {
        self.entries
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Dir))
            .map(|(n, _)| n.as_slice())
    }

    pub fn insert_file(&mut self, name: &[u8], entry: CacheEntry) {
        self.entries.insert(name.to_vec(), Slot::File(entry));
    }

    pub fn insert_dir(&mut self, name: &[u8]) {
        self.entries.insert(name.to_vec(), Slot::Dir);
    }

    pub fn encode(&self) -> Vec<u8> {
        let packed: Vec<Packed> = self.entries.iter().map(|(n, s)| pack(n, s)).collect();
        let mut out = postcard::to_extend(&packed, vec![ROW_VERSION]).expect("row serializes");
        let sum = blake3::hash(&out);
        out.extend_from_slice(&sum.as_bytes()[..SUM_LEN]);
        out
    }

    /// Decode a row; `None` when it is damaged, of another version or out of order.
    pub fn decode(bytes: &[u8]) -> Option<DirCache> {
        let (body, sum) = bytes.split_at(bytes.len().checked_sub(SUM_LEN)?);
        if &blake3::hash(body).as_bytes()[..SUM_LEN] != sum {
            return None;
        }
        let packed: Vec<Packed> = postcard::from_bytes(body.strip_prefix(&[ROW_VERSION])?).ok()?;
        let mut out = DirCache::default();
        let mut last: Option<Vec<u8>> = None;
        for p in packed {
            let (name, slot) = unpack(p)?;
            if last.as_ref().is_some_and(|l| *l >= name) {
                return None;
            }
            last = Some(name.clone());
            out.entries.insert(name, slot);
        }
        Some(out)
    }
}

fn pack(name: &[u8], slot: &Slot) -> Packed {
    match slot {
        Slot::File(e) => Packed::File {
            name: name.to_vec(),
            size: e.size,
            mtime_ns: e.mtime_ns,
            ctime_delta: e.ctime_ns.wrapping_sub(e.mtime_ns),
            ino: e.ino,
            content: e.content,
        },
        Slot::Dir => Packed::Dir(name.to_vec()),
    }
}

fn unpack(p: Packed) -> Option<(Vec<u8>, Slot)> {
    Some(match p {
        Packed::File {
            name,
            size,
            mtime_ns,
            ctime_delta,
            ino,
            content,
        } => (
            name,
            Slot::File(CacheEntry {
                size,
                mtime_ns,
                ctime_ns: mtime_ns.wrapping_add(ctime_delta),
                ino,
                content,
            }),
        ),
        Packed::Dir(name) => (name, Slot::Dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DirCache {
        let mut d = DirCache::default();
        d.insert_file(
            b"b",
            CacheEntry {
                size: 7,
                mtime_ns: 1_700_000_000_123_456_789,
                ctime_ns: 1_700_000_000_223_456_789,
                ino: 42,
                content: Some(ObjectId::hash(b"x")),
            },
        );
        d.insert_dir(b"a");
        d.insert_file(
            b"c",
            CacheEntry {
                size: 0,
                mtime_ns: -5,
                ctime_ns: i64::MAX,
                ino: 1,
                content: None,
            },
        );
        d
    }

    #[test]
    fn round_trips_and_lists_dirs() {
        let d = sample();
        let back = DirCache::decode(&d.encode()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.dirs().collect::<Vec<_>>(), vec![b"a".as_slice()]);
        assert!(back.file(b"a").is_none());
        assert_eq!(back.file(b"b").unwrap().ino, 42);
    }

    /// Any flipped bit, a cut row or another version is refused, never decoded into entries.
    #[test]
    fn damaged_rows_are_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            for bit in [1u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert_eq!(DirCache::decode(&bad), None, "byte {i}");
            }
        }
        for n in 0..bytes.len() {
            assert_eq!(DirCache::decode(&bytes[..n]), None);
        }
    }
}
