//! The remote's pack indexes: which objects the remote holds and where. Indexes are immutable,
//! so they are cached locally and downloaded once.

use super::records::get_idx;
use crate::remote::crypt::Seal;
use crate::remote::idx::IdxEntry;
use crate::remote::Backend;
use crate::store::{Kind, ObjectId};
use crate::Result;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Where an object lives on the remote.
#[derive(Clone, Debug)]
pub struct RemoteLoc {
    pub pack: Arc<str>,
    pub entry: IdxEntry,
}

/// Every object listed in the remote's pack indexes, with every further copy of an object
/// that more than one pack holds (a `push --repair` adds good copies beside a bad one; a
/// reader that finds a copy corrupt tries the next).
#[derive(Default)]
pub struct RemoteIndex {
    first: HashMap<ObjectId, RemoteLoc>,
    more: HashMap<ObjectId, Vec<RemoteLoc>>,
}

impl RemoteIndex {
    /// The first known copy of `id`.
    pub fn get(&self, id: &ObjectId) -> Option<&RemoteLoc> {
        self.first.get(id)
    }

    /// Copy number `n` of `id` (0: the first).
    pub fn copy(&self, id: &ObjectId, n: usize) -> Option<&RemoteLoc> {
        match n {
            0 => self.first.get(id),
            n => self.more.get(id).and_then(|v| v.get(n - 1)),
        }
    }

    /// Whether the remote holds `id` (a remote id) with everything it reaches as a `kind`: a
    /// chunk (a leaf) in any copy, any other kind only in a copy stored as that kind (a pusher
    /// stores an object as a kind after what it reaches as that kind; see
    /// [`crate::store::Store::holds`]).
    pub fn holds(&self, id: &ObjectId, kind: Kind) -> bool {
        if kind == Kind::Chunk {
            return self.contains_key(id);
        }
        (0..)
            .map_while(|n| self.copy(id, n))
            .any(|loc| loc.entry.kind == kind)
    }

    pub fn contains_key(&self, id: &ObjectId) -> bool {
        self.first.contains_key(id)
    }

    /// Every copy of every object, grouped by pack.
    pub fn by_pack(&self) -> HashMap<Arc<str>, Vec<&IdxEntry>> {
        let mut out: HashMap<Arc<str>, Vec<&IdxEntry>> = HashMap::new();
        let all = self.first.values().chain(self.more.values().flatten());
        for loc in all {
            out.entry(loc.pack.clone()).or_default().push(&loc.entry);
        }
        out
    }

    /// Add the entries of one pack's index.
    pub fn add_pack(&mut self, pack: &Arc<str>, entries: Vec<IdxEntry>) {
        for entry in entries {
            self.add(RemoteLoc {
                pack: pack.clone(),
                entry,
            });
        }
    }

    fn add(&mut self, loc: RemoteLoc) {
        match self.first.entry(loc.entry.id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(loc);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(loc.entry.id).or_default().push(loc)
            }
        }
    }
}

/// Every object listed in the remote's pack indexes, by remote id ([`Seal::remote_id`]).
/// Indexes are immutable, so they are cached (as stored) under `cache` and downloaded once.
pub fn remote_index(backend: &dyn Backend, cache: &Path, seal: &Seal) -> Result<RemoteIndex> {
    let mut out = RemoteIndex::default();
    for (pack, entries) in remote_packs(backend, Some(cache), seal)? {
        out.add_pack(&pack, entries);
    }
    Ok(out)
}

/// Every object listed in the remote's pack indexes, read from the remote (no cache).
pub fn fresh_remote_index(backend: &dyn Backend, seal: &Seal) -> Result<RemoteIndex> {
    let mut out = RemoteIndex::default();
    for (pack, entries) in remote_packs(backend, None, seal)? {
        out.add_pack(&pack, entries);
    }
    Ok(out)
}

/// Every indexed pack of the remote (`packs/<hash>.pack`) with its index entries; indexes
/// are read from `cache` when given (and stored there).
pub fn remote_packs(
    backend: &dyn Backend,
    cache: Option<&Path>,
    seal: &Seal,
) -> Result<Vec<(Arc<str>, Vec<IdxEntry>)>> {
    let mut out = Vec::new();
    let idx_dir = cache.map(|c| c.join("idx"));
    for key in backend.list("packs/")? {
        let Some(stem) = key
            .strip_prefix("packs/")
            .and_then(|k| k.strip_suffix(".idx"))
        else {
            continue;
        };
        let cached = idx_dir.as_ref().map(|d| d.join(format!("{stem}.idx")));
        let entries = match cached
            .as_ref()
            .and_then(|c| std::fs::read(c).ok())
            .and_then(|b| crate::remote::idx::decode(&key, &seal.open_index(&key, b).ok()?).ok())
        {
            Some(e) => e,
            None => {
                let Some((bytes, e)) = get_idx(backend, &key, seal)? else {
                    continue;
                };
                // The cache is only an optimisation: failing to write it is not an error.
                if let Some(cached) = &cached {
                    let _ = crate::snapshot::write_atomic(cached, &bytes);
                }
                e
            }
        };
        out.push((Arc::from(format!("packs/{stem}.pack")), entries));
    }
    Ok(out)
}
