//! The remote layer's typed error: what went wrong talking to a remote, as variants callers
//! match on (not found, bad data naming the key or object, refused, conflict naming both
//! ids, authentication, protocol, limit, transport, setup). Wrapped as `Error::Remote`.
//! Must not hold errors of the local metadata (unknown remote names, bad URLs: those are
//! `Error` variants, since `repo` may not import this layer).

use crate::remote::transfer::RejectReason;
use crate::remote::FORMAT_KEY;
use crate::store::ObjectId;

/// An error from a remote operation. Each message names the remote, key or object at fault.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    // --- Not on the remote.
    /// The location has no format marker.
    #[error("{url} is not a dvol remote{}", if *.push_first { " (no dvol-remote.json); push to it first" } else { "" })]
    NotARemote { url: String, push_first: bool },
    /// The remote has no such branch (`what`: "branch" or "group branch").
    #[error("remote {remote} has no {what} {name}")]
    NoBranch {
        remote: String,
        what: &'static str,
        name: String,
    },
    /// The remote has no such volume or group (`what`: "volume" or "group").
    #[error("remote {what} {name} does not exist at {url}")]
    NoVolume {
        what: &'static str,
        name: String,
        url: String,
    },
    /// An object a ref reaches is not on the remote.
    #[error("object {0} is missing from the remote")]
    MissingObject(ObjectId),
    /// An object is in no pack index of the remote; `note` says what was stopped.
    #[error("the remote is incomplete: {what} {id} is not in any pack index{note}")]
    Unindexed {
        what: &'static str,
        id: ObjectId,
        note: &'static str,
    },
    /// A key the remote's other keys name is absent.
    #[error("the remote lacks {what} ({key})")]
    MissingKey { what: String, key: String },

    // --- Bad data on the remote.
    /// A key holds a value that does not parse (`why` completes "remote KEY ...").
    #[error("remote {key} {why}")]
    BadRecord { key: String, why: String },
    /// A pack index that does not parse.
    #[error("remote pack index {name} is invalid: {why}")]
    BadIndex { name: String, why: String },
    /// The format marker does not parse.
    #[error("{remote}: {FORMAT_KEY} is not a dvol remote marker: {why}")]
    BadMarker { remote: String, why: String },
    /// The format marker could not be created (another writer raced and vanished).
    #[error("{remote}: cannot create {FORMAT_KEY}")]
    MarkerNotCreated { remote: String },
    /// The remote has a layout this dvol does not read.
    #[error("{remote} has remote format {format} version {version}; this dvol reads dvol-remote version {}", crate::remote::REMOTE_VERSION)]
    WrongFormat {
        remote: String,
        format: String,
        version: u32,
    },
    /// A read returned fewer bytes than asked for.
    #[error("{remote}: short read of {key} ({got} bytes instead of {want})")]
    ShortRead {
        remote: String,
        key: String,
        got: u64,
        want: u64,
    },
    /// A key or prefix outside the remote layout (`what`: "key" or "prefix").
    #[error("invalid remote {what} {key:?}")]
    BadKey { what: &'static str, key: String },

    // --- Refused.
    /// The remote answered a request with an error (its own words).
    #[error("remote error: {0}")]
    Server(String),
    /// The server's scope check refused a write (server side; its words go to the client).
    #[error("{0}")]
    Denied(String),
    /// The HTTP remote wants a (different) token.
    #[error("{url} refused access (401 Unauthorized): {}; the token is missing or wrong", if *.token_given { "the token in DVOL_TOKEN is wrong" } else { "the token is missing (set DVOL_TOKEN)" })]
    Unauthorized { url: String, token_given: bool },
    /// The HTTP remote refused the token's scope.
    #[error("remote {url}: {why}")]
    Forbidden { url: String, why: String },
    /// Push found a corrupt local object and sent no ref.
    #[error("push refused: local object {id} is corrupt ({detail}); no ref was moved. Run `dvol fsck`; a host with a good copy can `dvol push --repair`")]
    CorruptLocal { id: ObjectId, detail: String },
    /// Remote gc over a carrier that cannot list or delete.
    #[error("{remote}: remote gc (prune --remote) is supported on path and s3:// remotes only")]
    GcUnsupported { remote: String },
    /// Remote gc of an encrypted remote.
    #[error("{url} is encrypted: prune --remote does not support encrypted remotes yet")]
    GcEncrypted { url: String },

    // --- Conflicts.
    /// Pull found histories that diverged.
    #[error("Cannot pull {remote}/{branch} into {volume}/{branch}: the histories have diverged (not a fast-forward). Commit ids: local {}, remote {}. Keep your work on a new branch (dvol checkout -b NAME), then dvol reset --hard {} on {branch}, or push --force to overwrite the remote", short(.local), short(.theirs), short(.theirs))]
    Diverged {
        remote: String,
        volume: String,
        branch: String,
        local: ObjectId,
        theirs: ObjectId,
    },
    /// Group pull found group histories that diverged.
    #[error("Cannot pull group {group}/{branch}: the histories have diverged (local {}, remote {}); keep your work on a new group branch (dvol group checkout NAME -b BRANCH), or push --force to overwrite the remote", .local.as_ref().map(short).unwrap_or_default(), short(.theirs))]
    GroupDiverged {
        group: String,
        branch: String,
        local: Option<ObjectId>,
        theirs: ObjectId,
    },
    /// Pull into live data with uncommitted changes.
    #[error("Cannot pull into {volume}/{branch}: the live data has uncommitted changes ({count} path{}, e.g. {example}); commit them (dvol commit -m MSG) or discard them (dvol reset --hard HEAD) first", if *.count == 1 { "" } else { "s" })]
    Uncommitted {
        volume: String,
        branch: String,
        count: usize,
        example: String,
    },
    /// Group pull with a member's live data changed.
    #[error("Cannot pull group {group}: member {member} has uncommitted changes (e.g. {example}); commit the group or reset it first")]
    GroupUncommitted {
        group: String,
        member: String,
        example: String,
    },
    /// A clone resumed into a volume that is the interrupted clone of something else.
    #[error("volume {local} is an interrupted clone of volume {was_volume} from {was_url}, not of {remote_volume} from {url}; finish it with `dvol clone {was_url} {was_volume} {local}` or remove it with `dvol rm -f {local}`")]
    OtherClone {
        local: String,
        was_volume: String,
        was_url: String,
        remote_volume: String,
        url: String,
    },
    /// A resumed clone met a branch with uncommitted changes it would overwrite (`clone`:
    /// "the clone of volume V" or "the clone of group G").
    #[error("Cannot resume {clone}: volume {volume} has uncommitted changes on branch {branch} (e.g. {example}) that the clone would overwrite; commit them on another branch or reset them, then run the clone again")]
    ResumeUncommitted {
        clone: String,
        volume: String,
        branch: String,
        example: String,
    },
    /// A resumed clone met a branch at a commit the remote does not have.
    #[error("Cannot resume {clone}: branch {branch} of volume {volume} is at {}, a commit the remote does not have (made after the clone was interrupted); the clone would drop it: move that work to another branch and reset {branch} to the remote's commit, then run the clone again", short(head))]
    ResumeLocalCommits {
        clone: String,
        volume: String,
        branch: String,
        head: ObjectId,
    },
    /// A group push stopped because a member's push was rejected.
    #[error("group push of {group}/{branch}: member {member} was rejected ({reason}); the group ref was not moved")]
    MemberRejected {
        group: String,
        branch: String,
        member: String,
        reason: RejectReason,
    },

    // --- Nothing to do, or a layout the command cannot use.
    /// A branch without commits named for push.
    #[error("branch {0} has no commits to push (run dvol commit first)")]
    NothingToPush(String),
    /// A group branch without a group commit named for push.
    #[error(
        "group {group} branch {branch} has no group commit to push (run dvol group commit first)"
    )]
    NoGroupCommitToPush { group: String, branch: String },
    /// A group member whose remote volume is not its member key.
    #[error("member {member} pushes to remote volume {remote_volume}, not to its member key {key}: a group's members are stored under their keys (dvol group remote)")]
    MemberKey {
        member: String,
        remote_volume: String,
        key: String,
    },
    /// Group members whose remote of one name points at different places.
    #[error("remote {remote} of {first_volume} is {first_url} but of {volume} is {url}: a group is pushed to one remote (dvol group remote add)")]
    SplitRemote {
        remote: String,
        first_volume: String,
        first_url: String,
        volume: String,
        url: String,
    },
    /// A group with no members.
    #[error("a group has at least one member")]
    EmptyGroup,

    // --- Limits.
    /// A range read larger than memory allows.
    #[error("range of {0} bytes is too large")]
    RangeTooLarge(u64),
    /// A response over the client's limit.
    #[error("{url} sent a response over {limit} bytes")]
    ResponseTooLarge { url: String, limit: usize },
    /// A group history longer than dvol walks.
    #[error("group {group} has more than {limit} group commits on the remote")]
    TooManyGroupCommits { group: String, limit: usize },

    // --- Protocol.
    /// A frame that does not decode.
    #[error("malformed protocol message: {0}")]
    Malformed(String),
    /// A well-formed answer of the wrong kind.
    #[error("unexpected response from remote: {0}")]
    UnexpectedResponse(String),
    /// A greeting of the wrong kind.
    #[error("{remote}: unexpected greeting {greeting}")]
    UnexpectedGreeting { remote: String, greeting: String },
    /// The remote dvol speaks another protocol version.
    #[error("{remote}: remote dvol speaks protocol {theirs}, this dvol speaks {ours}")]
    ProtocolVersion {
        remote: String,
        theirs: u32,
        ours: u32,
    },
    /// An answer of the wrong length.
    #[error("remote returned {got} bytes of {key} instead of {want}")]
    WrongLength { key: String, got: u64, want: u64 },

    // --- Transport.
    /// The carrier failed (network, HTTP client, object store); `remote` says where and
    /// what was being done.
    #[error("{remote}: {detail}")]
    Transport { remote: String, detail: String },
    /// The ssh connection broke.
    #[error("connection to {remote} failed while {what}: {detail}")]
    ConnectionLost {
        remote: String,
        what: String,
        detail: String,
    },
    /// The HTTP remote answered a status other than success, 401 and 403.
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: String,
        body: String,
    },
    /// Reading or writing the stdio of `dvol serve` failed.
    #[error("{what}: {source}")]
    Stdio {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The S3 conditional-write probe failed (its error, kept as text for the process).
    #[error("{0}")]
    CasProbe(String),

    // --- Setup of a client or server.
    /// A client or server could not start: a TLS file, a token file, a runtime, a socket,
    /// the ssh command. `what` names it.
    #[error("{what}: {detail}")]
    Setup { what: String, detail: String },
}

/// The 12-digit form of an id in messages.
fn short(id: &ObjectId) -> String {
    id.to_hex()[..12].to_string()
}

impl From<RemoteError> for crate::Error {
    fn from(e: RemoteError) -> Self {
        crate::Error::Remote(Box::new(e))
    }
}

impl RemoteError {
    /// A client or server that could not start: `what` names the file, socket or runtime.
    pub(crate) fn setup(what: impl Into<String>, detail: impl std::fmt::Display) -> crate::Error {
        RemoteError::Setup {
            what: what.into(),
            detail: detail.to_string(),
        }
        .into()
    }

    /// A value under `key` that does not parse; `why` completes "remote KEY ...".
    pub(crate) fn bad_record(key: impl Into<String>, why: impl Into<String>) -> crate::Error {
        RemoteError::BadRecord {
            key: key.into(),
            why: why.into(),
        }
        .into()
    }

    /// The carrier to `remote` failed.
    pub(crate) fn transport(
        remote: impl Into<String>,
        detail: impl std::fmt::Display,
    ) -> crate::Error {
        RemoteError::Transport {
            remote: remote.into(),
            detail: detail.to_string(),
        }
        .into()
    }
}
