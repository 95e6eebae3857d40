//! The container policy hook: every command that rewrites (or snapshots) a volume's live data
//! runs that step through a [`LiveGuard`], which keeps whatever uses the data off it for the
//! duration. The library decides *when* (after its checks, under the volume lock, around the
//! rewrite only); the caller decides *how*: the CLI and the plugin pass the Docker
//! implementation (`docker::ContainerGuard`, stop or pause the containers using the volume),
//! library tests pass [`Unguarded`]. This module knows nothing about Docker.

use crate::{Error, Result};

/// Keeps the users of a volume's live data away while `op` runs.
pub trait LiveGuard {
    /// Run `op` with the users of `volume` kept off its live data, then let them back,
    /// whatever `op` returned. `what` names the operation (`reset`, `pull`, …) in errors. If
    /// the users cannot be kept off, `op` must not run.
    fn hold(&self, volume: &str, what: &str, op: &mut dyn FnMut() -> Result<()>) -> Result<()>;
}

/// No users to keep off (no container engine, or a test).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unguarded;

impl LiveGuard for Unguarded {
    fn hold(&self, _volume: &str, _what: &str, op: &mut dyn FnMut() -> Result<()>) -> Result<()> {
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
    let mut op = Some(op);
    let mut out = None;
    guard.hold(volume, what, &mut || {
        let op = op.take().expect("a guard runs its operation once");
        out = Some(op()?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::Other(format!("{what} of volume {volume} was not run")))
}
