//! Group commit: every member's live data is held at once (the caller's guard freezes or
//! stops every container using any member), the members are scanned in parallel (the freeze
//! lasts as long as the slowest member, not the sum), the guard lets the containers go, and
//! one transaction records every member commit, moves every member head and the group head
//! (each by compare-and-swap) and records the group commit. Killed before that transaction,
//! nothing changed (the packs written are garbage for gc); after it, everything did.

use super::{GroupCommit, GroupError, GroupLock, Repo};
use crate::failpoint;
use crate::progress::NoProgress;
use crate::repo::heads::{self, Head, GROUP_BRANCHES};
use crate::repo::history::{record_staged, stage, CommitMeta, StageJob, Staged};
use crate::repo::{guarded_all, CommitResult, LiveGuard};
use crate::store::{ObjectId, Store};
use crate::{Error, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a group commit did.
#[derive(Debug)]
pub struct GroupCommitResult {
    pub id: ObjectId,
    pub branch: String,
    /// Member key and what its commit did.
    pub members: Vec<(String, CommitResult)>,
    /// How long the members' live data was held (the parallel scans).
    pub held: Duration,
}

impl Repo {
    /// Commit every member of group `name` together (see the module comment).
    pub fn commit_group(
        &mut self,
        name: &str,
        message: &str,
        guard: &dyn LiveGuard,
    ) -> Result<GroupCommitResult> {
        let lock = self.lock_group(name)?;
        self.finish_group_pending(&lock, guard)?;
        let info = self.group(name)?;
        let branch = info.branch.clone();
        let expected = self.group_head(name, &branch)?;
        let mut jobs = Vec::new();
        for m in &info.members {
            let parent = self.member_head(&lock, &m.volume, &branch)?;
            self.check_no_pending(&m.volume, &branch)?;
            jobs.push((m.key.clone(), self.stage_job(&m.volume, &branch, parent)?));
        }
        let meta = self.commit_meta(message)?;
        let store = self.store.clone();
        let (staged, held) = guarded_all(guard, &info.volumes(), "group commit", || {
            let start = Instant::now();
            let staged = stage_all(&store, jobs, &meta)?;
            Ok((staged, start.elapsed()))
        })?;
        let group = GroupCommit {
            parents: expected.commit().into_iter().collect(),
            members: staged.iter().map(|(k, s)| (k.clone(), s.id)).collect(),
            author: meta.author,
            time: meta.time,
            tz_offset_min: meta.tz_offset_min,
            message: meta.message,
        };
        let id = group.id();
        failpoint::hit("group-commit.before-transaction");
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (_, s) in &staged {
            record_staged(&tx, s)?;
        }
        Repo::record_group_commit(&tx, name, &id, &group)?;
        heads::swap_in(GROUP_BRANCHES, &tx, name, &branch, expected, Head::At(id))?;
        tx.commit()?;
        failpoint::hit("group-commit.before-cache-save");
        let members = staged
            .into_iter()
            .map(|(k, s)| Ok((k, s.finish()?)))
            .collect::<Result<_>>()?;
        Ok(GroupCommitResult {
            id,
            branch,
            members,
            held,
        })
    }

    /// The head of a member's `branch`, checking the member is on it (its containers use its
    /// current branch, so a group branch is only committed where it is checked out).
    pub(super) fn member_head(&self, lock: &GroupLock, volume: &str, branch: &str) -> Result<Head> {
        lock.of(volume)?;
        let current = self.current_branch(volume)?;
        if current != branch {
            return Err(GroupError::MemberOffBranch {
                group: lock.name().to_string(),
                volume: volume.to_string(),
                current,
                branch: branch.to_string(),
            }
            .into());
        }
        match self.head(volume, branch)? {
            Head::Absent => Err(Error::NoSuchBranch(branch.to_string())),
            head => Ok(head),
        }
    }
}

/// Stage every job on its own thread; the first error (by member order) if any failed.
fn stage_all(
    store: &Arc<Store>,
    jobs: Vec<(String, StageJob)>,
    meta: &CommitMeta,
) -> Result<Vec<(String, Staged)>> {
    std::thread::scope(|s| {
        let running: Vec<_> = jobs
            .into_iter()
            .map(|(key, job)| {
                let handle = s.spawn(move || stage(store, job, meta, &NoProgress));
                (key, handle)
            })
            .collect();
        running
            .into_iter()
            .map(|(key, handle)| {
                let staged = handle
                    .join()
                    .map_err(|_| GroupError::ScanPanicked(key.clone()))??;
                Ok((key, staged))
            })
            .collect()
    })
}
