//! Groups on remotes: push and clone a group branch as one.
//!
//! Remote keys (all under `groups/`, a class of its own): `groups/<group>/commits/<id>`
//! holds a group commit's encoding (sealed on an encrypted remote, stored under the commit's
//! remote id) and `groups/<group>/refs/<branch>` a ref value naming a group commit (sealed
//! like a volume ref, bound to `group:<group>` and the branch; no volume name has a colon).
//!
//! Push sends every member first (its branch, by the volume push, plus the objects of every
//! member commit the new group commits name), then the group commits' encodings, and moves
//! the group ref last, by compare-and-swap: a group ref on a remote only ever names group
//! commits whose member objects and refs are all there. A fetched group commit is checked
//! against its id (the hash of its encoding) before anything uses it.

use super::crypt::{self, Seal};
use super::ops::{self, PushFlags, PushWhat, RemoteOptions};
use super::transfer::{self, PushReport, PushStatus, RejectReason};
use super::{cache_dir, Backend, CasOutcome, RemoteError};
use crate::progress::Progress;
use crate::repo::Head;
use crate::repo::{GroupCommit, LiveGuard, Member, Repo};
use crate::store::ObjectId;
use crate::{names, Error, Result};
use std::collections::HashSet;

/// Most group commits one push or clone walks (a hostile remote's parent chain is bounded).
const MAX_GROUP_COMMITS: usize = 1 << 20;

/// Key of a group branch on a remote.
pub fn group_ref_key(group: &str, branch: &str) -> String {
    format!("groups/{group}/refs/{branch}")
}

/// Key of a group commit on a remote.
fn group_commit_key(group: &str, seal: &Seal, id: &ObjectId) -> String {
    format!("groups/{group}/commits/{}", seal.remote_id(id).to_hex())
}

/// The name a group's refs are sealed under (never a volume name: those have no colon).
fn ref_owner(group: &str) -> String {
    format!("group:{group}")
}

/// What a group push did.
pub struct GroupPushed {
    pub url: String,
    pub members: Vec<(String, PushReport)>,
    pub status: PushStatus,
}

/// Push branch `branch` (default: the group's current one) of group `name` to remote
/// `remote`, which every member must have, with the same URL.
pub fn push_group(
    repo: &Repo,
    name: &str,
    remote: &str,
    branch: Option<&str>,
    force: bool,
    opts: &RemoteOptions,
    progress: &dyn Progress,
) -> Result<GroupPushed> {
    let info = repo.group(name)?;
    let branch = branch.unwrap_or(&info.branch).to_string();
    names::validate("branch", &branch)?;
    let head = repo.group_head(name, &branch)?.commit().ok_or_else(|| {
        Error::from(RemoteError::NoGroupCommitToPush {
            group: name.to_string(),
            branch: branch.clone(),
        })
    })?;
    let url = common_url(repo, &info.volumes(), remote)?;
    for m in &info.members {
        let remote_volume = repo.remote_volume(&m.volume, remote)?;
        if remote_volume != m.key {
            return Err(RemoteError::MemberKey {
                member: m.volume.clone(),
                remote_volume,
                key: m.key.clone(),
            }
            .into());
        }
    }
    let encrypted = repo.remote_encrypted(&info.members[0].volume, remote)?;
    let backend = super::open(&url, &opts.connect)?;
    let seal = crypt::open(backend.as_ref(), &opts.open_request(encrypted, true))?
        .expect("open with create returns a seal");
    let key = group_ref_key(name, &branch);
    let raw = backend.get(&key)?;
    let theirs = raw
        .as_deref()
        .map(|v| seal.parse_ref(&ref_owner(name), &branch, &key, v))
        .transpose()?;
    if theirs == Some(head) {
        return Ok(GroupPushed {
            url,
            members: Vec::new(),
            status: PushStatus::UpToDate,
        });
    }
    if let Some(r) = theirs {
        if !force && !group_descends(repo, name, &[], &r, &head)? {
            return Ok(GroupPushed {
                url,
                members: Vec::new(),
                status: PushStatus::Rejected {
                    remote: Some(r),
                    reason: RejectReason::NonFastForward,
                },
            });
        }
    }
    let chain = unsent_chain(repo, name, head, backend.as_ref(), &seal)?;
    let mut members = Vec::new();
    for m in &info.members {
        let extra: Vec<ObjectId> = chain.iter().filter_map(|(_, c)| c.member(&m.key)).collect();
        let flags = PushFlags {
            force,
            repair: false,
        };
        let (_, report) = ops::push(
            repo,
            &m.volume,
            remote,
            PushWhat::Branch(&branch),
            flags,
            opts,
            progress,
            extra,
        )?;
        if let Some((_, PushStatus::Rejected { reason, .. })) = report.branches.first() {
            return Err(RemoteError::MemberRejected {
                group: name.to_string(),
                branch,
                member: m.volume.clone(),
                reason: *reason,
            }
            .into());
        }
        members.push((m.key.clone(), report));
    }
    for (id, c) in &chain {
        let body = seal.seal_group_commit(name, id, c.encode());
        backend.put(&group_commit_key(name, &seal, id), body)?;
    }
    crate::failpoint::hit("group-push.before-ref-cas");
    let value = seal.ref_value(&ref_owner(name), &branch, &head);
    let status = match backend.cas(&key, raw.as_deref(), value)? {
        CasOutcome::Updated => PushStatus::Pushed {
            old: theirs,
            new: head,
        },
        CasOutcome::Conflict { current } => PushStatus::Rejected {
            remote: current
                .as_deref()
                .map(|v| seal.parse_ref(&ref_owner(name), &branch, &key, v))
                .transpose()?,
            reason: RejectReason::GroupRefMoved,
        },
    };
    Ok(GroupPushed {
        url,
        members,
        status,
    })
}

