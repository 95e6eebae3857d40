//! Groups of volumes that are committed, branched, reset and moved together (one app's
//! volumes: a database and its uploads, a queue and its consumer).
//!
//! A group names its members (a member key, stable across clones, and the local volume) and
//! has branches like a volume; a branch of a group is the same branch of every member. A
//! group commit is a small object naming the member commits (`member key -> commit id`), its
//! parents, author, date and message; its id is the blake3 hash of its encoding, so a group
//! commit fetched from a remote is checked against its id. Group commits live in SQLite
//! (`group_commits`), group heads in `group_branches` and move by compare-and-swap
//! ([`heads::swap_in`]) under the group lock and every member's volume lock.
//!
//! Crash safety: a group commit records every member commit, every member head, the group
//! commit and the group head in one transaction ([`commit`]); a group reset records a pending
//! group record first and rolls every member through the one rewrite protocol
//! ([`super::rewrite`]), and the next group command rolls an interrupted one forward
//! ([`rewrite`]). A member stays a plain volume: committing it alone moves its branch, never
//! the group.
//!
//! gc keeps the member commits of the group commits a group branch, tag or pending reset
//! reaches (through parents) and deletes the other group commits; fsck checks every stored
//! one. Errors are [`GroupError`].
//!
//! This module must not talk to Docker (the caller's [`LiveGuard`] does) or print.
//!
//! [`LiveGuard`]: super::LiveGuard

mod commit;
mod error;
mod rewrite;

pub use commit::GroupCommitResult;
pub use error::GroupError;

use super::heads::{self, Head, GROUP_BRANCHES};
use super::lock::{self, LockGuard};
use super::{Repo, VolumeLock};
use crate::names;
use crate::store::ObjectId;
use crate::{Error, Result};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Most members a group may have (a remote's group commit naming more is refused).
pub const MAX_MEMBERS: usize = 256;

/// A group commit: the member commits taken together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCommit {
    /// Previous group commits (the first is the group branch's previous head).
    pub parents: Vec<ObjectId>,
    /// Member key -> commit of that member, sorted by key.
    pub members: Vec<(String, ObjectId)>,
    /// `Name <email>`.
    pub author: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Author's UTC offset in minutes.
    pub tz_offset_min: i32,
    pub message: String,
}

impl GroupCommit {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("group commit serializes")
    }

    /// The id: the blake3 hash of the encoding.
    pub fn id(&self) -> ObjectId {
        ObjectId::hash(&self.encode())
    }

    /// Decode bytes that claim to be group commit `id`: the hash must match, the fields must
    /// be in bounds and the member keys valid, sorted and unique.
    pub fn decode(id: &ObjectId, bytes: &[u8]) -> Result<GroupCommit> {
        let bad = |detail: String| Error::CorruptObject {
            id: id.to_hex(),
            detail,
        };
        if ObjectId::hash(bytes) != *id {
            return Err(bad("group commit does not match its id".into()));
        }
        let c: GroupCommit =
            postcard::from_bytes(bytes).map_err(|e| bad(format!("not a group commit: {e}")))?;
        if c.parents.len() > 16
            || c.message.len() > 1 << 20
            || c.members.is_empty()
            || c.members.len() > MAX_MEMBERS
        {
            return Err(bad("group commit fields out of bounds".into()));
        }
        for pair in c.members.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err(bad("group commit members not sorted and unique".into()));
            }
        }
        for (key, _) in &c.members {
            names::validate("volume", key).map_err(|e| bad(e.to_string()))?;
        }
        Ok(c)
    }

    /// The commit of member `key`.
    pub fn member(&self, key: &str) -> Option<ObjectId> {
        self.members.iter().find(|m| m.0 == key).map(|m| m.1)
    }
}

/// One member of a group: its key (the name group commits use) and the local volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub key: String,
    pub volume: String,
}

/// A group as `group ls` and `group show` report it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub branch: String,
    pub members: Vec<Member>,
    /// The group commit at the head of the current branch.
    pub head: Option<String>,
}

impl GroupInfo {
    /// The local volume of member `key`.
    pub fn volume_of(&self, key: &str) -> Result<&str> {
        self.members
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.volume.as_str())
            .ok_or_else(|| {
                GroupError::NoMember {
                    group: self.name.clone(),
                    key: key.to_string(),
                }
                .into()
            })
    }

    /// The member volumes.
    pub fn volumes(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.volume.as_str()).collect()
    }
}

