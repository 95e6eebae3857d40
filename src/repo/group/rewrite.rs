//! Moving a whole group: `reset --hard` (every member's branch and live data to the member
//! commits of a group commit), `checkout -b` (a new branch of every member at those commits)
//! and `checkout` (switch every member).
//!
//! Reset records a pending group record (in the transaction that checks the group head)
//! before any member is rewritten, rewrites each member through the one rewrite protocol
//! ([`crate::repo::rewrite`]: member pending record, materialize, member head swap), then
//! moves the group head and drops the pending record in one transaction. Killed half-way,
//! the next group command finds the pending record and rolls the reset forward
//! ([`Repo::finish_group_pending`]), so a group is seen at the old group commit or the new
//! one, never a mix. `checkout -b` materializes every member's new branch first (a crash
//! leaves only unused directories) and then creates every branch row, switches every member
//! and the group in one transaction.

use super::{GroupCommit, GroupError, GroupInfo, GroupLock, Repo};
use crate::failpoint;
use crate::names;
use crate::repo::heads::{self, Head, GROUP_BRANCHES};
use crate::repo::{guarded_all, LiveGuard};
use crate::snapshot::RestoreOptions;
use crate::store::ObjectId;
use crate::{Error, Result};

impl Repo {
    /// Reset the group's current branch and every member to group revision `spec`, with the
    /// containers of every member held (stopped) through the whole rewrite.
    pub fn reset_group_hard(
        &mut self,
        name: &str,
        spec: &str,
        guard: &dyn LiveGuard,
    ) -> Result<ObjectId> {
        self.reset_group_hard_from(name, spec, None, guard)
    }

