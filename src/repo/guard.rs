//! The container policy hook: every command that rewrites (or snapshots) a volume's live data
//! runs that step through a [`LiveGuard`], which keeps whatever uses the data off it for the
//! duration. The library decides *when* (after its checks, under the volume lock, around the
//! rewrite only); the caller decides *how*: the CLI and the plugin pass the Docker
//! implementation (`docker::ContainerGuard`, stop or pause the containers using the volume),
//! library tests pass [`Unguarded`]. This module knows nothing about Docker.

use crate::{Error, Result};

/// Keeps the users of volumes' live data away while `op` runs.
pub trait LiveGuard {
    /// Run `op` with the users of every volume in `volumes` kept off their live data (all of
    /// them at once, before `op` starts: a group of volumes is held as one), then let them
    /// back, whatever `op` returned. `what` names the operation (`reset`, `pull`, …) in
    /// errors. If the users cannot be kept off, `op` must not run.
    fn hold(&self, volumes: &[&str], what: &str, op: &mut dyn FnMut() -> Result<()>) -> Result<()>;
}

/// No users to keep off (no container engine, or a test).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unguarded;

impl LiveGuard for Unguarded {
    fn hold(
        &self,
        _volumes: &[&str],
        _what: &str,
        op: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        op()
    }
}

/// Run a one-shot `op` returning a value through `guard`.
pub fn guarded<T>(
    guard: &dyn LiveGuard,
    volume: &str,
    what: &str,
    op: impl FnOnce() -> Result<T>,
) -> Result<T> {
    guarded_all(guard, &[volume], what, op)
}

/// Run a one-shot `op` returning a value with the users of all `volumes` held at once.
pub fn guarded_all<T>(
    guard: &dyn LiveGuard,
    volumes: &[&str],
    what: &str,
    op: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut op = Some(op);
    let mut out = None;
    guard.hold(volumes, what, &mut || {
        let op = op.take().expect("a guard runs its operation once");
        out = Some(op()?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::NotRun {
        what: what.to_string(),
        volumes: describe(volumes),
    })
}

/// `volume a` or `volumes a, b` for messages.
pub fn describe(volumes: &[&str]) -> String {
    match volumes {
        [one] => format!("volume {one}"),
        many => format!("volumes {}", many.join(", ")),
    }
}
