//! Docker engine integration: find the containers that use a dvol volume and keep them off
//! the live data while dvol changes or snapshots it.
//!
//! [`ContainerGuard`] is the Docker implementation of the library's [`LiveGuard`] hook, which
//! every live-data rewrite (`commit`'s scan, `checkout`, `reset --hard`, `pull`, a resumed
//! `clone`) runs through: stop (or pause) the running containers using the volume, run the
//! operation, start (or unpause) exactly those containers again, whatever happened
//! ([`with_containers_stopped`]). A restarted container re-Mounts its volume, so the plugin
//! hands it the directory of the branch that is current *now*. The containers held are written
//! to a durable journal first ([`held`]), so a dvol killed while holding them does not leave
//! them paused or stopped for good.
//!
//! [`LiveGuard`]: crate::repo::LiveGuard

mod engine;
pub mod held;
mod inspect;

pub use engine::{canonical, Action, Container, Engine, State};

use crate::{failpoint, Error, Result};
use std::path::Path;

/// How containers are kept off the live data during an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiesce {
    /// Graceful `docker stop` (stop signal, then SIGKILL after the container's stop timeout),
    /// later `docker start`: processes flush on SIGTERM, the snapshot is application-consistent.
    Stop,
    /// `docker pause` (cgroup freezer), later `docker unpause`: faster, crash-consistent.
    /// Containers already paused by someone else are left paused.
    Pause,
}

/// The container policy for live-data rewrites: the containers of the dvol root `root` that
/// use the volume are stopped (or paused) around the rewrite. With no engine it guards nothing.
pub struct ContainerGuard<'a> {
    pub engine: Option<&'a Engine>,
    pub root: &'a Path,
    pub how: Quiesce,
}

impl crate::repo::LiveGuard for ContainerGuard<'_> {
    fn hold(&self, volumes: &[&str], what: &str, op: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        with_containers_stopped(self.engine, self.root, volumes, self.how, what, op)
    }
}

/// The source freeze of reflink clones ([`crate::repo::Repo::set_source_freeze`]): the
/// containers using the source volume are paused (never stopped: they keep running once the
/// extents are cloned) while the clone reads it. It owns its engine, connected at the first
/// hold; with no daemon it guards nothing.
pub struct SourceFreeze {
    engine: std::sync::OnceLock<Option<Engine>>,
    root: std::path::PathBuf,
}

impl SourceFreeze {
    /// A freeze for the containers of the dvol root `root`.
    pub fn new(root: &Path) -> SourceFreeze {
        SourceFreeze {
            engine: std::sync::OnceLock::new(),
            root: root.to_path_buf(),
        }
    }
}

impl crate::repo::LiveGuard for SourceFreeze {
    fn hold(&self, volumes: &[&str], what: &str, op: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let engine = self.engine.get_or_init(Engine::connect).as_ref();
        with_containers_stopped(engine, &self.root, volumes, Quiesce::Pause, what, op)
    }
}

/// Names of containers as `/a,/b`.
pub fn names(containers: &[Container]) -> String {
    containers
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Run `op` while the containers using any of `volumes` (of the dvol root `root`) are
/// stopped or paused, then bring exactly those containers back. `what` names the operation
/// in errors. The containers are stopped (or paused) concurrently and all of them before
/// `op` starts, so a group of volumes is frozen at one instant; each container once, however
/// many of the volumes it uses.
///
/// - No engine (integration off, or no daemon): just `op`.
/// - A container cannot be stopped: the ones already stopped are started again, `op` is not
///   run, and the error says so.
/// - `op` fails: the containers are started again and the error says so.
/// - A container cannot be started again: the error names it (and says `op` succeeded).
pub fn with_containers_stopped<T>(
    engine: Option<&Engine>,
    root: &Path,
    volumes: &[&str],
    how: Quiesce,
    what: &str,
    op: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let Some(engine) = engine else {
        return op();
    };
    let list = || engine.containers_using_any(root, volumes);
    hold_these(engine, root, list, volumes, how, what, op)
}

/// The container policy for a plugin's own volumes (cluster mode's background commits): the
/// containers Docker lists with the volume's name (its `volume=` filter), so finding them
/// never calls back into the plugin (a `Get` that could wait on the plugin's own state).
pub struct ByNameGuard<'a> {
    pub engine: Option<&'a Engine>,
    /// The dvol root, where the record of held containers goes.
    pub root: &'a Path,
    pub how: Quiesce,
}

impl crate::repo::LiveGuard for ByNameGuard<'_> {
    fn hold(&self, volumes: &[&str], what: &str, op: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let Some(engine) = self.engine else {
            return op();
        };
        let list = || engine.containers_with_volumes(volumes, None);
        hold_these(engine, self.root, list, volumes, self.how, what, op)
    }
}

