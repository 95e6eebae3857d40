//! Cluster mode: volumes that follow their containers between hosts (issue 15). Every host's
//! plugin talks to one etcd cluster (leases, cluster heads, the volume registry: [`lease`])
//! and one shared remote (the data: [`data`]). A host uses a cluster volume only while it
//! holds its lease: Mount takes it and brings the data, a keeper thread renews it and commits
//! (containers paused: crash-consistent) and pushes every sync interval, Unmount commits,
//! pushes and moves the cluster head, and the lease is released after a short grace (at once
//! when another host waits for it), so Docker's Unmount-Mount pairs on one host keep it. A
//! failed final push keeps the lease (the data is only here) and is retried until it
//! succeeds. A holder that cannot renew for half the TTL stops publishing and stops its
//! containers, all at once, before its lease can have expired ([`fence`]), and keeps what it
//! could not publish as a branch. Sessions are
//! saved in the root ([`saved`]), so a restarted plugin takes its leases back. Owns the
//! sessions of held volumes; must not speak Docker's plugin protocol (that is `plugin`) nor
//! etcd's wire format (that is [`etcd`]).

pub mod data;
pub mod error;
pub mod etcd;
mod fence;
pub mod lease;
mod saved;

pub use error::ClusterError;

use crate::docker::{ByNameGuard, Engine, Quiesce};
use crate::remote::ops::RemoteOptions;
use crate::repo::{db, LiveGuard, Repo, Unguarded};
use crate::{names, Result};
use etcd::Etcd;
use lease::{ClusterHead, Held, VolumeRecord};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
/// Root metadata key prefix: the cluster head number (`ClusterHead::seq`) the local copy of a
/// volume is at, for the lag `dvol list` shows.
const META_SEQ: &str = "cluster.seq.";

/// How often a keeper looks at its session.
const TICK: Duration = Duration::from_millis(200);
/// Pause between retries of a failed final push.
const RETRY: Duration = Duration::from_secs(1);
/// How long the plugin's S3 client retries a failing request in cluster mode: a sync stuck
/// behind an unreachable remote would hold back the keeping of unsynced work and Docker's
/// Unmount (1 minute); the keeper retries failed pushes itself.
pub const REMOTE_RETRY: Duration = Duration::from_secs(10);
/// How long Docker's holder queries answer "unknown" at once after etcd did not answer.
const UNREACHABLE_PAUSE: Duration = Duration::from_secs(5);

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
    /// How long a Mount may take in all (lease wait and data) before it fails, so Docker
    /// (which gives up on a plugin after about 2 minutes) hears why; the transfer goes on
    /// under the lease and a retry within the release grace finds the data there.
    pub mount_timeout: Duration,
    /// Background sync interval for volumes created without `sync-interval`.
    pub sync_interval: Duration,
    /// How long a host keeps a lease after the last Unmount (another host asking ends it).
    pub release_grace: Duration,
    /// Use the Docker engine: pause containers for background commits, stop them when the
    /// lease is lost.
    pub docker: bool,
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
        return Err(ClusterError::BadHost(host.to_string()).into());
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

fn bad_interval(s: &str) -> crate::Error {
    ClusterError::BadInterval {
        option: OPT_SYNC_INTERVAL,
        value: s.to_string(),
    }
    .into()
}

/// What Docker is doing with a held volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// The lease is taken and the data is being brought (the Mounts wait for it, at most until
    /// their timeout).
    Bringing,
    /// At least one container has it mounted.
    Mounted,
    /// The last Unmount is committing and pushing (the keeper does not retry meanwhile).
    Publishing,
    /// Unmounted since `since`; `pushed` once its final commit is published (then the lease
    /// goes after the grace, else the push is retried).
    Releasing { since: Instant, pushed: bool },
}

/// Docker's mounts of a held volume and what they mean.
struct Usage {
    mounts: BTreeSet<String>,
    state: Use,
    /// Why bringing the data failed (the session is over; the waiting Mounts say it).
    failed: Option<String>,
}

