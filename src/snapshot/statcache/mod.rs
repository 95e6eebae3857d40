//! The stat cache: for each file of a branch's live directory, the (size, mtime, ctime, inode)
//! seen when its content id was last computed or written. A commit trusts the cached id while
//! the stat is unchanged, so its cost follows the changed bytes, not the volume size.
//!
//! It lives on disk, one SQLite file per branch (mode 0600), one row per directory (its path in
//! the volume → its entries, see [`row`]), so a walk holds one directory's entries at a time,
//! never the volume's. Rows written during a walk go to a staging table, in batched
//! transactions, and become the cache only when [`StatCache::promote`] is called once what they
//! describe is durable (the content ids in the store, the written files on disk): a command
//! killed mid-way leaves only rows that were true when written. Rows of directories that are
//! gone are deleted at once (deleting a hint is always safe).
//!
//! It is derived data: a missing, damaged, foreign or old cache only makes the next commit
//! re-hash; no error here fails a command (it is logged). Entries whose ctime is too close to
//! the scan start are not trusted ("racy" files, as in git). The cache of older versions (one
//! DVSTAT01 file per branch) is streamed into rows once and removed ([`legacy`]).
//! This module must not hold a volume's entries in memory, nor trust a row it cannot verify.

mod legacy;
pub mod row;

pub use row::{DirCache, Slot};

use crate::error::IoContext;
use crate::live::Stat;
use crate::store::ObjectId;
use crate::Result;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the `meta` table's `format` row holds in a cache of this version.
const FORMAT: &str = "DVSTAT02";
/// Mode of cache files (SQLite gives its journal files the same).
const FILE_MODE: u32 = 0o600;
/// Staged writes kept in memory before they are written in one transaction.
const BATCH_OPS: usize = 512;
const BATCH_BYTES: usize = 4 << 20;

/// What was seen of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub content: Option<ObjectId>,
}

impl CacheEntry {
    pub fn new(st: &Stat, content: Option<ObjectId>) -> CacheEntry {
        CacheEntry {
            size: st.size(),
            mtime_ns: st.mtime_ns(),
            ctime_ns: st.ctime_ns(),
            ino: st.ino(),
            content,
        }
    }

    /// Whether `md` shows the same file, unchanged since this entry was made.
    pub fn matches(&self, st: &Stat) -> bool {
        let now = CacheEntry::new(st, self.content);
        now == *self
    }

    /// Whether a change made right after the file was read (which began at `read_start_ns`)
    /// could keep the same timestamps and go unnoticed. File timestamps come from a coarse
    /// clock (one tick is at most 10 ms); a write after the read gets a timestamp at least
    /// `read_start - 1 tick`, so timestamps older than two ticks before the read are safe.
    /// File systems with whole-second timestamps need two seconds.
    pub fn is_racy(&self, read_start_ns: i64) -> bool {
        let coarse = self.ctime_ns % 1_000_000_000 == 0 && self.mtime_ns % 1_000_000_000 == 0;
        let margin = if coarse { 2_000_000_000 } else { 20_000_000 };
        self.ctime_ns >= read_start_ns - margin || self.mtime_ns >= read_start_ns - margin
    }
}

/// One branch's stat cache, or none (nothing cached, nothing kept). Safe to share between the
/// threads of a walk.
pub struct StatCache {
    db: Option<Db>,
}

/// An open cache file.
struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Writes not yet in a transaction; `None` for a cache opened to read only.
    writes: Option<Mutex<Pending>>,
}

/// Writes waiting for the next batch.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    bytes: usize,
    /// A batch failed: nothing more is written and nothing is promoted.
    failed: bool,
}

enum Op {
    /// Stage the row of a directory.
    Stage(Vec<u8>, Vec<u8>),
    /// Delete the rows of a directory and everything below it.
    Forget(Vec<u8>),
}

/// How a cache file is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// By the command that holds the branch (under its volume lock): created if missing,
    /// replaced if damaged or foreign, its staging table emptied.
    Own,
    /// By anyone else: read only, never replaced; created only to import an old cache.
    Read,
}

impl StatCache {
    /// No cache: nothing is trusted, nothing is kept.
    pub fn none() -> StatCache {
        StatCache { db: None }
    }