    /// [`Repo::reset_group_hard`], only if the group is still on `seen`'s branch at `seen`'s
    /// head (checked by compare-and-swap under the group lock): a pull that looked at the
    /// head before downloading must not drop a group commit made meanwhile.
    pub fn reset_group_hard_from(
        &mut self,
        name: &str,
        spec: &str,
        seen: Option<(&str, Head)>,
        guard: &dyn LiveGuard,
    ) -> Result<ObjectId> {
        let lock = self.lock_group(name)?;
        self.finish_group_pending(&lock, guard)?;
        let info = self.group(name)?;
        let branch = info.branch.clone();
        let expected = match seen {
            None => self.group_head(name, &branch)?,
            Some((b, head)) if b == branch => head,
            Some((b, head)) => {
                return Err(Error::HeadMoved {
                    volume: format!("group {name}"),
                    branch: b.to_string(),
                    expected: head.describe(),
                    found: format!("(the group switched to branch {branch})"),
                })
            }
        };
        let target = self.resolve_group(name, &branch, spec)?;
        let commit = self.group_commit(name, &target)?;
        for (key, _) in &commit.members {
            let volume = info.volume_of(key)?;
            self.member_head(&lock, volume, &branch)?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        heads::swap_in(GROUP_BRANCHES, &tx, name, &branch, expected, expected)?;
        tx.execute(
            "INSERT OR REPLACE INTO group_pending(grp, branch, op, target) VALUES (?1, ?2, 'reset', ?3)",
            [name, branch.as_str(), target.to_hex().as_str()],
        )?;
        tx.commit()?;
        failpoint::hit("group-reset.after-pending");
        self.roll_group(&lock, &info, &branch, &target, &commit, guard)?;
        Ok(target)
    }

    /// Finish the interrupted group resets of group `name`, if any (every group command runs
    /// this first, so a group is never seen half-reset).
    pub fn recover_group(&mut self, name: &str, guard: &dyn LiveGuard) -> Result<()> {
        let lock = self.lock_group(name)?;
        self.finish_group_pending(&lock, guard)
    }

    /// Finish every interrupted group reset of the locked group (roll it forward).
    pub(crate) fn finish_group_pending(
        &mut self,
        lock: &GroupLock,
        guard: &dyn LiveGuard,
    ) -> Result<()> {
        let name = lock.name().to_string();
        let mut stmt = self
            .conn
            .prepare("SELECT branch, target FROM group_pending WHERE grp = ?1 ORDER BY branch")?;
        let pending: Vec<(String, String)> = stmt
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        if pending.is_empty() {
            return Ok(());
        }
        let info = self.group(&name)?;
        for (branch, target) in pending {
            let target =
                heads::parse_ref(&format!("pending reset of group {name}/{branch}"), &target)?;
            let commit = self.group_commit(&name, &target)?;
            tracing::info!("finishing the interrupted reset of group {name}/{branch}");
            self.roll_group(lock, &info, &branch, &target, &commit, guard)?;
        }
        Ok(())
    }

    /// Rewrite every member of `branch` to its commit in `commit` (skipping those already
    /// there), then move the group head to `target` and drop the pending record.
    fn roll_group(
        &mut self,
        lock: &GroupLock,
        info: &GroupInfo,
        branch: &str,
        target: &ObjectId,
        commit: &GroupCommit,
        guard: &dyn LiveGuard,
    ) -> Result<()> {
        let name = lock.name();
        guarded_all(guard, &info.volumes(), "group reset", || {
            for (key, member_commit) in &commit.members {
                let volume = info.volume_of(key)?;
                let head = self.head(volume, branch)?;
                let done =
                    head == Head::At(*member_commit) && self.pending_op(volume, branch)?.is_none();
                if !done {
                    self.rewrite_branch(
                        lock.of(volume)?,
                        branch,
                        head,
                        member_commit,
                        "reset",
                        &RestoreOptions::default(),
                    )?;
                }
                failpoint::hit("group-reset.after-member");
            }
            Ok(())
        })?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = heads::read_in(GROUP_BRANCHES, &tx, name, branch)?;
        heads::swap_in(GROUP_BRANCHES, &tx, name, branch, now, Head::At(*target))?;
        tx.execute(
            "DELETE FROM group_pending WHERE grp = ?1 AND branch = ?2",
            [name, branch],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Create branch `new` of the group and of every member at the group's head, and switch
    /// the group and every member to it (inside `guard`, so restarted containers mount it).
    pub fn checkout_group_new(
        &mut self,
        name: &str,
        new: &str,
        guard: &dyn LiveGuard,
    ) -> Result<()> {
        names::validate_new_ref("branch", new)?;
        let lock = self.lock_group(name)?;
        self.finish_group_pending(&lock, guard)?;
        let info = self.group(name)?;
        let head = self
            .group_head(name, &info.branch)?
            .commit()
            .ok_or(Error::NoCommitYet)?;
        let commit = self.group_commit(name, &head)?;
        if self.group_head(name, new)? != Head::Absent {
            return Err(Error::BranchExists(new.to_string()));
        }
        let mut targets = Vec::new();
        for (key, c) in &commit.members {
            let volume = info.volume_of(key)?;
            lock.of(volume)?;
            if self.head(volume, new)? != Head::Absent {
                return Err(GroupError::MemberBranchExists {
                    volume: volume.to_string(),
                    branch: new.to_string(),
                }
                .into());
            }
            targets.push((volume.to_string(), *c));
        }
        guarded_all(guard, &info.volumes(), "checkout", || {
            let mut layouts = Vec::new();
            for (volume, c) in &targets {
                // Each member's new branch is cloned from its current branch where it can be.
                let current = self.current_branch(volume)?;
                let source = crate::repo::thin::Source {
                    volume,
                    branch: &current,
                };
                layouts.push(self.make_branch_data(
                    volume,
                    new,
                    c,
                    &Default::default(),
                    Some(&source),
                )?);
            }
            failpoint::hit("group-checkout.before-rows");
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for ((volume, c), layout) in targets.iter().zip(&layouts) {
                heads::swap(&tx, volume, new, Head::Absent, Head::At(*c))?;
                crate::repo::thin::record_layout(&tx, volume, new, layout)?;
                tx.execute(
                    "UPDATE volumes SET branch = ?2 WHERE name = ?1",
                    [volume, new],
                )?;
            }
            heads::swap_in(GROUP_BRANCHES, &tx, name, new, Head::Absent, Head::At(head))?;
            tx.execute("UPDATE groups SET branch = ?2 WHERE name = ?1", [name, new])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Switch the group and every member to existing branch `branch`, in one transaction.
    pub fn checkout_group(
        &mut self,
        name: &str,
        branch: &str,
        guard: &dyn LiveGuard,
    ) -> Result<()> {
        names::validate("branch", branch)?;
        let lock = self.lock_group(name)?;
        self.finish_group_pending(&lock, guard)?;
        let info = self.group(name)?;
        if self.group_head(name, branch)? == Head::Absent {
            return Err(Error::NoSuchBranch(branch.to_string()));
        }
        for volume in info.volumes() {
            if !self.branch_exists(volume, branch)? {
                return Err(GroupError::MemberLacksBranch {
                    group: name.to_string(),
                    volume: volume.to_string(),
                    branch: branch.to_string(),
                }
                .into());
            }
        }
        guarded_all(guard, &info.volumes(), "checkout", || {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for volume in info.volumes() {
                tx.execute(
                    "UPDATE volumes SET branch = ?2 WHERE name = ?1",
                    [volume, branch],
                )?;
            }
            tx.execute(
                "UPDATE groups SET branch = ?2 WHERE name = ?1",
                [name, branch],
            )?;
            tx.commit()?;
            Ok(())
        })
    }
}
