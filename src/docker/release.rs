//! Letting go the containers a record holds, under the journal lock: only those no other
//! record names (the last hold of a container lets it go, exactly then), each only if it is
//! still held (unpaused if still paused, started if still stopped, skipped if gone). When
//! Docker's unpause does not answer within a few seconds (it can wait behind a `docker exec`
//! frozen half-started), the container's freezer cgroup is thawed directly
//! (`docker::freezer`) and Docker is given the rest of the bound to agree.
//!
//! A record is dropped once all its containers are back; otherwise it is kept naming those
//! that are not, and handed back with the errors, for the caller to retry (the plugin in the
//! background, `docker::retry`) or to leave to the next dvol command. [`recover`] rolls the
//! records of dead dvol processes forward. It never pauses or stops anything.

use super::engine::{call_limit, State};
use super::freezer::Freezer;
use super::held::{self, Entry, Journal, JournalLock};
use super::{Action, Container, Engine};
use crate::{Error, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long Docker's unpause may take before the freezer cgroup is thawed directly.
const STUCK_AFTER: Duration = Duration::from_secs(3);

/// A record whose containers are not all back: kept (locked by this process) naming those.
pub struct Failed {
    pub journal: Journal,
    /// Each container not let go (by name) and why.
    pub errors: Vec<(String, Error)>,
}

/// Let go the containers of `journal` no other record names; `None` when all are back (the
/// record dropped), else the record kept naming those that are not.
pub fn let_go(engine: &Engine, root: &Path, mut journal: Journal) -> Option<Failed> {
    let journal_lock = match held::lock(root) {
        Ok(l) => l,
        Err(e) => {
            let errors = vec![("(journal)".to_string(), e)];
            return Some(Failed { journal, errors });
        }
    };
    let errors = match let_go_locked(engine, &journal_lock, &mut journal) {
        Ok(errors) if errors.is_empty() => match journal.finish(&journal_lock) {
            Ok(()) => return None,
            Err(e) => {
                // The containers are back; the stale record only costs the next command a look.
                tracing::warn!("a record of held containers stays: {e}");
                return None;
            }
        },
        Ok(errors) => errors,
        Err(e) => vec![("(journal)".to_string(), e)],
    };
    Some(Failed { journal, errors })
}

/// [`let_go`] under the journal lock: the record is rewritten to name only the containers
/// that are not back; their errors.
fn let_go_locked(
    engine: &Engine,
    journal_lock: &JournalLock,
    journal: &mut Journal,
) -> Result<Vec<(String, Error)>> {
    let others = journal_lock.named_elsewhere(&[journal.path()])?;
    let mine: Vec<Entry> = journal
        .record
        .containers
        .iter()
        .filter(|e| !others.contains(&e.id))
        .cloned()
        .collect();
    let failed = bring_back(engine, &mine);
    if !failed.is_empty() {
        let mut record = journal.record.clone();
        record
            .containers
            .retain(|e| failed.iter().any(|(f, _)| f.id == e.id));
        journal.replace(journal_lock, record)?;
    }
    Ok(failed.into_iter().map(|(e, err)| (e.name, err)).collect())
}

/// Unpause the still-paused and start the still-stopped containers of `entries`, each
/// kind at once; the entries not back and why.
fn bring_back(engine: &Engine, entries: &[Entry]) -> Vec<(Entry, Error)> {
    let mut unpause = Vec::new();
    let mut start = Vec::new();
    let mut failed = Vec::new();
    for e in entries {
        match status(engine, e) {
            Ok(Some(s)) if e.paused && s.state == State::Paused => {
                unpause.push(Entry {
                    pid: s.pid.or(e.pid),
                    ..e.clone()
                });
            }
            Ok(Some(s)) if !e.paused && s.state == State::Stopped => start.push(e.clone()),
            // Gone, or not held any more (running, or stopped after a pause).
            Ok(_) => {}
            Err(err) => failed.push((e.clone(), err)),
        }
    }
    failed.extend(unpause_all(engine, &unpause));
    let containers = as_containers(&start);
    for (e, r) in start
        .into_iter()
        .zip(engine.each(Action::Start, &containers))
    {
        if let Err(err) = r {
            failed.push((e, err));
        }
    }
    failed
}

/// The status of held container `e`. Docker does not describe a container while a `docker
/// exec` of it is frozen half-started (it holds the container's lock), so a paused one it
/// does not describe within [`STUCK_AFTER`] is thawed directly and asked about again.
fn status(engine: &Engine, e: &Entry) -> Result<Option<super::Status>> {
    if !e.paused {
        return engine.status(&e.id);
    }
    match engine.status_within(&e.id, stuck_after()) {
        Err(err) => match e.pid.map(|pid| Freezer::of(&e.id, pid)) {
            Some(Ok(cgroup)) if thaw(e, &cgroup).is_ok() => engine.status(&e.id),
            _ => Err(err),
        },
        seen => seen,
    }
}

/// [`STUCK_AFTER`], never more than the bound of one call.
fn stuck_after() -> Duration {
    STUCK_AFTER.min(call_limit())
}

/// Unpause `entries` at once; one Docker has not unpaused within [`STUCK_AFTER`], or whose
/// cgroup its runtime finds thawed already, is let go through its cgroup ([`force_unpause`]).
fn unpause_all(engine: &Engine, entries: &[Entry]) -> Vec<(Entry, Error)> {
    let containers = as_containers(entries);
    let first = engine.each_bounded(Action::Unpause, &containers, stuck_after());
    let mut failed = Vec::new();
    for (e, r) in entries.iter().zip(first) {
        let forced = match r {
            Some(Ok(())) => continue,
            Some(Err(err)) if !thawed_behind_dockers_back(&err) => Err(err),
            Some(Err(_)) | None => force_unpause(engine, e),
        };
        if let Err(err) = forced {
            failed.push((e.clone(), err));
        }
    }
    failed
}

/// Whether Docker's runtime refused to unpause because the cgroup is not frozen (thawed
/// directly earlier; Docker still says paused).
fn thawed_behind_dockers_back(err: &Error) -> bool {
    err.to_string().contains("container not paused")
}

/// How long Docker's own pending unpause is given once the cgroup is thawed.
const SETTLE: Duration = Duration::from_secs(1);

/// Docker did not unpause `e`: thaw its cgroup directly (a `docker exec` frozen half-started
/// can then finish, and Docker's pending unpause with it); if Docker still says paused after
/// [`SETTLE`], freeze the cgroup again for a moment and have Docker unpause it, so its view
/// agrees. On failure the cgroup is left thawed.
fn force_unpause(engine: &Engine, e: &Entry) -> Result<()> {
    let gave_up = |why: String| {
        Error::Docker(format!(
            "unpausing container {}: Docker did not unpause it within {} ms and {why}",
            e.name,
            stuck_after().as_millis()
        ))
    };
    let pid = e.pid.ok_or_else(|| gave_up("its pid is unknown".into()))?;
    let cgroup = Freezer::of(&e.id, pid).map_err(|w| gave_up(format!("its cgroup: {w}")))?;
    thaw(e, &cgroup).map_err(gave_up)?;
    let until = Instant::now() + SETTLE;
    loop {
        match engine.status(&e.id) {
            Ok(Some(s)) if s.state == State::Paused => {}
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= until => return Err(err),
            Err(_) => {}
        }
        if Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cgroup
        .freeze()
        .map_err(|w| gave_up(format!("freezing it again for Docker failed: {w}")))?;
    let c = &as_containers(std::slice::from_ref(e))[0];
    engine.unpause(c).inspect_err(|_| {
        let _ = cgroup.thaw();
    })
}

/// Thaw `e`'s cgroup, logged.
fn thaw(e: &Entry, cgroup: &Freezer) -> std::result::Result<(), String> {
    cgroup.thaw()?;
    tracing::warn!(
        "Docker did not unpause container {}: thawed {} directly",
        e.name,
        cgroup.path().display()
    );
    Ok(())
}

fn as_containers(entries: &[Entry]) -> Vec<Container> {
    entries
        .iter()
        .map(|e| Container {
            id: e.id.clone(),
            name: e.name.clone(),
            paused: e.paused,
        })
        .collect()
}

/// What [`recover`] did.
#[derive(Default)]
pub struct Recovered {
    /// The containers let go (names).
    pub let_go: Vec<String>,
    /// The dead records whose containers are not all back (now this process's).
    pub failed: Vec<Failed>,
}

/// Let go the containers of the dead records of `root`'s journal whose volumes `settled`
/// accepts (no interrupted rewrite of theirs pending), each once no other record names it,
/// and drop those records.
pub fn recover(
    engine: &Engine,
    root: &Path,
    settled: &dyn Fn(&[String]) -> bool,
) -> Result<Recovered> {
    let journal_lock = held::lock(root)?;
    let mut out = Recovered::default();
    for mut journal in journal_lock.dead()? {
        let r = &journal.record;
        if !settled(&r.volumes) {
            tracing::info!(
                "containers held by an interrupted {} stay held until it is finished",
                r.what
            );
            continue;
        }
        let (what, volumes) = (r.what.clone(), r.volumes.join(", "));
        let names: Vec<String> = r.containers.iter().map(|c| c.name.clone()).collect();
        let errors = let_go_locked(engine, &journal_lock, &mut journal)?;
        if !errors.is_empty() {
            out.failed.push(Failed { journal, errors });
            continue;
        }
        tracing::warn!(
            "let go the containers of an interrupted {what} of {volumes}: {}",
            names.join(",")
        );
        journal.finish(&journal_lock)?;
        out.let_go.extend(names);
    }
    Ok(out)
}

/// The errors of `failed` as one line.
pub fn describe(failed: &[(String, Error)]) -> String {
    failed
        .iter()
        .map(|(name, e)| format!("{name}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}