    /// The cache at `path` of a branch the caller holds (under its volume lock), importing and
    /// removing the old-format file `legacy` if there is one. Never fails: a cache that cannot
    /// be opened or made is logged and replaced by [`StatCache::none`].
    pub fn open(path: &Path, legacy: &Path) -> StatCache {
        let db = Db::open(path, Access::Own, legacy).or_else(|e| {
            warn(path, &e);
            let _ = StatCache::remove(path);
            Db::open(path, Access::Own, legacy)
        });
        StatCache::from(path, db)
    }

    /// The cache at `path` read by a command that does not hold the branch (status, diff, a
    /// clone's source): never replaced, and anything wrong with it gives no cache.
    pub fn open_read(path: &Path, legacy: &Path) -> StatCache {
        if !path.exists() && !legacy.exists() {
            return StatCache::none();
        }
        StatCache::from(path, Db::open(path, Access::Read, legacy))
    }

    /// An empty cache at `path`, replacing whatever was there (new live data).
    pub fn fresh(path: &Path) -> StatCache {
        if let Err(e) = StatCache::remove(path) {
            warn(path, &e.to_string());
            return StatCache::none();
        }
        StatCache::open(path, Path::new(""))
    }

    fn from(path: &Path, db: std::result::Result<Db, String>) -> StatCache {
        match db {
            Ok(db) => StatCache { db: Some(db) },
            Err(e) => {
                warn(path, &e);
                StatCache::none()
            }
        }
    }

    /// The kept row of directory `rel` (the root is empty); empty when there is none or it
    /// cannot be read.
    pub fn dir(&self, rel: &[u8]) -> DirCache {
        let Some(db) = &self.db else {
            return DirCache::default();
        };
        let conn = db.conn.lock().expect("cache connection lock");
        let row: rusqlite::Result<Option<Vec<u8>>> = conn
            .prepare_cached("SELECT row FROM dirs WHERE path = ?1")
            .and_then(|mut s| s.query_row([rel], |r| r.get(0)).optional());
        match row {
            Ok(Some(bytes)) => DirCache::decode(&bytes).unwrap_or_default(),
            Ok(None) => DirCache::default(),
            Err(e) => {
                tracing::debug!(path = %db.path.display(), "stat cache read: {e}");
                DirCache::default()
            }
        }
    }

    /// Stage `row` as the row of directory `rel`; it is kept once [`StatCache::promote`] runs.
    pub fn stage(&self, rel: &[u8], row: &DirCache) {
        self.push(Op::Stage(rel.to_vec(), row.encode()));
    }

    /// Delete the rows of directory `rel` and of everything below it (it is gone).
    pub fn forget(&self, rel: &[u8]) {
        self.push(Op::Forget(rel.to_vec()));
    }

    fn push(&self, op: Op) {
        let Some((db, writes)) = self.writable() else {
            return;
        };
        let mut pending = writes.lock().expect("cache writes lock");
        if pending.failed {
            return;
        }
        pending.bytes += match &op {
            Op::Stage(p, r) => p.len() + r.len(),
            Op::Forget(p) => p.len(),
        };
        pending.ops.push(op);
        if pending.ops.len() >= BATCH_OPS || pending.bytes >= BATCH_BYTES {
            db.flush(&mut pending);
        }
    }

    fn writable(&self) -> Option<(&Db, &Mutex<Pending>)> {
        let db = self.db.as_ref()?;
        Some((db, db.writes.as_ref()?))
    }

    /// Write the rows staged so far (still staged: not yet the cache's).
    pub fn flush(&self) {
        if let Some((db, writes)) = self.writable() {
            db.flush(&mut writes.lock().expect("cache writes lock"));
        }
    }

