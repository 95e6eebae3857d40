//! Expired commits on a remote, `dvol prune --remote` and remote gc.
//!
//! `expired/<volume>` lists, one 64-hex id per line, the commits of that volume whose tree the
//! remote does not keep (by remote id: the commit id on a plain remote, its keyed id on an
//! encrypted one, so the list reveals no commit id) (sent so by a push of a locally pruned commit, or expired by
//! `prune --remote`). Lists only grow, by compare-and-swap. A fetch accepts a commit without its
//! tree only when some list names it (and then records it expired locally); a commit whose
//! tree is missing and that no list names is an incomplete remote, as before.
//!
//! Remote gc walks every volume's refs (the carrier must list them: path and s3:// remotes;
//! others refuse), skipping the trees of expired commits. A pack with unreachable objects is
//! noted in `gc/pending` with the time it was first seen so; once it has been so for the grace
//! period (default an hour, so a push that started before and still relies on its objects has
//! finished), its reachable objects are copied to a new pack (uploaded with its index first),
//! then its index and the pack are deleted. Any doubt (an object that cannot be read or
//! verified, a tree missing for a commit not listed as expired) aborts before anything is
//! deleted. Remote gc must not run at the same time as a push to the same remote that takes
//! longer than the grace period. Over `dvol serve` with scoped tokens, delete needs an admin
//! token; the server refuses it otherwise.
//!
//! This module must not change local history (it only reads the local repository's remotes).

use super::crypt::Seal;
use super::idx::IdxEntry;
use super::transfer::{
    load_batch, read_objects, remote_branches, remote_index, remote_packs, walk_commits, PackOut,
    Remote, RemoteIndex,
};
use super::{cache_dir, check_format, open, Backend, CasOutcome, RemoteError};
use crate::repo::prune::{decisions, select, Candidate, Policy, PruneReport};
use crate::repo::reach::{self, Edge};
use crate::repo::{Commit, Repo};
use crate::store::pack::{RecordHeader, CODEC_RAW, MAX_BLOCK_CHUNKS, RECORD_HEADER_LEN};
use crate::store::{decode_payload, make_block, Kind, ObjectId, RawBlock};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

const EXPIRED_PREFIX: &str = "expired/";
const GC_PENDING_KEY: &str = "gc/pending";

fn expired_key(volume: &str) -> String {
    format!("{EXPIRED_PREFIX}{volume}")
}

/// Parse an expired list (`dvol serve` checks that one only grows).
pub fn parse_list(key: &str, bytes: &[u8]) -> Result<BTreeSet<ObjectId>> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| RemoteError::bad_record(key, "is not text"))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            ObjectId::from_hex(l)
                .filter(|id| id.to_hex() == l)
                .ok_or_else(|| RemoteError::bad_record(key, "holds a bad commit id"))
        })
        .collect()
}

