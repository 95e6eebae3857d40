//! A cluster volume's data on one host: the local dvol volume of the same name, whose current
//! branch is the working copy, and the shared remote. Each host pushes to a remote volume of
//! its own (`VOLUME.HOST`, remote name `cluster-HOST`), so a host that lost its lease can
//! never overwrite or move what another host pushed; etcd's cluster head says which host's
//! remote volume has the commit to start from. Reuses the remote verbs (`remote::ops`): fetch
//! downloads only the objects this host lacks. Must not touch etcd.

use super::lease::ClusterHead;
use super::ClusterError;
use crate::progress::NoProgress;
use crate::remote::ops::{self, PushFlags, PushWhat, RemoteOptions};
use crate::remote::transfer::PushStatus;
use crate::repo::{LiveGuard, Repo, Unguarded};
use crate::store::ObjectId;
use crate::{Error, Result};

/// The remote row through which this root reaches `host`'s remote volume.
fn remote_name(host: &str) -> String {
    format!("cluster-{host}")
}

/// The remote volume `host` pushes `volume` to.
pub fn remote_volume(volume: &str, host: &str) -> String {
    format!("{volume}.{host}")
}

/// The local volume, created (empty) when this host has never seen it.
pub fn ensure_local(repo: &mut Repo, volume: &str) -> Result<()> {
    if repo.volume_exists(volume)? {
        return Ok(());
    }
    match repo.create_volume(volume) {
        Err(Error::VolumeExists(_)) => Ok(()),
        other => other,
    }
}

/// The remote row for `host`'s remote volume, added on first use.
fn ensure_remote(repo: &Repo, volume: &str, host: &str, url: &str) -> Result<String> {
    let name = remote_name(host);
    if !repo.remotes(volume)?.iter().any(|(n, _)| *n == name) {
        repo.add_remote(volume, &name, url, Some(&remote_volume(volume, host)))?;
    }
    Ok(name)
}

/// Commit the live data of the current branch when it differs from its head, under `guard`
/// (the keeper's pauses the containers: a crash-consistent commit). Returns the branch's head
/// after it (`None`: no commit yet and nothing to commit).
pub fn commit_changes(
    repo: &mut Repo,
    volume: &str,
    message: &str,
    guard: &dyn LiveGuard,
) -> Result<Option<ObjectId>> {
    let branch = repo.current_branch(volume)?;
    if repo.live_changes(volume, &branch)?.is_empty() {
        return repo.branch_head(volume, &branch);
    }
    Ok(Some(repo.commit(volume, message, &NoProgress, guard)?.id))
}

/// Push `branch` to this host's remote volume (forced: only this host writes there).
pub fn push_branch(
    repo: &Repo,
    volume: &str,
    host: &str,
    branch: &str,
    url: &str,
    opts: &RemoteOptions,
) -> Result<u64> {
    let remote = ensure_remote(repo, volume, host, url)?;
    let flags = PushFlags {
        force: true,
        repair: false,
    };
    let (_, report) = ops::push(
        repo,
        volume,
        &remote,
        PushWhat::Branch(branch),
        flags,
        opts,
        &NoProgress,
        Vec::new(),
    )?;
    for (b, status) in &report.branches {
        if let PushStatus::Rejected { .. } = status {
            return Err(ClusterError::PushRejected {
                volume: volume.to_string(),
                branch: b.clone(),
                url: url.to_string(),
            }
            .into());
        }
    }
    Ok(report.bytes)
}

/// Commit (under `guard`) and push the current branch; the commit to publish as the cluster
/// head.
pub fn publish(
    repo: &mut Repo,
    volume: &str,
    host: &str,
    url: &str,
    opts: &RemoteOptions,
    guard: &dyn LiveGuard,
) -> Result<ObjectId> {
    let message = format!("cluster sync on {host}");
    let head = match commit_changes(repo, volume, &message, guard)? {
        Some(h) => h,
        // A volume nobody wrote to yet still gets a head the next holder can start from.
        None => repo.commit(volume, &message, &NoProgress, &Unguarded)?.id,
    };
    let branch = repo.current_branch(volume)?;
    push_branch(repo, volume, host, &branch, url, opts)?;
    Ok(head)
}

