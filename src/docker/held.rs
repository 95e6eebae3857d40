//! The durable journal of containers dvol holds (paused or stopped), so a dvol killed while it
//! holds them does not leave an app frozen for good, and two holds of one container let it go
//! once, when the last of them ends.
//!
//! One record per holder in `ROOT/.dvol/held/` names the containers (and the volumes they
//! use), fsynced, with an exclusive flock its writer keeps while it runs; a record whose lock
//! can be taken belongs to a dead process. The whole journal has one lock more
//! (`ROOT/.dvol/held.lock`, [`lock`]): a holder takes it, reads every record, writes its own and
//! pauses or stops its containers before it lets it go; a releaser takes it to let go the
//! containers no other record names and drop its record. So no holder misses another's
//! record: a paused container some record names (live or dead) is dvol's hold, never taken
//! for the user's own pause.
//!
//! This module only keeps the records: which containers a command holds is `docker::hold`'s
//! business, letting them go `docker::release`'s. It never calls the engine and never touches
//! volume data.

use crate::error::IoContext;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One held container and how it was held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub name: String,
    /// `true`: paused (let go by unpausing); `false`: stopped (let go by starting).
    pub paused: bool,
    /// The container's main process when it was held (to thaw its cgroup when Docker's
    /// unpause does not answer); absent in records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// What a journal record holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// The operation (`commit`, `group reset`, …), for the log.
    pub what: String,
    pub volumes: Vec<String>,
    pub containers: Vec<Entry>,
}

/// The journal directory of the dvol root `root`.
fn dir(root: &Path) -> PathBuf {
    root.join(".dvol").join("held")
}

/// How long a command waits for the journal lock: its holders keep it only for engine calls,
/// each answered within `engine::CALL_LIMIT`.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// The journal lock of a root, held: records are read, written and let go only under it.
pub struct JournalLock {
    _guard: crate::lock::LockGuard,
    dir: PathBuf,
}

/// Take the journal lock of the dvol root `root` (waiting up to two minutes).
pub fn lock(root: &Path) -> Result<JournalLock> {
    let dir = dir(root);
    std::fs::create_dir_all(&dir).at("create", &dir)?;
    let path = root.join(".dvol").join("held.lock");
    let guard = crate::lock::acquire(&path, "held", true, LOCK_WAIT).map_err(|e| match e {
        Error::Locked { waited_secs, .. } => Error::Docker(format!(
            "the journal of held containers ({}) is busy: waited {waited_secs}s for another dvol",
            path.display()
        )),
        e => e,
    })?;
    Ok(JournalLock { _guard: guard, dir })
}

/// A record this process holds the lock of (written by it, or a dead one it took over).
pub struct Journal {
    path: PathBuf,
    _lock: File,
    pub record: Record,
}

impl JournalLock {
    /// Write `record`: durable (the file and its directory fsynced) before it returns.
    pub fn write(&self, record: Record) -> Result<Journal> {
        let (path, lock) = write_locked(&self.dir, &record)?;
        Ok(Journal {
            path,
            _lock: lock,
            record,
        })
    }

    /// The records whose writer is dead, taken over by this process (locked until dropped).
    /// Stale temporary files of dead writers are removed.
    pub fn dead(&self) -> Result<Vec<Journal>> {
        dead_records(&self.dir)
    }

    /// The containers (ids) every record but `except` names, live or dead.
    pub fn named_elsewhere(&self, except: &[&Path]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for path in record_files(&self.dir)? {
            if except.contains(&path.as_path()) {
                continue;
            }
            if let Some(r) = read_record(&path) {
                out.extend(r.containers.into_iter().map(|c| c.id));
            }
        }
        Ok(out)
    }
}

impl Journal {
    /// Every container is let go: drop the record.
    pub fn finish(self, _journal: &JournalLock) -> Result<()> {
        remove(&self.path)
    }

    /// Hold `record` instead: the new record is durable before the old one is removed.
    pub fn replace(&mut self, journal: &JournalLock, record: Record) -> Result<()> {
        let mut new = journal.write(record)?;
        std::mem::swap(self, &mut new);
        new.finish(journal)
    }

    /// Where the record is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Write `record` under a new name in `dir`, locked before it is visible, fsynced with its
/// directory.
fn write_locked(dir: &Path, record: &Record) -> Result<(PathBuf, File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let tmp = dir.join(format!(".{unique}.tmp"));
    let path = dir.join(format!("{unique}.json"));
    let mut file = File::options()
        .create_new(true)
        .write(true)
        .open(&tmp)
        .at("create", &tmp)?;
    file.lock().at("lock", &tmp)?;
    let body = serde_json::to_vec(record).expect("a held record serializes");
    file.write_all(&body).at("write", &tmp)?;
    file.sync_all().at("fsync", &tmp)?;
    std::fs::rename(&tmp, &path).at("rename", &tmp)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("fsync", dir)?;
    Ok((path, file))
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("remove", path),
        _ => Ok(()),
    }
}

/// How old a temporary record file must be before a scanner removes it: its writer locks
/// it right after creating it, so an unlocked one this old belongs to a dead writer (a
/// younger one may be a live writer's between its create and its lock).
const STALE_TMP: Duration = Duration::from_secs(600);

