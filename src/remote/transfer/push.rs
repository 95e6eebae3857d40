//! Push: decide per branch (fast-forward or not), plan the objects the remote lacks children
//! first, send them in packs of bounded size, then move each ref by compare-and-swap.

use super::index::remote_index;
use super::records::{PackOut, Remote};
use super::verify::verified_copies;
use crate::failpoint::{hit, knob as test_knob};
use crate::progress::Progress;
use crate::remote::crypt::Seal;
use crate::remote::{ref_key, Backend, CasOutcome, RemoteError};
use crate::repo::reach::{self, Edge};
use crate::repo::Repo;
use crate::store::pack::{RecordHeader, BLOCK_MEMBER_LEN};
use crate::store::{decode_payload, make_record, Kind, Location, ObjectId, RawBlock, Store};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// Packs sent by push are closed once they pass this size (64 MiB).
pub const PUSH_PACK_SIZE: usize = 64 << 20;

/// What happened to one branch in a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    UpToDate,
    Pushed {
        old: Option<ObjectId>,
        new: ObjectId,
    },
    /// The remote head is not an ancestor of ours (or changed during the push).
    Rejected {
        remote: Option<ObjectId>,
        reason: RejectReason,
    },
}

/// Why a ref was not moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The remote head is not an ancestor of the pushed commit.
    NonFastForward,
    /// The remote group ref changed between reading it and the compare-and-swap.
    GroupRefMoved,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::NonFastForward => "non-fast-forward",
            RejectReason::GroupRefMoved => "the remote group ref moved during the push",
        })
    }
}

/// Result of a push.
#[derive(Debug, Default)]
pub struct PushReport {
    pub branches: Vec<(String, PushStatus)>,
    pub objects: u64,
    pub bytes: u64,
    pub packs: u64,
    pub warnings: Vec<String>,
    /// With `repair`: objects the remote listed without a good copy, sent again.
    pub repaired: u64,
}

/// Everything push needs to know about the local side.
pub struct PushRequest<'a> {
    pub volume: &'a str,
    pub remote_volume: &'a str,
    pub branches: Vec<String>,
    pub force: bool,
    /// Verify the remote's copies of everything the branches reach (reading them back) and
    /// send again every object without a good copy, even for up-to-date branches.
    pub repair: bool,
    pub cache: &'a Path,
    /// How data is sealed on this remote (the caller opened its marker).
    pub seal: &'a Seal,
    /// More commits whose objects are sent (no ref moves to them): the member commits of
    /// the group commits a group push sends.
    pub extra: Vec<ObjectId>,
}

