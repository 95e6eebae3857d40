//! Push and fetch: negotiation through the remote's pack indexes, raw record copies into new
//! packs (push), ranged reads of only the missing records with hash verification (fetch).
//!
//! Invariant kept on the remote and locally: an object that is listed in an index (or the
//! local store) has everything it reaches listed too. Push therefore emits objects children
//! first (chunks, list nodes, trees, then commits oldest first) and uploads each pack before
//! its index; negotiation can then stop at any object the other side already has.

use super::crypt::Seal;
use super::idx::{self, IdxEntry};
use super::{ref_key, Backend, CasOutcome};
use crate::progress::Progress;
use crate::repo::{Commit, Repo};
use crate::snapshot::{Node, Tree};
use crate::store::pack::{pack_header, RecordHeader, RECORD_HEADER_LEN};
use crate::store::{self, decode_payload, Kind, ObjectId, Store, CHUNK_SIZE};
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Packs sent by push are closed once they pass this size (64 MiB).
pub const PUSH_PACK_SIZE: usize = 64 << 20;
/// Largest coalesced range read by fetch.
const MAX_RANGE: u64 = 8 << 20;
/// Ranges closer than this are read as one.
const RANGE_GAP: u64 = 64 << 10;
/// Fetched chunks are indexed locally after this many bytes, so a re-run reuses them.
const FETCH_CHECKPOINT: u64 = 256 << 20;

use crate::failpoint::{hit, knob as test_knob};

/// Where an object lives on the remote.
#[derive(Clone, Debug)]
pub struct RemoteLoc {
    pub pack: Arc<str>,
    pub entry: IdxEntry,
}

/// Every object listed in the remote's pack indexes, by remote id ([`Seal::remote_id`]).
/// Indexes are immutable, so they are cached (as stored) under `cache` and downloaded once.
pub fn remote_index(
    backend: &dyn Backend,
    cache: &Path,
    seal: &Seal,
) -> Result<HashMap<ObjectId, RemoteLoc>> {
    let mut out = HashMap::new();
    for (pack, entries) in remote_packs(backend, cache, seal)? {
        for entry in entries {
            out.insert(
                entry.id,
                RemoteLoc {
                    pack: pack.clone(),
                    entry,
                },
            );
        }
    }
    Ok(out)
}

/// Every indexed pack of the remote (`packs/<hash>.pack`) with its index entries.
pub fn remote_packs(
    backend: &dyn Backend,
    cache: &Path,
    seal: &Seal,
) -> Result<Vec<(Arc<str>, Vec<IdxEntry>)>> {
    let mut out = Vec::new();
    let idx_dir = cache.join("idx");
    for key in backend.list("packs/")? {
        let Some(stem) = key
            .strip_prefix("packs/")
            .and_then(|k| k.strip_suffix(".idx"))
        else {
            continue;
        };
        let cached = idx_dir.join(format!("{stem}.idx"));
        let entries = match std::fs::read(&cached)
            .ok()
            .and_then(|b| idx::decode(&key, &seal.open_index(&key, b).ok()?).ok())
        {
            Some(e) => e,
            None => {
                let Some(bytes) = backend.get(&key)? else {
                    continue;
                };
                let e = idx::decode(&key, &seal.open_index(&key, bytes.clone())?)?;
                // The cache is only an optimisation: failing to write it is not an error.
                let _ = crate::snapshot::write_atomic(&cached, &bytes);
                e
            }
        };
        out.push((Arc::from(format!("packs/{stem}.pack")), entries));
    }
    Ok(out)
}

/// The branches of a volume on a plain remote and their heads.
pub fn remote_branches(
    backend: &dyn Backend,
    remote_volume: &str,
) -> Result<Vec<(String, ObjectId)>> {
    remote_branches_sealed(backend, remote_volume, &Seal::Plain)
}

