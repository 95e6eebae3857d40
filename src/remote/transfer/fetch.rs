//! Fetch: walk what the remote heads reach and the local store lacks, download those records
//! with ranged reads, verify each (header, kind, bounded decompression, hash, decoding) and
//! store them; chunks are checkpointed into the local index so an interrupted fetch resumes.

use super::index::{remote_index, RemoteIndex};
use super::records::read_objects;
use crate::failpoint::{hit, knob as test_knob};
use crate::progress::Progress;
use crate::remote::Backend;
use crate::repo::reach::{self, Edge};
use crate::repo::{Commit, Repo};
use crate::store::{self, decode_payload, Kind, ObjectId, WriteSession, CHUNK_SIZE};
use crate::Result;
use std::collections::{HashMap, HashSet};
use std::path::Path;

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
    progress: &dyn Progress,
) -> Result<Downloaded> {
    let index = remote_index(backend, cache)?;
    let store = repo.store().clone();
    let mut remote = RemoteVisit {
        backend,
        index: &index,
        meta: store.writer()?,
        commits: Vec::new(),
        chunks: Vec::new(),
        bytes: 0,
    };
    let mut seen = HashSet::new();
    reach::walk(
        heads.iter().map(|h| (*h, Edge::Commit)),
        &mut seen,
        &mut remote,
    )?;
    let RemoteVisit {
        meta,
        commits,
        chunks,
        mut bytes,
        ..
    } = remote;
    let mut objects = (seen.len() - chunks.len()) as u64;
    // Chunks, in batches; checkpointed into the local index so a re-run reuses them.
    let mut chunks_session = store.writer()?;
    objects += chunks.len() as u64;
    let total: u64 = chunks
        .iter()
        .filter_map(|id| index.get(id))
        .map(|l| l.entry.clen as u64)
        .sum();
    progress.start("Fetching", Some(total));
    let checkpoint = test_knob("DVOL_TEST_FETCH_CHECKPOINT").unwrap_or(FETCH_CHECKPOINT);
    let mut since = 0u64;
    let batch_len = (checkpoint as usize / CHUNK_SIZE).clamp(1, 2048);
    for batch in chunks.chunks(batch_len) {
        let wanted: Vec<(ObjectId, Kind)> = batch.iter().map(|id| (*id, Kind::Chunk)).collect();
        let got = read_objects(backend, &index, &wanted, |h, payload| {
            progress.advance(payload.len() as u64);
            chunks_session.put_verified_record(&h, payload)?;
            Ok(())
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
        packs,
        objects,
        bytes,
    })
}

/// The fetch side of the shared walk: skips what the local store has, reads commits, trees
/// and list nodes from the remote (verified, then stored), collects the chunks to download.
struct RemoteVisit<'a> {
    backend: &'a dyn Backend,
    index: &'a RemoteIndex,
    meta: WriteSession,
    commits: Vec<(ObjectId, Commit)>,
    chunks: Vec<ObjectId>,
    bytes: u64,
}

impl reach::Visit for RemoteVisit<'_> {
    fn skip(&mut self, id: &ObjectId, _edge: Edge) -> Result<bool> {
        self.meta.has(id)
    }

    fn load(&mut self, batch: &[(ObjectId, Edge)]) -> Result<Vec<Vec<u8>>> {
        let wanted: Vec<(ObjectId, Kind)> = batch.iter().map(|(id, e)| (*id, e.kind())).collect();
        let mut got: HashMap<ObjectId, Vec<u8>> = HashMap::with_capacity(batch.len());
        let meta = &self.meta;
        self.bytes += read_objects(self.backend, self.index, &wanted, |h, payload| {
            let data = decode_payload(&h.id, &h, &payload)?;
            meta.put_verified_record(&h, payload)?;
            got.insert(h.id, data);
            Ok(())
        })?;
        let mut out = Vec::with_capacity(batch.len());
        for (id, edge) in batch {
            let data = got
                .remove(id)
                .expect("read_objects returns every wanted record");
            if *edge == Edge::Commit {
                self.commits.push((*id, Commit::decode(id, &data)?));
            }
            out.push(data);
        }
        Ok(out)
    }

    fn chunk(&mut self, id: &ObjectId, _len: u64) -> Result<()> {
        self.chunks.push(*id);
        Ok(())
    }
}
