//! The local side of remotes: the `remotes` and `remote_refs` tables, recording fetched
//! objects and commits, ancestry checks, and fast-forwarding a branch and its live data.

use super::heads::{self, Head};
use super::{commit, db, prune, Commit, Repo, VolumeLock};
use crate::names;
use crate::snapshot::{Change, RestoreOptions};
use crate::store::{ObjectId, Store, WrittenPack};
use crate::{Error, Result};
use rusqlite::OptionalExtension;

impl Repo {
    /// Remotes of a volume, sorted by name: (name, url).
    pub fn remotes(&self, volume: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, url FROM remotes WHERE volume = ?1 ORDER BY name")?;
        let rows = stmt.query_map([volume], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The URL of a remote.
    pub fn remote_url(&self, volume: &str, name: &str) -> Result<String> {
        names::validate("remote", name)?;
        self.conn
            .query_row(
                "SELECT url FROM remotes WHERE volume = ?1 AND name = ?2",
                [volume, name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::NoSuchRemote(name.to_string()))
    }

    /// Add a remote; `remote_volume` is the volume's name on the remote (default: the same).
    pub fn add_remote(
        &self,
        volume: &str,
        name: &str,
        url: &str,
        remote_volume: Option<&str>,
    ) -> Result<()> {
        names::validate("remote", name)?;
        crate::remote_url::RemoteUrl::parse(url)?;
        let exists = self
            .conn
            .query_row(
                "SELECT 1 FROM remotes WHERE volume = ?1 AND name = ?2",
                [volume, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if exists {
            return Err(Error::RemoteExists(name.to_string()));
        }
        if let Some(rv) = remote_volume {
            names::validate("volume", rv)?;
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO remotes(volume, name, url) VALUES (?1, ?2, ?3)",
            [volume, name, url],
        )?;
        let key = remote_volume_key(volume, name);
        match remote_volume {
            Some(rv) if rv != volume => db::set_meta(&tx, &key, rv)?,
            _ => db::delete_meta(&tx, &key)?,
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove a remote and its remote-tracking refs.
    pub fn remove_remote(&self, volume: &str, name: &str) -> Result<()> {
        self.remote_url(volume, name)?;
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM remotes WHERE volume = ?1 AND name = ?2",
            [volume, name],
        )?;
        tx.execute(
            "DELETE FROM remote_refs WHERE volume = ?1 AND remote = ?2",
            [volume, name],
        )?;
        db::delete_meta(&tx, &remote_volume_key(volume, name))?;
        db::delete_meta(&tx, &remote_encrypted_key(volume, name))?;
        tx.commit()?;
        Ok(())
    }

    /// Record whether a remote is encrypted (then a plain marker there is refused).
    pub fn set_remote_encrypted(&self, volume: &str, name: &str, encrypted: bool) -> Result<()> {
        let key = remote_encrypted_key(volume, name);
        if encrypted {
            db::set_meta(&self.conn, &key, "1")
        } else {
            db::delete_meta(&self.conn, &key)
        }
    }

    /// Whether a remote was added with `--encrypt` (or cloned from an encrypted remote).
    pub fn remote_encrypted(&self, volume: &str, name: &str) -> Result<bool> {
        Ok(db::get_meta(&self.conn, &remote_encrypted_key(volume, name))?.is_some())
    }

    /// The volume's name on a remote.
    pub fn remote_volume(&self, volume: &str, name: &str) -> Result<String> {
        Ok(db::get_meta(&self.conn, &remote_volume_key(volume, name))?
            .unwrap_or_else(|| volume.to_string()))
    }

    /// The last known head of `remote/branch`.
    pub fn remote_ref(&self, volume: &str, remote: &str, branch: &str) -> Result<Option<ObjectId>> {
        let head: Option<String> = self
            .conn
            .query_row(
                "SELECT head FROM remote_refs WHERE volume = ?1 AND remote = ?2 AND branch = ?3",
                [volume, remote, branch],
                |r| r.get(0),
            )
            .optional()?;
        head.map(|h| {
            heads::parse_ref(
                &format!("remote-tracking ref {remote}/{branch} of {volume}"),
                &h,
            )
        })
        .transpose()
    }

    /// Record the remote-tracking ref after a successful push.
    pub fn set_remote_ref(
        &self,
        volume: &str,
        remote: &str,
        branch: &str,
        head: &ObjectId,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO remote_refs(volume, remote, branch, head) VALUES (?1, ?2, ?3, ?4)",
            [volume, remote, branch, head.to_hex().as_str()],
        )?;
        Ok(())
    }

    /// Index packs of objects that nothing references yet (fetch checkpoints; chunks only).
    pub fn record_objects(&mut self, packs: &[WrittenPack]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Store::record(&tx, packs)?;
        tx.commit()?;
        Ok(())
    }

    /// Record a fetch in one transaction: its packs, its commits, and the remote-tracking refs
    /// (refs of `remote` not in `refs` are dropped: the remote deleted them).
    pub fn record_fetch(
        &mut self,
        volume: &str,
        remote: &str,
        packs: &[WrittenPack],
        commits: &[(ObjectId, Commit)],
        refs: &[(String, ObjectId)],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        record_objects(&tx, packs, commits)?;
        tx.execute(
            "DELETE FROM remote_refs WHERE volume = ?1 AND remote = ?2",
            [volume, remote],
        )?;
        for (branch, head) in refs {
            tx.execute(
                "INSERT INTO remote_refs(volume, remote, branch, head) VALUES (?1, ?2, ?3, ?4)",
                [volume, remote, branch.as_str(), head.to_hex().as_str()],
            )?;
        }
        crate::failpoint::hit("fetch.before-record-commit");
        tx.commit()?;
        Ok(())
    }

    /// Record downloaded packs and commits that no remote-tracking ref names (the member
    /// commits of fetched group commits), in one transaction.
    pub fn record_commits(
        &mut self,
        packs: &[WrittenPack],
        commits: &[(ObjectId, Commit)],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        record_objects(&tx, packs, commits)?;
        tx.commit()?;
        Ok(())
    }

    /// The interrupted reset or pull of a branch, if any: (op, target).
    pub fn pending_op(&self, volume: &str, branch: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT op, target FROM pending WHERE volume = ?1 AND branch = ?2",
                [volume, branch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors (commits known locally).
    pub fn is_ancestor(&self, ancestor: &ObjectId, descendant: &ObjectId) -> Result<bool> {
        let mut todo = vec![*descendant];
        let mut seen = std::collections::HashSet::new();
        while let Some(id) = todo.pop() {
            if id == *ancestor {
                return Ok(true);
            }
            if !seen.insert(id) {
                continue;
            }
            match commit::lookup(&self.conn, &id) {
                Ok(c) => todo.extend(c.parents),
                Err(Error::MissingObject { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// The first change of a branch's live data against its head, if any (read-only; the
    /// walk holds one directory at a time, not every change).
    pub fn live_changes(&self, volume: &str, branch: &str) -> Result<Vec<Change>> {
        let _lock = self.lock_store(false)?;
        let head_tree = match self.branch_head(volume, branch)? {
            Some(h) => Some(prune::kept_tree(&self.conn, &h)?),
            None => None,
        };
        let dir = self.live_dir(volume, branch)?;
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut first = Vec::new();
        self.diff_live(volume, branch, head_tree.as_ref(), &mut |c| {
            if first.is_empty() {
                first.push(c);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// Move `branch` of the locked volume from `expected` to `target` and make its live data
    /// that commit's tree (restored with `restore`: data from a remote); creates the branch
    /// when `expected` is [`Head::Absent`]. The caller runs this inside its guard. Interrupted,
    /// it leaves a pending pull to finish.
    pub(crate) fn fast_forward(
        &mut self,
        lock: &VolumeLock,
        branch: &str,
        expected: Head,
        target: &ObjectId,
        restore: &RestoreOptions,
    ) -> Result<()> {
        names::validate("branch", branch)?;
        match expected {
            Head::Absent => {
                let how = super::rewrite::NewBranch {
                    switch: false,
                    op: "pull",
                    restore,
                    source: None,
                };
                self.create_branch_at(lock, branch, target, &how)
            }
            _ => self.rewrite_branch(lock, branch, expected, target, "pull", restore),
        }
    }

    /// Make `branch` the current branch of `volume` (no checks; used by clone).
    pub fn set_current_branch(&self, volume: &str, branch: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE volumes SET branch = ?2 WHERE name = ?1",
            [volume, branch],
        )?;
        Ok(())
    }

    /// Make `volume` the current volume.
    pub fn set_current_volume(&self, volume: &str) -> Result<()> {
        db::set_meta(&self.conn, "current_volume", volume)
    }
}

fn remote_volume_key(volume: &str, remote: &str) -> String {
    format!("remote_volume/{volume}/{remote}")
}

fn remote_encrypted_key(volume: &str, remote: &str) -> String {
    format!("remote_encrypted/{volume}/{remote}")
}

/// Index downloaded packs and record their commits (inside the caller's transaction).
fn record_objects(
    tx: &rusqlite::Transaction,
    packs: &[WrittenPack],
    commits: &[(ObjectId, Commit)],
) -> Result<()> {
    Store::record(tx, packs)?;
    for (id, c) in commits {
        commit::record(tx, id, c)?;
    }
    Ok(())
}
