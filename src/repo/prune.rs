//! Retention (`dvol prune`): which commits of a volume keep their snapshot, and the record of
//! the ones that do not (the `expired` table).
//!
//! Expiring a commit never rewrites history: its commit object (message, parents, date, and so
//! its id) stays, only its tree stops being kept, so `gc` frees what no kept commit, tag, branch
//! or live directory reaches, and pushes and pulls stay fast-forward. An expired commit cannot
//! be checked out, reset to or diffed ([`Error::Expired`]).
//!
//! Rules, like restic's `forget`, apply per volume over every commit reachable from the
//! volume's branches, tags, remote-tracking refs and pending resets, newest first:
//! `--keep-last N` keeps the N newest; `--keep-daily/weekly/monthly N` keep the newest commit of
//! each of the last N days / ISO weeks / months that have commits (in the commit's own UTC
//! offset). Always kept: branch heads, tagged commits, branch points (commits with two or more
//! children), remote-tracking heads, pending reset targets, and commits reachable from another
//! volume's refs (expiry is a property of the commit id, shared by every volume).
//!
//! This module decides and records; it must not delete objects (that is `gc`).

use super::{commit, Repo};
use crate::store::ObjectId;
use crate::{Error, Result};
use chrono::{Datelike, TimeZone};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// The table of expired commits (created with the rest of the schema).
pub const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS expired(id TEXT PRIMARY KEY, time INTEGER NOT NULL);";

/// How many commits each rule keeps (0 = the rule is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Policy {
    /// No rule given: prune refuses rather than expire everything.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// One commit as the rules see it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: ObjectId,
    pub parents: Vec<ObjectId>,
    /// Seconds since the epoch.
    pub time: i64,
    /// The author's UTC offset in minutes.
    pub tz_offset_min: i32,
    pub date: String,
    pub message: String,
}

/// What prune decided for one commit.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub date: String,
    pub message: String,
    /// Why it is kept (`last`, `daily`, `branch head master`, …); empty when it expires.
    pub keep: Vec<String>,
    /// Expired by an earlier prune.
    pub already_expired: bool,
}

/// What prune did (or would do with `--dry-run`), newest commit first.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub commits: Vec<Decision>,
    /// Commits expired by this run (would be, with `--dry-run`).
    pub expired: u64,
    pub dry_run: bool,
}

/// The calendar bucket (year and day, ISO week or month) of a commit's local date.
type Bucket = fn(&chrono::DateTime<chrono::FixedOffset>) -> (i32, u32);

/// Apply the rules to `commits` (any order) with `protected` reasons already known.
/// Returns, for every commit, why it is kept (empty: it expires).
pub fn select(
    commits: &[Candidate],
    policy: &Policy,
    protected: &HashMap<ObjectId, Vec<String>>,
) -> HashMap<ObjectId, Vec<String>> {
    let order = newest_first(commits);
    let mut keep: HashMap<ObjectId, Vec<String>> = commits
        .iter()
        .map(|c| (c.id, protected.get(&c.id).cloned().unwrap_or_default()))
        .collect();
    for (i, c) in order.iter().enumerate() {
        if i < policy.last as usize {
            keep.entry(c.id).or_default().push("last".into());
        }
    }
    let rules: [(&str, u32, Bucket); 3] = [
        ("daily", policy.daily, |d| (d.year(), d.ordinal())),
        ("weekly", policy.weekly, |d| {
            (d.iso_week().year(), d.iso_week().week())
        }),
        ("monthly", policy.monthly, |d| (d.year(), d.month())),
    ];
    for (name, n, bucket) in rules {
        let mut last = None;
        let mut kept = 0;
        for c in &order {
            if kept >= n {
                break;
            }
            let b = bucket(&local_time(c));
            if last != Some(b) {
                last = Some(b);
                kept += 1;
                keep.entry(c.id).or_default().push(name.into());
            }
        }
    }
    // Branch points: a commit two or more kept lines of history grow from.
    let mut children: HashMap<ObjectId, u32> = HashMap::new();
    for c in commits {
        for p in &c.parents {
            *children.entry(*p).or_default() += 1;
        }
    }
    for (id, n) in children {
        if n >= 2 {
            if let Some(k) = keep.get_mut(&id) {
                k.push("branch point".into());
            }
        }
    }
    keep
}

