//! A volume's status in a few SQLite reads (current branch, head commit and message, number of
//! commits), for `docker volume inspect` (the plugin's `Get`), which Docker calls often: it
//! must never scan live data or read objects.

use super::{commit, Repo};
use crate::{Error, Result};
use rusqlite::OptionalExtension;
use serde::Serialize;

/// What the plugin reports in `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSummary {
    pub branch: String,
    /// Full id of the current branch's head; `None` before the first commit.
    pub head: Option<String>,
    /// First line of the head's message.
    pub message: Option<String>,
    /// Date of the head commit, as `log` prints it.
    pub date: Option<String>,
    /// Commits in the current branch's first-parent history (as `log` lists them).
    pub commits: u64,
    /// How many of those prune expired.
    pub expired: u64,
    pub branches: u64,
}

/// The first-parent chain from the head, counted in SQL (parents are space-separated ids, the
/// first one is the first 64 characters).
const HISTORY: &str = "
WITH RECURSIVE h(id) AS (
    SELECT ?1
    UNION ALL
    SELECT substr(c.parents, 1, 64) FROM commits c JOIN h ON c.id = h.id WHERE c.parents <> ''
)
SELECT count(*), (SELECT count(*) FROM expired e JOIN h ON e.id = h.id) FROM h";

impl Repo {
    /// The summary of `volume` (which must exist).
    pub fn summary(&self, volume: &str) -> Result<VolumeSummary> {
        let branch = self.current_branch(volume)?;
        let branches: u64 = self.conn.query_row(
            "SELECT count(*) FROM branches WHERE volume = ?1",
            [volume],
            |r| r.get(0),
        )?;
        let mut s = VolumeSummary {
            head: None,
            message: None,
            date: None,
            commits: 0,
            expired: 0,
            branches,
            branch,
        };
        let Some(head) = self.branch_head(volume, &s.branch)? else {
            return Ok(s);
        };
        match commit::lookup(&self.conn, &head) {
            Ok(c) => {
                s.message = Some(c.message.lines().next().unwrap_or("").to_string());
                s.date = Some(c.date_string());
            }
            // A head whose commit row is missing is reported without message, not an error.
            Err(Error::MissingObject { .. }) => {}
            Err(e) => return Err(e),
        }
        let (commits, expired): (u64, u64) = self
            .conn
            .query_row(HISTORY, [head.to_hex()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, 0));
        s.head = Some(head.to_hex());
        s.commits = commits;
        s.expired = expired;
        Ok(s)
    }
}
