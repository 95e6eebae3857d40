//! Checking the metadata that gc would trust before it deletes anything: every branch head,
//! tag, pending target and remote-tracking ref parses and names a commit whose row and object
//! both exist, every `commits` row parses and matches its commit object, and every group
//! commit matches its id and names member commits that exist (see `group`). gc refuses to run
//! when anything is wrong (never delete on doubt); fsck reports each problem by name. This
//! module reads only; it changes nothing and does not walk trees (that is gc's reachability
//! walk).

use super::heads::parse_ref;
use super::{commit, Commit, Repo};
use crate::{Error, Result};

/// The refs that keep commits alive: (query giving a label and a commit id, the kind of ref).
const REFS: [&str; 4] = [
    "SELECT 'head of ' || volume || '/' || name, head FROM branches WHERE head IS NOT NULL",
    "SELECT 'tag ' || name || ' of ' || volume, target FROM tags",
    "SELECT 'pending ' || op || ' of ' || volume || '/' || branch, target FROM pending",
    "SELECT 'remote-tracking ref ' || remote || '/' || branch || ' of ' || volume, head FROM remote_refs",
];

impl Repo {
    /// Every problem with the refs and the commit rows, each naming the ref or row.
    pub fn audit_metadata(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for q in REFS {
            let mut stmt = self.conn.prepare(q)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (what, value) = row?;
                if let Err(e) = self.check_ref(&what, &value) {
                    problems.push(e.to_string());
                }
            }
        }
        let mut stmt = self.conn.prepare("SELECT id FROM commits ORDER BY id")?;
        let ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in ids {
            if let Err(e) = self.check_commit_row(&id) {
                problems.push(e.to_string());
            }
        }
        problems.extend(self.audit_groups()?);
        Ok(problems)
    }

    /// Refuse (for gc) when the metadata has any problem.
    pub(crate) fn require_sound_metadata(&self) -> Result<()> {
        let problems = self.audit_metadata()?;
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::GcRefused { problems })
    }

    /// A ref parses and names a commit with a row and an object.
    fn check_ref(&self, what: &str, value: &str) -> Result<()> {
        let id = parse_ref(what, value)?;
        let short = &value[..12];
        let bad = |detail: String| Error::CorruptRef {
            what: format!("{what} ({short})"),
            detail,
        };
        match commit::lookup(&self.conn, &id) {
            Ok(_) => {}
            Err(Error::MissingObject { .. }) => return Err(bad("no such commit".into())),
            Err(e) => return Err(bad(e.to_string())),
        }
        if !self.store.contains(&id)? {
            return Err(bad("the commit object is missing from the store".into()));
        }
        Ok(())
    }

    /// A `commits` row parses and equals the commit object it names.
    fn check_commit_row(&self, id_text: &str) -> Result<()> {
        let what = format!("commits row {id_text}");
        let id = parse_ref(&what, id_text)?;
        let bad = |detail: String| Error::CorruptRef {
            what: what.clone(),
            detail,
        };
        let row = commit::lookup(&self.conn, &id).map_err(|e| bad(e.to_string()))?;
        let object = Commit::load(&self.store, &id).map_err(|e| bad(e.to_string()))?;
        let differs = differing_fields(&row, &object);
        if differs.is_empty() {
            return Ok(());
        }
        Err(bad(format!(
            "does not match its commit object ({} differ{})",
            differs.join(", "),
            if differs.len() == 1 { "s" } else { "" }
        )))
    }
}

/// Names of the fields where a row and an object disagree.
fn differing_fields(row: &Commit, object: &Commit) -> Vec<&'static str> {
    let checks: [(&str, bool); 6] = [
        ("tree", row.tree == object.tree),
        ("parents", row.parents == object.parents),
        ("author", row.author == object.author),
        ("time", row.time == object.time),
        ("time zone", row.tz_offset_min == object.tz_offset_min),
        ("message", row.message == object.message),
    ];
    checks
        .iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| *name)
        .collect()
}
