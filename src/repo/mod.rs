//! The repository under one root directory: volumes, branches, commits, tags, remotes and
//! config in SQLite, objects in the [`Store`], live data in `ROOT/<volume>/branches/<branch>`.
//!
//! Layout (see docs/format.md): `ROOT/.dvol/dvol.db` (metadata), `ROOT/.dvol/packs/` (objects),
//! `ROOT/.dvol/statcache/<volume>/<branch>.db` (stat caches; `ROOT/.dvol/cache/<volume>/<branch>`
//! holds an old-format one until it is imported), `ROOT/.dvol/locks/`, `ROOT/.dvol/trash/`,
//! `ROOT/.dvol/bases/<commit>/` (overlay bases) and `ROOT/<volume>/overlays/<branch>/`
//! (overlay upper and work directories).
//! Volume names cannot start with a dot, so `.dvol` never collides with a volume.

mod audit;
pub mod commit;
pub(crate) mod db;
pub mod group;
mod guard;
pub(crate) mod heads;
mod history;
mod identity;
mod maintenance;
mod perms;
pub mod prune;
pub(crate) mod reach;
mod refs;
mod remotes;
mod rewrite;
mod summary;
#[cfg(test)]
mod tests;
mod thin;
mod volume;

pub use commit::Commit;
pub use group::{GroupCommit, GroupCommitResult, GroupError, GroupInfo, GroupLogEntry, Member};
pub use guard::{describe as describe_volumes, guarded, guarded_all, LiveGuard, Unguarded};
pub use heads::Head;
pub use history::{CommitResult, LogEntry};
pub use maintenance::{FsckReport, GcReport};
pub use prune::{Policy, PruneReport};
pub(crate) use rewrite::NewBranch;
pub use summary::VolumeSummary;
pub use thin::{BranchLayout, CloneMethod, Layout};
pub use volume::VolumeInfo;

use crate::error::IoContext;
use crate::lock::{self, LockGuard};
use crate::names;
use crate::snapshot::StatCache;
use crate::store::{ObjectId, Store};
use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default root when neither `--path` nor `DVOL_ROOT` is given.
pub const DEFAULT_ROOT: &str = "/var/lib/dvol";

/// How a repository is opened; the CLI fills it from flags and the environment, the library
/// never reads either.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a command waits for a volume or store lock another command holds.
    pub lock_timeout: Duration,
    /// How new branches and volumes get their live data (see [`thin`]).
    pub clone_method: CloneMethod,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lock_timeout: lock::DEFAULT_TIMEOUT,
            clone_method: CloneMethod::default(),
        }
    }
}

/// An open repository root.
pub struct Repo {
    root: PathBuf,
    meta: PathBuf,
    conn: Connection,
    store: Arc<Store>,
    options: Options,
    /// How new live data is made (see [`thin`]).
    clone_method: CloneMethod,
    /// Keeps the users of a live directory still while a reflink clone reads it (see
    /// [`Repo::set_source_freeze`]).
    source_freeze: Box<dyn LiveGuard + Send>,
}

/// Locks held while a command changes one volume. Functions that must run under the lock
/// take it as an argument, so holding it is checked by the compiler.
pub struct VolumeLock {
    _store: LockGuard,
    _volume: LockGuard,
    volume: String,
}

impl VolumeLock {
    /// The locked volume.
    pub fn volume(&self) -> &str {
        &self.volume
    }
}

impl Repo {
    /// Open the repository at `root` with default options, creating its directories and
    /// database if needed.
    pub fn open(root: &Path) -> Result<Repo> {
        Repo::open_with(root, Options::default())
    }

