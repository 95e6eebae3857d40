//! Cluster mode's typed errors: what an operator sees when a cluster volume cannot be mounted,
//! moved or published, and why etcd could not be used. Each variant's text is a complete
//! one-line message (Docker shows it in its `Err` field, the CLI after `Error:`); callers and
//! tests match on the variant. Must not wrap errors of other layers (repository and remote
//! failures stay [`crate::Error`] variants of their own).

use std::time::Duration;

/// Why a cluster operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A host name that cannot be joined to volume names.
    #[error("host name {0:?}: use at most {max} letters, digits, - and _", max = super::MAX_HOST_LEN)]
    BadHost(String),
    /// A lease TTL too short to renew in time.
    #[error("the lease TTL must be at least {0} seconds")]
    LeaseTtl(u64),
    /// A `sync-interval` (or grace) that is not a positive duration.
    #[error("{option}={value}: give a positive number of seconds, e.g. 60s, 5m or 1h")]
    BadInterval { option: &'static str, value: String },
    /// A volume name too long for `VOLUME.HOST` remote volumes.
    #[error("cluster volume names are at most {0} characters")]
    VolumeNameTooLong(usize),
    /// A Mount of a volume the cluster does not know.
    #[error("{0} is not a cluster volume")]
    NotClusterVolume(String),
    /// Another host held the lease for the whole Mount wait.
    #[error("cluster volume {volume} is in use on {who}; waited {}s for its lease: stop the container there first", waited.as_secs())]
    HeldElsewhere {
        volume: String,
        /// `host NAME (since TIME)`, or why no holder could be named.
        who: String,
        waited: Duration,
    },
    /// This host's lease ended (expired, or taken over): it may not publish any more.
    #[error("cluster volume {volume}: this host ({host}) lost its lease; the head was not moved")]
    LeaseLost { volume: String, host: String },
    /// A Mount whose data did not arrive within its timeout (Docker gives up after about 2
    /// minutes): the transfer goes on under the lease.
    #[error("cluster volume {volume}: its data did not arrive on host {host} within {}s; the transfer goes on in the background and host {host} keeps the lease: start the container again to use it", waited.as_secs())]
    MountTimedOut {
        volume: String,
        host: String,
        waited: Duration,
    },
    /// A Mount whose data could not be brought (the lease is released).
    #[error("cluster volume {volume}: its data could not be brought here: {cause}")]
    BringFailed { volume: String, cause: String },
    /// The cluster head moved under a holder (it should not happen while the lease holds).
    #[error("cluster volume {0}: its head moved under this holder; not moved")]
    HeadMoved(String),
    /// The final commit+push of an Unmount failed: the lease is kept, retried in the background.
    #[error("cluster volume {volume}: the final push at unmount failed ({cause}); host {host} keeps its lease and the data and retries until the push succeeds, then releases it")]
    FinalPushFailed {
        volume: String,
        host: String,
        cause: String,
    },
    /// A CLI head move on a host that does not hold the volume.
    #[error("{volume} is a cluster volume held by host {holder}: its head moves only there (this host is {host}); log, diff and clone work here")]
    HeldBy {
        volume: String,
        holder: String,
        host: String,
    },
    /// A CLI head move on a host while nobody holds the volume.
    #[error("{volume} is a cluster volume not held by this host ({host}): mount it here (run its container) to move its head")]
    NotHeld { volume: String, host: String },
    /// etcd could not be reached, or refused a request.
    #[error("etcd {0}")]
    Etcd(String),
    /// etcd holds a record dvol cannot read.
    #[error("etcd {what} record: {detail}")]
    BadRecord { what: &'static str, detail: String },
    /// The shared remote refused a host's push of a cluster volume's branch.
    #[error("cluster volume {volume}: push of {branch} to {url} was rejected")]
    PushRejected {
        volume: String,
        branch: String,
        url: String,
    },
    /// A thread of the plugin could not be started.
    #[error("start the keeper thread of {volume}: {detail}")]
    Thread { volume: String, detail: String },
}
