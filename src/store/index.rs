//! The store's index tables in the metadata database, `packs` (one row per pack file) and
//! `objects` (where each object lives): their schema and every statement on them. The repo
//! owns the database file and its transactions and passes the connection in; gc and fsck ask
//! through these functions and never name the tables. What is reachable is not decided here.

use super::{Kind, Location, ObjectId};
use crate::Result;
use rusqlite::Connection;
use std::collections::HashSet;

/// The tables (created if missing).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS objects(
    id BLOB PRIMARY KEY, pack INTEGER NOT NULL, offset INTEGER NOT NULL,
    kind INTEGER NOT NULL, clen INTEGER NOT NULL, ulen INTEGER NOT NULL, boff INTEGER) WITHOUT ROWID;
";

/// Format 1 to 2: objects gain `boff` (NULL: a record of its own). Inside the caller's
/// transaction.
pub fn add_block_offsets(conn: &Connection) -> Result<()> {
    conn.execute_batch("ALTER TABLE objects ADD COLUMN boff INTEGER")?;
    Ok(())
}

/// One pack and the objects the index places in it.
pub struct PackObjects {
    id: i64,
    pub name: String,
    pub size: u64,
    pub objects: Vec<ObjectId>,
}

/// Every pack with the ids of its objects.
pub fn pack_objects(conn: &Connection) -> Result<Vec<PackObjects>> {
    let mut packs = std::collections::HashMap::new();
    let mut stmt = conn.prepare("SELECT id, name, size FROM packs")?;
    for row in stmt.query_map([], |r| {
        Ok(PackObjects {
            id: r.get(0)?,
            name: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            objects: Vec::new(),
        })
    })? {
        let pack = row?;
        packs.insert(pack.id, pack);
    }
    let mut stmt = conn.prepare("SELECT id, pack FROM objects")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))? {
        let (id, pack) = row?;
        if let (Some(id), Some(p)) = (ObjectId::from_slice(&id), packs.get_mut(&pack)) {
            p.objects.push(id);
        }
    }
    let mut out: Vec<PackObjects> = packs.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Remove packs and the index rows of their objects, inside the caller's transaction.
pub fn forget_packs(tx: &rusqlite::Transaction, packs: &[&PackObjects]) -> Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM objects WHERE id = ?1")?;
    for pack in packs {
        for id in &pack.objects {
            delete.execute([&id.0[..]])?;
        }
        tx.execute("DELETE FROM packs WHERE id = ?1", [pack.id])?;
    }
    Ok(())
}

/// The names of every indexed pack.
pub fn pack_names(conn: &Connection) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT name FROM packs")?;
    let names = stmt.query_map([], |r| r.get(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}

/// Every index row in pack order, as an id and location; a row whose id is malformed is
/// handed over as `None`, one whose kind is unknown as `Err(kind)` (never read as a chunk).
pub fn each_object(
    conn: &Connection,
    mut f: impl FnMut(Option<ObjectId>, std::result::Result<Location, u8>),
) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT p.name, o.id, o.offset, o.kind, o.clen, o.ulen, o.boff FROM objects o \
         JOIN packs p ON p.id = o.pack ORDER BY p.name, o.offset",
    )?;
    let rows = stmt.query_map([], |r| {
        let raw_kind = r.get::<_, u8>(3)?;
        let loc = match Kind::from_u8(raw_kind) {
            Some(kind) => Ok(Location {
                pack: r.get(0)?,
                offset: r.get::<_, i64>(2)? as u64,
                kind,
                clen: r.get(4)?,
                ulen: r.get(5)?,
                boff: r.get(6)?,
            }),
            None => Err(raw_kind),
        };
        Ok((ObjectId::from_slice(&r.get::<_, Vec<u8>>(1)?), loc))
    })?;
    for row in rows {
        let (id, loc) = row?;
        f(id, loc);
    }
    Ok(())
}
