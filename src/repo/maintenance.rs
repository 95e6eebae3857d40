//! Keeping the store healthy: reachability, `gc` (drop what no branch, tag, pending reset,
//! remote-tracking ref or stat cache reaches; rewrite partly dead packs) and `fsck` (re-hash
//! every object, check every reachable commit's tree).

use super::reach::{self, Edge};
use super::Repo;
use crate::error::IoContext;
use crate::snapshot::StatCache;
use crate::store::{self, index, ObjectId, Store};
use crate::{Error, Result};
use rusqlite::params;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What gc removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub objects_removed: u64,
    pub commits_removed: u64,
    /// Group commits no group branch, tag or pending reset reached.
    pub group_commits_removed: u64,
    pub packs_rewritten: u64,
    pub bytes_reclaimed: u64,
    /// Of `bytes_reclaimed`, the overlay bases no clone used any more.
    pub base_bytes_reclaimed: u64,
}

/// What fsck found.
#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    pub packs: u64,
    pub objects: u64,
    pub commits: u64,
    pub problems: Vec<String>,
}

/// Adds everything reachable from commits or file contents to a set, through the shared
/// walker ([`super::reach`]): objects are read and verified from the store, chunks only
/// checked for presence in the index.
pub struct Reach<'a> {
    store: &'a Store,
    pub seen: reach::Reached,
    /// Commits walked so far.
    pub commits: u64,
    /// Commits expired by prune: the commit and its parents are walked, its tree is not.
    expired: HashSet<ObjectId>,
}

impl<'a> Reach<'a> {
    pub fn new(store: &'a Store) -> Self {
        Reach {
            store,
            seen: reach::Reached::new(),
            commits: 0,
            expired: HashSet::new(),
        }
    }

    /// Do not descend into the trees of these (expired) commits.
    pub fn skipping_trees_of(mut self, expired: HashSet<ObjectId>) -> Self {
        self.expired = expired;
        self
    }

    /// Mark a commit and all its ancestors.
    pub fn commit(&mut self, id: &ObjectId) -> Result<()> {
        self.walk((*id, Edge::Commit))
    }

    /// Mark a file's content: one chunk, or a list tree and its chunks.
    pub fn content(&mut self, id: &ObjectId, size: u64) -> Result<()> {
        self.walk((*id, Edge::content(size)))
    }

    fn walk(&mut self, root: (ObjectId, Edge)) -> Result<()> {
        let mut local = LocalVisit {
            store: self.store,
            commits: 0,
            expired: &self.expired,
        };
        let result = reach::walk([root], &mut self.seen, &mut local);
        self.commits += local.commits;
        result
    }
}

/// Walks the local store: parallel verified reads, chunks checked for presence only.
struct LocalVisit<'a> {
    store: &'a Store,
    commits: u64,
    /// Commits expired by prune: their trees are not walked.
    expired: &'a HashSet<ObjectId>,
}

impl reach::Visit for LocalVisit<'_> {
    fn skip(&mut self, _id: &ObjectId, _edge: Edge) -> Result<bool> {
        Ok(false)
    }

    fn load(&mut self, batch: &[(ObjectId, Edge)]) -> Result<Vec<Vec<u8>>> {
        self.commits += batch.iter().filter(|b| b.1 == Edge::Commit).count() as u64;
        let ids: Vec<ObjectId> = batch.iter().map(|b| b.0).collect();
        self.store.get_many(&ids)
    }

    fn max_depth(&self) -> u32 {
        u32::MAX
    }

    fn tree_expired(&self, commit: &ObjectId) -> bool {
        self.expired.contains(commit)
    }

    fn chunk(&mut self, id: &ObjectId, _len: u64) -> Result<()> {
        if !self.store.contains(id)? {
            return Err(Error::MissingObject { id: id.to_hex() });
        }
        Ok(())
    }
}

