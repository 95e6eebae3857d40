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

/// One chunking scheme on the insertion experiment (`--insertion`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InsertRow {
    pub scheme: String,
    /// Chunks of the 64 MiB dump.
    pub chunks: u64,
    /// zstd -1 of the dump's chunks in runs of 16 (how dvol stores them), bytes.
    pub stored: u64,
    /// The same for 64 MiB of very regular text rows.
    #[serde(default)]
    pub rows_stored: u64,
    /// Bytes of new chunks after 100 KiB is inserted in the middle.
    pub insert_chunk_bytes: u64,
    /// Bytes of new chunk-list nodes after the insertion (dvol's list builder).
    pub insert_list_bytes: u64,
    /// Bytes of new chunks after 1% of the pages of a 64 MiB page file are rewritten.
    pub pages_chunk_bytes: u64,
    /// Seconds per GiB to find the cut points (one core).
    pub cut_secs_per_gib: f64,
}

/// A text dump (SQL rows): compressible, every line distinct.
fn dump_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = crate::data::Rng::new(seed, 0xD0);
    let mut out = Vec::with_capacity(len + 128);
    let mut id = 0u64;
    while out.len() < len {
        id += 1;
        out.extend_from_slice(
            format!(
                "INSERT INTO orders VALUES ({id}, {}, 'customer-{:05}', {}.{:02}, '2024-{:02}-{:02}');\n",
                rng.below(1_000_000),
                rng.below(50_000),
                rng.below(10_000),
                rng.below(100),
                1 + rng.below(12),
                1 + rng.below(28)
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

/// Counts the bytes of distinct list nodes put into it.
#[derive(Default)]
struct ListBytes {
    seen: std::sync::Mutex<HashSet<dvol::ObjectId>>,
    bytes: std::sync::atomic::AtomicU64,
}

impl dvol::store::ObjectSink for ListBytes {
    fn prepare(
        &self,
        id: dvol::ObjectId,
        kind: dvol::store::Kind,
        data: &[u8],
    ) -> dvol::Result<Option<dvol::store::Record>> {
        if kind == dvol::store::Kind::List && self.seen.lock().unwrap().insert(id) {
            self.bytes
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(None)
    }
    fn submit(&self, _: Vec<dvol::store::Record>) -> dvol::Result<()> {
        Ok(())
    }
}

/// Cut points of a whole file: fixed 8 KiB, or FastCDC 2020 with (min, avg, max), its
/// pieces split in 8 KiB chunks from their start when `split`.
fn cuts(data: &[u8], cdc: Option<(u32, u32, u32)>, split: bool) -> Vec<(usize, usize)> {
    match cdc {
        None => fixed(data),
        Some((min, avg, max)) => fastcdc::v2020::FastCDC::new(data, min, avg, max)
            .flat_map(|c| {
                let step = if split { PAGE } else { c.length };
                (c.offset..c.offset + c.length)
                    .step_by(step)
                    .map(move |o| (o, step.min(c.offset + c.length - o)))
            })
            .collect(),
    }
}

/// Text rows like the tests' (`row 000001 value 7 name customer-1`): very regular, so zstd's
/// context decides its size.
fn rows_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "row {i:06} value {} name customer-{}\n",
                i * 7 % 1000,
                i % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Bytes of `data` cut at `cuts` as dvol stores them: zstd -1 of runs of 16 chunks.
fn stored(data: &[u8], cuts: &[(usize, usize)]) -> u64 {
    cuts.chunks(16)
        .map(|run| {
            let (o, _) = run[0];
            let (lo, ll) = run[run.len() - 1];
            zstd::bulk::compress(&data[o..lo + ll], 1).unwrap().len() as u64
        })
        .sum()
}

/// The chunk-list bytes of a file cut at `cuts` (kept in `sink`, which dedups nodes).
fn list_of(data: &[u8], cuts: &[(usize, usize)], defined: bool, sink: &ListBytes) {
    let cut = if defined {
        dvol::store::Cut::Defined
    } else {
        dvol::store::Cut::Fixed
    };
    let mut list = dvol::store::ListBuilder::for_cut(sink, cut);
    for &(o, l) in cuts {
        let id = dvol::ObjectId::hash(&data[o..o + l]);
        list.push(dvol::store::ListEntry { id, len: l as u64 })
            .unwrap();
    }
    list.finish().unwrap();
}

/// A chunking: fixed blocks or FastCDC (min, avg, max).
struct Scheme {
    name: &'static str,
    cdc: Option<(u32, u32, u32)>,
    /// Pieces cut by FastCDC are split in 8 KiB chunks from their start.
    split: bool,
    /// List nodes end where entry ids say.
    lists: bool,
}

/// Fixed blocks against FastCDC of several sizes on a 64 MiB dump with 100 KiB inserted in
/// its middle, and on a 64 MiB page file with 1% of its pages rewritten. Chunks larger than
/// 8 KiB are listed for comparison only: dvol's readers bound a chunk at 8 KiB.
pub fn insertion(seed: u64) -> Vec<InsertRow> {
    const LEN: usize = 64 << 20;
    let dump = dump_bytes(seed, LEN + 1234);
    let mut inserted = dump[..LEN / 2 + 777].to_vec();
    inserted.extend(dump_bytes(seed + 1, 100 << 10));
    inserted.extend(&dump[LEN / 2 + 777..]);
    let mut pages = Vec::new();
    segment_bytes(seed, 0, &mut pages);
    let dirty: BTreeSet<u64> = crate::data::dirty_pages(seed, 1, 0.01, 1);
    let mut rewritten = pages.clone();
    let mut pagebuf = vec![0u8; PAGE];
    for &p in &dirty {
        page(seed, 0, p, 1, &mut pagebuf);
        rewritten[p as usize * PAGE..(p as usize + 1) * PAGE].copy_from_slice(&pagebuf);
    }
    let scheme = |name, cdc, split, lists| Scheme {
        name,
        cdc,
        split,
        lists,
    };
    let schemes = [
        scheme("fixed 8 KiB", None, false, false),
        scheme("FastCDC 2/4/8 KiB", Some((2048, 4096, 8192)), false, true),
        scheme(
            "FastCDC 4/16/64 KiB in 8 KiB pieces, lists of 32",
            Some((4096, 16384, 65536)),
            true,
            false,
        ),
        scheme("FastCDC 1/4/8 KiB", Some((1024, 4096, 8192)), false, true),
        scheme("FastCDC 4/4/8 KiB", Some((4096, 4096, 8192)), false, true),
        scheme("FastCDC 2/8/64 KiB", Some((2048, 8192, 65536)), false, true),
        scheme(
            "FastCDC 16/64/256 KiB in 8 KiB pieces",
            Some((16384, 65536, 262_144)),
            true,
            true,
        ),
        scheme(
            "FastCDC 4/16/64 KiB in 8 KiB pieces (dvol)",
            Some((4096, 16384, 65536)),
            true,
            true,
        ),
        scheme(
            "FastCDC 8/32/128 KiB in 8 KiB pieces",
            Some((8192, 32768, 131_072)),
            true,
            true,
        ),
    ];
    let rows = rows_bytes(LEN);
    let new_bytes = |before: &[u8], after: &[u8], cdc, split| {
        let old: HashSet<[u8; 32]> = cuts(before, cdc, split)
            .into_iter()
            .map(|(o, l)| *blake3::hash(&before[o..o + l]).as_bytes())
            .collect();
        cuts(after, cdc, split)
            .into_iter()
            .filter(|&(o, l)| !old.contains(blake3::hash(&after[o..o + l]).as_bytes()))
            .map(|(_, l)| l as u64)
            .sum::<u64>()
    };
    let mut out = Vec::new();
    for Scheme {
        name,
        cdc,
        split,
        lists,
    } in schemes
    {
        let t = Instant::now();
        let first = cuts(&dump, cdc, split);
        let cut_secs_per_gib =
            t.elapsed().as_secs_f64() * f64::from(1u32 << 30) / dump.len() as f64;
        let sink = ListBytes::default();
        list_of(&dump, &first, lists, &sink);
        let before_lists = sink.bytes.load(std::sync::atomic::Ordering::Relaxed);
        list_of(&inserted, &cuts(&inserted, cdc, split), lists, &sink);
        out.push(InsertRow {
            scheme: name.to_string(),
            chunks: first.len() as u64,
            stored: stored(&dump, &first),
            rows_stored: stored(&rows, &cuts(&rows, cdc, split)),
            insert_chunk_bytes: new_bytes(&dump, &inserted, cdc, split),
            insert_list_bytes: sink.bytes.load(std::sync::atomic::Ordering::Relaxed) - before_lists,
            pages_chunk_bytes: new_bytes(&pages, &rewritten, cdc, split),
            cut_secs_per_gib,
        });
    }
    out
}