/// [`with_containers_stopped`] with the containers `list` finds (listed once the dead records
/// of `volumes` this command adopts are locked, so none of their containers is let go by a
/// concurrent recover while this command counts on it staying held).
fn hold_these<T>(
    engine: &Engine,
    root: &Path,
    list: impl FnOnce() -> Result<Vec<Container>>,
    volumes: &[&str],
    how: Quiesce,
    what: &str,
    op: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let label = crate::repo::describe_volumes(volumes);
    let adoption = held::Journal::adopt(root, volumes, &|of| settled(root, of))?;
    let mut using = list()?;
    if how == Quiesce::Pause {
        using.retain(|c| !c.paused);
    }
    let action = match how {
        Quiesce::Stop => Action::Stop,
        Quiesce::Pause => Action::Pause,
    };
    // Durable before the first container is held: a dvol killed from here on leaves a record
    // the next command rolls forward (held::recover), never an app frozen for good.
    let entries: Vec<held::Entry> = using
        .iter()
        .map(|c| held::Entry {
            id: c.id.clone(),
            name: c.name.clone(),
            paused: how == Quiesce::Pause,
        })
        .collect();
    let journal = adoption.begin(what, volumes, &entries)?;
    let frozen = std::time::Instant::now();
    let mut held: Vec<Container> = Vec::new();
    let mut first_error = None;
    let results = engine.each(action, &using);
    failpoint::hit("guard.after-hold");
    for (c, r) in using.iter().zip(results) {
        match r {
            Ok(()) => held.push(c.clone()),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        let back = release(engine, how, &held, journal);
        return Err(Error::Docker(format!(
            "{what} of {label} not started: {e}; {}",
            describe_release(how, &held, &back)
        )));
    }
    let result = op();
    let back = release(engine, how, &held, journal);
    // What the freeze cost the app, from the first stop/pause to the last start/unpause
    // (`DVOL_LOG=dvol::freeze=info`; the benchmark reads it).
    tracing::info!(
        target: "dvol::freeze",
        ms = frozen.elapsed().as_secs_f64() * 1000.0,
        containers = held.len(),
        "{what} of {label}: containers held"
    );
    match result {
        Ok(v) if back.is_empty() => Ok(v),
        Ok(_) => Err(Error::Docker(format!(
            "{what} of {label} done, but {}",
            describe_release(how, &held, &back)
        ))),
        Err(e) if held.is_empty() => Err(e),
        Err(e) => Err(Error::Interrupted {
            error: Box::new(e),
            note: describe_release(how, &held, &back),
        }),
    }
}

/// Whether `volumes` of the dvol root `root` have no interrupted rewrite pending (the rule of
/// [`held::settled_in`]; the repository is opened only when a dead record asks).
fn settled(root: &Path, volumes: &[String]) -> bool {
    crate::repo::Repo::open_with(root, crate::repo::Options::default())
        .is_ok_and(|repo| held::settled_in(&repo)(volumes))
}

/// Start (or unpause) every container in `held`, concurrently, and those of the dead holders
/// `journal` adopted; the errors of those that failed. The journal record is dropped only
/// when every container is back (otherwise the next command retries).
fn release(
    engine: &Engine,
    how: Quiesce,
    held: &[Container],
    journal: Option<held::Journal>,
) -> Vec<(String, Error)> {
    let action = match how {
        Quiesce::Stop => Action::Start,
        Quiesce::Pause => Action::Unpause,
    };
    let mut failed: Vec<(String, Error)> = held
        .iter()
        .zip(engine.each(action, held))
        .filter_map(|(c, r)| r.err().map(|e| (c.name.clone(), e)))
        .collect();
    if let Some(journal) = journal {
        failed.extend(
            held::let_go(engine, &journal.adopted)
                .into_iter()
                .map(|e| ("(adopted)".to_string(), e)),
        );
        if failed.is_empty() {
            if let Err(e) = journal.finish() {
                failed.push(("(journal)".to_string(), e));
            }
        }
    }
    failed
}

fn describe_release(how: Quiesce, held: &[Container], failed: &[(String, Error)]) -> String {
    let verb = match how {
        Quiesce::Stop => "started",
        Quiesce::Pause => "unpaused",
    };
    if held.is_empty() {
        return "no container was stopped".to_string();
    }
    if failed.is_empty() {
        return format!("containers {} were {verb} again", names(held));
    }
    let errs: Vec<String> = failed.iter().map(|(_, e)| e.to_string()).collect();
    format!(
        "containers {} could not be {verb} again ({})",
        failed
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(","),
        errs.join("; ")
    )
}

/// Stop these containers for good (used by `dvol rm -f`); the first error names the
/// container.
pub fn stop_all(engine: &Engine, containers: &[Container]) -> Result<()> {
    for c in containers {
        engine.stop(c)?;
    }
    Ok(())
}