/// Push branches of a local volume to a remote.
pub fn push(
    repo: &Repo,
    backend: &dyn Backend,
    req: &PushRequest,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let _store_lock = repo.lock_store(false)?;
    let seal = req.seal;
    let mut report = PushReport::default();
    report.warnings.extend(backend.cas_warning());
    // Decide per branch before sending anything.
    let mut to_send = Vec::new();
    for branch in &req.branches {
        let local = repo
            .branch_head(req.volume, branch)?
            .ok_or_else(|| Error::from(RemoteError::NothingToPush(branch.clone())))?;
        let key = ref_key(req.remote_volume, branch);
        let raw = backend.get(&key)?;
        let remote = raw
            .as_deref()
            .map(|v| seal.parse_ref(req.remote_volume, branch, &key, v))
            .transpose()?;
        if remote == Some(local) {
            report.branches.push((branch.clone(), PushStatus::UpToDate));
            continue;
        }
        if let Some(r) = remote {
            if !req.force && !repo.is_ancestor(&r, &local)? {
                report.branches.push((
                    branch.clone(),
                    PushStatus::Rejected {
                        remote: Some(r),
                        reason: RejectReason::NonFastForward,
                    },
                ));
                continue;
            }
        }
        to_send.push((branch.clone(), key, raw, remote, local));
    }
    if to_send.is_empty() && req.extra.is_empty() && !req.repair {
        return Ok(report);
    }
    let remote_has = remote_index(backend, req.cache, seal)?;
    let store = repo.store();
    let expired = repo.expired_commits()?;
    let plan = if req.repair {
        let mut heads = Vec::new();
        for branch in &req.branches {
            heads.extend(repo.branch_head(req.volume, branch)?);
        }
        let remote = Remote {
            backend,
            index: &remote_has,
            seal,
        };
        repair_plan(store, &remote, &heads, &expired, &mut report)?
    } else {
        let mut heads: Vec<ObjectId> = to_send.iter().map(|t| t.4).collect();
        heads.extend(&req.extra);
        plan_push(
            store,
            &heads,
            &|id, kind| remote_has.holds(&seal.remote_id(id), kind),
            &expired,
        )?
    };
    let units = send_units(store, &plan)?;
    let total: u64 = units
        .iter()
        .map(|(_, _, loc)| seal.record_len(loc.clen))
        .sum();
    progress.start("Pushing", Some(total));
    let pack_size = test_knob("DVOL_TEST_PACK_SIZE")
        .map(|v| v as usize)
        .unwrap_or(PUSH_PACK_SIZE);
    let mut pack = PackOut::new();
    for (id, kind, loc) in &units {
        let unit = verified_unit(store, id, *kind, loc)?;
        let record_len = seal.record_len(unit.clen());
        progress.advance(record_len);
        // Close the pack before a record would take it past the size, so an upload stays
        // under the protocol's frame limit (one pack of at most max(size, one object)).
        if !pack.entries.is_empty() && pack.buf.len() as u64 + record_len > pack_size as u64 {
            report.bytes += std::mem::take(&mut pack).upload(backend, seal)?;
            report.packs += 1;
        }
        match unit {
            Unit::Record(header, payload) => pack.append(&header, &payload, seal),
            Unit::Block(block) => pack.append_block(&block, seal),
        }
    }
    report.objects += plan.len() as u64;
    if !pack.entries.is_empty() {
        report.bytes += pack.upload(backend, seal)?;
        report.packs += 1;
    }
    progress.finish();
    // Commits sent without their tree are listed as expired before any ref reaches them,
    // under their remote ids (keyed on an encrypted remote, which must not learn commit ids).
    let sent_expired: Vec<ObjectId> = plan
        .iter()
        .filter(|(id, kind)| *kind == Kind::Commit && expired.contains(id))
        .map(|(id, _)| seal.remote_id(id))
        .collect();
    crate::remote::prune::publish_expired(backend, req.remote_volume, &sent_expired)?;
    // Every object is durable and indexed: now move the refs, each by compare-and-swap.
    for (branch, key, raw, remote, local) in to_send {
        let value = seal.ref_value(req.remote_volume, &branch, &local);
        report.bytes += value.len() as u64;
        hit("push.before-ref-cas");
        let mut expected = raw;
        let mut old = remote;
        // A lost race is retried only while the remote head stays an ancestor of ours (another
        // pusher sent part of our history) or with --force; otherwise it is a non-fast-forward.
        let status = loop {
            match backend.cas(&key, expected.as_deref(), value.clone())? {
                CasOutcome::Updated => break PushStatus::Pushed { old, new: local },
                CasOutcome::Conflict { current } => {
                    let now = current
                        .as_deref()
                        .map(|v| seal.parse_ref(req.remote_volume, &branch, &key, v))
                        .transpose()?;
                    let ff = match now {
                        None => true,
                        Some(r) => r == local || repo.is_ancestor(&r, &local)?,
                    };
                    if now == Some(local) {
                        break PushStatus::UpToDate;
                    }
                    if !(ff || req.force) {
                        break PushStatus::Rejected {
                            remote: now,
                            reason: RejectReason::NonFastForward,
                        };
                    }
                    expected = current;
                    old = now;
                }
            }
        };
        report.branches.push((branch, status));
    }
    Ok(report)
}

/// The planned objects as stored: one per record, one per block however many of its members
/// the plan holds (a block travels whole, as the local store keeps it).
fn send_units(store: &Store, plan: &[Planned]) -> Result<Vec<(ObjectId, Kind, Location)>> {
    let mut blocks = HashSet::new();
    let mut units = Vec::with_capacity(plan.len());
    let ids: Vec<ObjectId> = plan.iter().map(|p| p.0).collect();
    for ((id, kind), loc) in plan.iter().zip(store.locate_many(&ids)?) {
        let loc = loc.ok_or(Error::MissingObject { id: id.to_hex() })?;
        let whole_block = loc.boff.is_some() && *kind == Kind::Chunk;
        if !whole_block || blocks.insert((loc.pack.clone(), loc.offset)) {
            units.push((*id, *kind, loc));
        }
    }
    Ok(units)
}

/// What push sends for one unit: a record, or a whole block.
enum Unit {
    Record(RecordHeader, Vec<u8>),
    Block(RawBlock),
}