fn encode_list(ids: &BTreeSet<ObjectId>) -> Vec<u8> {
    let mut out = String::with_capacity(ids.len() * 65);
    for id in ids {
        out.push_str(&id.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// The union of every volume's expired list on the remote.
pub fn remote_expired(backend: &dyn Backend) -> Result<HashSet<ObjectId>> {
    let mut out = HashSet::new();
    for key in backend.list(EXPIRED_PREFIX)? {
        if let Some(bytes) = backend.get(&key)? {
            out.extend(parse_list(&key, &bytes)?);
        }
    }
    Ok(out)
}

/// Add `ids` to the remote volume's expired list (compare-and-swap, retried on conflict).
pub fn publish_expired(backend: &dyn Backend, volume: &str, ids: &[ObjectId]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let key = expired_key(volume);
    let mut current = backend.get(&key)?;
    loop {
        let mut set = match &current {
            Some(b) => parse_list(&key, b)?,
            None => BTreeSet::new(),
        };
        let before = set.len();
        set.extend(ids.iter().copied());
        if set.len() == before {
            return Ok(());
        }
        match backend.cas(&key, current.as_deref(), encode_list(&set))? {
            CasOutcome::Updated => return Ok(()),
            CasOutcome::Conflict { current: now } => current = now,
        }
    }
}

/// Split fetched commits into the trees to download and the commits to record as expired:
/// a commit is expired only if its tree is unavailable (`available` false) and the remote
/// lists it as expired.
pub fn split_expired(
    backend: &dyn Backend,
    commits: &[(ObjectId, Commit)],
    available: impl Fn(&ObjectId) -> Result<bool>,
) -> Result<(Vec<ObjectId>, Vec<ObjectId>)> {
    let mut trees = Vec::new();
    let mut missing = Vec::new();
    for (id, c) in commits {
        if available(&c.tree)? {
            trees.push(c.tree);
        } else {
            missing.push((*id, c.tree));
        }
    }
    if missing.is_empty() {
        return Ok((trees, Vec::new()));
    }
    let listed = remote_expired(backend)?;
    let mut expired = Vec::new();
    for (id, tree) in missing {
        if listed.contains(&id) {
            expired.push(id);
        } else {
            trees.push(tree); // fails later as "the remote is incomplete"
        }
    }
    Ok((trees, expired))
}

/// Options of remote gc.
pub struct GcOptions {
    pub dry_run: bool,
    /// An unreachable pack is deleted only once it was first seen so this long ago.
    pub grace_secs: u64,
}

/// What remote gc did (or would do).
#[derive(Debug, Default, Serialize)]
pub struct RemoteGcReport {
    pub packs_deleted: u64,
    /// From the pack indexes (record sizes), so approximate for packs without an index.
    pub bytes_deleted: u64,
    pub packs_rewritten: u64,
    pub packs_waiting: u64,
    pub objects_live: u64,
}

/// What `prune --remote` did.
#[derive(Debug, Serialize)]
pub struct RemotePruneReport {
    pub url: String,
    pub prune: PruneReport,
    pub gc: RemoteGcReport,
}

/// Every commit reachable from any ref of the remote, and the heads per volume.
struct Graph {
    commits: HashMap<ObjectId, Commit>,
    heads: Vec<(String, String, ObjectId)>,
}

fn load_graph(backend: &dyn Backend, index: &RemoteIndex) -> Result<Graph> {
    let mut heads = Vec::new();
    for volume in backend.list_volumes()? {
        for (branch, head) in remote_branches(backend, &volume)? {
            heads.push((volume.clone(), branch, head));
        }
    }
    // The member commits every group commit names are kept like branch heads.
    for group in backend.list_groups()? {
        for (key, commit) in super::group::member_commits(backend, &group)? {
            heads.push((key, format!("of group {group}"), commit));
        }
    }
    let mut commits = HashMap::new();
    let roots: Vec<ObjectId> = heads.iter().map(|h| h.2).collect();
    let remote = Remote {
        backend,
        index,
        seal: &Seal::Plain,
    };
    walk_commits(&remote, &roots, |id, c| {
        commits.insert(id, c.clone());
        Ok(true)
    })?;
    Ok(Graph { commits, heads })
}

/// Commits reachable from `roots` in the graph.
fn reachable(graph: &Graph, roots: impl IntoIterator<Item = ObjectId>) -> HashSet<ObjectId> {
    let mut seen = HashSet::new();
    let mut todo: Vec<ObjectId> = roots.into_iter().collect();
    while let Some(id) = todo.pop() {
        if seen.insert(id) {
            if let Some(c) = graph.commits.get(&id) {
                todo.extend(c.parents.iter().copied());
            }
        }
    }
    seen
}

/// Apply `policy` to `volume` on the remote graph: (report, commits to expire now).
fn plan_remote(
    graph: &Graph,
    volume: &str,
    policy: &Policy,
    listed: &HashSet<ObjectId>,
    dry_run: bool,
) -> (PruneReport, Vec<ObjectId>) {
    let mut protected: HashMap<ObjectId, Vec<String>> = HashMap::new();
    for (v, branch, head) in &graph.heads {
        if v == volume {
            protected
                .entry(*head)
                .or_default()
                .push(format!("branch {branch}"));
        }
    }
    let others = reachable(
        graph,
        graph.heads.iter().filter(|h| h.0 != volume).map(|h| h.2),
    );
    for id in others {
        protected
            .entry(id)
            .or_default()
            .push("reached by another volume".into());
    }
    let own = reachable(
        graph,
        graph.heads.iter().filter(|h| h.0 == volume).map(|h| h.2),
    );
    let commits: Vec<Candidate> = own
        .iter()
        .filter_map(|id| graph.commits.get(id).map(|c| (id, c)))
        .map(|(id, c)| Candidate {
            id: *id,
            parents: c.parents.clone(),
            time: c.time,
            tz_offset_min: c.tz_offset_min,
            date: c.date_string(),
            message: c.message.clone(),
        })
        .collect();
    let keep = select(&commits, policy, &protected);
    let newly: Vec<ObjectId> = commits
        .iter()
        .filter(|c| keep[&c.id].is_empty() && !listed.contains(&c.id))
        .map(|c| c.id)
        .collect();
    let report = PruneReport {
        commits: decisions(&commits, &keep, listed),
        expired: newly.len() as u64,
        dry_run,
    };
    (report, newly)
}

/// Every object the remote's refs reach, skipping the trees of `expired` commits, through the
/// shared walker ([`reach::walk`]): every tree and chunk-list node is read, verified and
/// checked against its limits; chunks must be indexed.
fn live_objects(
    backend: &dyn Backend,
    index: &RemoteIndex,
    graph: &Graph,
    expired: &HashSet<ObjectId>,
) -> Result<HashSet<ObjectId>> {
    // The commits are already read (the graph); the walk starts at their trees.
    let mut live = reach::Reached::new();
    for id in graph.commits.keys() {
        live.insert(*id, Kind::Commit);
    }
    let roots: Vec<(ObjectId, Edge)> = graph
        .commits
        .iter()
        .filter(|(id, _)| !expired.contains(*id))
        .map(|(_, c)| (c.tree, Edge::root_tree()))
        .collect();
    let mut visit = LiveWalk {
        remote: Remote {
            backend,
            index,
            seal: &Seal::Plain,
        },
    };
    reach::walk(roots, &mut live, &mut visit)?;
    Ok(live.into_ids())
}

/// Loads trees and list nodes for remote gc's walk; a chunk must be in some pack index.
struct LiveWalk<'a> {
    remote: Remote<'a>,
}

impl reach::Visit for LiveWalk<'_> {
    fn skip(&mut self, _id: &ObjectId, _edge: Edge) -> Result<bool> {
        Ok(false)
    }

    fn load(&mut self, batch: &[(ObjectId, Edge)]) -> Result<Vec<Vec<u8>>> {
        load_batch(&self.remote, batch)
    }

    fn chunk(&mut self, id: &ObjectId, _len: u64) -> Result<()> {
        if self.remote.index.contains_key(id) {
            return Ok(());
        }
        Err(RemoteError::Unindexed {
            what: "chunk",
            id: *id,
            note: "; remote gc stopped, nothing deleted",
        }
        .into())
    }
}

/// `gc/pending`: pack key -> when remote gc first found it unreachable (seconds since epoch).
fn read_pending(backend: &dyn Backend) -> Result<BTreeMap<String, i64>> {
    match backend.get(GC_PENDING_KEY)? {
        None => Ok(BTreeMap::new()),
        Some(b) => serde_json::from_slice(&b)
            .map_err(|e| RemoteError::bad_record(GC_PENDING_KEY, format!("is damaged: {e}"))),
    }
}

/// Delete packs of unreachable objects whose grace period is over, after copying their
/// reachable objects into new packs.
fn remote_gc(
    backend: &dyn Backend,
    keys: &[String],
    packs: &[(Arc<str>, Vec<IdxEntry>)],
    index: &RemoteIndex,
    live: &HashSet<ObjectId>,
    opts: &GcOptions,
) -> Result<RemoteGcReport> {
    let now = chrono::Utc::now().timestamp();
    let before = read_pending(backend)?;
    let mut pending = BTreeMap::new();
    let mut doomed = Vec::new();
    let mut report = RemoteGcReport {
        objects_live: live.len() as u64,
        ..RemoteGcReport::default()
    };
    let indexed: HashSet<&str> = packs.iter().map(|p| &*p.0).collect();
    let orphans: Vec<(Arc<str>, Vec<IdxEntry>)> = keys
        .iter()
        .filter(|k| k.ends_with(".pack") && !indexed.contains(k.as_str()))
        .map(|k| (Arc::from(k.as_str()), Vec::new()))
        .collect();
    for (pack, entries) in packs.iter().chain(&orphans) {
        if !entries.is_empty() && entries.iter().all(|e| live.contains(&e.id)) {
            continue;
        }
        let first = before.get(&**pack).copied().unwrap_or(now);
        if now.saturating_sub(first) as u64 >= opts.grace_secs {
            doomed.push((pack.clone(), entries));
        } else {
            pending.insert(pack.to_string(), first);
            report.packs_waiting += 1;
        }
    }
    let doomed_keys: HashSet<&str> = doomed.iter().map(|d| &*d.0).collect();
    // Reachable objects of doomed packs that no surviving pack holds are copied first.
    let kept: HashSet<ObjectId> = packs
        .iter()
        .filter(|p| !doomed_keys.contains(&*p.0))
        .flat_map(|p| p.1.iter().map(|e| e.id))
        .collect();
    let mut rescue: Vec<&IdxEntry> = doomed
        .iter()
        .flat_map(|d| d.1.iter())
        .filter(|e| live.contains(&e.id) && !kept.contains(&e.id))
        .collect();
    rescue.sort_by_key(|e| e.id);
    rescue.dedup_by_key(|e| e.id);
    for (_, entries) in &doomed {
        report.bytes_deleted += entries
            .iter()
            .map(|e| (RECORD_HEADER_LEN as u64) + e.clen as u64)
            .sum::<u64>();
        if entries.iter().any(|e| live.contains(&e.id)) {
            report.packs_rewritten += 1;
        } else {
            report.packs_deleted += 1;
        }
    }
    if opts.dry_run {
        return Ok(report);
    }
    copy_records(backend, index, &rescue)?;
    crate::failpoint::hit("remote-gc.after-copy");
    for (pack, _) in &doomed {
        let idx = pack.replace(".pack", ".idx");
        if indexed.contains(&**pack) {
            backend.delete(&idx)?;
            crate::failpoint::hit("remote-gc.after-idx-delete");
        }
        backend.delete(pack)?;
    }
    let body = serde_json::to_vec(&pending).expect("pending map serializes");
    backend.put(GC_PENDING_KEY, body)?;
    Ok(report)
}

/// Copy records (verified) into new packs, children-first order not needed: every copied
/// object is already reachable through kept packs or this copy. Block members (and raw chunk
/// records) come back uncompressed and are compressed again together, in the order they are read (members of
/// one old block stay neighbours), in blocks of up to [`MAX_BLOCK_CHUNKS`].
fn copy_records(backend: &dyn Backend, index: &RemoteIndex, entries: &[&IdxEntry]) -> Result<()> {
    let mut pack = PackOut::new();
    for kind in [Kind::Chunk, Kind::List, Kind::Tree, Kind::Commit] {
        let ids: Vec<ObjectId> = entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.id)
            .collect();
        let mut full = Vec::new();
        let mut members: Vec<(ObjectId, Vec<u8>)> = Vec::new();
        read_plain(backend, index, &ids, |h, payload| {
            let data = decode_payload(&h.id, &h, &payload)?;
            if h.codec == CODEC_RAW && kind == Kind::Chunk {
                members.push((h.id, data));
                if members.len() == MAX_BLOCK_CHUNKS {
                    append_chunks(&mut pack, &std::mem::take(&mut members))?;
                }
            } else {
                pack.append(&h, &payload, &Seal::Plain);
            }
            if pack.buf.len() >= super::transfer::PUSH_PACK_SIZE {
                full.push(std::mem::take(&mut pack));
            }
            Ok(())
        })?;
        append_chunks(&mut pack, &members)?;
        for p in full {
            p.upload(backend, &Seal::Plain)?;
        }
    }
    if !pack.entries.is_empty() {
        pack.upload(backend, &Seal::Plain)?;
    }
    Ok(())
}