    /// Make every staged row the cache's (call when what they describe is durable). A failure
    /// is logged and keeps the rows the cache had.
    pub fn promote(&self) {
        let Some((db, writes)) = self.writable() else {
            return;
        };
        let mut pending = writes.lock().expect("cache writes lock");
        db.flush(&mut pending);
        if pending.failed {
            return;
        }
        let mut conn = db.conn.lock().expect("cache connection lock");
        let moved = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT OR REPLACE INTO dirs(path, row) SELECT path, row FROM staged",
                [],
            )?;
            tx.execute("DELETE FROM staged", [])?;
            tx.commit()
        })();
        if let Err(e) = moved {
            warn(&db.path, &e.to_string());
        }
    }

    /// Remove the cache file at `path` with its journal files (the branch is gone).
    pub fn remove(path: &Path) -> Result<()> {
        for p in [
            path.to_path_buf(),
            suffixed(path, "-wal"),
            suffixed(path, "-shm"),
        ] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).at("remove", &p)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Call `f` with every content id (and its size) the cache at `path` vouches for, a row
    /// at a time (gc keeps them alive: they describe live files).
    pub fn for_each_content(
        path: &Path,
        legacy: &Path,
        f: &mut dyn FnMut(&ObjectId, u64),
    ) -> Result<()> {
        let cache = StatCache::open_read(path, legacy);
        let Some(db) = &cache.db else {
            return Ok(());
        };
        let conn = db.conn.lock().expect("cache connection lock");
        let mut stmt = conn.prepare("SELECT row FROM dirs")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let bytes: Vec<u8> = r.get(0)?;
            for slot in DirCache::decode(&bytes)
                .unwrap_or_default()
                .entries
                .values()
            {
                if let Slot::File(CacheEntry {
                    size,
                    content: Some(id),
                    ..
                }) = slot
                {
                    f(id, *size);
                }
            }
        }
        Ok(())
    }
}

impl Db {
    fn open(path: &Path, access: Access, legacy: &Path) -> std::result::Result<Db, String> {
        let conn = connect(path, access).map_err(|e| e.to_string())?;
        let mut db = Db {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            writes: (access == Access::Own).then(Mutex::default),
        };
        let conn = db.conn.get_mut().expect("cache connection lock");
        check_format(conn)?;
        if access == Access::Own {
            conn.execute("DELETE FROM staged", [])
                .map_err(|e| e.to_string())?;
        }
        if legacy.is_file() {
            legacy::import(conn, legacy)?;
        }
        Ok(db)
    }

    /// Write the pending operations in one transaction; on failure, stop writing.
    fn flush(&self, pending: &mut Pending) {
        if pending.ops.is_empty() || pending.failed {
            return;
        }
        let ops = std::mem::take(&mut pending.ops);
        pending.bytes = 0;
        let mut conn = self.conn.lock().expect("cache connection lock");
        if let Err(e) = write_batch(&mut conn, &ops) {
            warn(&self.path, &e.to_string());
            pending.failed = true;
        }
    }
}

fn write_batch(conn: &mut Connection, ops: &[Op]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for op in ops {
        match op {
            Op::Stage(path, row) => {
                tx.prepare_cached("INSERT OR REPLACE INTO staged(path, row) VALUES (?1, ?2)")?
                    .execute((path, row))?;
            }
            Op::Forget(path) => {
                let (below, after) = subtree_bounds(path);
                for table in ["dirs", "staged"] {
                    tx.prepare_cached(&format!(
                        "DELETE FROM {table} WHERE path = ?1 OR (path >= ?2 AND path < ?3)"
                    ))?
                    .execute((path, &below, &after))?;
                }
            }
        }
    }
    tx.commit()
}

/// The key range of the paths below directory `rel`: from `rel/` (inclusive) to `rel0`
/// (exclusive; `0` follows `/`).
fn subtree_bounds(rel: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut below = rel.to_vec();
    below.push(b'/');
    let mut after = rel.to_vec();
    after.push(b'/' + 1);
    (below, after)
}

