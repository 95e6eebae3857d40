//! The durable journal of containers dvol holds (paused or stopped), so a dvol killed while it
//! holds them does not leave an app frozen for good.
//!
//! Before a command pauses or stops containers it writes a record naming them (and the
//! volumes they use) to `ROOT/.dvol/held/`, fsynced, and keeps an exclusive flock on it while
//! it runs; after it has let them go it deletes the record. A record whose lock can be taken
//! belongs to a dead process: its containers are still held by nobody. Two ways roll it
//! forward:
//!
//! - a command that holds containers of the same volumes adopts it ([`Journal::adopt`], before
//!   it lists the containers, then [`Adoption::begin`]) when its volumes are settled: the
//!   dead record's containers are named in the new record and let go with the command's own;
//!   a record of an interrupted rewrite still pending is never adopted (its app stays stopped
//!   until the reset is finished, and only then is let go);
//! - [`recover`] (the CLI before and after every command, the plugin when it starts) lets go the
//!   containers of every dead record whose volumes the caller says are settled (no
//!   interrupted rewrite pending), then deletes the record.
//!
//! Letting go is idempotent: a container is unpaused only if it is still paused, started only
//! if it is still stopped, skipped if it is gone. This module never decides which containers
//! use a volume (the engine does) and never touches volume data.

use super::{Action, Container, Engine};
use crate::error::IoContext;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One held container and how it was held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub name: String,
    /// `true`: paused (let go by unpausing); `false`: stopped (let go by starting).
    pub paused: bool,
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

/// A record this process wrote and holds the lock of; deleted by [`Journal::finish`].
pub struct Journal {
    path: PathBuf,
    _lock: File,
    /// Records of dead processes this one took over (deleted once its own is durable).
    pub adopted: Vec<Entry>,
}

/// The dead records a command is taking over, locked (so no concurrent [`recover`] lets their
/// containers go) until [`Adoption::begin`] has written the command's own record.
pub struct Adoption {
    dir: PathBuf,
    records: Vec<(PathBuf, File, Record)>,
}

impl Journal {
    /// Lock the dead records that name any of `volumes` and whose volumes `settled` accepts (a
    /// record of an interrupted rewrite still pending is left alone: its containers must stay
    /// held until the rewrite is finished, and the command that finishes it lets them go).
    /// Called before the command lists the containers it holds, so a container a dead record
    /// keeps paused stays paused while the command counts on it.
    pub fn adopt(
        root: &Path,
        volumes: &[&str],
        settled: &dyn Fn(&[String]) -> bool,
    ) -> Result<Adoption> {
        let dir = dir(root);
        let records = dead_records(&dir)?
            .into_iter()
            .filter(|(_, _, r)| r.volumes.iter().any(|v| volumes.contains(&v.as_str())))
            .filter(|(_, _, r)| settled(&r.volumes))
            .collect();
        Ok(Adoption { dir, records })
    }
}

impl Adoption {
    /// Write the record of `containers` (about to be held for `what` on `volumes`), naming
    /// the adopted records' containers too. Durable before it returns. `None` (and nothing
    /// written) when there is nothing to hold and nothing adopted.
    pub fn begin(
        self,
        what: &str,
        volumes: &[&str],
        containers: &[Entry],
    ) -> Result<Option<Journal>> {
        let Adoption { dir, records } = self;
        let mut adopted: Vec<Entry> = Vec::new();
        let mut all_volumes: Vec<String> = volumes.iter().map(ToString::to_string).collect();
        for (_, _, r) in &records {
            for e in &r.containers {
                if !containers.iter().chain(&adopted).any(|c| c.id == e.id) {
                    adopted.push(e.clone());
                }
            }
            all_volumes.extend(r.volumes.iter().cloned());
        }
        if containers.is_empty() && records.is_empty() {
            return Ok(None);
        }
        all_volumes.sort();
        all_volumes.dedup();
        let record = Record {
            what: what.to_string(),
            volumes: all_volumes,
            containers: containers.iter().chain(&adopted).cloned().collect(),
        };
        std::fs::create_dir_all(&dir).at("create", &dir)?;
        let (path, lock) = write_locked(&dir, &record)?;
        for (old, _lock, _) in records {
            remove(&old)?;
        }
        Ok(Some(Journal {
            path,
            _lock: lock,
            adopted,
        }))
    }
}

impl Journal {
    /// Every container is let go: drop the record.
    pub fn finish(self) -> Result<()> {
        remove(&self.path)
    }
}