    /// Open the repository at `root` with `options`.
    pub fn open_with(root: &Path, options: Options) -> Result<Repo> {
        let meta = root.join(".dvol");
        for dir in [
            root.to_path_buf(),
            meta.clone(),
            meta.join("locks"),
            meta.join("cache"),
        ] {
            std::fs::create_dir_all(&dir).at("create", &dir)?;
        }
        perms::secure_root(root)?;
        let db_path = meta.join("dvol.db");
        let conn = db::open(&db_path)?;
        let store = Arc::new(Store::open(&meta.join("packs"), &db_path)?);
        Ok(Repo {
            root: root.to_path_buf(),
            meta,
            conn,
            store,
            clone_method: options.clone_method,
            options,
            source_freeze: Box::new(Unguarded),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The metadata connection, for the crate's own SQL (never part of the public API).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The live directory of a branch.
    pub fn branch_dir(&self, volume: &str, branch: &str) -> PathBuf {
        self.root.join(volume).join("branches").join(branch)
    }

    /// The stat cache file of a branch.
    fn cache_path(&self, volume: &str, branch: &str) -> PathBuf {
        self.meta
            .join("statcache")
            .join(volume)
            .join(format!("{branch}.db"))
    }

    /// Where older versions kept a branch's stat cache (imported and removed when opened).
    fn legacy_cache_path(&self, volume: &str, branch: &str) -> PathBuf {
        self.meta.join("cache").join(volume).join(branch)
    }

    /// The stat cache of a branch whose volume the caller has locked.
    fn own_cache(&self, volume: &str, branch: &str) -> StatCache {
        StatCache::open(
            &self.cache_path(volume, branch),
            &self.legacy_cache_path(volume, branch),
        )
    }

    /// The stat cache of a branch, to read only (no volume lock needed).
    fn read_cache(&self, volume: &str, branch: &str) -> StatCache {
        StatCache::open_read(
            &self.cache_path(volume, branch),
            &self.legacy_cache_path(volume, branch),
        )
    }

    /// A new, empty stat cache for a branch whose live data is made anew.
    fn fresh_cache(&self, volume: &str, branch: &str) -> Result<StatCache> {
        self.remove_cache(volume, branch)?;
        Ok(StatCache::fresh(&self.cache_path(volume, branch)))
    }

    /// Remove a branch's stat cache (both formats).
    fn remove_cache(&self, volume: &str, branch: &str) -> Result<()> {
        StatCache::remove(&self.cache_path(volume, branch))?;
        let legacy = self.legacy_cache_path(volume, branch);
        match std::fs::remove_file(&legacy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("remove", &legacy),
            _ => Ok(()),
        }
    }

    /// Lock a volume for a change: shared store lock plus exclusive volume lock.
    pub fn lock_volume(&self, volume: &str) -> Result<VolumeLock> {
        names::validate("volume", volume)?;
        let store = self.lock_store(false)?;
        let path = self.meta.join("locks").join(format!("{volume}.lock"));
        Ok(VolumeLock {
            _store: store,
            _volume: lock::acquire(&path, volume, true, self.options.lock_timeout)?,
            volume: volume.to_string(),
        })
    }

    /// Lock the store: shared for readers and writers of objects, exclusive for gc.
    pub fn lock_store(&self, exclusive: bool) -> Result<LockGuard> {
        lock::acquire(
            &self.meta.join("store.lock"),
            "store",
            exclusive,
            self.options.lock_timeout,
        )
    }

    /// The volume a command acts on: `explicit` (from `--volume`) or the current one.
    pub fn resolve_volume(&self, explicit: Option<&str>) -> Result<String> {
        let name = match explicit {
            Some(n) => n.to_string(),
            None => db::get_meta(&self.conn, "current_volume")?.ok_or(Error::NoActiveVolume)?,
        };
        names::validate("volume", &name)?;
        if !self.volume_exists(&name)? {
            return Err(Error::NoSuchVolume(name));
        }
        Ok(name)
    }

    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM volumes WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The volume's current branch.
    pub fn current_branch(&self, volume: &str) -> Result<String> {
        self.conn
            .query_row(
                "SELECT branch FROM volumes WHERE name = ?1",
                [volume],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::NoSuchVolume(volume.to_string()))
    }

    /// The head commit of a branch (`None` before the first commit; an error for a head that
    /// does not parse).
    pub fn branch_head(&self, volume: &str, branch: &str) -> Result<Option<ObjectId>> {
        match heads::read(&self.conn, volume, branch)? {
            Head::Absent => Err(Error::NoSuchBranch(branch.to_string())),
            head => Ok(head.commit()),
        }
    }

    /// The exact state of a branch row (see [`heads::read`]).
    pub fn head(&self, volume: &str, branch: &str) -> Result<Head> {
        heads::read(&self.conn, volume, branch)
    }

    pub fn branch_exists(&self, volume: &str, branch: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM branches WHERE volume = ?1 AND name = ?2",
                [volume, branch],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Move a path to the trash and delete it; a crash in between leaves only trash for gc.
    /// Overlay clones mounted below it are unmounted first.
    fn discard_dir(&self, path: &Path) -> Result<()> {
        crate::overlay::unmount_under(path)?;
        crate::live::discard(path, &self.meta.join("trash"))
    }
}

impl Drop for Repo {
    /// A command that wrote a large WAL folds it back before it exits (db::fold_large_wal).
    fn drop(&mut self) {
        db::fold_large_wal(&self.conn, &self.meta.join("dvol.db"));
    }
}
