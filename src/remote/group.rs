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
//!
//! Every push first writes `groups/<group>/members` (the member keys, in the clear, by
//! compare-and-swap even when unchanged): `dvol serve` authorizes a group key for a token only
//! if the token covers every member listed there, so a token that misses one is refused, naming
//! it, before anything is sent; and clone and pull refuse a group commit naming a member key
//! that list lacks (the server checks a token against the members a commit names only on plain
//! remotes, where it can read them). Clone takes every group branch and records a clone-in-progress
//! row first (`group_clones`): a killed clone is finished by running it again, keeping the
//! members it has.

use super::crypt::{self, Seal};
use super::ops::{self, PushFlags, PushWhat, RemoteOptions};
use super::transfer::{self, PushReport, PushStatus, RejectReason};
use super::{cache_dir, Backend, CasOutcome};
use crate::progress::Progress;
use crate::repo::Head;
use crate::repo::{GroupCommit, GroupError, LiveGuard, Member, Repo};
use crate::store::ObjectId;
use crate::{names, Error, Result};
use std::collections::HashSet;

/// Most group commits one push or clone walks (a hostile remote's parent chain is bounded).
const MAX_GROUP_COMMITS: usize = 1 << 20;

/// Key of a group branch on a remote.
pub fn group_ref_key(group: &str, branch: &str) -> String {
    format!("groups/{group}/refs/{branch}")
}