/// A volume this host holds: its lease, its mounts, and what its keeper thread reads.
struct Session {
    lease: Held,
    /// etcd mod revision of the cluster head this holder last saw or wrote.
    head_rev: AtomicI64,
    /// One commit+push+head move at a time.
    syncing: Mutex<()>,
    usage: Mutex<Usage>,
    /// Signalled when the data is brought (or could not be).
    brought: Condvar,
    /// Set when the lease could not be renewed in time: nothing is published any more.
    lost: AtomicBool,
    stop: AtomicBool,
}

impl Session {
    fn new(lease: Held, head_rev: i64, mounts: BTreeSet<String>, state: Use) -> Arc<Session> {
        Arc::new(Session {
            lease,
            head_rev: AtomicI64::new(head_rev),
            syncing: Mutex::new(()),
            usage: Mutex::new(Usage {
                mounts,
                state,
                failed: None,
            }),
            brought: Condvar::new(),
            lost: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        })
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> Use {
        self.usage().state
    }

    fn volume(&self) -> &str {
        &self.lease.volume
    }
}

/// The cluster side of one host's plugin.
pub struct Cluster {
    opts: ClusterOptions,
    etcd: Etcd,
    root: PathBuf,
    repo_options: crate::repo::Options,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// One Mount, Unmount or release at a time per volume on this host.
    turns: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// When [`Cluster::holder`] last found etcd out of reach.
    holder_failed: Mutex<Option<Instant>>,
}

/// A volume as the cluster lists it.
pub struct ClusterVolume {
    pub name: String,
    pub holder: Option<String>,
}

/// A cluster volume as `dvol list` shows it on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeStatus {
    pub holder: Option<String>,
    /// Cluster head moves the local copy is behind (0: at the cluster head).
    pub lag: u64,
}