/// Write `record` under a new name in `dir`, locked before it is visible, fsynced with its
/// directory.
fn write_locked(dir: &Path, record: &Record) -> Result<(PathBuf, File)> {
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
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
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(600);

/// The records in `dir` whose writer is dead (their lock could be taken; it is held in the
/// returned file until dropped). Stale temporary files of dead writers are removed.
fn dead_records(dir: &Path) -> Result<Vec<(PathBuf, File, Record)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at("read", dir),
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
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
        let body = std::fs::read(&path).unwrap_or_default();
        match serde_json::from_slice::<Record>(&body) {
            Ok(r) => out.push((path, file, r)),
            Err(_) => {
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

/// Let go every container of the dead records in `root`'s journal whose volumes `settled`
/// accepts, and delete those records. Returns the containers let go.
pub fn recover(
    engine: &Engine,
    root: &Path,
    settled: &dyn Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (path, _lock, record) in dead_records(&dir(root))? {
        if !settled(&record.volumes) {
            tracing::info!(
                "containers held by an interrupted {} stay held until it is finished",
                record.what
            );
            continue;
        }
        let failed = let_go(engine, &record.containers);
        if let Some(e) = failed.into_iter().next() {
            return Err(e);
        }
        tracing::warn!(
            "let go the containers of an interrupted {} of {}: {}",
            record.what,
            record.volumes.join(", "),
            record
                .containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        out.extend(record.containers.iter().map(|c| c.name.clone()));
        remove(&path)?;
    }
    Ok(out)
}

/// Whether any dead record is waiting in `root`'s journal (cheap: no engine call).
pub fn anything_to_recover(root: &Path) -> bool {
    std::fs::read_dir(dir(root)).is_ok_and(|mut d| d.next().is_some())
}

/// Unpause the still-paused and start the still-stopped containers of `entries`; the errors.
pub fn let_go(engine: &Engine, entries: &[Entry]) -> Vec<crate::Error> {
    let mut unpause = Vec::new();
    let mut start = Vec::new();
    let mut errors: Vec<crate::Error> = Vec::new();
    for e in entries {
        let state = match engine.state(&e.id) {
            Ok(Some(state)) => state,
            Ok(None) => continue,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        let c = Container {
            id: e.id.clone(),
            name: e.name.clone(),
            paused: state == super::engine::State::Paused,
        };
        match (e.paused, state) {
            (true, super::engine::State::Paused) => unpause.push(c),
            (false, super::engine::State::Stopped) => start.push(c),
            _ => {}
        }
    }
    for (action, list) in [(Action::Unpause, unpause), (Action::Start, start)] {
        errors.extend(
            engine
                .each(action, &list)
                .into_iter()
                .filter_map(|r| r.err()),
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record left by a writer that is gone (written, never locked).
    fn dead(root: &Path, name: &str, volumes: &[&str], id: &str) -> PathBuf {
        let record = Record {
            what: "reset".into(),
            volumes: volumes.iter().map(ToString::to_string).collect(),
            containers: vec![Entry {
                id: id.into(),
                name: format!("/{id}"),
                paused: false,
            }],
        };
        let dir = dir(root);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
        path
    }

    #[test]
    fn a_record_of_a_pending_rewrite_is_not_adopted() {
        let root = tempfile::tempdir().unwrap();
        let old = dead(root.path(), "1", &["a", "b"], "c1");
        let pending = |_: &[String]| false;
        let adoption = Journal::adopt(root.path(), &["a"], &pending).unwrap();
        assert!(adoption.begin("commit", &["a"], &[]).unwrap().is_none());
        assert!(old.exists(), "the pending reset's record was taken");
        let settled = |_: &[String]| true;
        let journal = Journal::adopt(root.path(), &["a"], &settled)
            .unwrap()
            .begin("commit", &["a"], &[])
            .unwrap()
            .expect("adopted");
        assert_eq!(journal.adopted.len(), 1);
        assert_eq!(journal.adopted[0].id, "c1");
        assert!(!old.exists());
        journal.finish().unwrap();
        assert!(dead_records(&dir(root.path())).unwrap().is_empty());
    }

    #[test]
    fn adopted_records_are_locked_until_the_new_record_is_written() {
        let root = tempfile::tempdir().unwrap();
        dead(root.path(), "1", &["a"], "c1");
        let settled = |_: &[String]| true;
        let adoption = Journal::adopt(root.path(), &["a"], &settled).unwrap();
        // What a concurrent recover scans: nothing it may let go.
        assert!(dead_records(&dir(root.path())).unwrap().is_empty());
        let journal = adoption.begin("commit", &["a"], &[]).unwrap().unwrap();
        assert!(dead_records(&dir(root.path())).unwrap().is_empty());
        drop(journal);
        // Its writer gone, the new record (naming the adopted container) is dead in turn.
        let left = dead_records(&dir(root.path())).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].2.containers[0].id, "c1");
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
