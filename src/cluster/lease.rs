//! What the cluster keeps in etcd and the only code that moves it: the registry of cluster
//! volumes, each volume's lease (its holder, attached to an etcd lease with a TTL so it
//! vanishes when the holder stops renewing) and each volume's cluster head (the last pushed
//! commit and the host whose remote volume holds it).
//!
//! Fencing: the head moves only in a transaction that also checks that the holder key still
//! has the create revision this holder made it with. A holder whose lease expired (the key was
//! deleted, maybe re-created by another host) can therefore never move the head, whatever its
//! clock or its network says. Must not touch the repository or the remote.

use super::etcd::{Compare, Etcd, Put};
use super::ClusterError;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const VOLUMES: &str = "dvol/v1/volumes/";
const HOLDERS: &str = "dvol/v1/holders/";
const HEADS: &str = "dvol/v1/heads/";
/// A host waiting for a volume's lease says so here (attached to its own etcd lease), so a
/// holder keeping the lease through a short unmount lets go at once.
const WANTS: &str = "dvol/v1/wants/";

/// How often a waiting Mount asks again for a lease.
const POLL: Duration = Duration::from_millis(250);

fn volume_key(volume: &str) -> String {
    format!("{VOLUMES}{volume}")
}
fn holder_key(volume: &str) -> String {
    format!("{HOLDERS}{volume}")
}
fn head_key(volume: &str) -> String {
    format!("{HEADS}{volume}")
}
fn wants_key(volume: &str) -> String {
    format!("{WANTS}{volume}")
}

/// A cluster volume's registry entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    /// The host whose plugin created it.
    pub created_by: String,
    /// Seconds between background commit+push while mounted.
    pub sync_interval: u64,
}

/// Who holds a volume, as stored in its holder key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HolderRecord {
    pub host: String,
    /// RFC 3339 time the lease was taken.
    pub since: String,
}

/// A volume's cluster head: the commit every new holder starts from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterHead {
    /// Commit id, hex.
    pub commit: String,
    /// The host that pushed it (its data is in that host's remote volume).
    pub host: String,
    /// RFC 3339 time it was published.
    pub at: String,
    /// How many times the head has moved (1 for the first publish): a copy that started from
    /// head number N is `seq - N` syncs behind.
    #[serde(default)]
    pub seq: u64,
}

fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        ClusterError::BadRecord {
            what,
            detail: e.to_string(),
        }
        .into()
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// Register a volume cluster-wide; an existing registration is kept (Docker re-creates freely).
pub fn register(etcd: &Etcd, volume: &str, record: &VolumeRecord) -> Result<()> {
    let key = volume_key(volume);
    let bytes = encode(record);
    etcd.txn(&[Compare::Created(&key, 0)], &[Put::Set(&key, &bytes, 0)])?;
    Ok(())
}

/// Register a volume whose history starts at `head` (a volume made from another): the registry
/// entry and its first head in one transaction. `false` when it was registered already.
pub fn register_with_head(
    etcd: &Etcd,
    volume: &str,
    record: &VolumeRecord,
    head: &ClusterHead,
) -> Result<bool> {
    let (key, hkey) = (volume_key(volume), head_key(volume));
    let (record, head) = (encode(record), encode(head));
    let r = etcd.txn(
        &[Compare::Created(&key, 0)],
        &[Put::Set(&key, &record, 0), Put::Set(&hkey, &head, 0)],
    )?;
    Ok(r.succeeded)
}

/// The registry entry of one volume.
pub fn volume(etcd: &Etcd, volume: &str) -> Result<Option<VolumeRecord>> {
    etcd.get(&volume_key(volume))?
        .map(|kv| decode("volume", &kv.value))
        .transpose()
}

/// Every cluster volume, sorted by name.
pub fn volumes(etcd: &Etcd) -> Result<Vec<(String, VolumeRecord)>> {
    etcd.list(VOLUMES)?
        .into_iter()
        .map(|kv| {
            let name = kv.key[VOLUMES.len()..].to_string();
            Ok((name, decode("volume", &kv.value)?))
        })
        .collect()
}

/// The current holder of a volume, if any.
pub fn holder(etcd: &Etcd, volume: &str) -> Result<Option<HolderRecord>> {
    holder_within(etcd, volume, None)
}

/// [`holder`], giving up after `budget`.
pub fn holder_within(
    etcd: &Etcd,
    volume: &str,
    budget: Option<Duration>,
) -> Result<Option<HolderRecord>> {
    etcd.get_within(&holder_key(volume), budget)?
        .map(|kv| decode("holder", &kv.value))
        .transpose()
}

/// The cluster head of a volume with its etcd mod revision (0 when there is none yet).
pub fn head(etcd: &Etcd, volume: &str) -> Result<(Option<ClusterHead>, i64)> {
    match etcd.get(&head_key(volume))? {
        Some(kv) => Ok((Some(decode("head", &kv.value)?), kv.mod_revision)),
        None => Ok((None, 0)),
    }
}

