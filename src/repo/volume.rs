//! Volumes: create, list, switch, remove.

use super::heads::{self, Head};
use super::{db, Repo};
use crate::names;
use crate::{Error, Result};
use serde::Serialize;

/// One row of `dvol list`.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub branch: String,
    pub current: bool,
}

impl Repo {
    /// Create a volume with an empty `master` branch and make it current.
    pub fn init_volume(&mut self, name: &str) -> Result<()> {
        self.create_volume(name)?;
        db::set_meta(&self.conn, "current_volume", name)
    }

    /// Create a volume with an empty `master` branch (not made current).
    pub fn create_volume(&mut self, name: &str) -> Result<()> {
        self.create_volume_marked(name, None)
    }

    /// Create a volume for `clone`, recording in the same transaction that it is an unfinished
    /// clone of `remote_volume` at `url` (see [`Repo::pending_clone`]).
    pub fn begin_clone(&mut self, name: &str, url: &str, remote_volume: &str) -> Result<()> {
        self.create_volume_marked(name, Some((url, remote_volume)))
    }

    /// The URL and remote volume of an interrupted clone that made `volume`, if it is one.
    pub fn pending_clone(&self, volume: &str) -> Result<Option<(String, String)>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT url, remote_volume FROM pending_clones WHERE volume = ?1",
                [volume],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Finish a clone in one transaction: set the current branch, make the volume current and
    /// drop the pending-clone marker.
    pub fn finish_clone(&mut self, volume: &str, branch: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE volumes SET branch = ?2 WHERE name = ?1",
            [volume, branch],
        )?;
        db::set_meta(&tx, "current_volume", volume)?;
        tx.execute("DELETE FROM pending_clones WHERE volume = ?1", [volume])?;
        tx.commit()?;
        Ok(())
    }

    fn create_volume_marked(&mut self, name: &str, clone: Option<(&str, &str)>) -> Result<()> {
        names::validate("volume", name)?;
        let _lock = self.lock_volume(name)?;
        if self.volume_exists(name)? {
            return Err(Error::VolumeExists(name.to_string()));
        }
        // A directory without a database row is left over from an interrupted rm or init.
        self.discard_dir(&self.root.join(name))?;
        super::perms::secure_volume_dir(&self.root.join(name))?;
        let live = self.branch_dir(name, "master");
        crate::live::Dir::create_root(&live)?;
        crate::failpoint::hit("init.before-transaction");
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO volumes(name, branch, created) VALUES (?1, 'master', strftime('%s','now'))",
            [name],
        )?;
        heads::swap(&tx, name, "master", Head::Absent, Head::Unborn)?;
        if let Some((url, remote_volume)) = clone {
            tx.execute(
                "INSERT OR REPLACE INTO pending_clones(volume, url, remote_volume) VALUES (?1, ?2, ?3)",
                [name, url, remote_volume],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Create volume `name` whose `master` starts at a commit of `source`: `at` is a branch,
    /// tag, commit id or prefix, `HEAD`-relative spec (default: the head of the source's
    /// current branch). Only rows are added and the live data is made by the clone method
    /// (a thin clone of the source's data where it can be): the stored objects are shared
    /// with the source, nothing in the store is copied.
    pub fn create_volume_from(&mut self, name: &str, source: &str, at: Option<&str>) -> Result<()> {
        names::validate("volume", source)?;
        if !self.volume_exists(source)? {
            return Err(Error::NoSuchVolume(source.to_string()));
        }
        let source_branch = self.current_branch(source)?;
        let head = match at {
            Some(spec) => self.resolve(source, &source_branch, spec)?,
            None => self
                .branch_head(source, &source_branch)?
                .ok_or_else(|| Error::SourceHasNoCommits(source.to_string()))?,
        };
        let source = super::thin::Source {
            volume: source,
            branch: &source_branch,
        };
        self.create_volume_at(name, &head, Some(&source))
    }

    /// Create volume `name` whose `master` starts at member `member`'s commit in group
    /// revision `at` (default: the head of the group's current branch) of group `group`:
    /// the plugin's `-o from=GROUP[@REF] -o member=MEMBER`, one call per member.
    pub fn create_volume_from_group(
        &mut self,
        name: &str,
        group: &str,
        at: Option<&str>,
        member: &str,
    ) -> Result<()> {
        let info = self.group(group)?;
        let id = self.resolve_group(group, &info.branch, at.unwrap_or("HEAD"))?;
        let head = self
            .group_commit(group, &id)?
            .member(member)
            .ok_or_else(|| super::GroupError::CommitLacksMember {
                group: group.to_string(),
                id,
                member: member.to_string(),
            })?;
        // The member's own live data seeds a thin clone, as `from=VOLUME` does.
        let volume = info.volume_of(member)?;
        let branch = self.current_branch(volume)?;
        let source = super::thin::Source {
            volume,
            branch: &branch,
        };
        self.create_volume_at(name, &head, Some(&source))
    }

    /// Create volume `name` with `master` at commit `head`, its live data made by the clone
    /// method (from `source`'s live data where a thin clone can use it); only rows are added,
    /// the stored objects are shared.
    fn create_volume_at(
        &mut self,
        name: &str,
        head: &crate::store::ObjectId,
        source: Option<&super::thin::Source>,
    ) -> Result<()> {
        names::validate("volume", name)?;
        let _lock = self.lock_volume(name)?;
        if self.volume_exists(name)? {
            return Err(Error::VolumeExists(name.to_string()));
        }
        self.discard_dir(&self.root.join(name))?;
        let layout = self.make_branch_data(name, "master", head, &Default::default(), source)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO volumes(name, branch, created) VALUES (?1, 'master', strftime('%s','now'))",
            [name],
        )?;
        heads::swap(&tx, name, "master", Head::Absent, Head::At(*head))?;
        super::thin::record_layout(&tx, name, "master", &layout)?;
        tx.commit()?;
        Ok(())
    }

    /// Every volume, sorted by name.
    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>> {
        let current = db::get_meta(&self.conn, "current_volume")?;
        let mut stmt = self
            .conn
            .prepare("SELECT name, branch FROM volumes ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (name, branch) = r?;
            Ok(VolumeInfo {
                current: current.as_deref() == Some(name.as_str()),
                name,
                branch,
            })
        })
        .collect()
    }

    /// Make `name` the current volume.
    pub fn switch_volume(&self, name: &str) -> Result<()> {
        names::validate("volume", name)?;
        if !self.volume_exists(name)? {
            return Err(Error::NoSuchVolume(name.to_string()));
        }
        db::set_meta(&self.conn, "current_volume", name)
    }

    /// Delete a volume, its branches, tags and live data. Stored objects stay until gc.
    pub fn remove_volume(&mut self, name: &str) -> Result<()> {
        names::validate("volume", name)?;
        let _lock = self.lock_volume(name)?;
        if !self.volume_exists(name)? {
            return Err(Error::RemoveMissingVolume(name.to_string()));
        }
        if let Some(group) = self.groups_of(name)?.first() {
            return Err(Error::VolumeInGroup {
                volume: name.to_string(),
                group: group.clone(),
            });
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for table in [
            "volumes WHERE name",
            "branches WHERE volume",
            "tags WHERE volume",
            "pending WHERE volume",
            "pending_clones WHERE volume",
            "remotes WHERE volume",
            "remote_refs WHERE volume",
            "layouts WHERE volume",
        ] {
            tx.execute(&format!("DELETE FROM {table} = ?1"), [name])?;
        }
        tx.execute(
            "DELETE FROM meta WHERE key = 'current_volume' AND value = ?1",
            [name],
        )?;
        tx.commit()?;
        crate::failpoint::hit("rm.before-discard");
        self.discard_dir(&self.root.join(name))?;
        self.discard_dir(&self.meta.join("cache").join(name))?;
        self.discard_dir(&self.meta.join("statcache").join(name))
    }
}
