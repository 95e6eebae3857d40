//! The remote verbs on a repository: push, fetch, pull, clone. Each opens the remote named
//! by the volume's `remotes` row (or a URL for clone) and drives [`super::transfer`].

use super::crypt::{self, OpenRequest, Seal, Secret};
use super::transfer::{self, FetchReport, PushReport, PushRequest, PushStatus};
use super::{cache_dir, open, Backend, ConnectOptions, RemoteError};
use crate::progress::Progress;
use crate::repo::{guarded, Head, LiveGuard, Repo, VolumeLock};
use crate::store::ObjectId;
use crate::{names, Error, Result};

/// What the caller gives every remote verb besides names: the secret of an encrypted remote
/// (read by the CLI from the environment or a file) and the restore policy.
#[derive(Default)]
pub struct RemoteOptions {
    pub secret: Option<Secret>,
    /// Clone and pull keep setuid/setgid bits of files from the remote (default: dropped).
    pub keep_special_bits: bool,
    /// How to reach the remote (ssh command, token, TLS CA, S3 settings).
    pub connect: ConnectOptions,
}

impl RemoteOptions {
    pub(crate) fn open_request(&self, expect_encrypted: bool, create: bool) -> OpenRequest<'_> {
        OpenRequest {
            secret: self.secret.as_ref(),
            expect_encrypted,
            create,
        }
    }
}

/// Add a remote to a volume; with `encrypt`, the remote is made encrypted (a new key when it
/// is empty, or the key of an encrypted remote checked against the secret) before the
/// remote is recorded, so a wrong key leaves nothing behind.
pub fn add_remote(
    repo: &Repo,
    volume: &str,
    name: &str,
    url: &str,
    remote_volume: Option<&str>,
    encrypt: Option<&Secret>,
    connect: &ConnectOptions,
) -> Result<()> {
    let url = crate::remote_url::normalize(url)?;
    if let Some(secret) = encrypt {
        names::validate("remote", name)?;
        if repo.remotes(volume)?.iter().any(|(n, _)| n == name) {
            return Err(Error::RemoteExists(name.to_string()));
        }
        crypt::init(open(&url, connect)?.as_ref(), secret)?;
    }
    repo.add_remote(volume, name, &url, remote_volume)?;
    repo.set_remote_encrypted(volume, name, encrypt.is_some())
}

/// Which branches to push.
pub enum PushWhat<'a> {
    Branch(&'a str),
    All,
}

/// How to push.
#[derive(Clone, Copy, Debug, Default)]
pub struct PushFlags {
    /// Move remote branches even when not a fast-forward.
    pub force: bool,
    /// Verify the remote's copies and send again what has no good copy.
    pub repair: bool,
}

/// Verify a remote of `volume`: every pack record and every branch of its remote volume.
pub fn fsck_remote(
    repo: &Repo,
    volume: &str,
    remote: &str,
    opts: &RemoteOptions,
) -> Result<(String, transfer::RemoteFsckReport)> {
    let url = repo.remote_url(volume, remote)?;
    let remote_volume = repo.remote_volume(volume, remote)?;
    let encrypted = repo.remote_encrypted(volume, remote)?;
    let (backend, seal) = open_existing(&url, opts, encrypted)?;
    let report = transfer::fsck_remote(backend.as_ref(), &remote_volume, &seal)?;
    Ok((url, report))
}

