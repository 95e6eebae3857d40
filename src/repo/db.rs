//! The SQLite metadata database (`ROOT/.dvol/dvol.db`, WAL mode, synchronous=FULL): schema,
//! format version check, and small typed helpers. One transaction per logical change.

use crate::{Error, Result};
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;

/// On-disk format version written at creation and checked on every open. Version 2 adds
/// blocks (several chunks compressed together, `objects.boff`); version 3 lets a block hold
/// up to 32 chunks. Version 1 and 2 stores are upgraded in place when opened (their packs
/// stay as they are).
pub const FORMAT_VERSION: u32 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes(name TEXT PRIMARY KEY, branch TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS branches(volume TEXT NOT NULL, name TEXT NOT NULL, head TEXT, PRIMARY KEY(volume, name));
CREATE TABLE IF NOT EXISTS tags(volume TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY(volume, name));
CREATE TABLE IF NOT EXISTS commits(
    id TEXT PRIMARY KEY, tree TEXT NOT NULL, parents TEXT NOT NULL, author TEXT NOT NULL,
    time INTEGER NOT NULL, tz INTEGER NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending(volume TEXT NOT NULL, branch TEXT NOT NULL, op TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY(volume, branch));
CREATE TABLE IF NOT EXISTS pending_clones(volume TEXT PRIMARY KEY, url TEXT NOT NULL, remote_volume TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS remotes(volume TEXT NOT NULL, name TEXT NOT NULL, url TEXT NOT NULL, PRIMARY KEY(volume, name));
CREATE TABLE IF NOT EXISTS remote_refs(volume TEXT NOT NULL, remote TEXT NOT NULL, branch TEXT NOT NULL, head TEXT NOT NULL, PRIMARY KEY(volume, remote, branch));
CREATE TABLE IF NOT EXISTS groups(name TEXT PRIMARY KEY, branch TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS group_members(grp TEXT NOT NULL, member TEXT NOT NULL, volume TEXT NOT NULL, PRIMARY KEY(grp, member));
CREATE TABLE IF NOT EXISTS group_branches(grp TEXT NOT NULL, name TEXT NOT NULL, head TEXT, PRIMARY KEY(grp, name));
CREATE TABLE IF NOT EXISTS group_tags(grp TEXT NOT NULL, name TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY(grp, name));
CREATE TABLE IF NOT EXISTS group_commits(grp TEXT NOT NULL, id TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY(grp, id));
CREATE TABLE IF NOT EXISTS group_pending(grp TEXT NOT NULL, branch TEXT NOT NULL, op TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY(grp, branch));
CREATE TABLE IF NOT EXISTS group_clones(grp TEXT PRIMARY KEY, url TEXT NOT NULL, remote_group TEXT NOT NULL);
";

/// Open (creating if needed) the database and check its format version.
pub fn open(path: &Path) -> Result<Connection> {
    let conn = crate::store::connect(path, std::time::Duration::from_secs(120))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(crate::store::index::SCHEMA)?;
    conn.execute_batch(super::prune::SCHEMA)?;
    conn.execute_batch(super::thin::SCHEMA)?;
    let version: Option<String> = get_meta(&conn, "format_version")?;
    match version {
        None => set_meta(&conn, "format_version", &FORMAT_VERSION.to_string())?,
        Some(v) if v == FORMAT_VERSION.to_string() => {}
        Some(v) if v == "1" || v == "2" => upgrade(&conn)?,
        Some(v) => {
            return Err(Error::Format(format!(
                "{} has format version {v}; this dvol reads version {FORMAT_VERSION}",
                path.display()
            )))
        }
    }
    Ok(conn)
}

/// Above this many bytes of WAL, the command that wrote them folds them back into the
/// database before it exits (see [`fold_large_wal`]).
const LARGE_WAL: u64 = 4 << 20;

/// Fold a large WAL back into the database (and truncate it) at the end of the command that
/// wrote it, so a big commit, fetch or gc pays for its own checkpoint instead of leaving it
/// to the next command's first write (connections do not checkpoint on close: see
/// `store::connect`). Never waits: if another process is reading, SQLite's automatic
/// checkpoint does it later.
pub fn fold_large_wal(conn: &Connection, db: &Path) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let large = std::fs::metadata(&wal).is_ok_and(|m| m.len() > LARGE_WAL);
    if large && conn.busy_timeout(std::time::Duration::ZERO).is_ok() {
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// Upgrade a store of format 1 or 2 in place, in one transaction that reads the version
/// again (another dvol, maybe an older one, may have upgraded it meanwhile: from whatever
/// older version it finds, it goes to this one). Format 1 to 2: objects gain
/// `boff` (NULL: a record of its own). Format 2 to 3: blocks may hold up to
/// [`crate::store::pack::MAX_BLOCK_CHUNKS`] members (older dvols read 16 at most), so only
/// the version changes: an older dvol then refuses the store by its version instead of
/// failing on a block it cannot read.
fn upgrade(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let upgraded = (|| -> Result<()> {
        let now = get_meta(conn, "format_version")?;
        if now.as_deref() == Some("1") {
            crate::store::index::add_block_offsets(conn)?;
        }
        match now.as_deref() {
            Some("1" | "2") => set_meta(conn, "format_version", &FORMAT_VERSION.to_string()),
            Some(v) if v == FORMAT_VERSION.to_string() => Ok(()),
            v => Err(Error::Format(format!(
                "the store's format version became {} while this dvol opened it; this dvol \
                 reads version {FORMAT_VERSION}",
                v.unwrap_or("(none)")
            ))),
        }
    })();
    match upgraded {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

pub fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        [key, value],
    )?;
    Ok(())
}

pub fn delete_meta(conn: &Connection, key: &str) -> Result<()> {
    conn.execute("DELETE FROM meta WHERE key = ?1", [key])?;
    Ok(())
}