/// The branches of a volume on the remote and their heads, refs opened with `seal`.
pub fn remote_branches_sealed(
    backend: &dyn Backend,
    remote_volume: &str,
    seal: &Seal,
) -> Result<Vec<(String, ObjectId)>> {
    let prefix = format!("refs/{remote_volume}/heads/");
    let mut out = Vec::new();
    for key in backend.list(&prefix)? {
        let branch = key[prefix.len()..].to_string();
        if crate::names::validate("branch", &branch).is_err() {
            continue;
        }
        if let Some(v) = backend.get(&key)? {
            out.push((
                branch.clone(),
                seal.parse_ref(remote_volume, &branch, &key, &v)?,
            ));
        }
    }
    out.sort();
    Ok(out)
}

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
        reason: String,
    },
}

/// Result of a push.
#[derive(Debug, Default)]
pub struct PushReport {
    pub branches: Vec<(String, PushStatus)>,
    pub objects: u64,
    pub bytes: u64,
    pub packs: u64,
    pub warnings: Vec<String>,
}

/// Everything push needs to know about the local side.
pub struct PushRequest<'a> {
    pub volume: &'a str,
    pub remote_volume: &'a str,
    pub branches: Vec<String>,
    pub force: bool,
    pub cache: &'a Path,
    /// How data is sealed on this remote (the caller opened its marker).
    pub seal: &'a Seal,
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
        let local = repo.branch_head(req.volume, branch)?.ok_or_else(|| {
            Error::Remote(format!(
                "branch {branch} has no commits to push (run dvol commit first)"
            ))
        })?;
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
                        reason: "non-fast-forward".into(),
                    },
                ));
                continue;
            }
        }
        to_send.push((branch.clone(), key, raw, remote, local));
    }
    if to_send.is_empty() {
        return Ok(report);
    }
    let remote_has = remote_index(backend, req.cache, seal)?;
    let store = repo.store();
    let heads: Vec<ObjectId> = to_send.iter().map(|t| t.4).collect();
    let expired = repo.expired_commits()?;
    let plan = plan_push(
        store,
        &heads,
        &|id| remote_has.contains_key(&seal.remote_id(id)),
        &expired,
    )?;
    let total: u64 = plan
        .iter()
        .map(|id| {
            store
                .locate(id)
                .map(|l| l.map_or(0, |l| l.clen as u64 + RECORD_HEADER_LEN as u64))
        })
        .sum::<Result<u64>>()?;
    progress.start("Pushing", Some(total));
    let pack_size = test_knob("DVOL_TEST_PACK_SIZE")
        .map(|v| v as usize)
        .unwrap_or(PUSH_PACK_SIZE);
    let mut pack = PackOut::new();
    for id in &plan {
        let (header, payload) = store.get_raw(id)?;
        progress.advance((RECORD_HEADER_LEN + payload.len()) as u64);
        // Close the pack before a record would take it past the size, so an upload stays
        // under the protocol's frame limit (one pack of at most max(size, one object)).
        if !pack.entries.is_empty()
            && pack.buf.len() as u64 + seal.record_len(header.clen) > pack_size as u64
        {
            report.bytes += std::mem::replace(&mut pack, PackOut::new()).upload(backend, seal)?;
            report.packs += 1;
        }
        pack.append(&header, &payload, seal);
        report.objects += 1;
    }
    if !pack.entries.is_empty() {
        report.bytes += pack.upload(backend, seal)?;
        report.packs += 1;
    }
    progress.finish();
    // Commits sent without their tree are listed as expired before any ref reaches them.
    let sent_expired: Vec<ObjectId> = plan
        .iter()
        .filter(|id| expired.contains(*id))
        .copied()
        .collect();
    super::prune::publish_expired(backend, req.remote_volume, &sent_expired)?;
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
                            reason: "non-fast-forward".into(),
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

/// An in-memory pack being built for upload (at most about [`PUSH_PACK_SIZE`]).
pub(crate) struct PackOut {
    pub(crate) buf: Vec<u8>,
    pub(crate) entries: Vec<IdxEntry>,
}

impl PackOut {
    pub(crate) fn new() -> PackOut {
        PackOut {
            buf: pack_header().to_vec(),
            entries: Vec::new(),
        }
    }

    pub(crate) fn append(&mut self, header: &RecordHeader, payload: &[u8], seal: &Seal) {
        self.entries.push(IdxEntry {
            id: seal.remote_id(&header.id),
            kind: header.kind,
            codec: header.codec,
            offset: self.buf.len() as u64,
            clen: payload.len() as u32,
            ulen: header.ulen,
        });
        seal.append_record(&mut self.buf, header, payload);
    }