/// One group commit as `group log` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct GroupLogEntry {
    pub id: String,
    pub author: String,
    pub date: String,
    pub timestamp: i64,
    pub message: String,
    pub members: Vec<(String, String)>,
}

/// Locks held while a command changes a group: the group's own lock, then every member's
/// volume lock in name order (so two group commands never wait on each other in a cycle).
pub struct GroupLock {
    _group: LockGuard,
    members: Vec<VolumeLock>,
    name: String,
}

impl GroupLock {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The volume lock of member volume `volume`.
    fn of(&self, volume: &str) -> Result<&VolumeLock> {
        self.members
            .iter()
            .find(|l| l.volume() == volume)
            .ok_or_else(|| GroupError::NotLocked(volume.to_string()).into())
    }
}

impl Repo {
    /// Create group `name` of `members` (key, volume). Every member must exist and be on the
    /// same branch, which becomes the group's branch (with no group commit yet).
    pub fn create_group(&mut self, name: &str, members: &[Member]) -> Result<()> {
        names::validate("group", name)?;
        if members.is_empty() {
            return Err(GroupError::NoVolumes(name.to_string()).into());
        }
        if members.len() > MAX_MEMBERS {
            return Err(GroupError::TooMany {
                group: name.to_string(),
                max: MAX_MEMBERS,
            }
            .into());
        }
        let mut branch: Option<(String, String)> = None;
        for (i, m) in members.iter().enumerate() {
            names::validate("volume", &m.key)?;
            names::validate("volume", &m.volume)?;
            if members[..i]
                .iter()
                .any(|o| o.key == m.key || o.volume == m.volume)
            {
                return Err(GroupError::NamedTwice {
                    group: name.to_string(),
                    volume: m.volume.clone(),
                }
                .into());
            }
            let b = self.current_branch(&m.volume)?;
            match &branch {
                Some((first, vol)) if *first != b => {
                    return Err(GroupError::DifferentBranches {
                        group: name.to_string(),
                        first: vol.clone(),
                        first_branch: first.clone(),
                        volume: m.volume.clone(),
                        branch: b,
                    }
                    .into())
                }
                _ => branch = Some((b, m.volume.clone())),
            }
        }
        let branch = branch.map(|b| b.0).unwrap_or_default();
        let _lock = self.lock_group_only(name)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists = tx
            .query_row("SELECT 1 FROM groups WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some();
        if exists {
            return Err(GroupError::Exists(name.to_string()).into());
        }
        tx.execute(
            "INSERT INTO groups(name, branch, created) VALUES (?1, ?2, strftime('%s','now'))",
            [name, branch.as_str()],
        )?;
        for m in members {
            tx.execute(
                "INSERT INTO group_members(grp, member, volume) VALUES (?1, ?2, ?3)",
                [name, m.key.as_str(), m.volume.as_str()],
            )?;
        }
        heads::swap_in(
            GROUP_BRANCHES,
            &tx,
            name,
            &branch,
            Head::Absent,
            Head::Unborn,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Delete a group: its branches, tags and group commits. The member volumes and their
    /// history stay.
    pub fn remove_group(&mut self, name: &str) -> Result<()> {
        let _lock = self.lock_group_only(name)?;
        self.group(name)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for table in [
            "groups WHERE name",
            "group_members WHERE grp",
            "group_branches WHERE grp",
            "group_tags WHERE grp",
            "group_commits WHERE grp",
            "group_pending WHERE grp",
            "group_clones WHERE grp",
        ] {
            tx.execute(&format!("DELETE FROM {table} = ?1"), [name])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Record that group `name` is being cloned from `remote_group` at `url` (a killed clone
    /// is resumed by running it again).
    pub fn begin_group_clone(&mut self, name: &str, url: &str, remote_group: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO group_clones(grp, url, remote_group) VALUES (?1, ?2, ?3)",
            [name, url, remote_group],
        )?;
        Ok(())
    }

    /// The URL and remote group of an interrupted clone of group `name`, if there is one.
    pub fn pending_group_clone(&self, name: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT url, remote_group FROM group_clones WHERE grp = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The clone of group `name` is complete.
    pub fn finish_group_clone(&mut self, name: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM group_clones WHERE grp = ?1", [name])?;
        Ok(())
    }

    /// Every group, sorted by name.
    pub fn groups(&self) -> Result<Vec<GroupInfo>> {
        let mut stmt = self.conn.prepare("SELECT name FROM groups ORDER BY name")?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        names.iter().map(|n| self.group(n)).collect()
    }

    /// One group.
    pub fn group(&self, name: &str) -> Result<GroupInfo> {
        names::validate("group", name)?;
        let branch: String = self
            .conn
            .query_row("SELECT branch FROM groups WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| GroupError::Missing(name.to_string()))?;
        let mut stmt = self
            .conn
            .prepare("SELECT member, volume FROM group_members WHERE grp = ?1 ORDER BY member")?;
        let members = stmt
            .query_map([name], |r| {
                Ok(Member {
                    key: r.get(0)?,
                    volume: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let head = self.group_head(name, &branch)?.commit().map(|h| h.to_hex());
        Ok(GroupInfo {
            name: name.to_string(),
            branch,
            members,
            head,
        })
    }

    /// The groups `volume` is a member of.
    pub fn groups_of(&self, volume: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT grp FROM group_members WHERE volume = ?1 ORDER BY grp")?;
        let names = stmt.query_map([volume], |r| r.get(0))?;
        Ok(names.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether an interrupted rewrite of `volume`'s live data is waiting to be finished: a
    /// pending reset of one of its branches, or of a group it is a member of.
    pub fn rewrite_pending(&self, volume: &str) -> Result<bool> {
        let found = self
            .conn
            .query_row(
                "SELECT 1 FROM pending WHERE volume = ?1 UNION ALL \
                 SELECT 1 FROM group_pending p JOIN group_members m ON m.grp = p.grp \
                 WHERE m.volume = ?1 LIMIT 1",
                [volume],
                |_| Ok(()),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// The exact head of group branch `name/branch`.
    pub fn group_head(&self, name: &str, branch: &str) -> Result<Head> {
        heads::read_in(GROUP_BRANCHES, &self.conn, name, branch)
    }

    /// Branches of a group, sorted.
    pub fn group_branches(&self, name: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM group_branches WHERE grp = ?1 ORDER BY name")?;
        let names = stmt.query_map([name], |r| r.get(0))?;
        Ok(names.collect::<rusqlite::Result<_>>()?)
    }

    /// Take the group's own lock (not the members').
    fn lock_group_only(&self, name: &str) -> Result<LockGuard> {
        names::validate("group", name)?;
        // Volume names cannot start with a dot, so this never collides with a volume's lock.
        let path = self.meta.join("locks").join(format!(".group-{name}.lock"));
        lock::acquire(
            &path,
            &format!("group {name}"),
            true,
            self.options.lock_timeout,
        )
    }

    /// Lock a group and every member volume (in name order).
    pub fn lock_group(&self, name: &str) -> Result<GroupLock> {
        let group = self.lock_group_only(name)?;
        let mut volumes = self
            .group(name)?
            .volumes()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        volumes.sort();
        let members = volumes
            .iter()
            .map(|v| self.lock_volume(v))
            .collect::<Result<_>>()?;
        Ok(GroupLock {
            _group: group,
            members,
            name: name.to_string(),
        })
    }

    /// Group commit `id` of group `name`, checked against its id.
    pub fn group_commit(&self, name: &str, id: &ObjectId) -> Result<GroupCommit> {
        let body: Vec<u8> = self
            .conn
            .query_row(
                "SELECT body FROM group_commits WHERE grp = ?1 AND id = ?2",
                [name, id.to_hex().as_str()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::MissingObject { id: id.to_hex() })?;
        GroupCommit::decode(id, &body)
    }

    /// Whether group commit `id` of group `name` is stored.
    pub fn has_group_commit(&self, name: &str, id: &ObjectId) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM group_commits WHERE grp = ?1 AND id = ?2",
                [name, id.to_hex().as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The first-parent history of a group branch, newest first.
    pub fn group_log(&self, name: &str, branch: &str) -> Result<Vec<GroupLogEntry>> {
        let mut out = Vec::new();
        let mut next = self.group_head(name, branch)?.commit();
        while let Some(id) = next {
            let c = self.group_commit(name, &id)?;
            next = c.parents.first().copied();
            let date = super::Commit {
                tree: id,
                parents: Vec::new(),
                author: String::new(),
                time: c.time,
                tz_offset_min: c.tz_offset_min,
                message: String::new(),
            }
            .date_string();
            out.push(GroupLogEntry {
                id: id.to_hex(),
                author: c.author,
                date,
                timestamp: c.time,
                message: c.message,
                members: c
                    .members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_hex()))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Resolve a group revision: `HEAD`, a group branch or tag, a group commit id or unique
    /// prefix, each optionally followed by `^` or `~N` (first parents).
    pub fn resolve_group(&self, name: &str, branch: &str, spec: &str) -> Result<ObjectId> {
        super::refs::resolve_spec(
            spec,
            "group commit",
            |base| self.resolve_group_base(name, branch, base, spec),
            |id| Ok(self.group_commit(name, id)?.parents.first().copied()),
        )
    }

    fn resolve_group_base(
        &self,
        name: &str,
        branch: &str,
        base: &str,
        spec: &str,
    ) -> Result<ObjectId> {
        let branch_head = |b: &str| -> Result<Option<ObjectId>> {
            match self.group_head(name, b)? {
                Head::At(id) => Ok(Some(id)),
                Head::Unborn => Err(GroupError::Unborn {
                    spec: spec.to_string(),
                    group: name.to_string(),
                    branch: b.to_string(),
                }
                .into()),
                Head::Absent => Ok(None),
            }
        };
        if base == "HEAD" {
            return branch_head(branch)?.ok_or_else(|| Error::NoSuchBranch(branch.into()));
        }
        if let Some(id) = branch_head(base)? {
            return Ok(id);
        }
        if let Some(id) = self.group_tag_target(name, base)? {
            return Ok(id);
        }
        super::refs::resolve_prefix_in(
            &self.conn,
            "SELECT id FROM group_commits WHERE grp = ?1 AND id >= ?2 AND id < ?3 LIMIT 2",
            &[name],
            base,
            spec,
        )
    }

    fn group_tag_target(&self, name: &str, tag: &str) -> Result<Option<ObjectId>> {
        let t: Option<String> = self
            .conn
            .query_row(
                "SELECT target FROM group_tags WHERE grp = ?1 AND name = ?2",
                [name, tag],
                |r| r.get(0),
            )
            .optional()?;
        t.map(|t| heads::parse_ref(&format!("tag {tag} of group {name}"), &t))
            .transpose()
    }

    /// Tag group revision `spec` (default HEAD) as `tag`.
    pub fn create_group_tag(
        &mut self,
        name: &str,
        tag: &str,
        spec: Option<&str>,
    ) -> Result<ObjectId> {
        names::validate_new_ref("tag", tag)?;
        let _lock = self.lock_group_only(name)?;
        let branch = self.group(name)?.branch;
        if self.group_tag_target(name, tag)?.is_some() {
            return Err(Error::TagExists(tag.into()));
        }
        let id = self.resolve_group(name, &branch, spec.unwrap_or("HEAD"))?;
        self.conn.execute(
            "INSERT INTO group_tags(grp, name, target) VALUES (?1, ?2, ?3)",
            [name, tag, id.to_hex().as_str()],
        )?;
        Ok(id)
    }

    pub fn delete_group_tag(&mut self, name: &str, tag: &str) -> Result<()> {
        names::validate("tag", tag)?;
        let _lock = self.lock_group_only(name)?;
        let n = self.conn.execute(
            "DELETE FROM group_tags WHERE grp = ?1 AND name = ?2",
            [name, tag],
        )?;
        if n == 0 {
            return Err(Error::NoSuchTag(tag.into()));
        }
        Ok(())
    }

    /// Tags of a group with their group commits, sorted by name.
    pub fn group_tags(&self, name: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, target FROM group_tags WHERE grp = ?1 ORDER BY name")?;
        let rows = stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Record group commit `id` of group `name` (inside the caller's transaction).
    pub(crate) fn record_group_commit(
        tx: &rusqlite::Connection,
        name: &str,
        id: &ObjectId,
        c: &GroupCommit,
    ) -> Result<()> {
        tx.execute(
            "INSERT OR IGNORE INTO group_commits(grp, id, body) VALUES (?1, ?2, ?3)",
            rusqlite::params![name, id.to_hex(), c.encode()],
        )?;
        Ok(())
    }

    /// Record fetched group commits (no group head moves).
    pub fn record_group_commits(
        &mut self,
        name: &str,
        chain: &[(ObjectId, GroupCommit)],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (id, c) in chain {
            Repo::record_group_commit(&tx, name, id, c)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Record fetched group commits (`chain`, newest first) and point the group's `branch`
    /// at the first, in one transaction.
    pub fn record_group_chain(
        &mut self,
        name: &str,
        branch: &str,
        chain: &[(ObjectId, GroupCommit)],
    ) -> Result<()> {
        let _lock = self.lock_group_only(name)?;
        let Some((head, _)) = chain.first() else {
            return Ok(());
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (id, c) in chain {
            Repo::record_group_commit(&tx, name, id, c)?;
        }
        let now = heads::read_in(GROUP_BRANCHES, &tx, name, branch)?;
        heads::swap_in(GROUP_BRANCHES, &tx, name, branch, now, Head::At(*head))?;
        tx.commit()?;
        Ok(())
    }

    /// Every stored group commit: (group, id, body) as stored, for gc and fsck.
    fn all_group_commits(&self) -> Result<Vec<(String, String, Vec<u8>)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT grp, id, body FROM group_commits ORDER BY grp, id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The member commits of every group commit a group ref reaches (gc keeps them and what
    /// they reach).
    pub(crate) fn group_roots(&self) -> Result<Vec<(String, ObjectId)>> {
        let mut out = Vec::new();
        for (grp, id) in self.reachable_group_commits()? {
            let short = &id.to_hex()[..12];
            // One that does not decode is fsck's finding (and gc refuses on it).
            let Ok(c) = self.group_commit(&grp, &id) else {
                continue;
            };
            for (key, commit) in c.members {
                out.push((format!("group {grp} commit {short} member {key}"), commit));
            }
        }
        Ok(out)
    }

    /// Every group commit that a group branch, tag or pending reset reaches through parents,
    /// as (group, id). A group commit that does not decode ends the walk on its path (gc runs
    /// only on sound metadata, so it refuses before that matters).
    fn reachable_group_commits(&self) -> Result<HashSet<(String, ObjectId)>> {
        let mut todo = Vec::new();
        for q in [
            "SELECT grp, head FROM group_branches WHERE head IS NOT NULL",
            "SELECT grp, target FROM group_tags",
            "SELECT grp, target FROM group_pending",
        ] {
            let mut stmt = self.conn.prepare(q)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (grp, id) = row?;
                todo.extend(ObjectId::from_hex(&id).map(|id| (grp, id)));
            }
        }
        let mut seen = HashSet::new();
        while let Some((grp, id)) = todo.pop() {
            if seen.contains(&(grp.clone(), id)) || !self.has_group_commit(&grp, &id)? {
                continue;
            }
            if let Ok(c) = self.group_commit(&grp, &id) {
                todo.extend(c.parents.into_iter().map(|p| (grp.clone(), p)));
            }
            seen.insert((grp, id));
        }
        Ok(seen)
    }

    /// The stored group commits no group ref reaches (gc deletes them), as (group, id hex).
    pub(crate) fn dead_group_commits(&self) -> Result<Vec<(String, String)>> {
        let live = self.reachable_group_commits()?;
        Ok(self
            .all_group_commits()?
            .into_iter()
            .filter(|(grp, id, _)| {
                ObjectId::from_hex(id).is_none_or(|i| !live.contains(&(grp.clone(), i)))
            })
            .map(|(grp, id, _)| (grp, id))
            .collect())
    }

    /// Every problem with groups: a member volume that does not exist, a group commit that
    /// does not match its id, names a member commit that is missing, or a group ref (branch,
    /// tag, pending reset) that names no group commit of its group.
    pub(crate) fn audit_groups(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT grp, volume FROM group_members ORDER BY grp, volume")?;
        let members: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (grp, volume) in members {
            if !self.volume_exists(&volume)? {
                problems.push(format!(
                    "group {grp}: member volume {volume} does not exist"
                ));
            }
        }
        for (grp, id, body) in self.all_group_commits()? {
            let what = format!("group {grp} commit {id}");
            let c = match heads::parse_ref(&what, &id)
                .and_then(|gid| GroupCommit::decode(&gid, &body))
            {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("{what}: {e}"));
                    continue;
                }
            };
            for (key, commit) in &c.members {
                let known = super::commit::lookup(&self.conn, commit).is_ok()
                    && self.store.contains(commit)?;
                if !known {
                    problems.push(format!(
                        "{what}: member {key} commit {} is missing",
                        &commit.to_hex()[..12]
                    ));
                }
            }
        }
        let refs = [
            "SELECT grp, 'head of group ' || grp || '/' || name, head FROM group_branches WHERE head IS NOT NULL",
            "SELECT grp, 'tag ' || name || ' of group ' || grp, target FROM group_tags",
            "SELECT grp, 'pending ' || op || ' of group ' || grp || '/' || branch, target FROM group_pending",
        ];
        for q in refs {
            let mut stmt = self.conn.prepare(q)?;
            let rows: Vec<(String, String, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (grp, what, value) in rows {
                match heads::parse_ref(&what, &value) {
                    Ok(id) if self.has_group_commit(&grp, &id)? => {}
                    Ok(id) => problems.push(format!(
                        "{what} ({}): no such group commit",
                        &id.to_hex()[..12]
                    )),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        Ok(problems)
    }
}