/// Push to a named remote, also sending the objects of the `extra` commits (a group push:
/// the member commits its group commits name). Rejections are in the report, not errors.
#[allow(clippy::too_many_arguments)]
pub fn push(
    repo: &Repo,
    volume: &str,
    remote: &str,
    what: PushWhat,
    flags: PushFlags,
    opts: &RemoteOptions,
    progress: &dyn Progress,
    extra: Vec<ObjectId>,
) -> Result<(String, PushReport)> {
    let url = repo.remote_url(volume, remote)?;
    let remote_volume = repo.remote_volume(volume, remote)?;
    let branches = match what {
        PushWhat::Branch(b) => {
            names::validate("branch", b)?;
            if !repo.branch_exists(volume, b)? {
                return Err(Error::NoSuchBranch(b.to_string()));
            }
            vec![b.to_string()]
        }
        PushWhat::All => {
            let mut v = Vec::new();
            for b in repo.branches(volume)? {
                if repo.branch_head(volume, &b)?.is_some() {
                    v.push(b);
                }
            }
            v
        }
    };
    let backend = open(&url, &opts.connect)?;
    let encrypted = repo.remote_encrypted(volume, remote)?;
    let seal = crypt::open(backend.as_ref(), &opts.open_request(encrypted, true))?
        .expect("open with create returns a seal");
    remember_encrypted(repo, volume, remote, encrypted, &seal)?;
    let cache = cache_dir(repo.root(), &url);
    let report = transfer::push(
        repo,
        backend.as_ref(),
        &PushRequest {
            volume,
            remote_volume: &remote_volume,
            branches,
            force: flags.force,
            repair: flags.repair,
            cache: &cache,
            seal: &seal,
            extra,
        },
        progress,
    )?;
    for (branch, status) in &report.branches {
        match status {
            PushStatus::Pushed { new, .. } => repo.set_remote_ref(volume, remote, branch, new)?,
            PushStatus::UpToDate => {
                if let Some(h) = repo.branch_head(volume, branch)? {
                    repo.set_remote_ref(volume, remote, branch, &h)?;
                }
            }
            PushStatus::Rejected { .. } => {}
        }
    }
    Ok((url, report))
}

/// What a fetch changed: per remote branch, the previous and the new known head.
pub struct Fetched {
    pub url: String,
    pub report: FetchReport,
    pub updates: Vec<(String, Option<ObjectId>, ObjectId)>,
}

/// A remote found encrypted is remembered as such, so a plain marker there later is refused.
fn remember_encrypted(
    repo: &Repo,
    volume: &str,
    remote: &str,
    recorded: bool,
    seal: &Seal,
) -> Result<()> {
    if seal.is_encrypted() && !recorded {
        repo.set_remote_encrypted(volume, remote, true)?;
    }
    Ok(())
}

/// Open a remote that must already exist, and its seal.
pub(crate) fn open_existing(
    url: &str,
    opts: &RemoteOptions,
    expect_encrypted: bool,
) -> Result<(Box<dyn Backend>, Seal)> {
    let backend = open(url, &opts.connect)?;
    let Some(seal) = crypt::open(
        backend.as_ref(),
        &opts.open_request(expect_encrypted, false),
    )?
    else {
        return Err(RemoteError::NotARemote {
            url: url.to_string(),
            push_first: true,
        }
        .into());
    };
    Ok((backend, seal))
}

/// Fetch every branch of the remote volume into the remote-tracking refs.
pub fn fetch(
    repo: &mut Repo,
    volume: &str,
    remote: &str,
    opts: &RemoteOptions,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let url = repo.remote_url(volume, remote)?;
    let remote_volume = repo.remote_volume(volume, remote)?;
    let encrypted = repo.remote_encrypted(volume, remote)?;
    let (backend, seal) = open_existing(&url, opts, encrypted)?;
    remember_encrypted(repo, volume, remote, encrypted, &seal)?;
    fetch_from(
        repo,
        backend.as_ref(),
        &seal,
        &url,
        volume,
        remote,
        &remote_volume,
        progress,
    )
}

#[allow(clippy::too_many_arguments)]
fn fetch_from(
    repo: &mut Repo,
    backend: &dyn Backend,
    seal: &Seal,
    url: &str,
    volume: &str,
    remote: &str,
    remote_volume: &str,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let refs = transfer::remote_branches_sealed(backend, remote_volume, seal)?;
    let heads: Vec<ObjectId> = refs.iter().map(|r| r.1).collect();
    let cache = cache_dir(repo.root(), url);
    let _lock = repo.lock_volume(volume)?;
    let got = transfer::download_history(repo, backend, &cache, &heads, seal, progress)?;
    let mut updates = Vec::new();
    for (branch, head) in &refs {
        let old = repo.remote_ref(volume, remote, branch)?;
        if old != Some(*head) {
            updates.push((branch.clone(), old, *head));
        }
    }
    repo.record_expired(&got.expired)?;
    repo.record_fetch(volume, remote, &got.packs, &got.commits, &refs)?;
    Ok(Fetched {
        url: url.to_string(),
        report: FetchReport {
            refs,
            objects: got.objects,
            bytes: got.bytes,
        },
        updates,
    })
}

/// What a pull did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    UpToDate,
    FastForward {
        old: Option<ObjectId>,
        new: ObjectId,
    },
}

