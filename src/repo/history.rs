//! History operations on a volume: commit, log, branches, checkout, reset, tags, status, diff.
//! Each change is one SQLite transaction; reset records its target as pending before it
//! rewrites live data, so an interrupted reset is finished by running it again.

use super::heads::{self, Head};
use super::rewrite::NewBranch;
use super::thin::Source;
use super::{commit, guarded, prune, Commit, LiveGuard, Repo};
use crate::names;
use crate::progress::Progress;
use crate::snapshot::{self, Emit, RestoreOptions, StatCache, Tree};
use crate::store::ObjectId;
use crate::{Error, Result};
use rusqlite::OptionalExtension;
use serde::Serialize;
use std::path::PathBuf;

/// What `commit` did.
#[derive(Debug)]
pub struct CommitResult {
    pub id: ObjectId,
    pub branch: String,
    pub skipped: Vec<String>,
    pub files_read: u64,
    pub bytes_read: u64,
}

/// One commit as `log` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub id: String,
    pub author: String,
    pub date: String,
    pub timestamp: i64,
    pub message: String,
    pub parents: Vec<String>,
    /// Its snapshot was expired by `dvol prune` (the commit stays, its data is gone).
    pub expired: bool,
}

/// What staging a commit of one branch needs (see [`Repo::stage_job`]).
pub(crate) struct StageJob {
    pub volume: String,
    pub branch: String,
    pub parent: Head,
    live: PathBuf,
    /// The branch's stat cache: the scan stages its rows there, [`Staged::finish`] keeps them.
    cache: StatCache,
}

/// Author, date and message shared by the commits of one command.
#[derive(Clone, Debug)]
pub(crate) struct CommitMeta {
    pub author: String,
    pub time: i64,
    pub tz_offset_min: i32,
    pub message: String,
}

/// A snapshot of one branch, durable in the store but not yet recorded: no `commits` row, no
/// head move (see [`record_staged`]).
pub(crate) struct Staged {
    pub job: StageJob,
    pub id: ObjectId,
    pub commit: Commit,
    scan: snapshot::Scan,
}

/// Scan the live data of `job` into the store and write its commit object (packs fsynced).
/// Needs no database connection, so several run at once.
pub(crate) fn stage(
    store: &std::sync::Arc<crate::store::Store>,
    job: StageJob,
    meta: &CommitMeta,
    progress: &dyn Progress,
) -> Result<Staged> {
    let session = store.writer_indexing()?;
    let scan = snapshot::scan(&session, &job.live, &job.cache, progress)?;
    tracing::debug!(
        files_read = scan.files_read,
        bytes_read = scan.bytes_read,
        "scanned"
    );
    crate::failpoint::hit("commit.after-scan");
    let commit = Commit {
        tree: scan.tree,
        parents: job.parent.commit().into_iter().collect(),
        author: meta.author.clone(),
        time: meta.time,
        tz_offset_min: meta.tz_offset_min,
        message: meta.message.clone(),
    };
    let id = commit.put(&session)?;
    let packs = session.finish()?;
    tracing::debug!(packs = packs.len(), "packs durable");
    Ok(Staged {
        job,
        id,
        commit,
        scan,
    })
}

/// Record a staged commit and move its branch from the head it was staged on (inside the
/// caller's transaction).
pub(crate) fn record_staged(tx: &rusqlite::Connection, s: &Staged) -> Result<()> {
    commit::record(tx, &s.id, &s.commit)?;
    heads::swap(
        tx,
        &s.job.volume,
        &s.job.branch,
        s.job.parent,
        Head::At(s.id),
    )
}

impl Staged {
    /// After the transaction: keep the stat cache rows the scan staged (their content is
    /// durable in the store) and say what was done.
    pub(crate) fn finish(self) -> Result<CommitResult> {
        let Staged { job, id, scan, .. } = self;
        job.cache.promote();
        Ok(CommitResult {
            id,
            branch: job.branch,
            skipped: scan.skipped,
            files_read: scan.files_read,
            bytes_read: scan.bytes_read,
        })
    }
}

impl Repo {
    /// Snapshot the live data of the volume's current branch; the scan runs inside `guard`
    /// (containers stopped or paused).
    pub fn commit(
        &mut self,
        volume: &str,
        message: &str,
        progress: &dyn Progress,
        guard: &dyn LiveGuard,
    ) -> Result<CommitResult> {
        let _lock = self.lock_volume(volume)?;
        let branch = self.current_branch(volume)?;
        self.check_no_pending(volume, &branch)?;
        let parent = match self.head(volume, &branch)? {
            Head::Absent => return Err(Error::NoSuchBranch(branch)),
            head => head,
        };
        let job = self.stage_job(volume, &branch, parent)?;
        let meta = self.commit_meta(message)?;
        guarded(guard, volume, "commit", || {
            let staged = stage(&self.store, job, &meta, progress)?;
            crate::failpoint::hit("commit.before-transaction");
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            record_staged(&tx, &staged)?;
            tx.commit()?;
            tracing::debug!("metadata committed");
            crate::failpoint::hit("commit.before-cache-save");
            staged.finish()
        })
    }

