//! Cluster mode: volumes that follow their containers between hosts (issue 15). Every host's
//! plugin talks to one etcd cluster (leases, cluster heads, the volume registry: [`lease`])
//! and one shared remote (the data: [`data`]). A host uses a cluster volume only while it
//! holds its lease: Mount takes it and brings the data, a keeper thread renews it and commits
//! and pushes every sync interval, Unmount commits, pushes, moves the cluster head and
//! releases. A holder that cannot renew stops syncing before its lease can have expired and
//! keeps what it could not publish as a branch. Owns the sessions of held volumes; must not
//! speak Docker's protocol (that is `plugin`) nor etcd's wire format (that is [`etcd`]).

pub mod data;
pub mod etcd;
pub mod lease;

use crate::remote::ops::RemoteOptions;
use crate::repo::{db, Repo};
use crate::{names, Error, Result};
use etcd::Etcd;
use lease::{ClusterHead, Held, VolumeRecord};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `Opts` key of `docker volume create -o sync-interval=60s`.
pub const OPT_SYNC_INTERVAL: &str = "sync-interval";

/// Longest host name: volume names (128 at most) leave room for `.HOST` in remote volumes.
pub const MAX_HOST_LEN: usize = 32;

/// Longest cluster volume name, so that `VOLUME.HOST` is a valid remote volume name.
pub const MAX_VOLUME_LEN: usize = names::MAX_NAME_LEN - MAX_HOST_LEN - 1;

/// Root metadata keys telling the CLI that this root belongs to a cluster host.
const META_ETCD: &str = "cluster.etcd";
const META_HOST: &str = "cluster.host";

/// How a host takes part in the cluster (the CLI builds it from flags).
#[derive(Clone)]
pub struct ClusterOptions {
    /// etcd endpoints, comma-separated URLs.
    pub etcd: String,
    /// URL of the shared remote (`http(s)://` for `dvol serve`, `s3://`, a path).
    pub remote: String,
    /// This host's name in leases, remote volumes and kept branches.
    pub host: String,
    /// Seconds a lease lives without renewal.
    pub lease_ttl: u64,
    /// How long a Mount waits for another host's lease.
    pub mount_wait: Duration,
    /// Background sync interval for volumes created without `sync-interval`.
    pub sync_interval: Duration,
    /// How to reach the remote.
    pub remote_options: Arc<RemoteOptions>,
}

/// Check a host name: a plain name without dots (it is joined to volume names with one).
pub fn check_host(host: &str) -> Result<()> {
    names::validate("host", host)?;
    if host.len() > MAX_HOST_LEN
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::Other(format!(
            "host name {host:?}: use at most {MAX_HOST_LEN} letters, digits, - and _"
        )));
    }
    Ok(())
}

/// Parse a duration such as `60s`, `5m`, `1h` or `30` (seconds); at least one second.
pub fn parse_interval(s: &str) -> Result<Duration> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad_interval(s))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(bad_interval(s)),
    };
    if secs == 0 {
        return Err(bad_interval(s));
    }
    Ok(Duration::from_secs(secs))
}

fn bad_interval(s: &str) -> Error {
    Error::Other(format!(
        "sync-interval={s}: give a positive number of seconds, e.g. 60s, 5m or 1h"
    ))
}

/// A volume this host holds: its lease and its keeper thread.
struct Session {
    lease: Held,
    /// etcd mod revision of the cluster head this holder last saw or wrote.
    head_rev: Mutex<i64>,
    /// Set when the lease could not be renewed in time: nothing is published any more.
    lost: AtomicBool,
    stop: AtomicBool,
    keeper: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The cluster side of one host's plugin.
pub struct Cluster {
    opts: ClusterOptions,
    etcd: Etcd,
    root: PathBuf,
    repo_options: crate::repo::Options,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// One Mount or Unmount at a time per volume on this host.
    turns: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// A volume as the cluster lists it.
pub struct ClusterVolume {
    pub name: String,
    pub holder: Option<String>,
}

impl Cluster {
    /// Join the cluster: check the options, reach etcd, and record in the root that it belongs
    /// to this host of this cluster (the CLI reads that to refuse head moves elsewhere).
    pub fn new(
        root: &Path,
        repo_options: crate::repo::Options,
        opts: ClusterOptions,
    ) -> Result<Cluster> {
        check_host(&opts.host)?;
        if opts.lease_ttl < 3 {
            return Err(Error::Other(
                "the lease TTL must be at least 3 seconds".into(),
            ));
        }
        let etcd = Etcd::new(&opts.etcd)?;
        lease::volumes(&etcd)?;
        let repo = Repo::open_with(root, repo_options.clone())?;
        db::set_meta(repo.conn(), META_ETCD, &opts.etcd)?;
        db::set_meta(repo.conn(), META_HOST, &opts.host)?;
        Ok(Cluster {
            opts,
            etcd,
            root: root.to_path_buf(),
            repo_options,
            sessions: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
        })
    }

    fn repo(&self) -> Result<Repo> {
        Repo::open_with(&self.root, self.repo_options.clone())
    }