/// The URL of remote `remote` of every member (they must agree).
fn common_url(repo: &Repo, volumes: &[&str], remote: &str) -> Result<String> {
    let mut url: Option<(String, &str)> = None;
    for volume in volumes {
        let u = repo.remote_url(volume, remote)?;
        match &url {
            Some((first, v)) if *first != u => {
                return Err(RemoteError::SplitRemote {
                    remote: remote.to_string(),
                    first_volume: (*v).to_string(),
                    first_url: first.clone(),
                    volume: (*volume).to_string(),
                    url: u,
                }
                .into())
            }
            _ => url = Some((u, volume)),
        }
    }
    url.map(|u| u.0)
        .ok_or_else(|| RemoteError::EmptyGroup.into())
}

/// Is group commit `ancestor` reachable from `head` through local group commits and those
/// of `fetched`?
fn group_descends(
    repo: &Repo,
    name: &str,
    fetched: &[(ObjectId, GroupCommit)],
    ancestor: &ObjectId,
    head: &ObjectId,
) -> Result<bool> {
    let mut todo = vec![*head];
    let mut seen = HashSet::new();
    while let Some(id) = todo.pop() {
        if id == *ancestor {
            return Ok(true);
        }
        if !seen.insert(id) {
            continue;
        }
        if let Some((_, c)) = fetched.iter().find(|f| f.0 == id) {
            todo.extend(c.parents.iter().copied());
        } else if repo.has_group_commit(name, &id)? {
            todo.extend(repo.group_commit(name, &id)?.parents);
        }
    }
    Ok(false)
}

/// The group commits from `head` back that the remote does not have yet, newest first.
fn unsent_chain(
    repo: &Repo,
    name: &str,
    head: ObjectId,
    backend: &dyn Backend,
    seal: &Seal,
) -> Result<Vec<(ObjectId, GroupCommit)>> {
    let mut out = Vec::new();
    let mut todo = vec![head];
    let mut seen = HashSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) || backend.get(&group_commit_key(name, seal, &id))?.is_some() {
            continue;
        }
        let c = repo.group_commit(name, &id)?;
        todo.extend(c.parents.iter().copied());
        out.push((id, c));
    }
    Ok(out)
}

