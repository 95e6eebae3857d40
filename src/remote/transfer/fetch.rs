//! Fetch: walk what the remote heads reach and the local store lacks, download those records
//! with ranged reads, verify each (header, kind, bounded decompression, hash, decoding) and
//! store them; chunks are checkpointed into the local index so an interrupted fetch resumes.

use super::index::{remote_index, RemoteIndex};
use super::records::{read_objects, read_pieces, Piece, Remote};
use crate::failpoint::{hit, knob as test_knob};
use crate::progress::Progress;
use crate::remote::crypt::Seal;
use crate::remote::Backend;
use crate::repo::reach::{self, Edge};
use crate::repo::{Commit, Repo};
use crate::store::{self, decode_payload, Kind, ObjectId, RawBlock, WriteSession, CHUNK_SIZE};
use crate::Result;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Fetched chunks are indexed locally after this many bytes, so a re-run reuses them.
const FETCH_CHECKPOINT: u64 = 256 << 20;

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
    let store = repo.store().clone();
    let listed = crate::remote::prune::remote_expired(backend)?;
    let mut remote = RemoteVisit {
        remote: Remote {
            backend,
            index: &index,
            seal,
        },
        meta: store.writer()?,
        listed: &listed,
        expired: Vec::new(),
        commits: Vec::new(),
        chunks: Vec::new(),
        bytes: 0,
    };
    let mut seen = reach::Reached::new();
    reach::walk(
        heads.iter().map(|h| (*h, Edge::Commit)),
        &mut seen,
        &mut remote,
    )?;
    let RemoteVisit {
        meta,
        commits,
        expired,
        chunks,
        mut bytes,
        ..
    } = remote;
    let mut objects = seen.len().saturating_sub(chunks.len()) as u64;
    // Chunks, in batches; checkpointed into the local index so a re-run reuses them.
    let mut chunks_session = store.writer()?;
    objects += chunks.len() as u64;
    // A block is counted once, however many of its members are wanted.
    let total: u64 = chunks
        .iter()
        .filter_map(|id| index.get(&seal.remote_id(id)))
        .map(|l| ((l.pack.clone(), l.entry.offset), u64::from(l.entry.clen)))
        .collect::<HashMap<_, _>>()
        .values()
        .sum();
    progress.start("Fetching", Some(total));
    let checkpoint = test_knob("DVOL_TEST_FETCH_CHECKPOINT").unwrap_or(FETCH_CHECKPOINT);
    let mut since = 0u64;
    let batch_len = (checkpoint as usize / CHUNK_SIZE).clamp(1, 2048);
    for batch in chunks.chunks(batch_len) {
        let mut last = None;
        let got = read_pieces(&remote_of(backend, &index, seal), batch, |piece| {
            store_chunk(&chunks_session, piece, &mut last, progress)
        })?;
        bytes += got;
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
        bytes,
    })
}

/// Store a fetched chunk: a record after verifying it, a block (verified when read) whole,
/// once for the members read together (`last`: the block of the previous member).
fn store_chunk(
    session: &WriteSession,
    piece: Piece,
    last: &mut Option<Arc<(RawBlock, Vec<u8>)>>,
    progress: &dyn Progress,
) -> Result<()> {
    match piece {
        Piece::Record(h, payload) => {
            progress.advance(payload.len() as u64);
            session.put_verified_record(Kind::Chunk, &h, payload)?;
        }
        Piece::Member(_, block) => {
            if last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &block)) {
                return Ok(());
            }
            if session.put_verified_block(block.0.clone())? {
                progress.advance(block.0.payload.len() as u64);
            }
            *last = Some(block);
        }
    }
    Ok(())
}

/// The fetch side of the shared walk: skips what the local store has, reads commits, trees
/// and list nodes from the remote (verified, then stored), collects the chunks to download.
fn remote_of<'a>(backend: &'a dyn Backend, index: &'a RemoteIndex, seal: &'a Seal) -> Remote<'a> {
    Remote {
        backend,
        index,
        seal,
    }
}

struct RemoteVisit<'a> {
    remote: Remote<'a>,
    meta: WriteSession,
    /// Commits the remote lists as expired (prune).
    listed: &'a HashSet<ObjectId>,
    /// Listed commits whose tree neither side has: recorded as expired here too.
    expired: Vec<ObjectId>,
    commits: Vec<(ObjectId, Commit)>,
    chunks: Vec<ObjectId>,
    bytes: u64,
}

impl reach::Visit for RemoteVisit<'_> {
    fn skip(&mut self, id: &ObjectId, edge: Edge) -> Result<bool> {
        self.meta.store().holds(id, edge.kind())
    }

    fn load(&mut self, batch: &[(ObjectId, Edge)]) -> Result<Vec<Vec<u8>>> {
        // Stored as the kind it was reached as: a peer's label is not trusted (an id reached
        // in two roles in one batch is read once and stored as the first).
        let roles: HashMap<ObjectId, Kind> =
            batch.iter().rev().map(|(id, e)| (*id, e.kind())).collect();
        let wanted: Vec<ObjectId> = roles.keys().copied().collect();
        let mut got: HashMap<ObjectId, Vec<u8>> = HashMap::with_capacity(batch.len());
        let meta = &self.meta;
        self.bytes += read_objects(&self.remote, &wanted, |h, payload| {
            let data = decode_payload(&h.id, &h, &payload)?;
            meta.put_verified_record(roles[&h.id], &h, payload)?;
            got.insert(h.id, data);
            Ok(())
        })?;
        let mut out = Vec::with_capacity(batch.len());
        for (id, edge) in batch {
            let data = got
                .get(id)
                .cloned()
                .expect("read_objects returns every wanted record");
            if *edge == Edge::Commit {
                let c = Commit::decode(id, &data)?;
                // A tree neither side holds is accepted only for a commit the remote lists
                // as expired; any other missing tree stays "the remote is incomplete".
                if self.listed.contains(&self.remote.seal.remote_id(id))
                    && !self.meta.has(&c.tree)?
                    && !self
                        .remote
                        .index
                        .contains_key(&self.remote.seal.remote_id(&c.tree))
                {
                    self.expired.push(*id);
                }
                self.commits.push((*id, c));
            }
            out.push(data);
        }
        Ok(out)
    }

    fn tree_expired(&self, commit: &ObjectId) -> bool {
        self.expired.contains(commit)
    }

    fn chunk(&mut self, id: &ObjectId, _len: u64) -> Result<()> {
        self.chunks.push(*id);
        Ok(())
    }
}