    /// What staging a commit of `volume/branch` (whose head is `parent`) needs from the
    /// repository, read before the scan so that several volumes can be scanned on threads.
    /// The live directory is found through [`Repo::live_dir`], so a thin clone's missing
    /// overlay mount is made again first.
    pub(crate) fn stage_job(&self, volume: &str, branch: &str, parent: Head) -> Result<StageJob> {
        Ok(StageJob {
            volume: volume.to_string(),
            branch: branch.to_string(),
            parent,
            live: self.live_dir(volume, branch)?,
            cache: self.own_cache(volume, branch),
        })
    }

    /// Author, date and message of a new commit.
    pub(crate) fn commit_meta(&self, message: &str) -> Result<CommitMeta> {
        let (name, email) = self.identity()?;
        let now = prune::commit_clock();
        Ok(CommitMeta {
            author: format!("{name} <{email}>"),
            time: now.timestamp(),
            tz_offset_min: now.offset().local_minus_utc() / 60,
            message: message.to_string(),
        })
    }

    /// The first-parent history of a branch, newest first.
    pub fn log(&self, volume: &str, branch: &str) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        let mut next = self.branch_head(volume, branch)?;
        while let Some(id) = next {
            let c = commit::lookup(&self.conn, &id)?;
            next = c.parents.first().copied();
            out.push(LogEntry {
                id: id.to_hex(),
                author: c.author.clone(),
                date: c.date_string(),
                timestamp: c.time,
                parents: c.parents.iter().map(|p| p.to_hex()).collect(),
                message: c.message,
                expired: prune::is_expired(&self.conn, &id)?,
            });
        }
        Ok(out)
    }

    /// Branch names of a volume, sorted.
    pub fn branches(&self, volume: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM branches WHERE volume = ?1 ORDER BY name")?;
        let names = stmt.query_map([volume], |r| r.get(0))?;
        Ok(names.collect::<rusqlite::Result<_>>()?)
    }

    /// Switch the current branch (each branch keeps its own live data, so nothing is lost);
    /// the switch runs inside `guard`, so restarted containers mount the new branch.
    pub fn checkout(&mut self, volume: &str, branch: &str, guard: &dyn LiveGuard) -> Result<()> {
        names::validate("branch", branch)?;
        let _lock = self.lock_volume(volume)?;
        if !self.branch_exists(volume, branch)? {
            return Err(Error::NoSuchBranch(branch.to_string()));
        }
        if self.current_branch(volume)? == branch {
            return Ok(());
        }
        guarded(guard, volume, "checkout", || {
            self.conn.execute(
                "UPDATE volumes SET branch = ?2 WHERE name = ?1",
                [volume, branch],
            )?;
            Ok(())
        })
    }

    /// Create `new` at the current branch's head, materialize it, and make it current (inside
    /// `guard`).
    pub fn checkout_new(&mut self, volume: &str, new: &str, guard: &dyn LiveGuard) -> Result<()> {
        self.new_branch(volume, new, None, Some(guard))
    }

    /// Create branch `new` at `at` (default: the current branch's head) with its live data,
    /// without switching to it.
    pub fn create_branch(&mut self, volume: &str, new: &str, at: Option<&str>) -> Result<()> {
        self.new_branch(volume, new, at, None)
    }

    /// Create a branch; with a guard, switch to it inside the guard.
    fn new_branch(
        &mut self,
        volume: &str,
        new: &str,
        at: Option<&str>,
        switch: Option<&dyn LiveGuard>,
    ) -> Result<()> {
        names::validate_new_ref("branch", new)?;
        let lock = self.lock_volume(volume)?;
        let current = self.current_branch(volume)?;
        if self.branch_exists(volume, new)? {
            return Err(Error::BranchExists(new.to_string()));
        }
        let head = match at {
            Some(spec) => self.resolve(volume, &current, spec)?,
            None => self
                .branch_head(volume, &current)?
                .ok_or(Error::NoCommitYet)?,
        };
        let mut create = |switch: bool| {
            let source = Source {
                volume,
                branch: &current,
            };
            let how = NewBranch {
                switch,
                op: "checkout",
                restore: &RestoreOptions::default(),
                source: Some(source),
            };
            self.create_branch_at(&lock, new, &head, &how)
        };
        match switch {
            None => create(false),
            Some(guard) => guarded(guard, volume, "checkout", || create(true)),
        }
    }

    /// Delete a branch that is not current.
    pub fn delete_branch(&mut self, volume: &str, branch: &str) -> Result<()> {
        names::validate("branch", branch)?;
        let _lock = self.lock_volume(volume)?;
        let head = match self.head(volume, branch)? {
            Head::Absent => return Err(Error::BranchMissing(branch.to_string())),
            head => head,
        };
        if self.current_branch(volume)? == branch {
            return Err(Error::DeleteCurrentBranch(branch.to_string()));
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        heads::swap(&tx, volume, branch, head, Head::Absent)?;
        super::thin::record_layout(&tx, volume, branch, &super::Layout::Full)?;
        tx.commit()?;
        crate::failpoint::hit("branch-delete.after-row");
        self.discard_branch_data(volume, branch)?;
        self.remove_cache(volume, branch)
    }

    /// Move the current branch to `spec` and make its live data exactly that commit's tree.
    /// The revision is resolved under the volume lock before `guard` stops anything.
    pub fn reset_hard(
        &mut self,
        volume: &str,
        spec: &str,
        guard: &dyn LiveGuard,
    ) -> Result<ObjectId> {
        let lock = self.lock_volume(volume)?;
        let branch = self.current_branch(volume)?;
        let expected = self.head(volume, &branch)?;
        let target = self.resolve(volume, &branch, spec)?;
        guarded(guard, volume, "reset", || {
            self.rewrite_branch(
                &lock,
                &branch,
                expected,
                &target,
                "reset",
                &RestoreOptions::default(),
            )
        })?;
        Ok(target)
    }

    pub(crate) fn check_no_pending(&self, volume: &str, branch: &str) -> Result<()> {
        let pending: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT op, target FROM pending WHERE volume = ?1 AND branch = ?2",
                [volume, branch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match pending {
            Some((op, target)) => Err(Error::Pending {
                op,
                volume: volume.into(),
                branch: branch.into(),
                target,
            }),
            None => Ok(()),
        }
    }

    /// Tags of a volume with their commits, sorted by name.
    pub fn tags(&self, volume: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, target FROM tags WHERE volume = ?1 ORDER BY name")?;
        let rows = stmt.query_map([volume], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) fn tag_target(&self, volume: &str, tag: &str) -> Result<Option<ObjectId>> {
        let t: Option<String> = self
            .conn
            .query_row(
                "SELECT target FROM tags WHERE volume = ?1 AND name = ?2",
                [volume, tag],
                |r| r.get(0),
            )
            .optional()?;
        t.map(|t| heads::parse_ref(&format!("tag {tag} of {volume}"), &t))
            .transpose()
    }

    fn tag_exists(&self, volume: &str, tag: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM tags WHERE volume = ?1 AND name = ?2",
                [volume, tag],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Tag `spec` (default HEAD) as `name`.
    pub fn create_tag(&mut self, volume: &str, name: &str, spec: Option<&str>) -> Result<ObjectId> {
        names::validate_new_ref("tag", name)?;
        let _lock = self.lock_volume(volume)?;
        if self.tag_exists(volume, name)? {
            return Err(Error::TagExists(name.into()));
        }
        let branch = self.current_branch(volume)?;
        let id = self.resolve(volume, &branch, spec.unwrap_or("HEAD"))?;
        self.conn.execute(
            "INSERT INTO tags(volume, name, target) VALUES (?1, ?2, ?3)",
            [volume, name, id.to_hex().as_str()],
        )?;
        Ok(id)
    }

    pub fn delete_tag(&mut self, volume: &str, name: &str) -> Result<()> {
        names::validate("tag", name)?;
        let _lock = self.lock_volume(volume)?;
        let n = self.conn.execute(
            "DELETE FROM tags WHERE volume = ?1 AND name = ?2",
            [volume, name],
        )?;
        if n == 0 {
            return Err(Error::NoSuchTag(name.into()));
        }
        Ok(())
    }

    /// Hand to `emit` the changes of the live data of `branch` (the volume's current one, as
    /// the caller read it) against its head, in path order (read-only); returns the messages
    /// about entries a commit would skip.
    pub fn status(&self, volume: &str, branch: &str, emit: &mut Emit) -> Result<Vec<String>> {
        let _lock = self.lock_store(false)?;
        let head_tree = match self.branch_head(volume, branch)? {
            Some(h) => Some(prune::kept_tree(&self.conn, &h)?),
            None => None,
        };
        self.diff_live(volume, branch, head_tree.as_ref(), emit)
    }

    /// Hand to `emit` the changes between two revisions, or between one revision and the live
    /// data, in path order.
    pub fn diff_refs(
        &self,
        volume: &str,
        from: Option<&str>,
        to: Option<&str>,
        emit: &mut Emit,
    ) -> Result<()> {
        let branch = self.current_branch(volume)?;
        let _lock = self.lock_store(false)?;
        let tree_of = |spec: &str| -> Result<ObjectId> {
            prune::kept_tree(&self.conn, &self.resolve(volume, &branch, spec)?)
        };
        let a = tree_of(from.unwrap_or("HEAD"))?;
        if let Some(to) = to {
            let load = |id: &ObjectId| Tree::load(&self.store, id);
            return snapshot::diff(&load, Some(&a), Some(&tree_of(to)?), emit);
        }
        self.diff_live(volume, &branch, Some(&a), emit).map(drop)
    }

    /// Compare a branch's live data with `tree` without storing anything (the caller holds
    /// the store lock); returns the messages about skipped entries.
    pub(crate) fn diff_live(
        &self,
        volume: &str,
        branch: &str,
        tree: Option<&ObjectId>,
        emit: &mut Emit,
    ) -> Result<Vec<String>> {
        let load = |id: &ObjectId| Tree::load(&self.store, id);
        let cache = self.read_cache(volume, branch);
        snapshot::live_diff(&load, tree, &self.live_dir(volume, branch)?, &cache, emit)
    }
}