impl Repo {
    /// Every commit id a ref points at: branch heads, tags, pending resets, remote-tracking refs,
    /// and the member commits of every group commit.
    pub fn ref_roots(&self) -> Result<Vec<(String, ObjectId)>> {
        let mut out = Vec::new();
        let queries = [
            "SELECT volume || ' branch ' || name, head FROM branches WHERE head IS NOT NULL",
            "SELECT volume || ' tag ' || name, target FROM tags",
            "SELECT volume || ' pending reset of ' || branch, target FROM pending",
            "SELECT volume || ' remote ' || remote || '/' || branch, head FROM remote_refs",
        ];
        for q in queries {
            let mut stmt = self.conn.prepare(q)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (what, id) = row?;
                if let Some(id) = ObjectId::from_hex(&id) {
                    out.push((what, id));
                }
            }
        }
        out.extend(self.group_roots()?);
        Ok(out)
    }

    /// Call `f` with every content id (and size) a stat cache under the root vouches for
    /// (they stay alive: they describe live files), a directory row at a time. Old-format
    /// caches are imported first.
    fn for_each_cached_content(&self, f: &mut dyn FnMut(&ObjectId, u64)) -> Result<()> {
        let legacy: Vec<PathBuf> = walkdir::WalkDir::new(self.meta.join("cache"))
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        for old in legacy {
            let names = (old.parent().and_then(Path::file_name), old.file_name());
            if let (Some(volume), Some(branch)) = names {
                let (volume, branch) = (volume.to_string_lossy(), branch.to_string_lossy());
                drop(self.read_cache(&volume, &branch));
            }
        }
        for e in walkdir::WalkDir::new(self.meta.join("statcache"))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file() && e.path().extension() == Some("db".as_ref()))
        {
            StatCache::for_each_content(e.path(), Path::new(""), f)?;
        }
        Ok(())
    }

    /// Remove objects nothing reaches and reclaim their space.
    pub fn gc(&mut self) -> Result<GcReport> {
        let _lock = self.lock_store(true)?;
        // Never delete on doubt: every ref and commit row must be sound first.
        self.require_sound_metadata()?;
        let mut report = GcReport::default();
        let mut reach = Reach::new(&self.store).skipping_trees_of(self.expired_commits()?);
        for (_, id) in self.ref_roots()? {
            reach.commit(&id)?;
        }
        self.for_each_cached_content(&mut |id, size| {
            // A cache entry whose object is gone is only a stale hint; ignore it.
            let _ = reach.content(id, size);
        })?;
        let live = reach.seen.into_ids();
        let packs = index::pack_objects(&self.conn)?;
        let mut writer = store::pack::PackWriter::new(self.store.packs_dir());
        let mut replaced = Vec::new();
        for pack in &packs {
            let dead = pack.objects.iter().filter(|id| !live.contains(id)).count();
            if dead == 0 {
                continue;
            }
            self.copy_live(pack, &live, &mut writer)?;
            report.objects_removed += dead as u64;
            replaced.push(pack);
        }
        let new_packs = writer.finish()?;
        crate::failpoint::hit("gc.before-transaction");
        let dead_commits = self.dead_commits(&live)?;
        let dead_groups = self.dead_group_commits()?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        index::forget_packs(&tx, &replaced)?;
        Store::record(&tx, &new_packs)?;
        for id in &dead_commits {
            tx.execute("DELETE FROM commits WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM expired WHERE id = ?1", [id])?;
        }
        for (grp, id) in &dead_groups {
            tx.execute(
                "DELETE FROM group_commits WHERE grp = ?1 AND id = ?2",
                [grp, id],
            )?;
        }
        tx.commit()?;
        self.store.forget_open_packs();
        crate::failpoint::hit("gc.before-delete-packs");
        report.commits_removed = dead_commits.len() as u64;
        report.group_commits_removed = dead_groups.len() as u64;
        report.packs_rewritten = replaced.len() as u64;
        let old: u64 = replaced.iter().map(|p| p.size).sum();
        let new: u64 = new_packs.iter().map(|p| p.size).sum();
        report.bytes_reclaimed = old.saturating_sub(new);
        for pack in &replaced {
            let path = self.store.packs_dir().join(&pack.name);
            std::fs::remove_file(&path).at("remove", &path)?;
        }
        report.bytes_reclaimed += self.remove_orphan_files()?;
        report.base_bytes_reclaimed = self.gc_bases()?;
        report.bytes_reclaimed += report.base_bytes_reclaimed;
        Ok(report)
    }

    /// Append the live objects of `pack` to `writer`: records as stored, a block whole when
    /// all its members are live, else its live members as a new block (never split into
    /// per-chunk records).
    fn copy_live(
        &self,
        pack: &index::PackObjects,
        live: &HashSet<ObjectId>,
        writer: &mut store::pack::PackWriter,
    ) -> Result<()> {
        let ids: Vec<ObjectId> = pack
            .objects
            .iter()
            .filter(|id| live.contains(id))
            .copied()
            .collect();
        let mut blocks = HashSet::new();
        for (id, loc) in ids.iter().zip(self.store.locate_many(&ids)?) {
            let loc = loc.ok_or(Error::MissingObject { id: id.to_hex() })?;
            if loc.boff.is_none() {
                let (header, payload) = self.store.get_raw(id)?;
                writer.append(store::pack::Record {
                    id: *id,
                    kind: header.kind,
                    codec: header.codec,
                    ulen: header.ulen,
                    payload,
                    members: Vec::new(),
                })?;
                continue;
            }
            if !blocks.insert(loc.offset) {
                continue;
            }
            let (block, data) = self.store.open_block(id, &loc)?;
            let record = if block.members.iter().all(|m| live.contains(&m.0)) {
                block.into_record()
            } else {
                let kept: Vec<(ObjectId, &[u8])> = block
                    .offsets()
                    .filter(|m| live.contains(&m.0))
                    .map(|(m, at, len)| (m, &data[at as usize..(at + len) as usize]))
                    .collect();
                store::make_block(&kept)?
            };
            writer.append(record)?;
        }
        Ok(())
    }

    fn dead_commits(&self, live: &HashSet<ObjectId>) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT id FROM commits")?;
        let ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids
            .into_iter()
            .filter(|id| ObjectId::from_hex(id).is_none_or(|i| !live.contains(&i)))
            .collect())
    }

    /// Delete pack files the index does not know (left by interrupted writes) and the trash.
    fn remove_orphan_files(&self) -> Result<u64> {
        let known = index::pack_names(&self.conn)?;
        let mut freed = 0;
        let dir = self.store.packs_dir();
        for entry in std::fs::read_dir(dir).at("list", dir)? {
            let entry = entry.at("list", dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(entry.path()).at("remove", entry.path())?;
            }
        }
        let trash = self.meta.join("trash");
        if trash.exists() {
            crate::live::empty_dir(&trash)?;
        }
        Ok(freed)
    }

    /// Verify every stored object and every commit reachable from a ref.
    pub fn fsck(&self) -> Result<FsckReport> {
        let _lock = self.lock_store(false)?;
        let mut report = FsckReport::default();
        let integrity: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if integrity != "ok" {
            report
                .problems
                .push(format!("metadata database: {integrity}"));
        }
        report.problems.extend(self.audit_metadata()?);
        let mut bad = HashSet::new();
        let mut packs_seen = HashSet::new();
        index::each_object(&self.conn, |id, loc| {
            let Some(id) = id else {
                report
                    .problems
                    .push("index row with a malformed object id".into());
                return;
            };
            report.objects += 1;
            let loc = match loc {
                Ok(loc) => loc,
                Err(kind) => {
                    if let Err(e) = store::known_kind(&id, kind) {
                        report.problems.push(e.to_string());
                    }
                    bad.insert(id);
                    return;
                }
            };
            if let Err(e) = self.store.read_at(&id, &loc) {
                report.problems.push(e.to_string());
                bad.insert(id);
            }
            packs_seen.insert(loc.pack);
        })?;
        report.packs = packs_seen.len() as u64;
        let expired = self.expired_commits()?;
        for (what, id) in self.ref_roots()? {
            let mut reach = Reach::new(&self.store).skipping_trees_of(expired.clone());
            if let Err(e) = reach.commit(&id) {
                report
                    .problems
                    .push(format!("{what} ({}): {e}", &id.to_hex()[..12]));
            } else if let Some(b) = reach.seen.ids().find(|o| bad.contains(o)) {
                report.problems.push(format!(
                    "{what} ({}): reaches corrupt object {b}",
                    &id.to_hex()[..12]
                ));
            }
            report.commits = report.commits.max(reach.commits);
        }
        let mut stmt = self.conn.prepare("SELECT count(*) FROM commits")?;
        report.commits = stmt.query_row(params![], |r| r.get::<_, i64>(0))? as u64;
        Ok(report)
    }
}