    /// Upload the pack, then its index. Returns the bytes sent.
    pub(crate) fn upload(self, backend: &dyn Backend, seal: &Seal) -> Result<u64> {
        let name = blake3::hash(&self.buf).to_hex().to_string();
        let idx = seal.seal_index(&name, idx::encode(&self.entries));
        let sent = (self.buf.len() + idx.len()) as u64;
        backend.put(&format!("packs/{name}.pack"), self.buf)?;
        hit("push.after-pack-upload");
        backend.put(&format!("packs/{name}.idx"), idx)?;
        hit("push.after-idx-upload");
        Ok(sent)
    }
}

/// The objects reachable from `heads` that the remote lacks, children before parents; the
/// trees of `expired` commits are not sent (prune expired them).
pub fn plan_push(
    store: &Store,
    heads: &[ObjectId],
    remote_has: &dyn Fn(&ObjectId) -> bool,
    expired: &HashSet<ObjectId>,
) -> Result<Vec<ObjectId>> {
    let mut w = Planner {
        store,
        has: remote_has,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    // Commits in post-order (parents first).
    let mut commits = Vec::new();
    let mut visited = HashSet::new();
    let mut stack: Vec<(ObjectId, bool)> = heads.iter().map(|h| (*h, false)).collect();
    while let Some((id, expanded)) = stack.pop() {
        if expanded {
            commits.push(id);
            continue;
        }
        if remote_has(&id) || !visited.insert(id) {
            continue;
        }
        let c = Commit::load(store, &id)?;
        stack.push((id, true));
        for p in c.parents.iter().rev() {
            stack.push((*p, false));
        }
    }
    for id in commits {
        let c = Commit::load(store, &id)?;
        if !expired.contains(&id) {
            w.tree(&c.tree)?;
        }
        w.seen.insert(id);
        w.out.push(id);
    }
    Ok(w.out)
}

struct Planner<'a> {
    store: &'a Store,
    has: &'a dyn Fn(&ObjectId) -> bool,
    seen: HashSet<ObjectId>,
    out: Vec<ObjectId>,
}

impl Planner<'_> {
    fn wanted(&mut self, id: &ObjectId) -> bool {
        !(self.has)(id) && self.seen.insert(*id)
    }

    fn tree(&mut self, id: &ObjectId) -> Result<()> {
        if !self.wanted(id) {
            return Ok(());
        }
        let tree = Tree::load(self.store, id)?;
        for e in &tree.entries {
            match &e.node {
                Node::File {
                    size,
                    content: Some(c),
                    ..
                } => {
                    if *size <= CHUNK_SIZE as u64 {
                        if self.wanted(c) {
                            self.out.push(*c);
                        }
                    } else {
                        self.list(c)?;
                    }
                }
                Node::Dir { tree } => self.tree(tree)?,
                _ => {}
            }
        }
        self.out.push(*id);
        Ok(())
    }

    fn list(&mut self, id: &ObjectId) -> Result<()> {
        if !self.wanted(id) {
            return Ok(());
        }
        let node = store::decode_list(id, &self.store.get(id)?)?;
        for e in &node.entries {
            if node.level == 0 {
                if self.wanted(&e.id) {
                    self.out.push(e.id);
                }
            } else {
                self.list(&e.id)?;
            }
        }
        self.out.push(*id);
        Ok(())
    }
}

/// Result of a fetch.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// Remote branches and their heads.
    pub refs: Vec<(String, ObjectId)>,
    pub objects: u64,
    pub bytes: u64,
}

/// What [`download_history`] wrote: packs not yet indexed and the commits to record.
pub struct Downloaded {
    pub commits: Vec<(ObjectId, Commit)>,
    /// Fetched commits the remote lists as expired and sent without their tree.
    pub expired: Vec<ObjectId>,
    pub packs: Vec<store::WrittenPack>,
    pub objects: u64,
    pub bytes: u64,
}

