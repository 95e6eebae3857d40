//! The stat cache: for each file of a branch's live directory, the (size, mtime, ctime, inode)
//! seen when its content id was last computed or written. A commit trusts the cached id while
//! the stat is unchanged, so its cost follows the changed bytes, not the volume size.
//!
//! It is derived data: a missing or damaged cache only makes the next commit re-hash.
//! Entries whose ctime is too close to the scan start are not trusted ("racy" files, as in git).

use crate::error::IoContext;
use crate::live::Stat;
use crate::store::ObjectId;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"DVSTAT01";

/// What was seen of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub content: Option<ObjectId>,
}

impl CacheEntry {
    pub fn new(st: &Stat, content: Option<ObjectId>) -> CacheEntry {
        CacheEntry {
            size: st.size(),
            mtime_ns: st.mtime_ns(),
            ctime_ns: st.ctime_ns(),
            ino: st.ino(),
            content,
        }
    }

    /// Whether `md` shows the same file, unchanged since this entry was made.
    pub fn matches(&self, st: &Stat) -> bool {
        let now = CacheEntry::new(st, self.content);
        now == *self
    }

    /// Whether a change made right after the file was read (which began at `read_start_ns`)
    /// could keep the same timestamps and go unnoticed. File timestamps come from a coarse
    /// clock (one tick is at most 10 ms); a write after the read gets a timestamp at least
    /// `read_start - 1 tick`, so timestamps older than two ticks before the read are safe.
    /// File systems with whole-second timestamps need two seconds.
    pub fn is_racy(&self, read_start_ns: i64) -> bool {
        let coarse = self.ctime_ns % 1_000_000_000 == 0 && self.mtime_ns % 1_000_000_000 == 0;
        let margin = if coarse { 2_000_000_000 } else { 20_000_000 };
        self.ctime_ns >= read_start_ns - margin || self.mtime_ns >= read_start_ns - margin
    }
}

/// Relative path (bytes) to what was seen.
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatCache {
    pub entries: HashMap<Vec<u8>, CacheEntry>,
}

impl StatCache {
    /// Load a cache file; a missing, foreign or damaged file gives an empty cache.
    pub fn load(path: &Path) -> StatCache {
        let Ok(bytes) = std::fs::read(path) else {
            return StatCache::default();
        };
        StatCache::decode(&bytes).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<StatCache> {
        let body = bytes.strip_prefix(MAGIC)?;
        let (body, sum) = body.split_at(body.len().checked_sub(32)?);
        if blake3::hash(body).as_bytes() != sum {
            return None;
        }
        postcard::from_bytes(body).ok()
    }

    /// Write the cache atomically (temp file, rename; no fsync: it is derived data, and an
    /// older cache is still correct because every entry is checked against the file's stat).
    pub fn save(&self, path: &Path) -> Result<()> {
        // Encoded in place after the magic: one copy of the encoding in memory, not two.
        let mut bytes = postcard::to_extend(self, MAGIC.to_vec()).expect("cache serializes");
        let sum = blake3::hash(&bytes[MAGIC.len()..]);
        bytes.extend_from_slice(sum.as_bytes());
        crate::snapshot::replace_file(path, &bytes, false)
    }

    /// Remove a cache file (the branch is gone).
    pub fn remove(path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("remove", path),
            _ => Ok(()),
        }
    }

    /// Every content id the cache refers to (gc keeps them alive).
    pub fn contents(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.entries.values().filter_map(|e| e.content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut c = StatCache::default();
        c.entries.insert(
            b"a/b".to_vec(),
            CacheEntry {
                size: 1,
                mtime_ns: 2,
                ctime_ns: 3,
                ino: 4,
                content: Some(ObjectId::hash(b"x")),
            },
        );
        c.save(&path).unwrap();
        assert_eq!(StatCache::load(&path), c);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(StatCache::load(&path), StatCache::default());
    }
}