impl Cluster {
    /// Join the cluster: check the options, reach etcd, and record in the root that it belongs
    /// to this host of this cluster (the CLI reads that to refuse head moves elsewhere).
    /// [`Cluster::resume`] then takes back what a previous run of the plugin held.
    pub fn new(
        root: &Path,
        repo_options: crate::repo::Options,
        opts: ClusterOptions,
    ) -> Result<Cluster> {
        check_host(&opts.host)?;
        if opts.lease_ttl < 3 {
            return Err(ClusterError::LeaseTtl(3).into());
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
            holder_failed: Mutex::new(None),
        })
    }

    fn repo(&self) -> Result<Repo> {
        Repo::open_with(&self.root, self.repo_options.clone())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, volume: &str) -> Option<Arc<Session>> {
        self.sessions().get(volume).cloned()
    }

    /// `Create`: register the volume cluster-wide and make it locally.
    pub fn create(&self, volume: &str, sync_interval: Option<Duration>) -> Result<()> {
        let record = self.record(volume, sync_interval)?;
        lease::register(&self.etcd, volume, &record)?;
        data::ensure_local(&mut self.repo()?, volume)
    }

    /// `Create` with `-o from=SOURCE[@REF]`: a new cluster volume whose history starts at
    /// SOURCE's cluster head (or at REF as this host's copy of SOURCE resolves it, once the
    /// cluster head's commits are fetched), made here and pushed, so any host can mount it.
    /// A volume registered already is kept as it is (Docker re-creates freely).
    pub fn create_from(
        &self,
        volume: &str,
        sync_interval: Option<Duration>,
        source: &str,
        at: Option<&str>,
    ) -> Result<()> {
        let record = self.record(volume, sync_interval)?;
        let mut repo = self.repo()?;
        if lease::volume(&self.etcd, volume)?.is_some() {
            return data::ensure_local(&mut repo, volume);
        }
        if lease::volume(&self.etcd, source)?.is_none() {
            return Err(ClusterError::NotClusterVolume(source.to_string()).into());
        }
        let (Some(head), _) = lease::head(&self.etcd, source)? else {
            return Err(crate::Error::SourceHasNoCommits(source.to_string()));
        };
        let (host, url, opts) = (
            &self.opts.host,
            &self.opts.remote,
            &self.opts.remote_options,
        );
        data::ensure_local(&mut repo, source)?;
        data::fetch_head(&mut repo, source, &head, url, opts)?;
        let at = at.unwrap_or(&head.commit);
        let first = data::make_from(&mut repo, volume, source, at, host, url, opts)?;
        let head = ClusterHead {
            commit: first.to_hex(),
            host: host.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            seq: 1,
        };
        if lease::register_with_head(&self.etcd, volume, &record, &head)? {
            set_local_seq(&repo, volume, 1)?;
        }
        Ok(())
    }

    /// The registry entry of a new volume, its name checked.
    fn record(&self, volume: &str, sync_interval: Option<Duration>) -> Result<VolumeRecord> {
        if volume.len() > MAX_VOLUME_LEN {
            return Err(ClusterError::VolumeNameTooLong(MAX_VOLUME_LEN).into());
        }
        Ok(VolumeRecord {
            created_by: self.opts.host.clone(),
            sync_interval: sync_interval.unwrap_or(self.opts.sync_interval).as_secs(),
        })
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

    /// The holder of a volume, if any, for Docker's `Get`: this host when it holds the volume
    /// (no etcd call: Docker asks while stopping a container, also when etcd is out of
    /// reach), else etcd's answer within a second. For [`UNREACHABLE_PAUSE`] after etcd did not
    /// answer, the error comes at once: Docker asks before each Unmount, and the containers a
    /// lost lease stops would otherwise wait a second each.
    pub fn holder(&self, volume: &str) -> Result<Option<String>> {
        if self
            .session(volume)
            .is_some_and(|s| !s.lost.load(Ordering::SeqCst))
        {
            return Ok(Some(self.opts.host.clone()));
        }
        let mut failed = self.holder_failed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = failed.filter(|at| at.elapsed() < UNREACHABLE_PAUSE) {
            let ago = at.elapsed().as_millis();
            return Err(
                ClusterError::Etcd(format!("out of reach (no answer {ago} ms ago)")).into(),
            );
        }
        let budget = Some(Duration::from_secs(1));
        let holder = lease::holder_within(&self.etcd, volume, budget);
        *failed = holder.is_err().then(Instant::now);
        Ok(holder?.map(|h| h.host))
    }

    fn turn(&self, volume: &str) -> Arc<Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(turns.entry(volume.to_string()).or_default())
    }

    /// Save every session in the root (a restarted plugin reads them back); a failure is
    /// logged: the sessions go on, only a restart would lose them.
    fn save(&self) {
        // A session still bringing its data has no mount Docker knows of yet: a restarted
        // plugin lets its lease expire.
        let all: std::collections::BTreeMap<String, saved::Saved> = self
            .sessions()
            .iter()
            .filter(|(_, s)| s.state() != Use::Bringing)
            .map(|(v, s)| {
                let saved = saved::Saved {
                    lease: s.lease.clone(),
                    mounts: s.usage().mounts.clone(),
                };
                (v.clone(), saved)
            })
            .collect();
        if let Err(e) = self.repo().and_then(|r| saved::store(&r, &all)) {
            tracing::warn!("cluster: sessions not saved (a plugin restart would lose them): {e}");
        }
    }

    /// After a plugin restart: take back the leases the previous run held (their mounts go
    /// on), and fence the volumes whose lease expired meanwhile. Returns Docker's mount ids
    /// of the volumes, as (mount id, volume).
    pub fn resume(self: &Arc<Self>) -> Result<Vec<(String, String)>> {
        let mut mounts = Vec::new();
        for (volume, s) in saved::load(&self.repo()?)? {
            let budget = Duration::from_secs(self.opts.lease_ttl) / 3;
            let asked = Instant::now();
            let ours = s.lease.still_ours(&self.etcd)? && s.lease.renew(&self.etcd, budget)?;
            mounts.extend(s.mounts.iter().map(|id| (id.clone(), volume.clone())));
            let state = if s.mounts.is_empty() {
                Use::Releasing {
                    since: Instant::now(),
                    pushed: false,
                }
            } else {
                Use::Mounted
            };
            // Only the holder moves the head: if the lease is still ours, so is the head.
            let (_, head_rev) = lease::head(&self.etcd, &volume)?;
            let session = Session::new(s.lease, head_rev, s.mounts, state);
            self.sessions().insert(volume.clone(), Arc::clone(&session));
            if ours {
                tracing::info!(
                    volume = volume.as_str(),
                    "cluster: took back its lease after a plugin restart"
                );
                self.spawn_keeper(session, asked)?;
            } else {
                let me = Arc::clone(self);
                self.spawn(&volume, move || {
                    let why = "its lease expired while the plugin was down";
                    me.lose(&session, why, Instant::now());
                })?;
            }
        }
        self.save();
        Ok(mounts)
    }

    fn spawn(&self, volume: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
        std::thread::Builder::new()
            .name(format!("keeper {volume}"))
            .spawn(f)
            .map(|_| ())
            .map_err(|e| {
                ClusterError::Thread {
                    volume: volume.to_string(),
                    detail: e.to_string(),
                }
                .into()
            })
    }

    /// Start the keeper threads of a session whose lease was renewed no earlier than
    /// `renewed`.
    fn spawn_keeper(self: &Arc<Self>, s: Arc<Session>, renewed: Instant) -> Result<()> {
        let interval = self.interval(s.volume())?;
        self.spawn_renewer(Arc::clone(&s), renewed)?;
        let (me, volume) = (Arc::clone(self), s.volume().to_string());
        self.spawn(&volume, move || me.keep(&s, interval))
    }

    /// Start renewing the lease of a session, renewed (or taken) no earlier than `renewed`,
    /// until it ends: a thread of its own, so no transfer delays it.
    fn spawn_renewer(self: &Arc<Self>, s: Arc<Session>, renewed: Instant) -> Result<()> {
        let (me, volume) = (Arc::clone(self), s.volume().to_string());
        self.spawn(&volume, move || me.renew(&s, renewed))
    }

    /// The background sync interval of a volume.
    fn interval(&self, volume: &str) -> Result<Duration> {
        Ok(
            lease::volume(&self.etcd, volume)?.map_or(self.opts.sync_interval, |r| {
                Duration::from_secs(r.sync_interval.max(1))
            }),
        )
    }

    fn engine(&self) -> Option<Engine> {
        self.opts.docker.then(Engine::connect).flatten()
    }

    /// `Mount` (Docker's mount `id`) of a cluster volume. Held here already: one more mount
    /// (within the release grace: the lease and the data are kept, nothing is fetched; while
    /// the data is still coming: wait for it). Otherwise take the lease (waiting a bounded
    /// time), start renewing it, and bring the data to the cluster head on the keeper thread.
    /// The Mount waits for the data until `mount_timeout` after it came, then fails saying
    /// so; the transfer goes on under the lease, so a retry finds the data here.
    pub fn mount(self: &Arc<Self>, volume: &str, id: &str) -> Result<()> {
        let came = Instant::now();
        let turn = self.turn(volume);
        let turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = self.session(volume) {
            if !s.lost.load(Ordering::SeqCst) {
                let mut u = s.usage();
                u.mounts.insert(id.to_string());
                match u.state {
                    Use::Bringing => {
                        drop((u, turn));
                        return self.wait_brought(&s, id, came);
                    }
                    Use::Releasing { .. } | Use::Publishing => tracing::info!(
                        volume,
                        "cluster: mounted again; kept the lease, nothing fetched"
                    ),
                    Use::Mounted => {}
                }
                u.state = Use::Mounted;
                drop(u);
                self.save();
                return Ok(());
            }
            // A session whose lease was lost: this Mount takes the lease anew.
            s.stop.store(true, Ordering::SeqCst);
            self.sessions().remove(volume);
        }
        if lease::volume(&self.etcd, volume)?.is_none() {
            return Err(ClusterError::NotClusterVolume(volume.to_string()).into());
        }
        let interval = self.interval(volume)?;
        // The lease is granted, and later renewed, no earlier than this.
        let asked = Instant::now();
        let held = lease::acquire(
            &self.etcd,
            volume,
            &self.opts.host,
            self.opts.lease_ttl,
            self.opts.mount_wait,
        )?;
        tracing::info!(volume, "cluster: lease taken");
        let mounts = BTreeSet::from([id.to_string()]);
        let session = Session::new(held, 0, mounts, Use::Bringing);
        self.sessions()
            .insert(volume.to_string(), Arc::clone(&session));
        let started = self
            .spawn_renewer(Arc::clone(&session), asked)
            .and_then(|()| {
                let (me, s) = (Arc::clone(self), Arc::clone(&session));
                self.spawn(volume, move || {
                    if me.bring(&s) {
                        me.keep(&s, interval);
                    }
                })
            });
        if let Err(e) = started {
            self.end_session(&session);
            return Err(e);
        }
        drop(turn);
        self.wait_brought(&session, id, came)
    }

    /// Wait, until `mount_timeout` after the Mount `id` came, for the keeper to bring the data
    /// of a session; a Mount that cannot wait longer forgets `id` (Docker never unmounts a
    /// failed Mount) and fails saying the transfer goes on.
    fn wait_brought(&self, s: &Session, id: &str, came: Instant) -> Result<()> {
        let budget = self.opts.mount_timeout.saturating_sub(came.elapsed());
        let u = s.usage();
        let (mut u, _) = s
            .brought
            .wait_timeout_while(u, budget, |u| {
                u.state == Use::Bringing && u.failed.is_none()
            })
            .unwrap_or_else(|e| e.into_inner());
        let volume = s.volume().to_string();
        if let Some(cause) = u.failed.clone() {
            u.mounts.remove(id);
            return Err(ClusterError::BringFailed { volume, cause }.into());
        }
        if u.state == Use::Bringing {
            u.mounts.remove(id);
            tracing::warn!(
                volume,
                "cluster: the data did not arrive before the Mount's timeout; it goes on"
            );
            return Err(ClusterError::MountTimedOut {
                volume,
                host: self.opts.host.clone(),
                waited: came.elapsed(),
            }
            .into());
        }
        drop(u);
        self.save();
        Ok(())
    }

    /// The keeper's first task: bring the data of a new session to the cluster head while the
    /// renewer keeps the lease. Then the session is mounted (or, when every Mount gave up
    /// waiting, unmounted and published: released after the grace unless a retry comes);
    /// `false` when the data could not be brought (the session is over, the lease released).
    fn bring(&self, s: &Session) -> bool {
        let volume = s.volume();
        let brought = self.bring_data(volume).and_then(|rev| {
            // Lost meanwhile: the data may be the head, but this host may not use it.
            if s.lost.load(Ordering::SeqCst) {
                return Err(s.lease.lost());
            }
            Ok(rev)
        });
        match brought {
            Ok(rev) => {
                s.head_rev.store(rev, Ordering::SeqCst);
                let mut u = s.usage();
                u.state = if u.mounts.is_empty() {
                    tracing::info!(
                        volume,
                        "cluster: data brought after its Mounts gave up; kept for a retry"
                    );
                    Use::Releasing {
                        since: Instant::now(),
                        pushed: true,
                    }
                } else {
                    Use::Mounted
                };
                drop(u);
                s.brought.notify_all();
                self.save();
                true
            }
            Err(e) => {
                tracing::error!(volume, "cluster: bringing the data failed: {e}");
                let turn = self.turn(volume);
                let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
                self.end_session(s);
                s.usage().failed = Some(e.to_string());
                s.brought.notify_all();
                false
            }
        }
    }

    /// End a session that never got its data: forget it, stop its renewer, release the lease.
    fn end_session(&self, s: &Session) {
        let volume = s.volume();
        let mut sessions = self.sessions();
        if sessions
            .get(volume)
            .is_some_and(|mine| std::ptr::eq(Arc::as_ptr(mine), s))
        {
            sessions.remove(volume);
        }
        drop(sessions);
        s.stop.store(true, Ordering::SeqCst);
        if !s.lost.load(Ordering::SeqCst) {
            let _ = s.lease.release(&self.etcd);
        }
    }

    /// Bring the data to the cluster head (under a fresh lease); the head's etcd revision.
    fn bring_data(&self, volume: &str) -> Result<i64> {
        let started = Instant::now();
        let (head, rev) = lease::head(&self.etcd, volume)?;
        let mut repo = self.repo()?;
        // Where a test holds the transfer, to show the lease outlives it.
        crate::failpoint::pause("cluster.bring");
        let b = data::bring(
            &mut repo,
            volume,
            &self.opts.host,
            head.as_ref(),
            &self.opts.remote,
            &self.opts.remote_options,
        )?;
        set_local_seq(&repo, volume, head.map_or(0, |h| h.seq))?;
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(volume, bytes = b.bytes, ms, kept = ?b.kept, "cluster: mounted");
        Ok(rev)
    }

    /// Commit (under `guard`), push, and move the cluster head by compare-and-swap under the
    /// lease. Refused once the lease is lost.
    fn sync(&self, s: &Session, guard: &dyn LiveGuard) -> Result<()> {
        let _one = s.syncing.lock().unwrap_or_else(|e| e.into_inner());
        if s.lost.load(Ordering::SeqCst) {
            return Err(s.lease.lost());
        }
        let volume = s.volume();
        let mut repo = self.repo()?;
        // Where a test holds a publication, to show the lease outlives it.
        crate::failpoint::pause("cluster.publish");
        let started = Instant::now();
        let commit = data::publish(
            &mut repo,
            volume,
            &self.opts.host,
            &self.opts.remote,
            &self.opts.remote_options,
            guard,
        )?
        .to_hex();
        // Pushed to this host's own remote volume: visible to nobody until the head names it.
        let ms = started.elapsed().as_millis() as u64;
        tracing::debug!(volume, commit = %commit, ms, "cluster: pushed");
        let (current, _) = lease::head(&self.etcd, volume)?;
        let seq = match current {
            Some(h) if h.commit == commit => h.seq,
            current => {
                let to = ClusterHead {
                    commit,
                    host: self.opts.host.clone(),
                    at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    seq: current.map_or(0, |h| h.seq) + 1,
                };
                let rev = s
                    .lease
                    .move_head(&self.etcd, s.head_rev.load(Ordering::SeqCst), &to)?;
                s.head_rev.store(rev, Ordering::SeqCst);
                to.seq
            }
        };
        set_local_seq(&repo, volume, seq)
    }

    /// The lease keeper of a held volume, whose lease was last renewed (or taken) no earlier
    /// than `renewed`: renews it every third of its TTL, each attempt given at most a sixth.
    /// When renewals fail for half the TTL the session is lost, and its containers are
    /// stopped by the earliest expiry of the lease. A thread of its own, so nothing the sync
    /// does (a slow remote, Docker) can delay the fencing.
    fn renew(&self, s: &Session, mut renewed: Instant) {
        let ttl = Duration::from_secs(self.opts.lease_ttl);
        while !s.stop.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            if renewed.elapsed() < fence::renew_after(ttl) {
                continue;
            }
            let attempt = Instant::now();
            let renewal = s.lease.renew(&self.etcd, fence::attempt_budget(ttl));
            // Released meanwhile (the stop is set before the lease is revoked): not a loss.
            if s.stop.load(Ordering::SeqCst) {
                return;
            }
            match renewal {
                Ok(true) => {
                    renewed = attempt;
                    tracing::debug!(volume = %s.volume(), "cluster: lease renewed");
                }
                Ok(false) => return self.lose(s, "the lease expired", Instant::now()),
                Err(e) if renewed.elapsed() >= fence::lost_after(ttl) => {
                    let why = format!("cannot renew the lease: {e}");
                    return self.lose(s, &why, fence::expiry(renewed, ttl));
                }
                Err(e) => tracing::warn!(volume = %s.volume(), "lease renewal: {e}"),
            }
        }
    }

    /// The sync keeper of a held volume: while mounted, syncs every `interval` with the
    /// containers paused; once unmounted, retries a failed final push and releases the lease
    /// after the grace (or as soon as another host waits for it). Stops when the lease is
    /// lost: nothing is published any more.
    fn keep(&self, s: &Session, interval: Duration) {
        let engine = self.engine();
        let paused = ByNameGuard {
            engine: engine.as_ref(),
            root: &self.root,
            how: Quiesce::Pause,
        };
        let mut synced = Instant::now();
        while !s.stop.load(Ordering::SeqCst) && !s.lost.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            match s.state() {
                Use::Mounted if synced.elapsed() >= interval => {
                    if let Err(e) = self.sync(s, &paused) {
                        tracing::warn!(volume = %s.volume(), "cluster sync: {e}");
                    }
                    synced = Instant::now();
                }
                Use::Releasing {
                    since,
                    pushed: false,
                } if since.elapsed() >= RETRY => {
                    self.retry_final_push(s);
                }
                Use::Releasing {
                    since,
                    pushed: true,
                } if (since.elapsed() >= self.opts.release_grace
                    || s.lease.wanted(&self.etcd).unwrap_or(false))
                    && self.release(s) =>
                {
                    return;
                }
                _ => {}
            }
        }
    }

    /// Set the state of an unmounted session (a Mount meanwhile wins).
    fn set_releasing(s: &Session, pushed: bool) {
        let mut u = s.usage();
        if u.state != Use::Mounted {
            u.state = Use::Releasing {
                since: Instant::now(),
                pushed,
            };
        }
    }

    fn retry_final_push(&self, s: &Session) {
        match self.sync(s, &Unguarded) {
            Ok(()) => {
                tracing::info!(volume = s.volume(), "cluster: final push done on a retry");
                Self::set_releasing(s, true);
            }
            Err(e) => {
                tracing::warn!(
                    volume = s.volume(),
                    "cluster: final push failed again, lease kept: {e}"
                );
                Self::set_releasing(s, false);
            }
        }
    }

    /// Release the lease of an unmounted, published session; `false` when a Mount came first.
    fn release(&self, s: &Session) -> bool {
        let volume = s.volume();
        let turn = self.turn(volume);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(s.state(), Use::Releasing { pushed: true, .. }) {
            return false;
        }
        self.sessions().remove(volume);
        self.save();
        s.stop.store(true, Ordering::SeqCst);
        match s.lease.release(&self.etcd) {
            Ok(()) => tracing::info!(volume, "cluster: lease released"),
            Err(e) => tracing::warn!(volume, "cluster: lease not released ({e}); it expires"),
        }
        true
    }

    /// Stop using a volume whose lease is gone: nothing is published any more, the containers
    /// using it here are stopped by `deadline` (the earliest expiry of the lease when
    /// renewals failed; now when it has expired), and its unpublished work is kept once etcd
    /// answers.
    fn lose(&self, s: &Session, why: &str, deadline: Instant) {
        let volume = s.volume();
        s.lost.store(true, Ordering::SeqCst);
        tracing::error!(volume = %volume, "cluster: {why}; this host stops publishing it");
        fence::stop_containers(self.engine(), volume, deadline);
        if s.state() == Use::Bringing {
            // Nothing unpublished: the Mount's own commit of earlier local work keeps that.
            return;
        }
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
        let Some(local) = data::commit_changes(&mut repo, volume, &message, &Unguarded)? else {
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

    /// `Unmount` (Docker's mount `id`). The last one commits, pushes and moves the cluster
    /// head; the keeper releases the lease after the grace. If that final push fails the
    /// lease is kept (the data is only here), the keeper retries until it succeeds, and the
    /// error says so.
    pub fn unmount(&self, volume: &str, id: &str) -> Result<()> {
        let turn = self.turn(volume);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = self.session(volume) else {
            return Ok(());
        };
        let mut u = s.usage();
        u.mounts.remove(id);
        if u.state == Use::Bringing {
            // A Mount that has not returned yet: the keeper settles the session once the
            // data is here.
            return Ok(());
        }
        if !u.mounts.is_empty() {
            drop(u);
            self.save();
            return Ok(());
        }
        if s.lost.load(Ordering::SeqCst) {
            drop(u);
            // Not stopped: its keeper still keeps the unsynced work once etcd answers.
            self.sessions().remove(volume);
            self.save();
            // Docker cannot do anything about it; the container has stopped already.
            tracing::warn!(
                volume,
                "cluster: unmounted after this host lost the lease; \
                its unsynced work is kept as a branch {}-unsynced-TIME",
                self.opts.host
            );
            return Ok(());
        }
        if matches!(u.state, Use::Releasing { pushed: true, .. }) {
            // Published already (Docker unmounts some mounts twice).
            return Ok(());
        }
        // The last mount, or Docker retrying the Unmount of a failed final push.
        u.state = Use::Publishing;
        drop(u);
        self.save();
        let synced = self.sync(&s, &Unguarded);
        Self::set_releasing(&s, synced.is_ok());
        synced.map_err(|e| {
            tracing::error!(volume, "cluster: final push failed, lease kept: {e}");
            ClusterError::FinalPushFailed {
                volume: volume.to_string(),
                host: self.opts.host.clone(),
                cause: e.to_string(),
            }
            .into()
        })
    }
}

/// Record the cluster head number the local copy of `volume` is at.
fn set_local_seq(repo: &Repo, volume: &str, seq: u64) -> Result<()> {
    db::set_meta(
        repo.conn(),
        &format!("{META_SEQ}{volume}"),
        &seq.to_string(),
    )
}

/// How many cluster head moves the local copy of `volume` is behind `head`.
fn lag(repo: &Repo, volume: &str, head: Option<&ClusterHead>) -> Result<u64> {
    let Some(head) = head else {
        return Ok(0);
    };
    if repo.volume_exists(volume)? {
        let branch = repo.current_branch(volume)?;
        if repo.branch_head(volume, &branch)?.map(|h| h.to_hex()) == Some(head.commit.clone()) {
            return Ok(0);
        }
    }
    let local: u64 = db::get_meta(repo.conn(), &format!("{META_SEQ}{volume}"))?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(head.seq.saturating_sub(local))
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
        Some(h) => Err(ClusterError::HeldBy {
            volume: volume.to_string(),
            holder: h.host,
            host,
        }
        .into()),
        None => Err(ClusterError::NotHeld {
            volume: volume.to_string(),
            host,
        }
        .into()),
    }
}

/// For `dvol list`: the holder and lag of each cluster volume of this root's cluster, if it
/// is one.
pub fn status(repo: &Repo) -> Result<Option<HashMap<String, VolumeStatus>>> {
    let Some(endpoints) = db::get_meta(repo.conn(), META_ETCD)? else {
        return Ok(None);
    };
    let etcd = Etcd::new(&endpoints)?;
    let mut out = HashMap::new();
    for (name, _) in lease::volumes(&etcd)? {
        let holder = lease::holder(&etcd, &name)?.map(|h| h.host);
        let (head, _) = lease::head(&etcd, &name)?;
        let lag = lag(repo, &name, head.as_ref())?;
        out.insert(name, VolumeStatus { holder, lag });
    }
    Ok(Some(out))
}
