//! Fixed 8 KiB blocks vs content-defined chunking (FastCDC 2020, min 2 / avg 8 / max 64 KiB)
//! on the database-like set: how many bytes of chunks are new after the 1% page rewrite.
//! Everything is rebuilt in memory from the seed; nothing touches dvol.

use crate::data::{page, segment_bytes, PAGE, PAGES_PER_SEGMENT};
use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChunkRow {
    pub scheme: String,
    pub chunks_after: u64,
    pub new_chunks: u64,
    pub new_bytes: u64,
    pub rewritten_bytes: u64,
    pub cut_secs: f64,
}

type Cutter = fn(&[u8]) -> Vec<(usize, usize)>;

fn fixed(data: &[u8]) -> Vec<(usize, usize)> {
    (0..data.len())
        .step_by(PAGE)
        .map(|o| (o, PAGE.min(data.len() - o)))
        .collect()
}

fn cdc(data: &[u8]) -> Vec<(usize, usize)> {
    fastcdc::v2020::FastCDC::new(data, 2048, 8192, 65536)
        .map(|c| (c.offset, c.length))
        .collect()
}

pub fn compare(seed: u64, segments: u64, dirty: &BTreeSet<u64>) -> Vec<ChunkRow> {
    let schemes: [(&str, Cutter); 2] = [("fixed 8 KiB (dvol)", fixed), ("FastCDC 2/8/64 KiB", cdc)];
    let mut rows = Vec::new();
    for (name, cut) in schemes {
        let mut before: HashSet<[u8; 32]> = HashSet::new();
        let (mut chunks_after, mut new_chunks, mut new_bytes) = (0u64, 0u64, 0u64);
        let mut cut_secs = 0.0;
        let mut buf = Vec::new();
        let mut pagebuf = vec![0u8; PAGE];
        // Pass 1: every chunk of the original files.
        for seg in 0..segments {
            segment_bytes(seed, seg, &mut buf);
            let t = Instant::now();
            let cuts = cut(&buf);
            cut_secs += t.elapsed().as_secs_f64();
            for (o, l) in cuts {
                before.insert(*blake3::hash(&buf[o..o + l]).as_bytes());
            }
        }
        // Pass 2: the files after the checkpoint; count chunks not seen before.
        for seg in 0..segments {
            segment_bytes(seed, seg, &mut buf);
            let lo = seg * PAGES_PER_SEGMENT;
            for &g in dirty.range(lo..lo + PAGES_PER_SEGMENT) {
                let p = g - lo;
                page(seed, seg, p, 1, &mut pagebuf);
                buf[p as usize * PAGE..(p as usize + 1) * PAGE].copy_from_slice(&pagebuf);
            }
            for (o, l) in cut(&buf) {
                chunks_after += 1;
                if !before.contains(blake3::hash(&buf[o..o + l]).as_bytes()) {
                    new_chunks += 1;
                    new_bytes += l as u64;
                }
            }
        }
        rows.push(ChunkRow {
            scheme: name.to_string(),
            chunks_after,
            new_chunks,
            new_bytes,
            rewritten_bytes: dirty.len() as u64 * PAGE as u64,
            cut_secs,
        });
    }
    rows
}