/// Fetch, then fast-forward `branch` (default: current) and its live data.
///
/// The fetch runs under its own lock; then, under one volume lock, the local head is read, the
/// ancestry and the live data are checked, and (inside `guard`: containers stopped) the live
/// data is rewritten and the head moved by compare-and-swap from the head that was checked.
pub fn pull(
    repo: &mut Repo,
    volume: &str,
    remote: &str,
    branch: Option<&str>,
    opts: &RemoteOptions,
    progress: &dyn Progress,
    guard: &dyn LiveGuard,
) -> Result<(Fetched, String, Pulled)> {
    let branch = match branch {
        Some(b) => {
            names::validate("branch", b)?;
            b.to_string()
        }
        None => repo.current_branch(volume)?,
    };
    let fetched = fetch(repo, volume, remote, opts, progress)?;
    let Some(&(_, theirs)) = fetched.report.refs.iter().find(|r| r.0 == branch) else {
        return Err(RemoteError::NoBranch {
            remote: remote.to_string(),
            what: "branch",
            name: branch,
        }
        .into());
    };
    let lock = repo.lock_volume(volume)?;
    let ours = repo.head(volume, &branch)?;
    if !check_pull(repo, &lock, remote, &branch, ours, &theirs)? {
        return Ok((fetched, branch, Pulled::UpToDate));
    }
    crate::failpoint::hit("pull.after-checks");
    guarded(guard, volume, "pull", || {
        repo.fast_forward(&lock, &branch, ours, &theirs, &restore_options(opts))
    })?;
    Ok((
        fetched,
        branch,
        Pulled::FastForward {
            old: ours.commit(),
            new: theirs,
        },
    ))
}

/// The checks of a pull, run under the volume lock: `false` when there is nothing to do, an
/// error when the histories diverged or the live data has uncommitted changes.
fn check_pull(
    repo: &Repo,
    lock: &VolumeLock,
    remote: &str,
    branch: &str,
    ours: Head,
    theirs: &ObjectId,
) -> Result<bool> {
    let volume = lock.volume();
    if let Some(o) = ours.commit() {
        if o == *theirs || repo.is_ancestor(theirs, &o)? {
            return Ok(false);
        }
        if !repo.is_ancestor(&o, theirs)? {
            return Err(RemoteError::Diverged {
                remote: remote.to_string(),
                volume: volume.to_string(),
                branch: branch.to_string(),
                local: o,
                theirs: *theirs,
            }
            .into());
        }
    }
    // An interrupted pull (or reset) left the live data half-written towards a committed
    // state: that is not the user's work, so the pull finishes it instead of refusing.
    if ours != Head::Absent && repo.pending_op(volume, branch)?.is_none() {
        let changes = repo.live_changes(volume, branch)?;
        if !changes.is_empty() {
            return Err(RemoteError::Uncommitted {
                volume: volume.to_string(),
                branch: branch.to_string(),
                count: changes.len(),
                example: changes[0].path.clone(),
            }
            .into());
        }
    }
    Ok(true)
}

/// What clone made.
pub struct Cloned {
    pub volume: String,
    pub branches: Vec<String>,
    pub current: String,
    pub report: FetchReport,
}