/// Compress rescued chunks (already verified) together: one block, or a plain record for a
/// single one.
fn append_chunks(pack: &mut PackOut, members: &[(ObjectId, Vec<u8>)]) -> Result<()> {
    let run: Vec<(ObjectId, &[u8])> = members.iter().map(|(id, d)| (*id, &d[..])).collect();
    if run.is_empty() {
        return Ok(());
    }
    let rec = make_block(&run)?;
    if rec.members.is_empty() {
        let header = RecordHeader {
            id: rec.id,
            kind: Kind::Chunk,
            codec: rec.codec,
            ulen: rec.ulen,
            clen: rec.payload.len() as u32,
        };
        pack.append(&header, &rec.payload, &Seal::Plain);
    } else {
        let block = RawBlock {
            members: rec.members,
            ulen: rec.ulen,
            payload: rec.payload,
        };
        pack.append_block(&block, &Seal::Plain);
    }
    Ok(())
}

/// `dvol prune --remote NAME`: apply `policy` to the volume on the remote, publish the newly
/// expired commits, then run remote gc.
pub fn prune_remote(
    repo: &Repo,
    volume: &str,
    remote: &str,
    policy: &Policy,
    opts: &GcOptions,
    connect: &super::ConnectOptions,
) -> Result<RemotePruneReport> {
    if policy.is_empty() {
        return Err(Error::NoKeepRule);
    }
    let url = repo.remote_url(volume, remote)?;
    if repo.remote_encrypted(volume, remote)? {
        return Err(RemoteError::GcEncrypted { url }.into());
    }
    let remote_volume = repo.remote_volume(volume, remote)?;
    let backend = open(&url, connect)?;
    if !check_format(backend.as_ref(), false)? {
        return Err(RemoteError::NotARemote {
            url,
            push_first: false,
        }
        .into());
    }
    let cache = cache_dir(repo.root(), &url);
    // Listed first: a pack uploaded after this moment is never considered.
    let keys = backend.list("packs/")?;
    let packs = remote_packs(backend.as_ref(), Some(&cache), &Seal::Plain)?;
    let index = remote_index(backend.as_ref(), &cache, &Seal::Plain)?;
    let graph = load_graph(backend.as_ref(), &index)?;
    let mut listed = remote_expired(backend.as_ref())?;
    let (prune, newly) = plan_remote(&graph, &remote_volume, policy, &listed, opts.dry_run);
    if !opts.dry_run {
        publish_expired(backend.as_ref(), &remote_volume, &newly)?;
    }
    listed.extend(newly);
    let live = live_objects(backend.as_ref(), &index, &graph, &listed)?;
    let gc = remote_gc(backend.as_ref(), &keys, &packs, &index, &live, opts)?;
    Ok(RemotePruneReport { url, prune, gc })
}

/// Read the records of `ids` from a plain remote (remote gc refuses encrypted ones) through
/// [`read_objects`].
fn read_plain(
    backend: &dyn Backend,
    index: &RemoteIndex,
    ids: &[ObjectId],
    f: impl FnMut(RecordHeader, Vec<u8>) -> Result<()>,
) -> Result<u64> {
    let remote = Remote {
        backend,
        index,
        seal: &Seal::Plain,
    };
    read_objects(&remote, ids, f)
}
