//! `dvol plugin serve`: run the Docker volume plugin in the foreground. Reads what the process
//! environment says about how it was started (systemd socket activation) and hands the
//! library a listener; the library never reads the environment.

use super::Context;
use anyhow::Context as _;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::ExitCode;

pub fn serve(ctx: &Context, socket: &Path) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let activated = activated_listener()?;
    rt.block_on(dvol::plugin::serve(
        &ctx.root,
        ctx.repo_options(),
        socket,
        activated,
        shutdown_signal(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The listening socket systemd passed to this process (socket activation, the
/// `sd_listen_fds` protocol): file descriptor 3 when `LISTEN_PID` is this process and
/// `LISTEN_FDS` is at least 1. `None` when the plugin was started any other way. Called once,
/// so the listener is the descriptor's only owner.
fn activated_listener() -> anyhow::Result<Option<UnixListener>> {
    use std::os::fd::FromRawFd;
    /// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
    const FIRST_FD: i32 = 3;
    let for_us = std::env::var("LISTEN_PID").ok() == Some(std::process::id().to_string());
    let count: u32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if !for_us || count == 0 {
        return Ok(None);
    }
    // SAFETY: under the sd_listen_fds protocol descriptor 3 is open and belongs to this
    // process (LISTEN_PID is our pid), nothing else in dvol uses it, and `serve` calls this
    // once, so the listener is its only owner.
    let listener = unsafe { UnixListener::from_raw_fd(FIRST_FD) };
    // getsockname fails unless the descriptor is a unix-domain socket.
    listener.local_addr().with_context(|| {
        format!(
            "socket activation: descriptor {FIRST_FD} is not a unix socket; \
             check ListenStream= in the .socket unit"
        )
    })?;
    listener
        .set_nonblocking(true)
        .context("socket activation")?;
    Ok(Some(listener))
}

/// Resolves on SIGINT or SIGTERM (systemd and `docker plugin disable` send SIGTERM).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