/// Commits by date, newest first; commits of the same second by depth in the history (a
/// child after its parent), so snapshots taken in quick succession keep their order.
fn newest_first(commits: &[Candidate]) -> Vec<&Candidate> {
    let by_id: HashMap<ObjectId, &Candidate> = commits.iter().map(|c| (c.id, c)).collect();
    let mut depth: HashMap<ObjectId, u64> = HashMap::new();
    for c in commits {
        let mut stack = vec![c.id];
        while let Some(&id) = stack.last() {
            if depth.contains_key(&id) {
                stack.pop();
                continue;
            }
            let parents = by_id.get(&id).map(|c| c.parents.as_slice()).unwrap_or(&[]);
            let missing: Vec<ObjectId> = parents
                .iter()
                .filter(|p| by_id.contains_key(p) && !depth.contains_key(p))
                .copied()
                .collect();
            if missing.is_empty() {
                let d = parents
                    .iter()
                    .filter_map(|p| depth.get(p))
                    .max()
                    .map_or(0, |d| d + 1);
                depth.insert(id, d);
                stack.pop();
            } else {
                stack.extend(missing);
            }
        }
    }
    let mut order: Vec<&Candidate> = commits.iter().collect();
    order.sort_by(|a, b| (b.time, depth[&b.id], b.id).cmp(&(a.time, depth[&a.id], a.id)));
    order
}

fn local_time(c: &Candidate) -> chrono::DateTime<chrono::FixedOffset> {
    let offset = chrono::FixedOffset::east_opt(c.tz_offset_min * 60)
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset"));
    offset
        .timestamp_opt(c.time, 0)
        .single()
        .unwrap_or_else(|| offset.timestamp_opt(0, 0).single().expect("epoch"))
}

/// The decisions for `commits`, newest first, given what [`select`] kept and what was expired.
pub fn decisions(
    commits: &[Candidate],
    keep: &HashMap<ObjectId, Vec<String>>,
    expired: &HashSet<ObjectId>,
) -> Vec<Decision> {
    newest_first(commits)
        .into_iter()
        .map(|c| Decision {
            id: c.id.to_hex(),
            date: c.date.clone(),
            message: c.message.clone(),
            keep: keep.get(&c.id).cloned().unwrap_or_default(),
            already_expired: expired.contains(&c.id),
        })
        .collect()
}

/// Every commit reachable from `roots` through the commits table (commits missing from it are
/// skipped: their history was never fetched).
pub(crate) fn history(conn: &rusqlite::Connection, roots: &[ObjectId]) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = roots.to_vec();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let c = match commit::lookup(conn, &id) {
            Ok(c) => c,
            Err(Error::MissingObject { .. }) => continue,
            Err(e) => return Err(e),
        };
        todo.extend(c.parents.iter().copied());
        out.push(Candidate {
            id,
            date: c.date_string(),
            parents: c.parents,
            time: c.time,
            tz_offset_min: c.tz_offset_min,
            message: c.message,
        });
    }
    Ok(out)
}

/// Whether `id` was expired by prune.
pub fn is_expired(conn: &rusqlite::Connection, id: &ObjectId) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM expired WHERE id = ?1")?
        .exists([id.to_hex()])?)
}

/// Every expired commit.
pub fn expired_set(conn: &rusqlite::Connection) -> Result<HashSet<ObjectId>> {
    let mut stmt = conn.prepare("SELECT id FROM expired")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = HashSet::new();
    for id in rows {
        if let Some(id) = ObjectId::from_hex(&id?) {
            out.insert(id);
        }
    }
    Ok(out)
}

/// Mark commits expired (inside the caller's transaction, or on its own).
pub fn record_expired(conn: &rusqlite::Connection, ids: &[ObjectId]) -> Result<()> {
    let now = chrono::Utc::now().timestamp();
    let mut stmt =
        conn.prepare_cached("INSERT OR IGNORE INTO expired(id, time) VALUES (?1, ?2)")?;
    for id in ids {
        stmt.execute(rusqlite::params![id.to_hex(), now])?;
    }
    Ok(())
}

/// The tree of a commit whose snapshot is kept; an expired commit is an error saying so.
pub(crate) fn kept_tree(conn: &rusqlite::Connection, id: &ObjectId) -> Result<ObjectId> {
    let c = commit::lookup(conn, id)?;
    if is_expired(conn, id)? {
        return Err(Error::Expired { id: id.to_hex() });
    }
    Ok(c.tree)
}

/// The clock of new commits: now, or `DVOL_TEST_COMMIT_TIME` (seconds since the epoch, UTC)
/// in builds with the `failpoints` feature, so retention tests can make commits days apart.
pub(crate) fn commit_clock() -> chrono::DateTime<chrono::FixedOffset> {
    if let Some(t) = crate::failpoint::knob("DVOL_TEST_COMMIT_TIME") {
        if let Some(t) = chrono::DateTime::from_timestamp(t as i64, 0) {
            return t.fixed_offset();
        }
    }
    chrono::Local::now().fixed_offset()
}