/// Every file of `dir`, sorted (none when it does not exist).
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at("read", dir),
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    Ok(names)
}

/// The record files of `dir` (not the temporary ones).
fn record_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(files(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect())
}

/// The record at `path`; `None` when it is gone or cannot be read.
fn read_record(path: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The records in `dir` whose writer is dead (their lock could be taken; it is held in the
/// returned journal until dropped). Stale temporary files of dead writers are removed.
fn dead_records(dir: &Path) -> Result<Vec<Journal>> {
    let mut out = Vec::new();
    for path in files(dir)? {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        if path.extension().is_some_and(|e| e == "tmp") {
            if is_stale(&file) {
                remove(&path)?;
            }
            continue;
        }
        match read_record(&path) {
            Some(record) => out.push(Journal {
                path,
                _lock: file,
                record,
            }),
            None => {
                tracing::warn!(
                    "removing an unreadable held-containers record {}",
                    path.display()
                );
                remove(&path)?;
            }
        }
    }
    Ok(out)
}

/// Whether `file` was last modified longer than [`STALE_TMP`] ago.
fn is_stale(file: &File) -> bool {
    file.metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TMP))
}

/// The rule of which dead records may be let go: none of their volumes has an interrupted
/// rewrite pending in `repo` (one that cannot be read counts as pending).
pub fn settled_in(repo: &crate::repo::Repo) -> impl Fn(&[String]) -> bool + '_ {
    |volumes| {
        volumes
            .iter()
            .all(|v| repo.rewrite_pending(v).is_ok_and(|pending| !pending))
    }
}

/// Whether any record is in `root`'s journal (cheap: one directory read, no lock, no engine
/// call).
pub fn anything_to_recover(root: &Path) -> bool {
    std::fs::read_dir(dir(root)).is_ok_and(|mut d| d.next().is_some())
}

/// A paused container `id` named `/id`, for unit tests.
#[cfg(test)]
pub fn entry(id: &str) -> Entry {
    Entry {
        id: id.into(),
        name: format!("/{id}"),
        paused: true,
        pid: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ids: &[&str]) -> Record {
        Record {
            what: "commit".into(),
            volumes: vec!["a".into()],
            containers: ids.iter().map(|id| entry(id)).collect(),
        }
    }

    /// A record left by a writer that is gone (written, never locked).
    fn dead(root: &Path, name: &str, ids: &[&str]) -> PathBuf {
        let dir = dir(root);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&record(ids)).unwrap()).unwrap();
        path
    }

    #[test]
    fn every_record_live_or_dead_names_its_containers() {
        let root = tempfile::tempdir().unwrap();
        let old = dead(root.path(), "1", &["c1"]);
        let journal_lock = lock(root.path()).unwrap();
        let mine = journal_lock.write(record(&["c2", "c3"])).unwrap();
        let all = journal_lock.named_elsewhere(&[]).unwrap();
        assert_eq!(all.len(), 3);
        let others = journal_lock.named_elsewhere(&[mine.path()]).unwrap();
        assert_eq!(others, HashSet::from(["c1".to_string()]));
        // Only the dead one can be taken over; the live one is this process's.
        let dead = journal_lock.dead().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].path(), old);
        // Taken over, it is live: nobody else takes it.
        assert!(journal_lock.dead().unwrap().is_empty());
        drop(dead);
        assert_eq!(journal_lock.dead().unwrap().len(), 1);
    }

    #[test]
    fn a_replaced_record_stays_durable_and_locked() {
        let root = tempfile::tempdir().unwrap();
        let journal_lock = lock(root.path()).unwrap();
        let mut mine = journal_lock.write(record(&["c1", "c2"])).unwrap();
        let first = mine.path().to_path_buf();
        mine.replace(&journal_lock, record(&["c2"])).unwrap();
        assert!(!first.exists());
        assert!(journal_lock.dead().unwrap().is_empty());
        let named = journal_lock.named_elsewhere(&[]).unwrap();
        assert_eq!(named, HashSet::from(["c2".to_string()]));
        drop(mine);
        let left = journal_lock.dead().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].record.containers, vec![entry("c2")]);
        left.into_iter()
            .next()
            .unwrap()
            .finish(&journal_lock)
            .unwrap();
        assert!(journal_lock.named_elsewhere(&[]).unwrap().is_empty());
    }

    #[test]
    fn only_a_stale_unlocked_temporary_file_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = dir(root.path());
        std::fs::create_dir_all(&dir).unwrap();
        // A live writer between its create and its lock: kept.
        let fresh = dir.join(".9-1.tmp");
        std::fs::write(&fresh, "").unwrap();
        // A stale one still locked by its (live) writer: kept.
        let held = dir.join(".9-2.tmp");
        let writer = File::create(&held).unwrap();
        writer.lock().unwrap();
        // A stale one nobody holds: removed.
        let stale = dir.join(".9-3.tmp");
        std::fs::write(&stale, "").unwrap();
        let old = std::time::SystemTime::now() - 2 * STALE_TMP;
        for p in [&held, &stale] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        assert!(dead_records(&dir).unwrap().is_empty());
        assert!(fresh.exists() && held.exists());
        assert!(!stale.exists());
    }
}
