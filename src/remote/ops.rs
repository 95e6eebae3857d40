//! The remote verbs on a repository: push, fetch, pull, clone. Each opens the remote named
//! by the volume's `remotes` row (or a URL for clone) and drives [`super::transfer`].

use super::transfer::{self, FetchReport, PushReport, PushRequest, PushStatus};
use super::{cache_dir, check_format, open, Backend};
use crate::progress::Progress;
use crate::repo::Repo;
use crate::store::ObjectId;
use crate::{names, Error, Result};

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
) -> Result<(String, transfer::RemoteFsckReport)> {
    let url = repo.remote_url(volume, remote)?;
    let remote_volume = repo.remote_volume(volume, remote)?;
    let backend = open_existing(&url)?;
    let report = transfer::fsck_remote(backend.as_ref(), &remote_volume)?;
    Ok((url, report))
}

/// Push to a named remote. Rejections are in the report, not errors.
pub fn push(
    repo: &Repo,
    volume: &str,
    remote: &str,
    what: PushWhat,
    flags: PushFlags,
    progress: &dyn Progress,
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
    let backend = open(&url)?;
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

fn open_existing(url: &str) -> Result<Box<dyn Backend>> {
    let backend = open(url)?;
    if !check_format(backend.as_ref(), false)? {
        return Err(Error::Remote(format!(
            "{url} is not a dvol remote (no dvol-remote.json); push to it first"
        )));
    }
    Ok(backend)
}

/// Fetch every branch of the remote volume into the remote-tracking refs.
pub fn fetch(
    repo: &mut Repo,
    volume: &str,
    remote: &str,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let url = repo.remote_url(volume, remote)?;
    let remote_volume = repo.remote_volume(volume, remote)?;
    let backend = open_existing(&url)?;
    fetch_from(
        repo,
        backend.as_ref(),
        &url,
        volume,
        remote,
        &remote_volume,
        progress,
    )
}

fn fetch_from(
    repo: &mut Repo,
    backend: &dyn Backend,
    url: &str,
    volume: &str,
    remote: &str,
    remote_volume: &str,
    progress: &dyn Progress,
) -> Result<Fetched> {
    let refs = transfer::remote_branches(backend, remote_volume)?;
    let heads: Vec<ObjectId> = refs.iter().map(|r| r.1).collect();
    let cache = cache_dir(repo.root(), url);
    let _lock = repo.lock_volume(volume)?;
    let got = transfer::download_history(repo, backend, &cache, &heads, progress)?;
    let mut updates = Vec::new();
    for (branch, head) in &refs {
        let old = repo.remote_ref(volume, remote, branch)?;
        if old != Some(*head) {
            updates.push((branch.clone(), old, *head));
        }
    }
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
pub fn pull(
    repo: &mut Repo,
    volume: &str,
    remote: &str,
    branch: Option<&str>,
    progress: &dyn Progress,
) -> Result<(Fetched, String, Pulled)> {
    let branch = match branch {
        Some(b) => {
            names::validate("branch", b)?;
            b.to_string()
        }
        None => repo.current_branch(volume)?,
    };
    let fetched = fetch(repo, volume, remote, progress)?;
    let Some(&(_, theirs)) = fetched.report.refs.iter().find(|r| r.0 == branch) else {
        return Err(Error::Remote(format!(
            "remote {remote} has no branch {branch}"
        )));
    };
    let ours = if repo.branch_exists(volume, &branch)? {
        repo.branch_head(volume, &branch)?
    } else {
        None
    };
    if let Some(o) = ours {
        if o == theirs || repo.is_ancestor(&theirs, &o)? {
            return Ok((fetched, branch, Pulled::UpToDate));
        }
        if !repo.is_ancestor(&o, &theirs)? {
            return Err(Error::Remote(format!(
                "Cannot pull {remote}/{branch} into {volume}/{branch}: the histories have diverged \
                 (not a fast-forward). Commit ids: local {}, remote {}. \
                 Keep your work on a new branch (dvol checkout -b NAME), then \
                 dvol reset --hard {} on {branch}, or push --force to overwrite the remote",
                &o.to_hex()[..12],
                &theirs.to_hex()[..12],
                &theirs.to_hex()[..12],
            )));
        }
    }
    // An interrupted pull (or reset) left the live data half-written towards a committed
    // state: that is not the user's work, so the pull finishes it instead of refusing.
    if repo.branch_exists(volume, &branch)? && repo.pending_op(volume, &branch)?.is_none() {
        let changes = repo.live_changes(volume, &branch)?;
        if !changes.is_empty() {
            return Err(Error::Remote(format!(
                "Cannot pull into {volume}/{branch}: the live data has uncommitted changes ({} path{}, e.g. {}); commit them (dvol commit -m MSG) or discard them (dvol reset --hard HEAD) first",
                changes.len(),
                if changes.len() == 1 { "" } else { "s" },
                changes[0].path
            )));
        }
    }
    repo.fast_forward(volume, &branch, &theirs)?;
    Ok((
        fetched,
        branch,
        Pulled::FastForward {
            old: ours,
            new: theirs,
        },
    ))
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
    progress: &dyn Progress,
) -> Result<Cloned> {
    names::validate("volume", remote_volume)?;
    let local = local.unwrap_or(remote_volume).to_string();
    names::validate("volume", &local)?;
    let url = super::normalize_url(url)?;
    let resuming = if repo.volume_exists(&local)? {
        match repo.pending_clone(&local)? {
            Some((u, rv)) if u == url && rv == remote_volume => true,
            Some((u, rv)) => {
                return Err(Error::Remote(format!(
                    "volume {local} is an interrupted clone of volume {rv} from {u}, not of \
                     {remote_volume} from {url}; finish it with `dvol clone {u} {rv} {local}` \
                     or remove it with `dvol rm -f {local}`"
                )))
            }
            None => return Err(Error::VolumeExists(local)),
        }
    } else {
        false
    };
    let backend = open_existing(&url)?;
    let refs = transfer::remote_branches(backend.as_ref(), remote_volume)?;
    if refs.is_empty() {
        return Err(Error::Remote(format!(
            "remote volume {remote_volume} does not exist at {url}"
        )));
    }
    if !resuming {
        repo.begin_clone(&local, &url, remote_volume)?;
    }
    crate::failpoint::hit("clone.after-create-volume");
    let result = (|| -> Result<Cloned> {
        let has_origin = repo.remotes(&local)?.iter().any(|(n, _)| n == "origin");
        if !has_origin {
            repo.add_remote(&local, "origin", &url, Some(remote_volume))?;
        }
        crate::failpoint::hit("clone.after-add-remote");
        let fetched = fetch_from(
            repo,
            backend.as_ref(),
            &url,
            &local,
            "origin",
            remote_volume,
            progress,
        )?;
        crate::failpoint::hit("clone.before-materialize");
        let mut branches = Vec::new();
        for (branch, head) in &fetched.report.refs {
            if repo.branch_exists(&local, branch)?
                && repo.branch_head(&local, branch)? == Some(*head)
                && repo.pending_op(&local, branch)?.is_none()
            {
                // Finished by the interrupted run.
                branches.push(branch.clone());
                continue;
            }
            repo.fast_forward(&local, branch, head)?;
            branches.push(branch.clone());
        }
        let current = if branches.iter().any(|b| b == "master") {
            "master".to_string()
        } else {
            branches[0].clone()
        };
        crate::failpoint::hit("clone.before-finish");
        repo.finish_clone(&local, &current)?;
        Ok(Cloned {
            volume: local.clone(),
            branches,
            current,
            report: fetched.report,
        })
    })();
    if result.is_err() {
        let _ = repo.remove_volume(&local);
    }
    result
}
