//! Import of the stat cache of older versions: one file per branch, `DVSTAT01` + postcard
//! `HashMap<path, CacheEntry>` + blake3 of the postcard bytes. It is checked (a streaming hash
//! pass), then streamed entry by entry into a temporary table, grouped into one row per
//! directory in path order and added to the cache's rows, all in one transaction that also
//! marks the import done; then the file is removed. Never loads the file whole: memory follows
//! the largest directory. A damaged or foreign file is removed without importing anything.

use super::row::DirCache;
use super::CacheEntry;
use rusqlite::{Connection, OptionalExtension, Transaction};
use std::io::Read;
use std::path::Path;

const MAGIC: &[u8; 8] = b"DVSTAT01";
const SUM_LEN: u64 = 32;
/// Bytes read from the file at a time.
const READ_SIZE: usize = 1 << 20;
/// Largest encoded entry accepted (a path far beyond any real one): more is a damaged file.
const MAX_ENTRY: usize = 1 << 20;

type Fail = String;

/// Import the old-format file `legacy` into the cache open on `conn` (unless done already),
/// then remove it.
pub(super) fn import(conn: &mut Connection, legacy: &Path) -> Result<(), Fail> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    let done: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'legacy'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| e.to_string())?;
    if done.is_none() && legacy.is_file() {
        if verified(legacy).map_err(|e| e.to_string())? {
            copy_rows(&tx, legacy)?;
        } else {
            tracing::info!("ignoring the damaged old stat cache {}", legacy.display());
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('legacy', 'imported')",
            [],
        )
        .map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())?;
    match std::fs::remove_file(legacy) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Whether the file has the old magic and its checksum holds (read as a stream).
fn verified(legacy: &Path) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(legacy)?;
    let len = f.metadata()?.len();
    let Some(body_len) = len.checked_sub(MAGIC.len() as u64 + SUM_LEN) else {
        return Ok(false);
    };
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut (&mut f).take(body_len), &mut hasher)?;
    let mut sum = [0u8; SUM_LEN as usize];
    f.read_exact(&mut sum)?;
    Ok(hasher.finalize().as_bytes() == &sum)
}

/// Stream the entries into a temporary table keyed by (directory, name), mark every
/// directory in its parent, then write one row per directory.
fn copy_rows(tx: &Transaction, legacy: &Path) -> Result<(), Fail> {
    let e = |e: rusqlite::Error| e.to_string();
    tx.execute_batch(
        "DROP TABLE IF EXISTS temp.legacy;
         CREATE TEMP TABLE legacy(dir BLOB NOT NULL, name BLOB NOT NULL, entry BLOB,
                                  PRIMARY KEY(dir, name));",
    )
    .map_err(e)?;
    let mut stream = Stream::open(legacy).map_err(|e| e.to_string())?;
    let count: u64 = stream.next().ok_or("damaged old stat cache")?;
    {
        let mut add = tx
            .prepare("INSERT OR REPLACE INTO legacy(dir, name, entry) VALUES (?1, ?2, ?3)")
            .map_err(e)?;
        for _ in 0..count {
            let (path, entry): (serde_bytes::ByteBuf, CacheEntry) =
                stream.next().ok_or("damaged old stat cache")?;
            let (dir, name) = split(&path);
            let encoded = postcard::to_stdvec(&entry).expect("entry serializes");
            add.execute((dir, name, encoded)).map_err(e)?;
        }
    }
    mark_dirs(tx).map_err(e)?;
    write_rows(tx).map_err(e)?;
    tx.execute("DROP TABLE temp.legacy", []).map_err(e)?;
    Ok(())
}

/// A path's directory and name (the root's files have an empty directory).
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// Add each directory holding files (and each of its ancestors) to its parent as a
/// subdirectory (an entry without a stat).
fn mark_dirs(tx: &Transaction) -> rusqlite::Result<()> {
    let mut list = tx.prepare("SELECT DISTINCT dir FROM legacy WHERE dir != x''")?;
    let mut add =
        tx.prepare("INSERT OR IGNORE INTO legacy(dir, name, entry) VALUES (?1, ?2, NULL)")?;
    let mut rows = list.query([])?;
    while let Some(r) = rows.next()? {
        let mut dir: Vec<u8> = r.get(0)?;
        while !dir.is_empty() {
            let (parent, name) = split(&dir);
            if add.execute((parent, name))? == 0 {
                // Already marked, and so are its ancestors.
                break;
            }
            dir.truncate(parent.len());
        }
    }
    Ok(())
}

/// One row per directory, in path order, holding one directory in memory at a time. Rows the
/// cache already has are newer and kept.
fn write_rows(tx: &Transaction) -> rusqlite::Result<()> {
    let mut list = tx.prepare("SELECT dir, name, entry FROM legacy ORDER BY dir, name")?;
    let mut put = tx.prepare("INSERT OR IGNORE INTO dirs(path, row) VALUES (?1, ?2)")?;
    let mut rows = list.query([])?;
    let mut current: Option<(Vec<u8>, DirCache)> = None;
    while let Some(r) = rows.next()? {
        let dir: Vec<u8> = r.get(0)?;
        let name: Vec<u8> = r.get(1)?;
        let entry: Option<Vec<u8>> = r.get(2)?;
        if current.as_ref().is_none_or(|(d, _)| *d != dir) {
            if let Some((d, row)) = current.take() {
                put.execute((d, row.encode()))?;
            }
            current = Some((dir, DirCache::default()));
        }
        let row = &mut current.as_mut().expect("set above").1;
        match entry.map(|b| postcard::from_bytes::<CacheEntry>(&b)) {
            Some(Ok(e)) => row.insert_file(&name, e),
            Some(Err(_)) => {}
            None => row.insert_dir(&name),
        }
    }
    if let Some((d, row)) = current {
        put.execute((d, row.encode()))?;
    }
    Ok(())
}

/// Decodes postcard values one after another from the body of the file.
struct Stream {
    file: std::io::Take<std::fs::File>,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Stream {
    fn open(legacy: &Path) -> std::io::Result<Stream> {
        let mut f = std::fs::File::open(legacy)?;
        let len = f.metadata()?.len();
        let mut magic = [0u8; 8];
        f.read_exact(&mut magic)?;
        let body = len.saturating_sub(MAGIC.len() as u64 + SUM_LEN);
        Ok(Stream {
            file: f.take(body),
            buf: Vec::new(),
            pos: 0,
            eof: false,
        })
    }

    /// The next value; `None` when the body ends or does not decode.
    fn next<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        loop {
            match postcard::take_from_bytes::<T>(&self.buf[self.pos..]) {
                Ok((v, rest)) => {
                    self.pos = self.buf.len() - rest.len();
                    return Some(v);
                }
                Err(postcard::Error::DeserializeUnexpectedEnd)
                    if !self.eof && self.buf.len() - self.pos < MAX_ENTRY =>
                {
                    self.refill().ok()?;
                }
                Err(_) => return None,
            }
        }
    }

    fn refill(&mut self) -> std::io::Result<()> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let have = self.buf.len();
        self.buf.resize(have + READ_SIZE, 0);
        let n = crate::snapshot::scan::read_full(&mut self.file, &mut self.buf[have..])?;
        self.buf.truncate(have + n);
        self.eof = n < READ_SIZE;
        Ok(())
    }
}
