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
//! them paused or stopped for good; the hold is taken by [`hold`] and let go by [`release`]
//! (retried in the background by [`retry`] in the plugin).
//!
//! [`LiveGuard`]: crate::repo::LiveGuard

mod engine;
mod freezer;
pub mod held;
mod hold;
mod inspect;
pub mod release;
pub mod retry;

pub use engine::{call_limit, canonical, Action, Container, Engine, State, Status, CALL_LIMIT};

use crate::{Error, Result};
use std::path::Path;

/// How containers are kept off the live data during an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiesce {
    /// Graceful `docker stop` (stop signal, then SIGKILL after the container's stop timeout),
    /// later `docker start`: processes flush on SIGTERM, the snapshot is application-consistent.
    Stop,
    /// `docker pause` (cgroup freezer), later `docker unpause`: faster, crash-consistent.
    /// Containers the user paused are left paused; one another dvol command holds paused is
    /// held by both, and unpaused by the last to let it go.
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

/// [`with_containers_stopped`] with the containers `list` finds (listed before the journal
/// lock is taken: their state is read again under it).
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
    let using = list()?;
    let taken = hold::take(engine, root, &using, volumes, how, what, &|of| {
        settled(root, of)
    })?;
    let frozen = std::time::Instant::now();
    let held = taken.acted;
    if let Some(e) = taken.error {
        let back = give_back(engine, root, taken.journal);
        return Err(Error::Docker(format!(
            "{what} of {label} not started: {e}; {}",
            describe_release(how, &held, &back)
        )));
    }
    let result = op();
    let back = give_back(engine, root, taken.journal);
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

/// Let go the containers of `journal` (those no other hold still holds); the ones that are
/// not back and why. Their record stays: this process's keeper retries them in the background
/// (the plugin), or the next dvol command does.
fn give_back(
    engine: &Engine,
    root: &Path,
    journal: Option<held::Journal>,
) -> Vec<(String, String)> {
    let Some(failed) = journal.and_then(|j| release::let_go(engine, root, j)) else {
        return Vec::new();
    };
    let mut errors: Vec<(String, String)> = failed
        .errors
        .iter()
        .map(|(n, e)| (n.clone(), e.to_string()))
        .collect();
    let by = match retry::hand_over(root, failed) {
        None => "the plugin tries again in the background",
        Some(_left) => "the next dvol command tries again",
    };
    if let Some((_, e)) = errors.last_mut() {
        e.push_str("; ");
        e.push_str(by);
    }
    errors
}

fn describe_release(how: Quiesce, held: &[Container], failed: &[(String, String)]) -> String {
    let verb = match how {
        Quiesce::Stop => "started",
        Quiesce::Pause => "unpaused",
    };
    if failed.is_empty() && held.is_empty() {
        return "no container was stopped".to_string();
    }
    if failed.is_empty() {
        return format!("containers {} were {verb} again", names(held));
    }
    let errs: Vec<&str> = failed.iter().map(|(_, e)| e.as_str()).collect();
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