/// Make a local volume from a remote one, with `origin` set, and make it current.
///
/// The volume is created together with a pending-clone marker (URL and remote volume) and the
/// marker is dropped only when everything is in place, so a clone killed half-way is finished
/// by running the same clone again; a volume that is not an interrupted clone of the same
/// URL and remote volume is refused.
pub fn clone(
    repo: &mut Repo,
    url: &str,
    remote_volume: &str,
    local: Option<&str>,
    opts: &RemoteOptions,
    progress: &dyn Progress,
    guard: &dyn LiveGuard,
) -> Result<Cloned> {
    names::validate("volume", remote_volume)?;
    let local = local.unwrap_or(remote_volume).to_string();
    names::validate("volume", &local)?;
    let url = crate::remote_url::normalize(url)?;
    let resuming = if repo.volume_exists(&local)? {
        match repo.pending_clone(&local)? {
            Some((u, rv)) if u == url && rv == remote_volume => true,
            Some((u, rv)) => {
                return Err(RemoteError::OtherClone {
                    local,
                    was_volume: rv,
                    was_url: u,
                    remote_volume: remote_volume.to_string(),
                    url,
                }
                .into())
            }
            None => return Err(Error::VolumeExists(local)),
        }
    } else {
        false
    };
    let (backend, seal) = open_existing(&url, opts, false)?;
    let refs = transfer::remote_branches_sealed(backend.as_ref(), remote_volume, &seal)?;
    if refs.is_empty() {
        return Err(RemoteError::NoVolume {
            what: "volume",
            name: remote_volume.to_string(),
            url,
        }
        .into());
    }
    if !resuming {
        repo.begin_clone(&local, &url, remote_volume)?;
    }
    crate::failpoint::hit("clone.after-create-volume");
    let result = (|| -> Result<Cloned> {
        let has_origin = repo.remotes(&local)?.iter().any(|(n, _)| n == "origin");
        if !has_origin {
            repo.add_remote(&local, "origin", &url, Some(remote_volume))?;
            repo.set_remote_encrypted(&local, "origin", seal.is_encrypted())?;
        }
        crate::failpoint::hit("clone.after-add-remote");
        let fetched = fetch_from(
            repo,
            backend.as_ref(),
            &seal,
            &url,
            &local,
            "origin",
            remote_volume,
            progress,
        )?;
        crate::failpoint::hit("clone.before-materialize");
        let lock = repo.lock_volume(&local)?;
        // A resumed clone may already be in use: its rewrites go through the guard.
        let branches = guarded(guard, &local, "clone", || {
            let mut branches = Vec::new();
            for (branch, head) in &fetched.report.refs {
                let ours = repo.head(&local, branch)?;
                let pending = repo.pending_op(&local, branch)?.is_some();
                if ours != Head::At(*head) && !pending {
                    // Only a resumed clone finds a branch here: it may be in use since.
                    let clone = format!("the clone of volume {local}");
                    check_resumable(repo, &clone, &local, branch, ours, &|id| {
                        repo.is_ancestor(id, head)
                    })?;
                }
                if ours != Head::At(*head) || pending {
                    repo.fast_forward(&lock, branch, ours, head, &restore_options(opts))?;
                } // else: finished by the interrupted run.
                branches.push(branch.clone());
            }
            Ok(branches)
        })?;
        let current = if branches.iter().any(|b| b == "master") {
            "master".to_string()
        } else {
            branches[0].clone()
        };
        crate::failpoint::hit("clone.before-finish");
        repo.finish_clone(&local, &current)?;
        drop(lock);
        Ok(Cloned {
            volume: local.clone(),
            branches,
            current,
            report: fetched.report,
        })
    })();
    // A volume this run made goes with its failure; a resumed one may hold work done since
    // the interruption, and keeps its record so the clone can be run again.
    if result.is_err() && !resuming {
        let _ = repo.remove_volume(&local);
    }
    result
}

/// Refuse to move `branch` of `volume`, found at `head` by a resumed clone (`clone` names it
/// in errors), when it holds work done since the interruption: uncommitted changes in its
/// live data, or a head the clone would drop (`expected` says which heads it put there or
/// may move past). No commit and no live change is ever dropped by a resume.
pub(crate) fn check_resumable(
    repo: &Repo,
    clone: &str,
    volume: &str,
    branch: &str,
    head: Head,
    expected: &dyn Fn(&ObjectId) -> Result<bool>,
) -> Result<()> {
    if head == Head::Absent {
        return Ok(());
    }
    if let Some(c) = repo.live_changes(volume, branch)?.first() {
        return Err(RemoteError::ResumeUncommitted {
            clone: clone.to_string(),
            volume: volume.to_string(),
            branch: branch.to_string(),
            example: c.path.clone(),
        }
        .into());
    }
    match head {
        Head::At(id) if !expected(&id)? => Err(RemoteError::ResumeLocalCommits {
            clone: clone.to_string(),
            volume: volume.to_string(),
            branch: branch.to_string(),
            head: id,
        }
        .into()),
        _ => Ok(()),
    }
}

/// Whether commit `id` is the head of `branch` on `volume`'s origin, or behind it.
pub(crate) fn on_remote_branch(
    repo: &Repo,
    volume: &str,
    branch: &str,
    id: &ObjectId,
) -> Result<bool> {
    Ok(match repo.remote_ref(volume, "origin", branch)? {
        Some(r) => r == *id || repo.is_ancestor(id, &r)?,
        None => false,
    })
}

/// How clone and pull write files that came from a remote.
pub(crate) fn restore_options(opts: &RemoteOptions) -> crate::snapshot::RestoreOptions {
    crate::snapshot::RestoreOptions {
        strip_special_bits: !opts.keep_special_bits,
    }
}