/// A lease this host holds on a volume. Serializable: the plugin keeps it in its root so a
/// restarted plugin finds the leases it held ([`Held::still_ours`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Held {
    pub volume: String,
    pub host: String,
    lease_id: i64,
    /// The create revision of the holder key this host wrote: the fencing token.
    token: i64,
}

/// The message of a Mount that could not take the lease.
fn held_elsewhere(volume: &str, holder: Option<&HolderRecord>, waited: Duration) -> crate::Error {
    let who = holder.map_or_else(
        || "another host (it just changed hands)".to_string(),
        |h| format!("host {} (since {})", h.host, h.since),
    );
    ClusterError::HeldElsewhere {
        volume: volume.to_string(),
        who,
        waited,
    }
    .into()
}

/// Take a volume's lease for `host`, waiting up to `wait` for the current holder to release it
/// or for its lease to expire (`ttl` seconds without renewal). While waiting, the volume's
/// wants key names this host (a holder in its release grace then lets go at once).
pub fn acquire(etcd: &Etcd, volume: &str, host: &str, ttl: u64, wait: Duration) -> Result<Held> {
    let key = holder_key(volume);
    let start = Instant::now();
    let lease_id = etcd.grant(ttl)?;
    let mut wanted = false;
    let record = encode(&HolderRecord {
        host: host.to_string(),
        since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    loop {
        let r = etcd.txn(
            &[Compare::Created(&key, 0)],
            &[Put::Set(&key, &record, lease_id)],
        );
        match r {
            Ok(r) if r.succeeded => {
                if wanted {
                    let wkey = wants_key(volume);
                    let _ = etcd.txn(&[], &[Put::Delete(&wkey)]);
                }
                return Ok(Held {
                    volume: volume.to_string(),
                    host: host.to_string(),
                    lease_id,
                    token: r.revision,
                });
            }
            Ok(_) if start.elapsed() < wait => {}
            Ok(_) => {
                let _ = etcd.revoke(lease_id);
                let h = holder(etcd, volume).ok().flatten();
                return Err(held_elsewhere(volume, h.as_ref(), start.elapsed()));
            }
            Err(e) => {
                let _ = etcd.revoke(lease_id);
                return Err(e);
            }
        }
        // Said again every poll: another waiter that won deletes it.
        let wkey = wants_key(volume);
        etcd.txn(&[], &[Put::Set(&wkey, host.as_bytes(), lease_id)])?;
        wanted = true;
        // Keep our own etcd lease alive while waiting for theirs to end.
        etcd.keep_alive(lease_id)?;
        std::thread::sleep(POLL);
    }
}

impl Held {
    /// Renew the lease, giving up after `budget`; `false` when it has expired (another host
    /// may hold it now).
    pub fn renew(&self, etcd: &Etcd, budget: Duration) -> Result<bool> {
        etcd.keep_alive_within(self.lease_id, Some(budget))
    }

    /// Move the cluster head from the one at etcd mod revision `expected` (0: none) to `to`,
    /// only while this lease is still the volume's holder. Fails naming why it did not move.
    pub fn move_head(&self, etcd: &Etcd, expected: i64, to: &ClusterHead) -> Result<i64> {
        let hkey = holder_key(&self.volume);
        let key = head_key(&self.volume);
        let bytes = encode(to);
        let r = etcd.txn(
            &[
                Compare::Created(&hkey, self.token),
                Compare::Modified(&key, expected),
            ],
            &[Put::Set(&key, &bytes, 0)],
        )?;
        if r.succeeded {
            return Ok(r.revision);
        }
        if !self.still_ours(etcd)? {
            return Err(self.lost());
        }
        Err(ClusterError::HeadMoved(self.volume.clone()).into())
    }

    /// The error of a holder that lost this lease.
    pub fn lost(&self) -> crate::Error {
        ClusterError::LeaseLost {
            volume: self.volume.clone(),
            host: self.host.clone(),
        }
        .into()
    }

    /// Whether the volume's holder key is still the one this lease wrote.
    pub fn still_ours(&self, etcd: &Etcd) -> Result<bool> {
        let now = etcd.get(&holder_key(&self.volume))?;
        Ok(now.map(|kv| kv.create_revision) == Some(self.token))
    }

    /// Whether another host is waiting for this volume's lease.
    pub fn wanted(&self, etcd: &Etcd) -> Result<bool> {
        Ok(etcd
            .get(&wants_key(&self.volume))?
            .is_some_and(|kv| kv.value != self.host.as_bytes()))
    }

    /// Give the lease back (only if it is still ours) and end the etcd lease.
    pub fn release(&self, etcd: &Etcd) -> Result<()> {
        let hkey = holder_key(&self.volume);
        etcd.txn(
            &[Compare::Created(&hkey, self.token)],
            &[Put::Delete(&hkey)],
        )?;
        etcd.revoke(self.lease_id)
    }
}