impl Unit {
    /// Payload length as the remote index lists it.
    fn clen(&self) -> u32 {
        match self {
            Unit::Record(header, _) => header.clen,
            Unit::Block(b) => (b.members.len() * BLOCK_MEMBER_LEN + b.payload.len()) as u32,
        }
    }
}

/// The stored form of a local object to send as a `kind`, re-hashed first (a block: every
/// member): push never sends a corrupt object, and names it. A record is labelled with the
/// kind it is sent as (the remote trusts a label to mean "stored after what it reaches as
/// that kind"); a block member sent as anything but a chunk goes as a record of its own.
fn verified_unit(store: &Store, id: &ObjectId, kind: Kind, loc: &Location) -> Result<Unit> {
    match (loc.boff, kind) {
        (Some(_), Kind::Chunk) => {
            let block = store
                .verified_block(id, loc)
                .map_err(|e| refuse_corrupt(id, e))?;
            Ok(Unit::Block(block))
        }
        (Some(_), _) => {
            let data = store.get(id).map_err(|e| refuse_corrupt(id, e))?;
            let rec = make_record(*id, kind, &data)?;
            let header = RecordHeader {
                id: rec.id,
                kind,
                codec: rec.codec,
                ulen: rec.ulen,
                clen: rec.payload.len() as u32,
            };
            Ok(Unit::Record(header, rec.payload))
        }
        (None, _) => {
            let (mut header, payload) = store.get_raw(id).map_err(|e| refuse_corrupt(id, e))?;
            decode_payload(id, &header, &payload).map_err(|e| refuse_corrupt(id, e))?;
            header.kind = kind;
            Ok(Unit::Record(header, payload))
        }
    }
}

/// A local object push needs is corrupt: say which and what to do.
fn refuse_corrupt(id: &ObjectId, e: Error) -> Error {
    match e {
        Error::CorruptObject { .. } => RemoteError::CorruptLocal {
            id: *id,
            detail: e.to_string(),
        }
        .into(),
        other => other,
    }
}

/// A local object, read and verified for planning.
fn load_local(store: &Store, id: &ObjectId) -> Result<Vec<u8>> {
    store.get(id).map_err(|e| refuse_corrupt(id, e))
}

/// Everything `heads` reach, children first, that the remote has no verified copy of: the
/// remote's listed copies are read back and re-hashed.
fn repair_plan(
    store: &Store,
    remote: &Remote,
    heads: &[ObjectId],
    expired: &HashSet<ObjectId>,
    report: &mut PushReport,
) -> Result<Vec<Planned>> {
    let roots: Vec<(ObjectId, Edge)> = heads.iter().map(|h| (*h, Edge::Commit)).collect();
    let all = reach::post_order(&roots, &|_, _| false, &|c| expired.contains(c), &mut |id| {
        load_local(store, id)
    })?;
    // Remote ids: what the index lists and `verified_copies` reports.
    let listed: HashSet<ObjectId> = all
        .iter()
        .map(|o| remote.seal.remote_id(&o.0))
        .filter(|rid| remote.index.contains_key(rid))
        .collect();
    let good = verified_copies(remote, Some(&listed), &mut Default::default())?;
    report.repaired = listed.len() as u64 - good.len() as u64;
    Ok(all
        .into_iter()
        .map(|(id, edge)| (id, edge.kind()))
        .filter(|(id, kind)| {
            let rid = remote.seal.remote_id(id);
            !good.contains(&rid) || !remote.index.holds(&rid, *kind)
        })
        .collect())
}

/// One object push sends and the kind it is sent as (an id reached in two roles is sent once
/// as each, each after what it reaches in that role).
pub type Planned = (ObjectId, Kind);

/// The objects reachable from `heads` that the remote does not hold in the role they are
/// reached in ([`crate::remote::transfer::RemoteIndex::holds`]), children before parents; the
/// trees of `expired` commits are not sent (prune expired them).
pub fn plan_push(
    store: &Store,
    heads: &[ObjectId],
    remote_holds: &dyn Fn(&ObjectId, Kind) -> bool,
    expired: &HashSet<ObjectId>,
) -> Result<Vec<Planned>> {
    let roots: Vec<(ObjectId, Edge)> = heads.iter().map(|h| (*h, Edge::Commit)).collect();
    let order = reach::post_order(&roots, remote_holds, &|c| expired.contains(c), &mut |id| {
        load_local(store, id)
    })?;
    Ok(order
        .into_iter()
        .map(|(id, edge)| (id, edge.kind()))
        .collect())
}