impl Repo {
    /// Expire the snapshots of `volume`'s commits that `policy` does not keep (or, with
    /// `dry_run`, only say which). One transaction; `gc` then frees their data.
    pub fn prune(&mut self, volume: &str, policy: &Policy, dry_run: bool) -> Result<PruneReport> {
        if policy.is_empty() {
            return Err(Error::NoKeepRule);
        }
        let _lock = self.lock_volume(volume)?;
        let roots = self.ref_roots()?;
        let mut protected: HashMap<ObjectId, Vec<String>> = HashMap::new();
        let mut own = Vec::new();
        let mut others = Vec::new();
        let prefix = format!("{volume} ");
        for (what, id) in roots {
            match what.strip_prefix(&prefix) {
                Some(why) => {
                    protected.entry(id).or_default().push(why.to_string());
                    own.push(id);
                }
                None => others.push(id),
            }
        }
        for c in history(&self.conn, &others)? {
            protected
                .entry(c.id)
                .or_default()
                .push("reached by another volume".into());
        }
        let commits = history(&self.conn, &own)?;
        let keep = select(&commits, policy, &protected);
        let expired = expired_set(&self.conn)?;
        let newly: Vec<ObjectId> = commits
            .iter()
            .filter(|c| keep[&c.id].is_empty() && !expired.contains(&c.id))
            .map(|c| c.id)
            .collect();
        if !dry_run {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            record_expired(&tx, &newly)?;
            tx.commit()?;
        }
        Ok(PruneReport {
            commits: decisions(&commits, &keep, &expired),
            expired: newly.len() as u64,
            dry_run,
        })
    }

    /// Every expired commit (for gc, fsck and push).
    pub fn expired_commits(&self) -> Result<HashSet<ObjectId>> {
        expired_set(&self.conn)
    }

    /// Mark commits expired (fetch records the ones a remote sent without their tree).
    pub fn record_expired(&mut self, ids: &[ObjectId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        record_expired(&tx, ids)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn chain(times: &[i64]) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for (i, t) in times.iter().enumerate() {
            out.push(Candidate {
                id: ObjectId::hash(&i.to_le_bytes()),
                parents: out
                    .last()
                    .map(|p| vec![p.id])
                    .into_iter()
                    .flatten()
                    .collect(),
                time: *t,
                tz_offset_min: 0,
                date: String::new(),
                message: format!("c{i}"),
            });
        }
        out
    }

    fn kept(c: &[Candidate], p: Policy) -> Vec<usize> {
        let keep = select(c, &p, &HashMap::new());
        (0..c.len())
            .filter(|i| !keep[&c[*i].id].is_empty())
            .collect()
    }

    #[test]
    fn last_keeps_the_newest() {
        let c = chain(&[0, 10, 20, 30]);
        let p = Policy {
            last: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&c, p), vec![2, 3]);
    }

    #[test]
    fn same_second_commits_keep_their_order() {
        let c = chain(&[5, 5, 5, 5]);
        let p = Policy {
            last: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&c, p), vec![2, 3]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        // Two commits a day for four days (2026-01-05 is a Monday).
        let base = 1_767_571_200; // 2026-01-05 00:00:00 UTC
        let times: Vec<i64> = (0..4)
            .flat_map(|d| [base + d * DAY + 3600, base + d * DAY + 7200])
            .collect();
        let c = chain(&times);
        let p = Policy {
            daily: 3,
            ..Policy::default()
        };
        assert_eq!(kept(&c, p), vec![3, 5, 7]);
    }

    #[test]
    fn weekly_and_monthly_buckets() {
        let base = 1_767_571_200; // Monday 2026-01-05
        let c = chain(&[base, base + 2 * DAY, base + 7 * DAY, base + 40 * DAY]);
        let p = Policy {
            weekly: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&c, p), vec![2, 3]);
        let p = Policy {
            monthly: 5,
            ..Policy::default()
        };
        assert_eq!(kept(&c, p), vec![2, 3]);
    }

    #[test]
    fn branch_points_and_protected_are_kept() {
        let mut c = chain(&[0, 10, 20]);
        let side = Candidate {
            id: ObjectId::hash(b"side"),
            parents: vec![c[0].id],
            time: 15,
            tz_offset_min: 0,
            date: String::new(),
            message: "side".into(),
        };
        c.push(side);
        let mut protected = HashMap::new();
        protected.insert(c[1].id, vec!["tag v1".to_string()]);
        let keep = select(
            &c,
            &Policy {
                last: 1,
                ..Policy::default()
            },
            &protected,
        );
        assert_eq!(keep[&c[0].id], vec!["branch point"]);
        assert_eq!(keep[&c[1].id], vec!["tag v1"]);
        assert_eq!(keep[&c[2].id], vec!["last"]);
        assert!(keep[&c[3].id].is_empty());
    }
}
