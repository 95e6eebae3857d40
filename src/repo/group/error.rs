//! The errors of groups of volumes (local and on remotes): what is wrong, naming the group,
//! the member and the branch. Owns no logic.

use crate::store::ObjectId;

/// The first 12 hex digits of a group commit id, or nothing.
fn short(id: Option<&ObjectId>) -> String {
    id.map_or_else(String::new, |i| i.to_hex()[..12].to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("group {0} does not exist")]
    Missing(String),
    #[error("group {0} already exists")]
    Exists(String),
    #[error("group {0} needs at least one volume")]
    NoVolumes(String),
    #[error("group {group}: at most {max} volumes")]
    TooMany { group: String, max: usize },
    #[error("group {group}: volume {volume} is named twice")]
    NamedTwice { group: String, volume: String },
    #[error(
        "group {group}: volumes {first} (branch {first_branch}) and {volume} (branch {branch}) \
         are on different branches; check out the same branch in each first"
    )]
    DifferentBranches {
        group: String,
        first: String,
        first_branch: String,
        volume: String,
        branch: String,
    },
    #[error("group {group} has no member {key} (a group commit names it)")]
    NoMember { group: String, key: String },
    #[error(
        "group commit {} of group {group} has no member {member}",
        short(Some(id))
    )]
    CommitLacksMember {
        group: String,
        id: ObjectId,
        member: String,
    },
    #[error("volume {0} is not locked by this group")]
    NotLocked(String),
    #[error("{spec}: group {group} branch {branch} has no group commit yet")]
    Unborn {
        spec: String,
        group: String,
        branch: String,
    },
    #[error(
        "group {group}: member {volume} is on branch {current}, the group on {branch}; run \
         `dvol group checkout {group} {branch}` (or check out {branch} in {volume})"
    )]
    MemberOffBranch {
        group: String,
        volume: String,
        current: String,
        branch: String,
    },
    #[error("the scan of member {0} panicked")]
    ScanPanicked(String),
    #[error("Cannot create existing branch {branch} in member {volume}")]
    MemberBranchExists { volume: String, branch: String },
    #[error("group {group}: member {volume} has no branch {branch}")]
    MemberLacksBranch {
        group: String,
        volume: String,
        branch: String,
    },
    #[error(
        "group {group} branch {branch} has no group commit to push (run dvol group commit first)"
    )]
    NothingToPush { group: String, branch: String },
    #[error(
        "member {volume} pushes to remote volume {remote_volume}, not to its member key {key}: \
         a group's members are stored under their keys (dvol group remote)"
    )]
    MemberRemoteVolume {
        volume: String,
        remote_volume: String,
        key: String,
    },
    #[error(
        "group push of {group}/{branch}: member {volume} was rejected ({reason}); the group \
         ref was not moved"
    )]
    MemberRejected {
        group: String,
        branch: String,
        volume: String,
        reason: String,
    },
    #[error(
        "remote {remote} of {first} is {first_url} but of {volume} is {url}: a group is pushed \
         to one remote (dvol group remote add)"
    )]
    RemoteUrlsDiffer {
        remote: String,
        first: String,
        first_url: String,
        volume: String,
        url: String,
    },
    #[error("group {group} has more than {max} group commits on the remote")]
    TooManyRemoteCommits { group: String, max: usize },
    #[error("the remote lacks group commit {id} ({key})")]
    RemoteLacksCommit { id: ObjectId, key: String },
    #[error("remote key {0} is not a group commit id")]
    BadRemoteKey(String),
    #[error("remote group commit {0} vanished")]
    RemoteCommitVanished(String),
    #[error("remote {remote} has no group branch {group}/{branch}")]
    NoRemoteBranch {
        remote: String,
        group: String,
        branch: String,
    },
    #[error(
        "group {group} is an interrupted clone of group {remote_group} from {url}; finish it \
         with `dvol group clone {url} {remote_group} {group}`"
    )]
    OtherClone {
        group: String,
        url: String,
        remote_group: String,
    },
    #[error("remote group {group} does not exist at {url}")]
    NoRemoteGroup { group: String, url: String },
    #[error(
        "Cannot pull group {group}: member {volume} has uncommitted changes (e.g. {path}); \
         commit the group or reset it first"
    )]
    MemberUncommitted {
        group: String,
        volume: String,
        path: String,
    },
    #[error(
        "Cannot pull group {group}/{branch}: the histories have diverged (local {}, remote {}); \
         keep your work on a new group branch (dvol group checkout NAME -b BRANCH), or push \
         --force to overwrite the remote", short(ours.as_ref()), short(Some(theirs))
    )]
    Diverged {
        group: String,
        branch: String,
        ours: Option<ObjectId>,
        theirs: ObjectId,
    },
    #[error("the member list of group {0} on the remote changed during the push; push again")]
    MembersMoved(String),
    #[error("group {0} has no member list on the remote (groups/{0}/members); refused to use its group commits")]
    NoRemoteMembers(String),
    #[error(
        "remote group commit {id} of group {group} names volume {key}, which is not in the \
         group's member list on the remote; refused"
    )]
    UnlistedMember {
        group: String,
        id: ObjectId,
        key: String,
    },
}
