//! The library's typed error. Every variant names the thing that is wrong (a volume, a branch,
//! an object id, a path) so the CLI can print it as one actionable line. The CLI wraps these in
//! `anyhow` at the edge; the library never prints.

use std::path::PathBuf;

/// Errors from any dvol library operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("volume {0} already exists")]
    VolumeExists(String),
    #[error("{0} does not exist")]
    NoSuchVolume(String),
    #[error("No active volume: use dvol switch to choose one")]
    NoActiveVolume,
    #[error("Cannot switch to a non-existing branch {0}")]
    NoSuchBranch(String),
    #[error("Cannot create existing branch {0}")]
    BranchExists(String),
    #[error("You must commit ('dvol commit') before you can branch ('dvol checkout -b')")]
    NoCommitYet,
    #[error("Cannot delete the current branch {0}")]
    DeleteCurrentBranch(String),
    #[error("tag {0} already exists")]
    TagExists(String),
    #[error("tag {0} does not exist")]
    NoSuchTag(String),
    #[error("unknown revision {0:?}: not a branch, tag, or commit id")]
    UnknownRef(String),
    #[error("ambiguous commit prefix {0:?}: give more characters")]
    AmbiguousRef(String),
    #[error("commit {id} was expired by prune; its data is gone")]
    Expired { id: String },
    #[error("object {id} is missing from the store")]
    MissingObject { id: String },
    #[error("object {id} is corrupt ({detail})")]
    CorruptObject { id: String, detail: String },
    #[error("tree {id} nests directories deeper than {limit} levels, dvol's limit")]
    TooDeep { id: String, limit: u32 },
    #[error("cannot restore {path}: it needs {need} bytes and the file system has {free} free")]
    NoSpace { path: PathBuf, need: u64, free: u64 },
    #[error("store format: {0}")]
    Format(String),
    #[error("cannot snapshot {path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error(
        "volume {volume} is locked by another dvol command (waited {waited_secs}s); try again"
    )]
    Locked { volume: String, waited_secs: u64 },
    #[error(
        "an interrupted {op} of {volume}/{branch} to {target} is pending; run `dvol reset --hard {target}` to finish it"
    )]
    Pending {
        op: String,
        volume: String,
        branch: String,
        target: String,
    },
    #[error("unknown config key {0:?} (known: user.name, user.email)")]
    UnknownConfigKey(String),
    #[error("docker: {0}")]
    Docker(String),
    #[error("volume {volume} is in use by {containers}: stop them first, or use dvol rm -f {volume} to stop them and delete the volume")]
    VolumeInUse { volume: String, containers: String },
    /// An operation failed while dvol had containers stopped; `note` says what became of them.
    #[error("{error} ({note})")]
    Interrupted { error: Box<Error>, note: String },
    /// A compare-and-swap of a branch head found another value than the one the command read.
    #[error("head of {volume}/{branch} moved from {expected} to {found} while this command ran; nothing changed")]
    HeadMoved {
        volume: String,
        branch: String,
        expected: String,
        found: String,
    },
    /// A ref or commit row in the metadata does not parse or does not match its object.
    #[error("{what}: {detail}")]
    CorruptRef { what: String, detail: String },
    /// gc found metadata it cannot trust and deleted nothing.
    #[error("gc refused to run, nothing was deleted: {}; run `dvol fsck` for the full list", problem_list(.problems))]
    GcRefused { problems: Vec<String> },
    /// An empty revision (or one with nothing before `^`/`~`).
    #[error("empty revision {0:?}: name a branch, tag, commit id or HEAD")]
    EmptyRevision(String),
    #[error("{path} changed while dvol was using it (replaced by another kind of entry); nothing outside the volume was touched: retry, with the containers writing it stopped if it keeps happening")]
    Changed { path: PathBuf },
    #[error("{path} is nested more than {limit} directories deep; dvol does not store or write deeper trees")]
    PathTooDeep { path: PathBuf, limit: usize },
    /// A revision names a branch that exists but has no commit yet.
    #[error("{spec}: branch {branch} has no commits yet")]
    NoCommits { spec: String, branch: String },
    /// A revision walks back past the first commit (`HEAD^` of a root commit).
    #[error("{spec}: {what} {short_id} has no parent")]
    NoParent {
        spec: String,
        what: &'static str,
        short_id: String,
    },
    /// A branch named for deletion does not exist.
    #[error("branch {0} does not exist")]
    BranchMissing(String),
    /// `rm` of a volume that does not exist.
    #[error("Volume '{0}' does not exist, cannot remove it")]
    RemoveMissingVolume(String),
    /// A volume made from another that has nothing committed.
    #[error("volume {0} has no commits yet: commit before creating a volume from it")]
    SourceHasNoCommits(String),
    /// A group member cannot be removed on its own.
    #[error("volume {volume} is a member of group {group}: remove the group first (dvol group rm {group})")]
    VolumeInGroup { volume: String, group: String },
    /// A clone method name dvol does not know.
    #[error("unknown clone method {0:?} (known: auto, full, reflink, overlay)")]
    UnknownCloneMethod(String),
    /// A clone method forced where the file system or privileges cannot do it.
    #[error("clone method {method}: {why} under {root}; use --clone-method auto or full")]
    CloneMethodUnavailable {
        method: String,
        why: String,
        root: PathBuf,
    },
    /// `prune` without any keep rule.
    #[error(
        "prune needs at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly"
    )]
    NoKeepRule,
    /// A container guard returned without running the operation it was given.
    #[error("{what} of {volumes} was not run")]
    NotRun { what: String, volumes: String },
    /// An object larger than the store's record limit.
    #[error("object {id} is {size} bytes, over the limit")]
    ObjectTooLarge { id: String, size: usize },
    /// zstd failed to compress.
    #[error("compression failed: {0}")]
    Compress(#[source] std::io::Error),
    /// A worker thread could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The background pack writer failed (its error as text: it crossed a thread), stopped
    /// or panicked.
    #[error("{0}")]
    PackWriter(String),
    /// A directory entry name that is not one path component.
    #[error("refusing entry name {name:?} in {}", .dir.display())]
    BadEntryName { name: String, dir: PathBuf },
    /// The live data of an overlay clone whose mount is gone and could not be made again.
    #[error("the live data at {} is a thin clone whose overlay is not mounted and could not be mounted again ({why}); run dvol as root", .path.display())]
    OverlayNotMounted { path: PathBuf, why: String },
    /// A key is missing or wrong, or sealed remote data failed authentication.
    #[error(transparent)]
    Crypt(#[from] crate::remote::crypt::CryptError),
    /// A cluster volume operation was refused or failed (issue 15).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The Docker plugin refused a request or could not start.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    /// A group of volumes cannot do what was asked.
    #[error(transparent)]
    Group(Box<crate::repo::GroupError>),
    /// A remote operation failed (see [`RemoteError`](crate::remote::RemoteError) for the kinds).
    #[error(transparent)]
    Remote(Box<crate::remote::RemoteError>),
    /// A remote name this volume does not have.
    #[error("No such remote: '{0}'")]
    NoSuchRemote(String),
    /// `remote add` of a name the volume already has.
    #[error("remote {0} already exists")]
    RemoteExists(String),
    /// A remote URL that does not parse.
    #[error("invalid remote URL {url:?}: {why}")]
    BadRemoteUrl { url: String, why: String },
    /// A remote path that cannot be made absolute.
    #[error("cannot resolve {url}: {source}")]
    Unresolvable {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::repo::GroupError> for Error {
    fn from(e: crate::repo::GroupError) -> Error {
        Error::Group(Box::new(e))
    }
}

/// `N problem(s) in the metadata (a; b)`.
fn problem_list(problems: &[String]) -> String {
    let s = if problems.len() == 1 { "" } else { "s" };
    format!(
        "{} problem{s} in the metadata ({})",
        problems.len(),
        problems.join("; ")
    )
}

/// Shorthand used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path and a short description of the failed operation to an I/O error.
pub trait IoContext<T> {
    fn at(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, context: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            context,
            path: path.into(),
            source,
        })
    }
}