/// A branch name for work found on `host` that the cluster head does not contain.
fn keep_branch_name(host: &str) -> String {
    format!(
        "{host}-unsynced-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    )
}

/// Keep the current branch's head as a new branch named after this host and the time, pushed
/// to this host's remote volume (best effort: it is kept locally whatever the network does).
pub fn keep_as_branch(
    repo: &mut Repo,
    volume: &str,
    host: &str,
    at: &ObjectId,
    url: &str,
    opts: &RemoteOptions,
) -> Result<String> {
    let name = keep_branch_name(host);
    repo.create_branch(volume, &name, Some(&at.to_hex()))?;
    tracing::warn!(volume, branch = %name, commit = %at.to_hex(),
        "cluster: work not in the cluster head kept as a branch");
    if let Err(e) = push_branch(repo, volume, host, &name, url, opts) {
        tracing::warn!(volume, branch = %name, "cluster: kept branch not pushed yet: {e}");
    }
    Ok(name)
}

/// Fetch the objects of `volume`'s cluster head this host lacks, from the remote volume of the
/// host that pushed it (live data untouched); the bytes downloaded.
pub fn fetch_head(
    repo: &mut Repo,
    volume: &str,
    head: &ClusterHead,
    url: &str,
    opts: &RemoteOptions,
) -> Result<u64> {
    let remote = ensure_remote(repo, volume, &head.host, url)?;
    Ok(ops::fetch(repo, volume, &remote, opts, &NoProgress)?
        .report
        .bytes)
}

/// Make `volume` locally from `source` at revision `at` (a full copy: cluster volumes are
/// reset under their containers, so no thin clone shares their data), and push its `master`
/// to this host's remote volume; its first commit.
pub fn make_from(
    repo: &mut Repo,
    volume: &str,
    source: &str,
    at: &str,
    host: &str,
    url: &str,
    opts: &RemoteOptions,
) -> Result<ObjectId> {
    repo.set_clone_method(crate::repo::CloneMethod::Full);
    repo.create_volume_from(volume, source, Some(at))?;
    let branch = repo.current_branch(volume)?;
    let head = repo
        .branch_head(volume, &branch)?
        .ok_or_else(|| Error::SourceHasNoCommits(source.to_string()))?;
    push_branch(repo, volume, host, &branch, url, opts)?;
    Ok(head)
}

/// What [`bring`] did.
#[derive(Debug, Default)]
pub struct Brought {
    /// Bytes downloaded from the remote.
    pub bytes: u64,
    /// The branch local work that the cluster head lacks was kept on.
    pub kept: Option<String>,
}

/// Make the current branch and its live data the cluster head: commit what the live data has
/// (work left by an earlier holding of this host), fetch the objects this host lacks from the
/// remote volume of the host that pushed the head, keep local work the head does not contain
/// as a branch, then reset to the head. No head yet: the local volume stays as it is.
pub fn bring(
    repo: &mut Repo,
    volume: &str,
    host: &str,
    head: Option<&ClusterHead>,
    url: &str,
    opts: &RemoteOptions,
) -> Result<Brought> {
    ensure_local(repo, volume)?;
    let mut out = Brought::default();
    let Some(head) = head else {
        return Ok(out);
    };
    let target = ObjectId::from_hex(&head.commit).ok_or_else(|| ClusterError::BadRecord {
        what: "head",
        detail: format!("{volume}: {:?} is not a commit id", head.commit),
    })?;
    let local = commit_changes(
        repo,
        volume,
        &format!("cluster: work found on {host} at mount"),
        &Unguarded,
    )?;
    if local == Some(target) {
        return Ok(out);
    }
    out.bytes = fetch_head(repo, volume, head, url, opts)?;
    if let Some(l) = local {
        if !repo.is_ancestor(&l, &target)? {
            out.kept = Some(keep_as_branch(repo, volume, host, &l, url, opts)?);
        }
    }
    repo.reset_hard(volume, &target.to_hex(), &Unguarded)?;
    Ok(out)
}