/// Key of a group's member list on a remote: its member keys (the remote volumes), one a
/// line, in the clear (the volume names are in the clear in `refs/` too). `dvol serve` reads
/// it to decide whether a scoped token covers the group.
pub fn members_key(group: &str) -> String {
    format!("groups/{group}/members")
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
    let head =
        repo.group_head(name, &branch)?
            .commit()
            .ok_or_else(|| GroupError::NothingToPush {
                group: name.to_string(),
                branch: branch.clone(),
            })?;
    let url = common_url(repo, &info, remote)?;
    for m in &info.members {
        let remote_volume = repo.remote_volume(&m.volume, remote)?;
        if remote_volume != m.key {
            return Err(GroupError::MemberRemoteVolume {
                volume: m.volume.clone(),
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
    // First, so a token that does not cover every member is refused before anything moves.
    publish_members(backend.as_ref(), name, &info)?;
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
            return Err(GroupError::MemberRejected {
                group: name.to_string(),
                branch: branch.clone(),
                volume: m.volume.clone(),
                reason: reason.to_string(),
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

/// Write the group's member list on the remote (by compare-and-swap) unless it is already
/// there. A refusal names the group and the member the token does not cover.
fn publish_members(backend: &dyn Backend, name: &str, info: &crate::repo::GroupInfo) -> Result<()> {
    let key = members_key(name);
    let mut keys: Vec<&str> = info.members.iter().map(|m| m.key.as_str()).collect();
    keys.sort_unstable();
    let value: Vec<u8> = keys
        .iter()
        .flat_map(|k| format!("{k}\n").into_bytes())
        .collect();
    // Written even when unchanged: `dvol serve` checks the token against every member here,
    // so a token that misses one is refused before any member is sent.
    let current = backend.get(&key)?;
    match backend.cas(&key, current.as_deref(), value)? {
        CasOutcome::Updated => Ok(()),
        CasOutcome::Conflict { .. } => Err(GroupError::MembersMoved(name.to_string()).into()),
    }
}

/// The URL of remote `remote` of every member (they must agree).
fn common_url(repo: &Repo, info: &crate::repo::GroupInfo, remote: &str) -> Result<String> {
    let volumes = info.volumes();
    let mut url: Option<(String, &str)> = None;
    for volume in &volumes {
        let u = repo.remote_url(volume, remote)?;
        match &url {
            Some((first, v)) if *first != u => {
                return Err(GroupError::RemoteUrlsDiffer {
                    remote: remote.to_string(),
                    first: (*v).to_string(),
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
        .ok_or_else(|| GroupError::NoVolumes(info.name.clone()).into())
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

/// Refuse `chain` unless every member key its group commits name is in the group's member list
/// on the remote: a token that covers only some volumes could otherwise write a group commit
/// naming others, and a clone or pull would reset those. The list is in the clear on every
/// remote, so this check applies to encrypted remotes too.
fn check_listed(
    backend: &dyn Backend,
    group: &str,
    chain: &[(ObjectId, GroupCommit)],
) -> Result<()> {
    let listed = backend
        .get(&members_key(group))?
        .map(|v| super::scope::parse_members(&v))
        .ok_or_else(|| GroupError::NoRemoteMembers(group.to_string()))?;
    for (id, c) in chain {
        if let Some((key, _)) = c.members.iter().find(|(k, _)| !listed.contains(k)) {
            return Err(GroupError::UnlistedMember {
                group: group.to_string(),
                id: *id,
                key: key.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// Download the group commits `head` reaches that `have` does not, each checked against its
/// id; newest first.
pub(super) fn download_chain(
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
            return Err(GroupError::TooManyRemoteCommits {
                group: group.to_string(),
                max: MAX_GROUP_COMMITS,
            }
            .into());
        }
        let key = group_commit_key(group, seal, &id);
        let stored = backend
            .get(&key)?
            .ok_or_else(|| GroupError::RemoteLacksCommit {
                id,
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
    let url = common_url(repo, &info, remote)?;
    let encrypted = repo.remote_encrypted(&info.members[0].volume, remote)?;
    let (backend, seal) = ops::open_existing(&url, opts, encrypted)?;
    let key = group_ref_key(name, &branch);
    let stored = backend
        .get(&key)?
        .ok_or_else(|| GroupError::NoRemoteBranch {
            remote: remote.to_string(),
            group: name.to_string(),
            branch: branch.clone(),
        })?;
    let theirs = seal.parse_ref(&ref_owner(name), &branch, &key, &stored)?;
    let seen = repo.group_head(name, &branch)?;
    let ours = seen.commit();
    if let Some(o) = ours {
        if group_descends(repo, name, &[], &theirs, &o)? {
            return Ok(GroupPulled::UpToDate);
        }
    }
    let have = |id: &ObjectId| repo.has_group_commit(name, id);
    let chain = download_chain(backend.as_ref(), &seal, name, theirs, &have)?;
    check_listed(backend.as_ref(), name, &chain)?;
    if let Some(o) = ours {
        if !group_descends(repo, name, &chain, &o, &theirs)? {
            return Err(GroupError::Diverged {
                group: name.to_string(),
                branch,
                ours,
                theirs,
            }
            .into());
        }
    }
    for m in &info.members {
        let changes = repo.live_changes(&m.volume, &branch)?;
        if !changes.is_empty() {
            return Err(GroupError::MemberUncommitted {
                group: name.to_string(),
                volume: m.volume.clone(),
                path: changes[0].path.clone(),
            }
            .into());
        }
        let commits: Vec<ObjectId> = chain.iter().filter_map(|(_, c)| c.member(&m.key)).collect();
        fetch_commits(repo, backend.as_ref(), &seal, &url, &commits, progress)?;
    }
    repo.record_group_commits(name, &chain)?;
    crate::failpoint::pause("group-pull.before-reset");
    repo.reset_group_hard_from(name, &theirs.to_hex(), Some((&branch, seen)), guard)?;
    Ok(GroupPulled::FastForward {
        old: ours,
        new: theirs,
    })
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
            .ok_or_else(|| GroupError::BadRemoteKey(key.clone()))?;
        let body = backend
            .get(&key)?
            .ok_or_else(|| GroupError::RemoteCommitVanished(key.clone()))?;
        out.extend(GroupCommit::decode(&id, &body)?.members);
    }
    Ok(out)
}

/// What a group clone made.
pub struct ClonedGroup {
    pub group: String,
    /// The group's current branch (`master` if the remote has it).
    pub branch: String,
    pub head: ObjectId,
    /// Every group branch cloned, with its head.
    pub branches: Vec<(String, ObjectId)>,
    /// Member key and local volume.
    pub members: Vec<Member>,
    /// Bytes this run downloaded (a resumed clone downloads only what it lacks).
    pub bytes: u64,
    /// Whether this run finished an interrupted clone.
    pub resumed: bool,
}

/// Make local group `local` (default: `remote_group`) from a remote group, with every group
/// branch: every member is cloned (as `<local>-<key>` when a local name is given, else under
/// its key), each member branch is set to the member commit of its group branch's head, the
/// current branch is `master` (or the first), and the group's history is recorded.
///
/// A clone-in-progress record is written before the first member is made and dropped when
/// the group exists, so a clone killed half-way is finished by running it again: members
/// already cloned are kept (and not downloaded again), an interrupted member clone resumes.
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
    let url = crate::remote_url::normalize(url)?;
    let resumed = match repo.pending_group_clone(&name)? {
        Some((u, rg)) if u == url && rg == remote_group => true,
        Some((u, rg)) => {
            return Err(GroupError::OtherClone {
                group: name,
                url: u,
                remote_group: rg,
            }
            .into())
        }
        None if repo.group(&name).is_ok() => return Err(GroupError::Exists(name).into()),
        None => false,
    };
    let (backend, seal) = ops::open_existing(&url, opts, false)?;
    let branches = remote_group_branches(backend.as_ref(), remote_group, &seal)?;
    let Some((branch, head)) = branches
        .iter()
        .find(|b| b.0 == "master")
        .or(branches.first())
        .cloned()
    else {
        return Err(GroupError::NoRemoteGroup {
            group: remote_group.to_string(),
            url,
        }
        .into());
    };
    // Every group commit of every branch, each downloaded once and checked against its id.
    let mut chain: Vec<(ObjectId, GroupCommit)> = Vec::new();
    for (_, h) in &branches {
        let known: HashSet<ObjectId> = chain.iter().map(|c| c.0).collect();
        let have = |id: &ObjectId| -> Result<bool> { Ok(known.contains(id)) };
        chain.extend(download_chain(
            backend.as_ref(),
            &seal,
            remote_group,
            *h,
            &have,
        )?);
    }
    check_listed(backend.as_ref(), remote_group, &chain)?;
    let commit_of = |id: &ObjectId| {
        chain
            .iter()
            .find(|c| c.0 == *id)
            .map(|c| &c.1)
            .expect("every branch head was downloaded")
    };
    let top = commit_of(&head);
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
    // Which members this run must clone; one that exists must be this clone's own work.
    let mut fresh = Vec::new();
    for m in &members {
        names::validate("volume", &m.volume)?;
        let exists = repo.volume_exists(&m.volume)?;
        if exists && !(resumed && cloned_from(repo, m, &url)?) {
            return Err(Error::VolumeExists(m.volume.clone()));
        }
        fresh.push(!exists);
    }
    for (b, h) in &branches {
        for (key, _) in &commit_of(h).members {
            if !members.iter().any(|m| m.key == *key) {
                return Err(GroupError::NoMember {
                    group: format!("{remote_group} (branch {branch}, beside branch {b})"),
                    key: key.clone(),
                }
                .into());
            }
        }
    }
    repo.begin_group_clone(&name, &url, remote_group)?;
    let mut bytes = 0;
    for (m, fresh) in members.iter().zip(fresh) {
        if fresh || repo.pending_clone(&m.volume)?.is_some() {
            let cloned = ops::clone(repo, &url, &m.key, Some(&m.volume), opts, progress, guard)?;
            bytes += cloned.report.bytes;
        }
        let commits: Vec<ObjectId> = chain.iter().filter_map(|(_, c)| c.member(&m.key)).collect();
        bytes += fetch_commits(repo, backend.as_ref(), &seal, &url, &commits, progress)?;
        crate::failpoint::hit("group-clone.before-member-branches");
        for (b, h) in &branches {
            if let Some(target) = commit_of(h).member(&m.key) {
                let to = MemberBranch {
                    group: &name,
                    volume: &m.volume,
                    branch: b,
                    target: &target,
                    current: *b == branch,
                };
                set_member_branch(repo, &to, opts, guard)?;
            }
        }
        crate::failpoint::hit("group-clone.after-member");
    }
    if repo.group(&name).is_err() {
        repo.create_group(&name, &members)?;
    }
    repo.record_group_commits(&name, &chain)?;
    for (b, h) in &branches {
        repo.record_group_chain(&name, b, &[(*h, commit_of(h).clone())])?;
    }
    repo.finish_group_clone(&name)?;
    Ok(ClonedGroup {
        group: name,
        branch,
        head,
        branches,
        members,
        bytes,
        resumed,
    })
}

/// Is member volume `m.volume` a clone of member `m.key` from `url` (finished or not)?
fn cloned_from(repo: &Repo, m: &Member, url: &str) -> Result<bool> {
    if let Some((u, rv)) = repo.pending_clone(&m.volume)? {
        return Ok(u == url && rv == m.key);
    }
    let origin = repo
        .remotes(&m.volume)?
        .into_iter()
        .find(|(n, _)| n == "origin");
    Ok(match origin {
        Some((_, u)) => u == url && repo.remote_volume(&m.volume, "origin")? == m.key,
        None => false,
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
) -> Result<u64> {
    let cache = cache_dir(repo.root(), url);
    let got = transfer::download_history(repo, backend, &cache, commits, seal, progress)?;
    repo.record_expired(&got.expired)?;
    repo.record_commits(&got.packs, &got.commits)?;
    Ok(got.bytes)
}

/// Where a group clone puts one member branch.
struct MemberBranch<'a> {
    group: &'a str,
    volume: &'a str,
    branch: &'a str,
    target: &'a ObjectId,
    /// Whether it becomes the member's current branch.
    current: bool,
}

/// Set branch `to.branch` of member volume `to.volume` to the member commit `to.target`
/// (creating it, or resetting a branch the member clone made), under the volume lock. A
/// resumed clone meets branches the user may have used since the interruption: see
/// [`ops::check_resumable`].
fn set_member_branch(
    repo: &mut Repo,
    to: &MemberBranch,
    opts: &RemoteOptions,
    guard: &dyn LiveGuard,
) -> Result<()> {
    let lock = repo.lock_volume(to.volume)?;
    let restore = ops::restore_options(opts);
    crate::repo::guarded(guard, to.volume, "clone", || {
        match repo.head(to.volume, to.branch)? {
            Head::Absent => {
                let how = crate::repo::NewBranch {
                    switch: to.current,
                    op: "clone",
                    restore: &restore,
                    source: None,
                };
                repo.create_branch_at(&lock, to.branch, to.target, &how)
            }
            Head::At(id) if id == *to.target => Ok(()),
            head => {
                // Behind the target, or on the remote's branch (where the member clone put
                // it): anything else was done here after the interruption.
                let clone = format!("the clone of group {}", to.group);
                ops::check_resumable(repo, &clone, to.volume, to.branch, head, &|id| {
                    Ok(repo.is_ancestor(id, to.target)?
                        || ops::on_remote_branch(repo, to.volume, to.branch, id)?)
                })?;
                repo.rewrite_branch(&lock, to.branch, head, to.target, "reset", &restore)
            }
        }?;
        if to.current {
            repo.set_current_branch(to.volume, to.branch)?;
        }
        Ok(())
    })
}
