//! Commit objects: tree, parents, author, date, message. The id is the blake3 hash of the
//! encoded commit, so it covers all of them.

use crate::store::{Kind, ObjectId, ObjectSink, Store};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A stored commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    /// `Name <email>`.
    pub author: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Author's UTC offset in minutes.
    pub tz_offset_min: i32,
    pub message: String,
}

impl Commit {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("commit serializes")
    }

    pub fn decode(id: &ObjectId, bytes: &[u8]) -> Result<Commit> {
        let c: Commit = postcard::from_bytes(bytes).map_err(|e| Error::CorruptObject {
            id: id.to_hex(),
            detail: format!("not a commit: {e}"),
        })?;
        if c.parents.len() > 16 || c.message.len() > 1 << 20 {
            return Err(Error::CorruptObject {
                id: id.to_hex(),
                detail: "commit fields out of bounds".into(),
            });
        }
        Ok(c)
    }

    pub fn put(&self, sink: &dyn ObjectSink) -> Result<ObjectId> {
        sink.put(Kind::Commit, &self.encode())
    }

    pub fn load(store: &Store, id: &ObjectId) -> Result<Commit> {
        Commit::decode(id, &store.get(id)?)
    }

    /// The date as git prints it: `Wed Nov 25 18:40:56 2026 +0000`.
    pub fn date_string(&self) -> String {
        let offset = chrono::FixedOffset::east_opt(self.tz_offset_min * 60)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset"));
        chrono::DateTime::from_timestamp(self.time, 0)
            .map(|t| {
                t.with_timezone(&offset)
                    .format("%a %b %-d %H:%M:%S %Y %z")
                    .to_string()
            })
            .unwrap_or_else(|| self.time.to_string())
    }
}

/// Record a commit in the metadata tables (inside the caller's transaction).
pub fn record(tx: &rusqlite::Connection, id: &ObjectId, c: &Commit) -> Result<()> {
    let parents: Vec<String> = c.parents.iter().map(|p| p.to_hex()).collect();
    tx.execute(
        "INSERT OR IGNORE INTO commits(id, tree, parents, author, time, tz, message) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            id.to_hex(),
            c.tree.to_hex(),
            parents.join(" "),
            c.author,
            c.time,
            c.tz_offset_min,
            c.message
        ],
    )?;
    Ok(())
}

/// Read a commit from the metadata tables.
pub fn lookup(conn: &rusqlite::Connection, id: &ObjectId) -> Result<Commit> {
    let row = conn.query_row(
        "SELECT tree, parents, author, time, tz, message FROM commits WHERE id = ?1",
        [id.to_hex()],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i32>(4)?,
                r.get::<_, String>(5)?,
            ))
        },
    );
    let (tree, parents, author, time, tz, message) = match row {
        Ok(r) => r,
        Err(rusqlite::Error::QueryReturnedNoRows) => {
            return Err(Error::MissingObject { id: id.to_hex() })
        }
        Err(e) => return Err(e.into()),
    };
    let parse = |s: &str| {
        ObjectId::from_hex(s).ok_or_else(|| Error::CorruptObject {
            id: id.to_hex(),
            detail: "bad id in commits table".into(),
        })
    };
    Ok(Commit {
        tree: parse(&tree)?,
        parents: parents
            .split_whitespace()
            .map(parse)
            .collect::<Result<_>>()?,
        author,
        time,
        tz_offset_min: tz,
        message,
    })
}
