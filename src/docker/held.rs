//! The durable journal of containers dvol holds (paused or stopped), so a dvol killed while it
//! holds them does not leave an app frozen for good.
//!
//! Before a command pauses or stops containers it writes a record naming them (and the
//! volumes they use) to `ROOT/.dvol/held/`, fsynced, and keeps an exclusive flock on it while
//! it runs; after it has let them go it deletes the record. A record whose lock can be taken
//! belongs to a dead process: its containers are still held by nobody. Two ways roll it
//! forward:
//!
//! - a command that holds containers of the same volumes adopts it ([`Journal::begin`]): the
//!   dead record's containers are named in the new record and let go with the command's own
//!   (so a stopped app stays stopped until an interrupted reset is finished);
//! - [`recover`] (the CLI before every command, the plugin when it starts) lets go the
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

impl Journal {
    /// Write the record of `containers` (about to be held for `what` on `volumes`), adopting
    /// the dead records that name any of `volumes`. Durable before it returns. `None` (and
    /// nothing written) when there is nothing to hold and nothing to adopt.
    pub fn begin(
        root: &Path,
        what: &str,
        volumes: &[&str],
        containers: &[Entry],
    ) -> Result<Option<Journal>> {
        let dir = dir(root);
        let dead: Vec<(PathBuf, File, Record)> = dead_records(&dir)?
            .into_iter()
            .filter(|(_, _, r)| r.volumes.iter().any(|v| volumes.contains(&v.as_str())))
            .collect();
        let mut adopted: Vec<Entry> = Vec::new();
        let mut all_volumes: Vec<String> = volumes.iter().map(ToString::to_string).collect();
        for (_, _, r) in &dead {
            for e in &r.containers {
                if !containers.iter().chain(&adopted).any(|c| c.id == e.id) {
                    adopted.push(e.clone());
                }
            }
            all_volumes.extend(r.volumes.iter().cloned());
        }
        if containers.is_empty() && dead.is_empty() {
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
        for (old, _lock, _) in dead {
            remove(&old)?;
        }
        Ok(Some(Journal {
            path,
            _lock: lock,
            adopted,
        }))
    }

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

/// The records in `dir` whose writer is dead (their lock could be taken; it is held in the
/// returned file until dropped). Leftover temporary files of dead writers are removed.
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
        let is_tmp = path.extension().is_some_and(|e| e == "tmp");
        let body = std::fs::read(&path).unwrap_or_default();
        match serde_json::from_slice::<Record>(&body) {
            Ok(r) if !is_tmp => out.push((path, file, r)),
            _ => {
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
    for e in entries {
        let Some(state) = engine.state(&e.id) else {
            continue;
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
    let mut errors: Vec<crate::Error> = Vec::new();
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
