//! What a write session is writing and not yet indexed: each object is either taken (a
//! writer is still encoding it, or holds it to hand over with others) or handed over (it is in
//! the pack writer's queue, ahead of anything sent after it).
//!
//! The rule this module owns: a writer that finds an object taken but not handed over writes
//! its own copy. Whatever it builds next may refer to the object (a chunk-list node to its
//! chunks), and an indexing session indexes packs as they close, so the reference must never
//! reach the pack writer before the object: a kill between the two would leave an indexed
//! node whose chunk is nowhere. A duplicate costs one record (the pack writer drops the
//! repeats it sees; the index keeps one copy). This module does not read the store or write
//! packs.

use super::ObjectId;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The claims of one write session. `true`: handed over to the pack writer.
#[derive(Default)]
pub struct Claims {
    map: Mutex<HashMap<ObjectId, bool>>,
}

impl Claims {
    /// Whether `id` is already on its way to the pack writer (nothing more to write).
    pub fn handed_over(&self, id: &ObjectId) -> bool {
        self.lock().get(id).copied().unwrap_or(false)
    }

    /// Whether this session writes or wrote `id`, handed over or not.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.lock().contains_key(id)
    }

    /// Whether the caller must write `id`: `false` only once another writer has handed it
    /// over. Marks it taken when nobody had.
    pub fn take(&self, id: ObjectId) -> bool {
        take_in(&mut self.lock(), id)
    }

    /// [`Claims::take`] for each of `ids` under one lock; an id repeated in `ids` is written
    /// once (its first place).
    pub fn take_run(&self, ids: impl IntoIterator<Item = ObjectId>) -> Vec<bool> {
        let mut map = self.lock();
        let mut in_run = HashSet::new();
        ids.into_iter()
            .map(|id| in_run.insert(id) && take_in(&mut map, id))
            .collect()
    }

    /// `ids` are in the pack writer's queue now.
    pub fn hand_over(&self, ids: impl IntoIterator<Item = ObjectId>) {
        let mut map = self.lock();
        for id in ids {
            map.insert(id, true);
        }
    }

    /// `ids` are indexed: the index answers for them from now on.
    pub fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a ObjectId>) {
        let mut map = self.lock();
        for id in ids {
            map.remove(id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, bool>> {
        self.map.lock().expect("claim lock")
    }
}

fn take_in(map: &mut HashMap<ObjectId, bool>, id: ObjectId) -> bool {
    match map.get(&id) {
        Some(true) => false,
        Some(false) => true,
        None => {
            map.insert(id, false);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_object_is_written_again_until_it_is_handed_over() {
        let claims = Claims::default();
        let id = ObjectId::hash(b"x");
        assert!(claims.take(id), "first writer writes it");
        assert!(claims.take(id), "taken, not handed over: write a copy");
        claims.hand_over([id]);
        assert!(!claims.take(id), "handed over: nothing to write");
        claims.forget([&id]);
        assert!(!claims.contains(&id));
    }

    #[test]
    fn a_run_writes_a_repeated_id_once() {
        let claims = Claims::default();
        let (a, b) = (ObjectId::hash(b"a"), ObjectId::hash(b"b"));
        assert_eq!(claims.take_run([a, b, a]), [true, true, false]);
    }
}