    /// `Create`: register the volume cluster-wide and make it locally.
    pub fn create(&self, volume: &str, sync_interval: Option<Duration>) -> Result<()> {
        if volume.len() > MAX_VOLUME_LEN {
            return Err(Error::Other(format!(
                "cluster volume names are at most {MAX_VOLUME_LEN} characters"
            )));
        }
        let record = VolumeRecord {
            created_by: self.opts.host.clone(),
            sync_interval: sync_interval.unwrap_or(self.opts.sync_interval).as_secs(),
        };
        lease::register(&self.etcd, volume, &record)?;
        data::ensure_local(&mut self.repo()?, volume)
    }

    /// Whether the cluster knows the volume (then this host makes it locally on demand).
    pub fn knows(&self, volume: &str) -> Result<bool> {
        if lease::volume(&self.etcd, volume)?.is_none() {
            return Ok(false);
        }
        data::ensure_local(&mut self.repo()?, volume)?;
        Ok(true)
    }

    /// Every cluster volume with its holder.
    pub fn list(&self) -> Result<Vec<ClusterVolume>> {
        lease::volumes(&self.etcd)?
            .into_iter()
            .map(|(name, _)| {
                let holder = lease::holder(&self.etcd, &name)?.map(|h| h.host);
                Ok(ClusterVolume { name, holder })
            })
            .collect()
    }

    /// The holder of a volume, if any.
    pub fn holder(&self, volume: &str) -> Result<Option<String>> {
        Ok(lease::holder(&self.etcd, volume)?.map(|h| h.host))
    }

    fn turn(&self, volume: &str) -> Arc<Mutex<()>> {
        let mut turns = self.turns.lock().expect("turns");
        Arc::clone(turns.entry(volume.to_string()).or_default())
    }

    /// `Mount` of a cluster volume not mounted here yet: take the lease (waiting a bounded
    /// time), bring the data to the cluster head, start the keeper.
    pub fn mount(self: &Arc<Self>, volume: &str) -> Result<()> {
        let turn = self.turn(volume);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        if self.sessions.lock().expect("sessions").contains_key(volume) {
            return Ok(());
        }
        let Some(record) = lease::volume(&self.etcd, volume)? else {
            return Err(Error::Other(format!("{volume} is not a cluster volume")));
        };
        let held = lease::acquire(
            &self.etcd,
            volume,
            &self.opts.host,
            self.opts.lease_ttl,
            self.opts.mount_wait,
        )?;
        let rev = match self.bring_data(volume) {
            Ok(rev) => rev,
            Err(e) => {
                let _ = held.release(&self.etcd);
                return Err(e);
            }
        };
        let session = Arc::new(Session {
            lease: held,
            head_rev: Mutex::new(rev),
            lost: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            keeper: Mutex::new(None),
        });
        let interval = Duration::from_secs(record.sync_interval.max(1));
        let me = Arc::clone(self);
        let s = Arc::clone(&session);
        let handle = std::thread::Builder::new()
            .name(format!("keeper {volume}"))
            .spawn(move || me.keep(&s, interval))
            .map_err(|e| Error::Other(format!("start the keeper thread: {e}")))?;
        *session.keeper.lock().expect("keeper") = Some(handle);
        self.sessions
            .lock()
            .expect("sessions")
            .insert(volume.to_string(), session);
        Ok(())
    }

    /// Bring the data to the cluster head (under a fresh lease); the head's etcd revision.
    fn bring_data(&self, volume: &str) -> Result<i64> {
        let (head, rev) = lease::head(&self.etcd, volume)?;
        let mut repo = self.repo()?;
        let b = data::bring(
            &mut repo,
            volume,
            &self.opts.host,
            head.as_ref(),
            &self.opts.remote,
            &self.opts.remote_options,
        )?;
        tracing::info!(volume, bytes = b.bytes, kept = ?b.kept, "cluster: mounted");
        Ok(rev)
    }

