//! Checking a remote from the outside (`dvol fsck --remote`): every record of every pack
//! re-hashed against its index entry, and every branch of the remote volume walked to
//! complete history through the shared walker. Also the verified-copy set `push --repair`
//! uses to decide what to send again. Reads only; never changes the remote.

use super::index::fresh_remote_index;
use super::records::{load_batch, read_pack_records, Piece, Remote};
use super::remote_branches_sealed;
use crate::remote::crypt::Seal;
use crate::remote::{Backend, RemoteError};
use crate::repo::reach::{self, Edge};
use crate::store::{decode_payload, ObjectId};
use crate::{Error, Result};
use std::collections::HashSet;

/// What `fsck --remote` found.
#[derive(Debug, Default)]
pub struct RemoteFsckReport {
    pub packs: u64,
    pub records: u64,
    pub branches: u64,
    /// Corrupt copies of objects that also have a good copy (harmless; readers skip them).
    pub superseded: u64,
    /// One line per problem, naming the object, pack or branch.
    pub problems: Vec<String>,
}

/// Verify the remote: every pack record, then every branch of `remote_volume`.
pub fn fsck_remote(
    backend: &dyn Backend,
    remote_volume: &str,
    seal: &Seal,
) -> Result<RemoteFsckReport> {
    let mut report = RemoteFsckReport::default();
    let index = fresh_remote_index(backend, seal)?;
    let remote = Remote {
        backend,
        index: &index,
        seal,
    };
    let good = verified_copies(&remote, None, &mut report)?;
    let expired = crate::remote::prune::remote_expired(backend)?;
    for (branch, head) in remote_branches_sealed(backend, remote_volume, seal)? {
        report.branches += 1;
        let mut visit = Checker {
            remote,
            good: &good,
            expired: &expired,
        };
        let mut seen = reach::Reached::new();
        if let Err(e) = reach::walk([(head, Edge::Commit)], &mut seen, &mut visit) {
            report.problems.push(format!(
                "refs/{remote_volume}/heads/{branch} ({}): {e}",
                &head.to_hex()[..12]
            ));
        }
    }
    Ok(report)
}

/// Re-hash the records of every pack (or only of the objects in `only`, by remote id) and
/// return the remote ids with at least one good copy. Objects without one are added to `report.problems`; a bad
/// copy beside a good one (left by a `push --repair`) is counted in `report.superseded`.
pub fn verified_copies(
    remote: &Remote,
    only: Option<&HashSet<ObjectId>>,
    report: &mut RemoteFsckReport,
) -> Result<HashSet<ObjectId>> {
    let mut good = HashSet::new();
    let mut bad: Vec<(ObjectId, String)> = Vec::new();
    for (pack, mut entries) in remote.index.by_pack() {
        if let Some(only) = only {
            entries.retain(|e| only.contains(&e.id));
        }
        if entries.is_empty() {
            continue;
        }
        report.packs += 1;
        let records = &mut report.records;
        read_pack_records(
            remote.backend,
            remote.seal,
            &pack,
            entries,
            &mut |e, rec| {
                *records += 1;
                let checked = rec.and_then(|piece| match piece {
                    // A block member was hashed with its whole block when it was read.
                    Piece::Member(..) => Ok(()),
                    Piece::Record(h, payload) => decode_payload(&h.id, &h, &payload).map(drop),
                });
                match checked {
                    Ok(_) => {
                        good.insert(e.id);
                    }
                    Err(err) => bad.push((e.id, format!("{pack}: {err}"))),
                }
                Ok(())
            },
        )?;
    }
    for (id, problem) in bad {
        if good.contains(&id) {
            report.superseded += 1;
        } else {
            report.problems.push(problem);
        }
    }
    Ok(good)
}

/// Walks one branch on the remote: loads objects (a copy that fails verification is tried
/// from the next copy), and checks that every chunk is listed with a good copy.
struct Checker<'a> {
    remote: Remote<'a>,
    good: &'a HashSet<ObjectId>,
    /// Commits the remote lists as expired: their trees are not required.
    expired: &'a HashSet<ObjectId>,
}

impl reach::Visit for Checker<'_> {
    fn skip(&mut self, _id: &ObjectId, _edge: Edge) -> Result<bool> {
        Ok(false)
    }

    fn load(&mut self, batch: &[(ObjectId, Edge)]) -> Result<Vec<Vec<u8>>> {
        for (id, _) in batch {
            self.chunk(id, 0)?;
        }
        load_batch(&self.remote, batch)
    }

    fn tree_expired(&self, commit: &ObjectId) -> bool {
        self.expired.contains(&self.remote.seal.remote_id(commit))
    }

    fn chunk(&mut self, id: &ObjectId, _len: u64) -> Result<()> {
        let rid = self.remote.seal.remote_id(id);
        if !self.remote.index.contains_key(&rid) {
            return Err(RemoteError::MissingObject(*id).into());
        }
        if !self.good.contains(&rid) {
            return Err(Error::CorruptObject {
                id: id.to_hex(),
                detail: "no copy on the remote matches its id".into(),
            });
        }
        Ok(())
    }
}
