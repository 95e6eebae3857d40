//! The sessions a host's plugin holds, kept in its root (one metadata row) so that a plugin
//! restarted while containers run finds its leases and their mounts again instead of letting
//! the leases expire under running containers. Written on every Mount, Unmount and state
//! change; read once at start. Owns only that record: what to do with a saved session is in
//! the parent module. Must not talk to etcd.

use super::lease::Held;
use crate::repo::{db, Repo};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Root metadata key holding every saved session (JSON, volume -> session).
const META_SESSIONS: &str = "cluster.sessions";

/// What a restarted plugin needs to take a session back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    pub lease: Held,
    /// Docker's mount ids of the volume on this host (empty: unmounted, being released).
    pub mounts: BTreeSet<String>,
}

/// Every saved session of the root.
pub fn load(repo: &Repo) -> Result<BTreeMap<String, Saved>> {
    Ok(db::get_meta(repo.conn(), META_SESSIONS)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

/// Replace the saved sessions.
pub fn store(repo: &Repo, sessions: &BTreeMap<String, Saved>) -> Result<()> {
    let json = serde_json::to_string(sessions).expect("sessions serialize");
    db::set_meta(repo.conn(), META_SESSIONS, &json)
}