/// Download what `heads` reach and the local store lacks, verifying every object, and record
/// it in the store. Returns the fetched commits (to be recorded with the refs) and counts.
pub fn download_history(
    repo: &mut Repo,
    backend: &dyn Backend,
    cache: &Path,
    heads: &[ObjectId],
    seal: &Seal,
    progress: &dyn Progress,
) -> Result<Downloaded> {
    let index = remote_index(backend, cache, seal)?;
    let remote = Remote {
        backend,
        index: &index,
        seal,
    };
    let store = repo.store().clone();
    let meta = store.writer()?;
    let mut chunks_session = store.writer()?;
    let mut fetched_bytes = 0u64;
    let mut objects = 0u64;
    let has = |s: &store::WriteSession, id: &ObjectId| s.has(id);

    // Commits, level by level.
    let mut commits = Vec::new();
    let mut queue: Vec<ObjectId> = heads.to_vec();
    let mut seen = HashSet::new();
    while !queue.is_empty() {
        let want: Vec<ObjectId> = take_missing(&mut queue, &mut seen, |id| has(&meta, id))?;
        let mut next = Vec::new();
        fetched_bytes += read_objects(&remote, &want, Kind::Commit, |h, payload| {
            let data = decode_payload(&h.id, &h, &payload)?;
            let c = Commit::decode(&h.id, &data)?;
            meta.put_verified_record(&h, payload)?;
            next.extend(c.parents.iter().copied());
            commits.push((h.id, c));
            Ok(())
        })?;
        queue = next;
    }
    // A commit whose tree is neither local nor on the remote is accepted only when the remote
    // lists it as expired (prune); it is then recorded as expired here too.
    let (trees, expired) = super::prune::split_expired(backend, &commits, |t| {
        Ok(index.contains_key(&seal.remote_id(t)) || has(&meta, t)?)
    })?;
    // Trees, level by level; collect file contents.
    let mut lists = Vec::new();
    let mut chunks = Vec::new();
    let mut queue = trees;
    while !queue.is_empty() {
        let want = take_missing(&mut queue, &mut seen, |id| has(&meta, id))?;
        let mut next = Vec::new();
        fetched_bytes += read_objects(&remote, &want, Kind::Tree, |h, payload| {
            let data = decode_payload(&h.id, &h, &payload)?;
            let tree = Tree::decode(&h.id, &data)?;
            meta.put_verified_record(&h, payload)?;
            for e in &tree.entries {
                match &e.node {
                    Node::Dir { tree } => next.push(*tree),
                    Node::File {
                        size,
                        content: Some(c),
                        ..
                    } => {
                        if *size <= CHUNK_SIZE as u64 {
                            chunks.push(*c);
                        } else {
                            lists.push(*c);
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        })?;
        queue = next;
    }
    // Chunk-list nodes, level by level.
    let mut queue = lists;
    while !queue.is_empty() {
        let want = take_missing(&mut queue, &mut seen, |id| has(&meta, id))?;
        let mut next = Vec::new();
        fetched_bytes += read_objects(&remote, &want, Kind::List, |h, payload| {
            let data = decode_payload(&h.id, &h, &payload)?;
            let node = store::decode_list(&h.id, &data)?;
            meta.put_verified_record(&h, payload)?;
            for e in &node.entries {
                if node.level == 0 {
                    chunks.push(e.id);
                } else {
                    next.push(e.id);
                }
            }
            Ok(())
        })?;
        queue = next;
    }
    objects += seen.len() as u64;
    // Chunks, in batches; checkpointed into the local index so a re-run reuses them.
    let want = take_missing(&mut chunks, &mut seen, |id| has(&chunks_session, id))?;
    objects += want.len() as u64;
    let total: u64 = want
        .iter()
        .filter_map(|id| index.get(&seal.remote_id(id)))
        .map(|l| l.entry.clen as u64)
        .sum();
    progress.start("Fetching", Some(total));
    let checkpoint = test_knob("DVOL_TEST_FETCH_CHECKPOINT").unwrap_or(FETCH_CHECKPOINT);
    let mut since = 0u64;
    let batch_len = (checkpoint as usize / CHUNK_SIZE).clamp(1, 2048);
    for batch in want.chunks(batch_len) {
        let got = read_objects(&remote, batch, Kind::Chunk, |h, payload| {
            progress.advance(payload.len() as u64);
            chunks_session.put_verified_record(&h, payload)?;
            Ok(())
        })?;
        fetched_bytes += got;
        since += got;
        if since >= checkpoint {
            let packs = std::mem::replace(&mut chunks_session, store.writer()?).finish()?;
            repo.record_objects(&packs)?;
            since = 0;
            hit("fetch.after-checkpoint");
        }
    }
    progress.finish();
    let mut packs = meta.finish()?;
    packs.extend(chunks_session.finish()?);
    hit("fetch.before-record");
    Ok(Downloaded {
        commits,
        expired,
        packs,
        objects,
        bytes: fetched_bytes,
    })
}

/// Deduplicate `queue` against what was seen or is already local; drains the queue.
fn take_missing(
    queue: &mut Vec<ObjectId>,
    seen: &mut HashSet<ObjectId>,
    local: impl Fn(&ObjectId) -> Result<bool>,
) -> Result<Vec<ObjectId>> {
    let mut out = Vec::new();
    for id in queue.drain(..) {
        if seen.contains(&id) || local(&id)? {
            continue;
        }
        seen.insert(id);
        out.push(id);
    }
    Ok(out)
}

/// The remote side of a download: carrier, index and seal.
pub(crate) struct Remote<'a> {
    pub(crate) backend: &'a dyn Backend,
    pub(crate) index: &'a HashMap<ObjectId, RemoteLoc>,
    pub(crate) seal: &'a Seal,
}

/// Read the records of `ids` from the remote with coalesced range reads, checking each
/// record against the index and the expected kind, and hand them to `f` (which verifies the
/// content hash before use). Returns the bytes read.
pub(crate) fn read_objects(
    remote: &Remote,
    ids: &[ObjectId],
    kind: Kind,
    mut f: impl FnMut(RecordHeader, Vec<u8>) -> Result<()>,
) -> Result<u64> {
    let seal = remote.seal;
    let mut by_pack: HashMap<Arc<str>, Vec<(ObjectId, &IdxEntry)>> = HashMap::new();
    for id in ids {
        let loc = remote.index.get(&seal.remote_id(id)).ok_or_else(|| {
            Error::Remote(format!(
                "the remote is incomplete: object {id} is not in any pack index"
            ))
        })?;
        by_pack
            .entry(loc.pack.clone())
            .or_default()
            .push((*id, &loc.entry));
    }
    let mut bytes = 0;
    for (pack, mut entries) in by_pack {
        entries.sort_by_key(|e| e.1.offset);
        if entries
            .iter()
            .any(|(_, e)| e.offset.checked_add(MAX_RANGE).is_none() || e.clen as u64 > MAX_RANGE)
        {
            return Err(Error::Remote(format!("remote index of {pack} is invalid")));
        }
        let end_of = |e: &IdxEntry| e.offset + seal.record_len(e.clen);
        let mut i = 0;
        while i < entries.len() {
            let start = entries[i].1.offset;
            let mut end = end_of(entries[i].1);
            let mut j = i + 1;
            while j < entries.len() {
                let e = entries[j].1;
                if e.offset < end || e.offset - end > RANGE_GAP || end_of(e) - start > MAX_RANGE {
                    break;
                }
                end = end_of(e);
                j += 1;
            }
            let data = remote.backend.get_range(&pack, start, end - start)?;
            bytes += data.len() as u64;
            for (id, e) in &entries[i..j] {
                let at = (e.offset - start) as usize;
                let raw = &data[at..at + seal.record_len(e.clen) as usize];
                let (header, payload) = seal.open_record(id, raw, &pack)?;
                let bad = |why: &str| Error::CorruptObject {
                    id: id.to_hex(),
                    detail: format!("{why} in remote {pack}"),
                };
                if header.id != *id || header.clen != e.clen || header.ulen != e.ulen {
                    return Err(bad("record does not match the pack index"));
                }
                if header.kind != kind {
                    return Err(bad(&format!(
                        "expected a {kind:?} object, found a {:?}",
                        header.kind
                    )));
                }
                if payload.len() != e.clen as usize {
                    return Err(bad("record length does not match the pack index"));
                }
                f(header, payload)?;
            }
            i = j;
        }
    }
    Ok(bytes)
}