    /// Commit, push, and move the cluster head by compare-and-swap under the lease.
    fn sync(&self, s: &Session) -> Result<()> {
        let volume = &s.lease.volume;
        let mut repo = self.repo()?;
        let commit = data::publish(
            &mut repo,
            volume,
            &self.opts.host,
            &self.opts.remote,
            &self.opts.remote_options,
        )?;
        let mut rev = s.head_rev.lock().expect("head rev");
        let (current, _) = lease::head(&self.etcd, volume)?;
        if current.as_ref().map(|h| h.commit.as_str()) == Some(commit.to_hex().as_str()) {
            return Ok(());
        }
        let to = ClusterHead {
            commit: commit.to_hex(),
            host: self.opts.host.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        *rev = s.lease.move_head(&self.etcd, *rev, &to)?;
        Ok(())
    }

    /// The keeper of a held volume: renews the lease every third of its TTL and syncs every
    /// `interval`. When renewals fail for two thirds of the TTL (before the lease can have
    /// expired) the session is lost: no more syncs; what this host wrote is kept as a branch
    /// once etcd answers again.
    fn keep(&self, s: &Session, interval: Duration) {
        let ttl = Duration::from_secs(self.opts.lease_ttl);
        let tick = Duration::from_millis(200);
        let (mut renewed, mut synced) = (Instant::now(), Instant::now());
        while !s.stop.load(Ordering::SeqCst) {
            std::thread::sleep(tick);
            if renewed.elapsed() >= ttl / 3 {
                match s.lease.renew(&self.etcd) {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => return self.lose(s, "the lease expired"),
                    Err(e) if renewed.elapsed() >= ttl * 2 / 3 => {
                        return self.lose(s, &format!("cannot renew the lease: {e}"));
                    }
                    Err(e) => tracing::warn!(volume = %s.lease.volume, "lease renewal: {e}"),
                }
            }
            if synced.elapsed() >= interval {
                if let Err(e) = self.sync(s) {
                    tracing::warn!(volume = %s.lease.volume, "cluster sync: {e}");
                }
                synced = Instant::now();
            }
        }
    }

    /// Stop using a volume whose lease is gone; keep its unpublished work once etcd answers.
    fn lose(&self, s: &Session, why: &str) {
        let volume = &s.lease.volume;
        s.lost.store(true, Ordering::SeqCst);
        tracing::error!(volume = %volume, "cluster: {why}; this host stops publishing it");
        while !s.stop.load(Ordering::SeqCst) {
            match lease::head(&self.etcd, volume) {
                Ok((head, _)) => {
                    if let Err(e) = self.keep_unpublished(volume, head.as_ref()) {
                        tracing::warn!(volume = %volume, "cluster: keeping unsynced work: {e}");
                    }
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    /// Commit the live data and, if the cluster head lacks it, keep it as a branch.
    fn keep_unpublished(&self, volume: &str, head: Option<&ClusterHead>) -> Result<()> {
        let mut repo = self.repo()?;
        let message = format!("cluster: unsynced work on {}", self.opts.host);
        let Some(local) = data::commit_changes(&mut repo, volume, &message)? else {
            return Ok(());
        };
        if let Some(h) = head.and_then(|h| crate::store::ObjectId::from_hex(&h.commit)) {
            if repo.is_ancestor(&local, &h)? {
                return Ok(());
            }
        }
        data::keep_as_branch(
            &mut repo,
            volume,
            &self.opts.host,
            &local,
            &self.opts.remote,
            &self.opts.remote_options,
        )?;
        Ok(())
    }

    /// `Unmount` of the last mount of a volume: stop the keeper; if the lease is still ours,
    /// commit, push, move the cluster head and release it.
    pub fn unmount(&self, volume: &str) -> Result<()> {
        let turn = self.turn(volume);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = self.sessions.lock().expect("sessions").remove(volume) else {
            return Ok(());
        };
        s.stop.store(true, Ordering::SeqCst);
        if let Some(h) = s.keeper.lock().expect("keeper").take() {
            let _ = h.join();
        }
        if s.lost.load(Ordering::SeqCst) {
            // Docker cannot do anything about it; the container has stopped already.
            tracing::warn!(
                volume,
                "cluster: unmounted after this host lost the lease; \
                its unsynced work is kept as a branch {}-unsynced-TIME",
                self.opts.host
            );
            return Ok(());
        }
        let synced = self.sync(&s);
        let s = Arc::try_unwrap(s).map_err(|_| Error::Other("session still in use".into()))?;
        s.lease.release(&self.etcd)?;
        synced
    }
}

/// For the CLI: refuse to move the head of a cluster volume this host does not hold, naming
/// the holder. Roots that never served a cluster plugin, and local volumes, pass.
pub fn check_may_move(repo: &Repo, volume: &str) -> Result<()> {
    let (Some(endpoints), Some(host)) = (
        db::get_meta(repo.conn(), META_ETCD)?,
        db::get_meta(repo.conn(), META_HOST)?,
    ) else {
        return Ok(());
    };
    let etcd = Etcd::new(&endpoints)?;
    if lease::volume(&etcd, volume)?.is_none() {
        return Ok(());
    }
    match lease::holder(&etcd, volume)? {
        Some(h) if h.host == host => Ok(()),
        Some(h) => Err(Error::Other(format!(
            "{volume} is a cluster volume held by host {}: its head moves only there \
             (this host is {host}); log, diff and clone work here",
            h.host
        ))),
        None => Err(Error::Other(format!(
            "{volume} is a cluster volume not held by this host ({host}): mount it here \
             (run its container) to move its head"
        ))),
    }
}

/// For `dvol list`: the holder of each cluster volume of this root's cluster, if it is one.
pub fn holders(repo: &Repo) -> Result<Option<HashMap<String, Option<String>>>> {
    let Some(endpoints) = db::get_meta(repo.conn(), META_ETCD)? else {
        return Ok(None);
    };
    let etcd = Etcd::new(&endpoints)?;
    let mut out = HashMap::new();
    for (name, _) in lease::volumes(&etcd)? {
        out.insert(name.clone(), lease::holder(&etcd, &name)?.map(|h| h.host));
    }
    Ok(Some(out))
}
