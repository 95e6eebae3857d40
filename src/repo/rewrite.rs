//! The one protocol that points a branch at a commit together with its live data, shared by
//! `reset --hard`, `checkout -b`, `pull` and `clone`:
//!
//! - an existing branch: record the target as pending (in the same transaction that checks the
//!   head is still the one the command read), materialize the target's tree over the live
//!   data, then move the head by compare-and-swap and clear the pending record in one
//!   transaction. Interrupted, the pending record makes the next command finish the job.
//! - a new branch: materialize into a hidden directory, rename it into place, then insert the
//!   branch row (a compare-and-swap from "no branch").
//!
//! Callers hold the volume lock (passed in as proof) and run this inside their [`LiveGuard`]
//! (see `guard.rs`); this module decides nothing about containers.
//!
//! [`LiveGuard`]: super::LiveGuard

use super::heads::{self, Head};
use super::thin::Source;
use super::{prune, Repo, VolumeLock};
use crate::failpoint;
use crate::snapshot::{self, RestoreOptions};
use crate::store::ObjectId;
use crate::Result;

/// How [`Repo::create_branch_at`] makes a branch.
pub(crate) struct NewBranch<'a> {
    /// Make it the volume's current branch.
    pub switch: bool,
    /// `checkout`, `pull`, …: names the failpoint.
    pub op: &'a str,
    pub restore: &'a RestoreOptions,
    /// A branch at or near the target whose files a reflink clone may share.
    pub source: Option<Source<'a>>,
}

impl Repo {
    /// Make the live data of `branch` (which exists, at `expected`) the tree of `target` and
    /// move its head to `target`. `op` (`reset`, `pull`) names the pending record and the
    /// failpoints.
    pub(crate) fn rewrite_branch(
        &mut self,
        lock: &VolumeLock,
        branch: &str,
        expected: Head,
        target: &ObjectId,
        op: &str,
        restore: &RestoreOptions,
    ) -> Result<()> {
        let volume = lock.volume();
        let tree = prune::kept_tree(&self.conn, target)?;
        let hex = target.to_hex();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Same head, same head: checks the head is still `expected` before anything changes.
        heads::swap(&tx, volume, branch, expected, expected)?;
        tx.execute(
            "INSERT OR REPLACE INTO pending(volume, branch, op, target) VALUES (?1, ?2, ?3, ?4)",
            [volume, branch, op, hex.as_str()],
        )?;
        tx.commit()?;
        failpoint::hit(&format!("{op}.after-pending"));
        let layout = match expected {
            // Nothing committed here yet (a cloned volume's first pull; pull refuses
            // uncommitted data): made as a new branch's data is, thin where the clone method
            // allows, so later branches of the commit share it.
            Head::Unborn => Some(self.make_branch_data(volume, branch, target, restore, None)?),
            _ => {
                self.rewrite_data(volume, branch, op, expected, target, &tree, restore)?;
                None
            }
        };
        failpoint::hit(&format!("{op}.before-head-move"));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        heads::swap(&tx, volume, branch, expected, Head::At(*target))?;
        if let Some(layout) = &layout {
            super::thin::record_layout(&tx, volume, branch, layout)?;
        }
        tx.execute(
            "DELETE FROM pending WHERE volume = ?1 AND branch = ?2",
            [volume, branch],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Write `tree` (of commit `target`) over the live data of `branch`, at `expected`, and
    /// save its stat cache.
    #[allow(clippy::too_many_arguments)]
    fn rewrite_data(
        &self,
        volume: &str,
        branch: &str,
        op: &str,
        expected: Head,
        target: &ObjectId,
        tree: &ObjectId,
        restore: &RestoreOptions,
    ) -> Result<()> {
        let head = match expected {
            Head::At(id) => Some(id),
            _ => None,
        };
        let (live, caches) = self.rewrite_live(volume, branch, op, head.as_ref(), target)?;
        snapshot::materialize_with(&self.store, tree, &live, caches.caches(), restore)?;
        Ok(())
    }

    /// Create `branch` (which must not exist) at `target` with its live data (a thin clone
    /// where the clone method allows, see `thin.rs`), and make it the volume's current branch
    /// if `how.switch`.
    pub(crate) fn create_branch_at(
        &mut self,
        lock: &VolumeLock,
        branch: &str,
        target: &ObjectId,
        how: &NewBranch,
    ) -> Result<()> {
        let volume = lock.volume();
        if self.head(volume, branch)? != Head::Absent {
            return Err(crate::Error::BranchExists(branch.to_string()));
        }
        let layout =
            self.make_branch_data(volume, branch, target, how.restore, how.source.as_ref())?;
        failpoint::hit(&format!("{}.before-branch-row", how.op));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        heads::swap(&tx, volume, branch, Head::Absent, Head::At(*target))?;
        super::thin::record_layout(&tx, volume, branch, &layout)?;
        if how.switch {
            tx.execute(
                "UPDATE volumes SET branch = ?2 WHERE name = ?1",
                [volume, branch],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::repo::Unguarded;
    use crate::Error;

    /// A head moved by a writer that ignored the lock: the rewrite refuses before it writes
    /// anything, naming both ids.
    #[test]
    fn a_head_moved_behind_the_lock_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repo::open(dir.path()).unwrap();
        repo.init_volume("v").unwrap();
        let live = repo.branch_dir("v", "master");
        let mut commit = |data: &str| {
            std::fs::write(live.join("f"), data).unwrap();
            repo.commit("v", data, &NoProgress, &Unguarded).unwrap().id
        };
        let (one, two) = (commit("one"), commit("two"));
        std::fs::write(live.join("f"), "work").unwrap();
        let lock = repo.lock_volume("v").unwrap();
        repo.conn
            .execute("UPDATE branches SET head = ?1", [one.to_hex()])
            .unwrap();
        let err = repo
            .rewrite_branch(
                &lock,
                "master",
                Head::At(two),
                &one,
                "reset",
                &RestoreOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, Error::HeadMoved { .. }), "{err}");
        let both = format!("from {} to {}", &two.to_hex()[..12], &one.to_hex()[..12]);
        assert!(err.to_string().contains(&both), "{err}");
        assert_eq!(std::fs::read(live.join("f")).unwrap(), b"work");
        assert!(repo.pending_op("v", "master").unwrap().is_none());
    }
}
