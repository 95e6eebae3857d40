//! `dvol plugin serve`: run the Docker volume plugin in the foreground.

use super::Context;
use std::path::Path;
use std::process::ExitCode;

pub fn serve(ctx: &Context, socket: &Path) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(dvol::plugin::serve(&ctx.root, socket, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
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