/// The group branches of `group` on the remote and their heads.
fn remote_group_branches(
    backend: &dyn Backend,
    group: &str,
    seal: &Seal,
) -> Result<Vec<(String, ObjectId)>> {
    let prefix = format!("groups/{group}/refs/");
    let mut out = Vec::new();
    for key in backend.list(&prefix)? {
        let branch = key[prefix.len()..].to_string();
        if names::validate("branch", &branch).is_err() {
            continue;
        }
        if let Some(v) = backend.get(&key)? {
            out.push((
                branch.clone(),
                seal.parse_ref(&ref_owner(group), &branch, &key, &v)?,
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// Download the group commits `head` reaches that `have` does not, each checked against its
/// id; newest first.
fn download_chain(
    backend: &dyn Backend,
    seal: &Seal,
    group: &str,
    head: ObjectId,
    have: &dyn Fn(&ObjectId) -> Result<bool>,
) -> Result<Vec<(ObjectId, GroupCommit)>> {
    let mut out = Vec::new();
    let mut todo = vec![head];
    let mut seen = HashSet::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) || have(&id)? {
            continue;
        }
        if seen.len() > MAX_GROUP_COMMITS {
            return Err(RemoteError::TooManyGroupCommits {
                group: group.to_string(),
                limit: MAX_GROUP_COMMITS,
            }
            .into());
        }
        let key = group_commit_key(group, seal, &id);
        let stored = backend.get(&key)?.ok_or_else(|| RemoteError::MissingKey {
            what: format!("group commit {id}"),
            key: key.clone(),
        })?;
        let c = GroupCommit::decode(&id, &seal.open_group_commit(group, &id, &key, stored)?)?;
        todo.extend(c.parents.iter().copied());
        out.push((id, c));
    }
    Ok(out)
}

/// What a group pull did.
pub enum GroupPulled {
    UpToDate,
    FastForward {
        old: Option<ObjectId>,
        new: ObjectId,
    },
}

/// Fetch group branch `branch` (default: current) of `name` from `remote` and fast-forward
/// the group and every member to it: the member objects are fetched first, then the group
/// moves through the group reset protocol (pending group record, each member rewritten,
/// group head moved), with the app's containers stopped. Refused when the histories diverged
/// or a member has uncommitted changes.
pub fn pull_group(
    repo: &mut Repo,
    name: &str,
    remote: &str,
    opts: &RemoteOptions,
    progress: &dyn Progress,
    guard: &dyn LiveGuard,
) -> Result<GroupPulled> {
    let info = repo.group(name)?;
    let branch = info.branch.clone();
    let url = common_url(repo, &info.volumes(), remote)?;
    let encrypted = repo.remote_encrypted(&info.members[0].volume, remote)?;
    let (backend, seal) = ops::open_existing(&url, opts, encrypted)?;
    let key = group_ref_key(name, &branch);
    let stored = backend.get(&key)?.ok_or_else(|| {
        Error::from(RemoteError::NoBranch {
            remote: remote.to_string(),
            what: "group branch",
            name: format!("{name}/{branch}"),
        })
    })?;
    let theirs = seal.parse_ref(&ref_owner(name), &branch, &key, &stored)?;
    let ours = repo.group_head(name, &branch)?.commit();
    if let Some(o) = ours {
        if group_descends(repo, name, &[], &theirs, &o)? {
            return Ok(GroupPulled::UpToDate);
        }
    }
    let have = |id: &ObjectId| repo.has_group_commit(name, id);
    let chain = download_chain(backend.as_ref(), &seal, name, theirs, &have)?;
    if let Some(o) = ours {
        if !group_descends(repo, name, &chain, &o, &theirs)? {
            return Err(diverged(name, &branch, ours, theirs));
        }
    }
    for m in &info.members {
        let changes = repo.live_changes(&m.volume, &branch)?;
        if !changes.is_empty() {
            return Err(RemoteError::GroupUncommitted {
                group: name.to_string(),
                member: m.volume.clone(),
                example: changes[0].path.clone(),
            }
            .into());
        }
        let commits: Vec<ObjectId> = chain.iter().filter_map(|(_, c)| c.member(&m.key)).collect();
        fetch_commits(repo, backend.as_ref(), &seal, &url, &commits, progress)?;
    }
    repo.record_group_commits(name, &chain)?;
    repo.reset_group_hard(name, &theirs.to_hex(), guard)?;
    Ok(GroupPulled::FastForward {
        old: ours,
        new: theirs,
    })
}

fn diverged(name: &str, branch: &str, ours: Option<ObjectId>, theirs: ObjectId) -> Error {
    RemoteError::GroupDiverged {
        group: name.to_string(),
        branch: branch.to_string(),
        local: ours,
        theirs,
    }
    .into()
}

/// Every (member key, commit) the group commits of `group` name on a plain remote (remote gc
/// keeps them). A group commit that does not match its key is an error: gc deletes nothing on
/// doubt.
pub(crate) fn member_commits(
    backend: &dyn Backend,
    group: &str,
) -> Result<Vec<(String, ObjectId)>> {
    let prefix = format!("groups/{group}/commits/");
    let mut out = Vec::new();
    for key in backend.list(&prefix)? {
        let id = ObjectId::from_hex(&key[prefix.len()..])
            .ok_or_else(|| RemoteError::bad_record(&key, "is not a group commit id"))?;
        let body = backend.get(&key)?.ok_or_else(|| RemoteError::MissingKey {
            what: "group commit".into(),
            key: key.clone(),
        })?;
        out.extend(GroupCommit::decode(&id, &body)?.members);
    }
    Ok(out)
}

/// What a group clone made.
pub struct ClonedGroup {
    pub group: String,
    pub branch: String,
    pub head: ObjectId,
    /// Member key and local volume.
    pub members: Vec<Member>,
}

/// Make local group `local` (default: `remote_group`) from a remote group: every member is
/// cloned (as `<local>-<key>` when a local name is given, else under its key), its branch is
/// set to the member commit of the group head, and the group's history is recorded.
pub fn clone_group(
    repo: &mut Repo,
    url: &str,
    remote_group: &str,
    local: Option<&str>,
    opts: &RemoteOptions,
    progress: &dyn Progress,
    guard: &dyn LiveGuard,
) -> Result<ClonedGroup> {
    names::validate("group", remote_group)?;
    let name = local.unwrap_or(remote_group).to_string();
    names::validate("group", &name)?;
    if repo.group(&name).is_ok() {
        return Err(Error::GroupExists(name));
    }
    let url = crate::remote_url::normalize(url)?;
    let (backend, seal) = ops::open_existing(&url, opts, false)?;
    let branches = remote_group_branches(backend.as_ref(), remote_group, &seal)?;
    let Some((branch, head)) = branches
        .iter()
        .find(|b| b.0 == "master")
        .or(branches.first())
        .cloned()
    else {
        return Err(RemoteError::NoVolume {
            what: "group",
            name: remote_group.to_string(),
            url,
        }
        .into());
    };
    let chain = download_chain(backend.as_ref(), &seal, remote_group, head, &|_| Ok(false))?;
    let top = &chain[0].1;
    let members: Vec<Member> = top
        .members
        .iter()
        .map(|(key, _)| Member {
            key: key.clone(),
            volume: match local {
                Some(l) if l != remote_group => format!("{l}-{key}"),
                _ => key.clone(),
            },
        })
        .collect();
    for m in &members {
        names::validate("volume", &m.volume)?;
        if repo.volume_exists(&m.volume)? {
            return Err(Error::VolumeExists(m.volume.clone()));
        }
    }
    let mut made = Vec::new();
    let result = (|| -> Result<()> {
        for m in &members {
            ops::clone(repo, &url, &m.key, Some(&m.volume), opts, progress, guard)?;
            made.push(m.volume.clone());
            let commits: Vec<ObjectId> =
                chain.iter().filter_map(|(_, c)| c.member(&m.key)).collect();
            fetch_commits(repo, backend.as_ref(), &seal, &url, &commits, progress)?;
            let target = top.member(&m.key).expect("members come from the head");
            set_member_branch(repo, &m.volume, &branch, &target, opts, guard)?;
        }
        repo.create_group(&name, &members)?;
        record_chain(repo, &name, &branch, &chain)
    })();
    if let Err(e) = result {
        let _ = repo.remove_group(&name);
        for volume in made {
            let _ = repo.remove_volume(&volume);
        }
        return Err(e);
    }
    Ok(ClonedGroup {
        group: name,
        branch,
        head,
        members,
    })
}

/// Download what `commits` reach and the local store lacks, and record it.
fn fetch_commits(
    repo: &mut Repo,
    backend: &dyn Backend,
    seal: &Seal,
    url: &str,
    commits: &[ObjectId],
    progress: &dyn Progress,
) -> Result<()> {
    let cache = cache_dir(repo.root(), url);
    let got = transfer::download_history(repo, backend, &cache, commits, seal, progress)?;
    repo.record_expired(&got.expired)?;
    repo.record_commits(&got.packs, &got.commits)
}

/// Point `branch` of `volume` at `target` with its live data (creating the branch if the
/// volume has none of that name) and make it the volume's current branch.
fn set_member_branch(
    repo: &mut Repo,
    volume: &str,
    branch: &str,
    target: &ObjectId,
    opts: &RemoteOptions,
    guard: &dyn LiveGuard,
) -> Result<()> {
    let lock = repo.lock_volume(volume)?;
    let restore = ops::restore_options(opts);
    crate::repo::guarded(guard, volume, "clone", || {
        match repo.head(volume, branch)? {
            Head::Absent => {
                let how = crate::repo::NewBranch {
                    switch: true,
                    op: "clone",
                    restore: &restore,
                    source: None,
                };
                repo.create_branch_at(&lock, branch, target, &how)
            }
            Head::At(id) if id == *target => Ok(()),
            head => repo.rewrite_branch(&lock, branch, head, target, "reset", &restore),
        }?;
        repo.set_current_branch(volume, branch)
    })
}

/// Record the group commits of `chain` and point the group's `branch` at the first.
fn record_chain(
    repo: &mut Repo,
    name: &str,
    branch: &str,
    chain: &[(ObjectId, GroupCommit)],
) -> Result<()> {
    repo.record_group_chain(name, branch, chain)
}