/// Open (and for the owner create, mode 0600) the SQLite file.
fn connect(path: &Path, access: Access) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .at("create", dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .open(path)
        .at("open", path)?;
    let mode = file.metadata().at("stat", path)?.permissions().mode() & 0o777;
    if mode != FILE_MODE && access == Access::Own {
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .at("chmod", path)?;
    }
    drop(file);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // WAL: readers (status) never block the owner; NORMAL: a power loss may lose the last
    // transactions (older rows stay, still true) but never corrupts the file.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Make sure the file is a cache of this format: an empty file gets the schema (idempotent,
/// so an owner and a reader may race to make it); anything else (another format, another
/// program's database, not a database) is refused.
fn check_format(conn: &Connection) -> std::result::Result<(), String> {
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| format!("not a stat cache: {e}"))?;
    if tables == 0 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS dirs(path BLOB PRIMARY KEY, row BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS staged(path BLOB PRIMARY KEY, row BLOB NOT NULL);
             INSERT OR IGNORE INTO meta(key, value) VALUES ('format', '{FORMAT}');
             COMMIT;"
        ))
        .map_err(|e| e.to_string())?;
    }
    let format: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| format!("not a stat cache: {e}"))?;
    match format {
        Some(f) if f == FORMAT => Ok(()),
        Some(f) => Err(format!("a stat cache of another format ({f})")),
        None => Err("not a stat cache".into()),
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn warn(path: &Path, what: &str) {
    tracing::warn!(
        "stat cache {}: {what} (it is only a hint: files it would vouch for are read again)",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64) -> CacheEntry {
        CacheEntry {
            size: 1,
            mtime_ns: 2,
            ctime_ns: 3,
            ino,
            content: Some(ObjectId::hash(b"x")),
        }
    }

    fn row(files: &[(&str, u64)], dirs: &[&str]) -> DirCache {
        let mut r = DirCache::default();
        for (n, ino) in files {
            r.insert_file(n.as_bytes(), entry(*ino));
        }
        for d in dirs {
            r.insert_dir(d.as_bytes());
        }
        r
    }

    /// Staged rows are not the cache's until promoted; an owner opening the cache drops the
    /// staged rows a killed command left.
    #[test]
    fn staged_rows_count_only_once_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let none = Path::new("");
        let c = StatCache::open(&path, none);
        c.stage(b"a", &row(&[("f", 1)], &[]));
        c.flush();
        assert_eq!(c.dir(b"a"), DirCache::default());
        drop(c);
        let c = StatCache::open(&path, none);
        c.promote();
        assert_eq!(
            c.dir(b"a"),
            DirCache::default(),
            "a killed command's row was kept"
        );
        c.stage(b"a", &row(&[("f", 1)], &[]));
        c.promote();
        assert_eq!(c.dir(b"a"), row(&[("f", 1)], &[]));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// Forgetting a directory deletes its row and every row below it, and nothing that only
    /// shares its name as a prefix.
    #[test]
    fn forget_deletes_exactly_a_subtree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let c = StatCache::open(&path, Path::new(""));
        for p in ["a", "a/b", "a/b/c", "a-b", "a0", "ab", "b"] {
            c.stage(p.as_bytes(), &row(&[("f", 1)], &[]));
        }
        c.promote();
        c.forget(b"a");
        c.promote();
        let kept: Vec<&str> = ["a", "a/b", "a/b/c", "a-b", "a0", "ab", "b"]
            .into_iter()
            .filter(|p| c.dir(p.as_bytes()) != DirCache::default())
            .collect();
        assert_eq!(kept, ["a-b", "a0", "ab", "b"]);
    }

    /// An old-format file becomes one row per directory (subdirectories listed in their
    /// parents) and is removed; a foreign file at the cache's place is replaced by the owner
    /// and ignored by a reader.
    #[test]
    fn imports_the_old_format_and_refuses_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("old");
        let mut map = std::collections::HashMap::new();
        for (p, ino) in [("top", 1), ("a/b/deep", 2), ("a/b/deep2", 3), ("a/x", 4)] {
            map.insert(p.as_bytes().to_vec(), entry(ino));
        }
        let mut bytes = postcard::to_extend(&map, b"DVSTAT01".to_vec()).unwrap();
        let sum = blake3::hash(&bytes[8..]);
        bytes.extend_from_slice(sum.as_bytes());
        std::fs::write(&legacy, &bytes).unwrap();
        let path = dir.path().join("b.db");
        let c = StatCache::open_read(&path, &legacy);
        assert!(!legacy.exists());
        assert_eq!(c.dir(b""), row(&[("top", 1)], &["a"]));
        assert_eq!(c.dir(b"a"), row(&[("x", 4)], &["b"]));
        assert_eq!(c.dir(b"a/b"), row(&[("deep", 2), ("deep2", 3)], &[]));
        drop(c);
        std::fs::write(&path, b"SQLite format 3\0 but not really").unwrap();
        let _ = std::fs::remove_file(suffixed(&path, "-wal"));
        let _ = std::fs::remove_file(suffixed(&path, "-shm"));
        assert_eq!(
            StatCache::open_read(&path, Path::new("")).dir(b""),
            DirCache::default()
        );
        let c = StatCache::open(&path, Path::new(""));
        c.stage(b"", &row(&[("new", 9)], &[]));
        c.promote();
        assert_eq!(c.dir(b""), row(&[("new", 9)], &[]));
    }
}
