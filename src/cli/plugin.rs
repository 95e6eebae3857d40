//! `dvol plugin serve`: run the Docker volume plugin in the foreground. Reads what the process
//! environment says about how it was started (systemd socket activation) and hands the
//! library a listener; the library never reads the environment.

use super::Context;
use anyhow::Context as _;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::ExitCode;

/// Cluster mode (issue 15): all three of etcd, remote and host name, or none.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Cluster mode: etcd endpoints, comma-separated (e.g. http://10.0.0.1:2379,...).
    #[arg(long, env = "DVOL_CLUSTER_ETCD", value_name = "URL[,URL..]", requires_all = ["cluster_remote", "host_name"])]
    cluster_etcd: Option<String>,
    /// Cluster mode: the shared remote every host pushes to and fetches from.
    #[arg(
        long,
        env = "DVOL_CLUSTER_REMOTE",
        value_name = "URL",
        requires = "cluster_etcd"
    )]
    cluster_remote: Option<String>,
    /// Cluster mode: this host's name (letters, digits, - and _).
    #[arg(
        long,
        env = "DVOL_HOST_NAME",
        value_name = "NAME",
        requires = "cluster_etcd"
    )]
    host_name: Option<String>,
    /// Cluster mode: seconds a lease lives without renewal.
    #[arg(
        long,
        env = "DVOL_CLUSTER_LEASE_TTL",
        value_name = "SECS",
        default_value_t = 15
    )]
    cluster_lease_ttl: u64,
    /// Cluster mode: seconds a Mount waits for another host's lease before it fails.
    #[arg(
        long,
        env = "DVOL_CLUSTER_MOUNT_WAIT",
        value_name = "SECS",
        default_value_t = 60
    )]
    cluster_mount_wait: u64,
    /// Cluster mode: seconds a Mount may take in all (lease wait and data transfer) before it
    /// fails saying the transfer goes on (Docker gives up on a plugin after about 2 minutes).
    #[arg(
        long,
        env = "DVOL_CLUSTER_MOUNT_TIMEOUT",
        value_name = "SECS",
        default_value_t = 100
    )]
    cluster_mount_timeout: u64,
    /// Cluster mode: background commit+push interval of volumes created without
    /// `-o sync-interval`.
    #[arg(
        long,
        env = "DVOL_CLUSTER_SYNC_INTERVAL",
        value_name = "DURATION",
        default_value = "60s"
    )]
    cluster_sync_interval: String,
    /// Cluster mode: seconds a host keeps a volume's lease after its last Unmount, so a
    /// container restarted here keeps it (another host asking for it ends the grace at once).
    #[arg(
        long,
        env = "DVOL_CLUSTER_RELEASE_GRACE",
        value_name = "SECS",
        default_value_t = 10
    )]
    cluster_release_grace: u64,
}

impl ClusterArgs {
    fn options(&self, docker: bool) -> anyhow::Result<Option<dvol::cluster::ClusterOptions>> {
        let (Some(etcd), Some(remote), Some(host)) =
            (&self.cluster_etcd, &self.cluster_remote, &self.host_name)
        else {
            return Ok(None);
        };
        Ok(Some(dvol::cluster::ClusterOptions {
            etcd: etcd.clone(),
            remote: remote.clone(),
            host: host.clone(),
            lease_ttl: self.cluster_lease_ttl,
            mount_wait: std::time::Duration::from_secs(self.cluster_mount_wait),
            mount_timeout: std::time::Duration::from_secs(self.cluster_mount_timeout),
            sync_interval: dvol::cluster::parse_interval(&self.cluster_sync_interval)?,
            release_grace: std::time::Duration::from_secs(self.cluster_release_grace),
            docker,
            remote_options: std::sync::Arc::new(dvol::remote::ops::RemoteOptions {
                connect: dvol::remote::ConnectOptions {
                    s3_retry_timeout: Some(dvol::cluster::REMOTE_RETRY),
                    ..super::remote::connect_options()
                },
                ..Default::default()
            }),
        }))
    }
}

pub fn serve(ctx: &Context, socket: &Path, cluster: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let cluster = cluster.options(ctx.docker)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let activated = activated_listener()?;
    rt.block_on(dvol::plugin::serve(
        &ctx.root,
        ctx.repo_options(),
        cluster,
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
