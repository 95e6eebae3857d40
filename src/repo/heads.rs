//! Branch heads: the only code that reads a head exactly and the only code that writes one.
//!
//! Every move names the value it expects to replace, like git's `update-ref REF NEW OLD`: one
//! `INSERT`, `UPDATE … WHERE head IS expected` or `DELETE … WHERE head IS expected` inside the
//! caller's transaction, checked for the number of rows it changed. A mismatch is
//! [`Error::HeadMoved`] naming both values, and the caller's transaction is dropped, so nothing
//! changes. Callers also hold the volume lock; the compare-and-swap is what makes a lost update
//! impossible even if a path forgets it. A head that does not parse is an error here, never
//! "no commits yet". This module must not touch live data.

use crate::store::ObjectId;
use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension};

/// The state of one branch row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// No row: the branch does not exist.
    Absent,
    /// A row without a commit (a new volume's `master`).
    Unborn,
    /// A row pointing at a commit.
    At(ObjectId),
}

impl Head {
    /// The commit, if any.
    pub fn commit(self) -> Option<ObjectId> {
        match self {
            Head::At(id) => Some(id),
            _ => None,
        }
    }

    /// The `head` column value.
    fn column(self) -> Option<String> {
        self.commit().map(|id| id.to_hex())
    }

    pub(crate) fn describe(self) -> String {
        match self {
            Head::Absent => "(no branch)".into(),
            Head::Unborn => "(no commits)".into(),
            Head::At(id) => id.to_hex()[..12].to_string(),
        }
    }
}

/// A table of heads: the branches of volumes, or the branches of groups (`group_branches`,
/// whose owner column is the group). Both move by the same compare-and-swap.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    name: &'static str,
    owner: &'static str,
    /// How an owner is named in errors (`VOL` or `group G`).
    label: &'static str,
}

/// The branches of volumes.
pub const BRANCHES: Table = Table {
    name: "branches",
    owner: "volume",
    label: "",
};

/// The branches of volume groups.
pub const GROUP_BRANCHES: Table = Table {
    name: "group_branches",
    owner: "grp",
    label: "group ",
};

/// The raw `head` column of a branch: `None` when there is no row, `Some(None)` for a NULL
/// head (a branch with no commit yet): the two cases differ, so the nesting is the point.
#[allow(clippy::option_option)]
fn raw(t: Table, conn: &Connection, owner: &str, branch: &str) -> Result<Option<Option<String>>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT head FROM {} WHERE {} = ?1 AND name = ?2",
                t.name, t.owner
            ),
            [owner, branch],
            |r| r.get(0),
        )
        .optional()?)
}

/// Parse a stored commit id; `what` names the ref in the error.
pub fn parse_ref(what: &str, value: &str) -> Result<ObjectId> {
    ObjectId::from_hex(value).ok_or_else(|| Error::CorruptRef {
        what: what.to_string(),
        detail: format!("{value:?} is not a commit id"),
    })
}

/// Read the head of `volume/branch` exactly.
pub fn read(conn: &Connection, volume: &str, branch: &str) -> Result<Head> {
    read_in(BRANCHES, conn, volume, branch)
}

/// Read the head of `owner/branch` in table `t` exactly.
pub fn read_in(t: Table, conn: &Connection, owner: &str, branch: &str) -> Result<Head> {
    Ok(match raw(t, conn, owner, branch)? {
        None => Head::Absent,
        Some(None) => Head::Unborn,
        Some(Some(h)) => Head::At(parse_ref(
            &format!("head of {}{owner}/{branch}", t.label),
            &h,
        )?),
    })
}

/// Move the head of `volume/branch` from `from` to `to` inside `tx` (create the branch when
/// `from` is [`Head::Absent`], delete it when `to` is). Fails with [`Error::HeadMoved`], having
/// changed nothing, when the head is not `from`.
pub fn swap(tx: &Connection, volume: &str, branch: &str, from: Head, to: Head) -> Result<()> {
    swap_in(BRANCHES, tx, volume, branch, from, to)
}

/// [`swap`] for the heads of table `t`.
pub fn swap_in(
    t: Table,
    tx: &Connection,
    owner: &str,
    branch: &str,
    from: Head,
    to: Head,
) -> Result<()> {
    let (old, new) = (from.column(), to.column());
    let (table, col) = (t.name, t.owner);
    let changed = match (from, to) {
        (Head::Absent, Head::Absent) => return Ok(()),
        (Head::Absent, _) => tx.execute(
            &format!(
                "INSERT INTO {table}({col}, name, head) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
            ),
            rusqlite::params![owner, branch, new],
        )?,
        (_, Head::Absent) => tx.execute(
            &format!("DELETE FROM {table} WHERE {col} = ?1 AND name = ?2 AND head IS ?3"),
            rusqlite::params![owner, branch, old],
        )?,
        _ => tx.execute(
            &format!("UPDATE {table} SET head = ?4 WHERE {col} = ?1 AND name = ?2 AND head IS ?3"),
            rusqlite::params![owner, branch, old, new],
        )?,
    };
    if changed == 1 {
        return Ok(());
    }
    let found = match raw(t, tx, owner, branch)? {
        None => Head::Absent.describe(),
        Some(None) => Head::Unborn.describe(),
        Some(Some(h)) => match ObjectId::from_hex(&h) {
            Some(id) => Head::At(id).describe(),
            None => format!("{h:?}"),
        },
    };
    Err(Error::HeadMoved {
        volume: format!("{}{owner}", t.label),
        branch: branch.to_string(),
        expected: from.describe(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE branches(volume TEXT NOT NULL, name TEXT NOT NULL, head TEXT, \
             PRIMARY KEY(volume, name));",
        )
        .unwrap();
        c
    }

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 32])
    }

    #[test]
    fn moves_only_from_the_expected_head() {
        let c = db();
        swap(&c, "v", "b", Head::Absent, Head::Unborn).unwrap();
        assert_eq!(read(&c, "v", "b").unwrap(), Head::Unborn);
        swap(&c, "v", "b", Head::Unborn, Head::At(id(1))).unwrap();
        let err = swap(&c, "v", "b", Head::Unborn, Head::At(id(2))).unwrap_err();
        assert!(matches!(err, Error::HeadMoved { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("from (no commits) to 010101010101"),
            "{err}"
        );
        assert_eq!(read(&c, "v", "b").unwrap(), Head::At(id(1)));
        let err = swap(&c, "v", "b", Head::Absent, Head::At(id(2))).unwrap_err();
        assert!(matches!(err, Error::HeadMoved { .. }), "{err}");
        let err = swap(&c, "v", "b", Head::At(id(2)), Head::Absent).unwrap_err();
        assert!(matches!(err, Error::HeadMoved { .. }), "{err}");
        swap(&c, "v", "b", Head::At(id(1)), Head::Absent).unwrap();
        assert_eq!(read(&c, "v", "b").unwrap(), Head::Absent);
    }

    #[test]
    fn a_malformed_head_is_an_error_not_unborn() {
        let c = db();
        c.execute("INSERT INTO branches VALUES ('v', 'b', 'zz')", [])
            .unwrap();
        let err = read(&c, "v", "b").unwrap_err();
        assert!(err.to_string().contains("head of v/b"), "{err}");
        let err = swap(&c, "v", "b", Head::Unborn, Head::At(id(1))).unwrap_err();
        assert!(err.to_string().contains("to \"zz\""), "{err}");
    }
}
