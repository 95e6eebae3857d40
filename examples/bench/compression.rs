//! What compression unit to store (issue 11): on a real database set, the bytes zstd
//! produces for the unique 8 KiB chunks of the first snapshot and for the new chunks of the
//! change, when each chunk is compressed alone (dvol's pack format 1), with a trained
//! dictionary, or in blocks of N consecutive new chunks compressed together (dedup stays at
//! 8 KiB: a block only holds chunks that were new when it was written). Nothing touches dvol.

use crate::data::PAGE;
use anyhow::Result;
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CompRow {
    pub set: String,
    pub scheme: String,
    /// Compressed payload of the first snapshot's unique chunks.
    pub first_bytes: u64,
    /// Compressed payload of the chunks the change added.
    pub growth_bytes: u64,
    /// One core, compressing the first snapshot's chunks.
    pub secs: f64,
    pub unique_chunks: u64,
    pub new_chunks: u64,
}

/// Regular files under `dir`, sorted by path (the order a commit reads them in).
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e?;
        if e.file_type().is_file() {
            out.push(e.path().to_path_buf());
        }
    }
    Ok(out)
}

/// Calls `f` with each 8 KiB chunk of `dir` (files in order) not seen before.
fn unique_chunks(dir: &Path, seen: &mut HashSet<[u8; 32]>, mut f: impl FnMut(&[u8])) -> Result<()> {
    let mut buf = vec![0u8; PAGE];
    for path in files(dir)? {
        let mut file = fs::File::open(&path)?;
        loop {
            let n = read_full(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            if seen.insert(*blake3::hash(&buf[..n]).as_bytes()) {
                f(&buf[..n]);
            }
            if n < PAGE {
                break;
            }
        }
    }
    Ok(())
}

fn read_full(file: &mut fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = file.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}

/// One way of compressing a stream of chunks.
enum Scheme {
    /// Every chunk its own zstd frame at this level.
    PerChunk(i32),
    /// Every chunk its own frame, with a dictionary trained on the first snapshot.
    Dict(i32),
    /// Runs of up to N chunks in one frame.
    Block(usize, i32),
}

impl Scheme {
    fn name(&self) -> String {
        match self {
            Scheme::PerChunk(l) => format!("each 8 KiB chunk alone, zstd -{l} (format 1)"),
            Scheme::Dict(l) => format!("each chunk alone, 112 KiB trained dictionary, zstd -{l}"),
            Scheme::Block(n, l) => {
                format!("blocks of {n} chunks ({} KiB), zstd -{l}", n * PAGE / 1024)
            }
        }
    }
}

/// Compresses a chunk stream under one scheme, counting output bytes.
struct Sink<'a> {
    scheme: &'a Scheme,
    dict: Option<&'a zstd::dict::EncoderDictionary<'static>>,
    pending: Vec<u8>,
    pending_chunks: usize,
    out: u64,
}

impl Sink<'_> {
    fn push(&mut self, chunk: &[u8]) -> Result<()> {
        match *self.scheme {
            Scheme::PerChunk(level) => self.out += zstd::bulk::compress(chunk, level)?.len() as u64,
            Scheme::Dict(_) => {
                let dict = self.dict.expect("dictionary trained");
                let mut c = zstd::bulk::Compressor::with_prepared_dictionary(dict)?;
                self.out += c.compress(chunk)?.len() as u64;
            }
            Scheme::Block(n, _) => {
                self.pending.extend_from_slice(chunk);
                self.pending_chunks += 1;
                if self.pending_chunks == n {
                    self.flush()?;
                }
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        if let Scheme::Block(_, level) = *self.scheme {
            if !self.pending.is_empty() {
                self.out += zstd::bulk::compress(&self.pending, level)?.len() as u64;
            }
        }
        self.pending.clear();
        self.pending_chunks = 0;
        Ok(())
    }
}

/// Trains a 112 KiB dictionary on every 16th chunk of `dir` (at most 16 MiB of samples).
fn train(dir: &Path) -> Result<Vec<u8>> {
    let mut samples = Vec::new();
    let mut sizes = Vec::new();
    let mut i = 0u64;
    unique_chunks(dir, &mut HashSet::new(), |c| {
        if i.is_multiple_of(16) && samples.len() < 16 << 20 {
            samples.extend_from_slice(c);
            sizes.push(c.len());
        }
        i += 1;
    })?;
    Ok(zstd::dict::from_continuous(&samples, &sizes, 112 << 10)?)
}

fn measure(
    set: &str,
    before: &Path,
    after: &Path,
    scheme: &Scheme,
    dict: Option<&zstd::dict::EncoderDictionary<'static>>,
) -> Result<CompRow> {
    let mut seen = HashSet::new();
    let mut sink = Sink {
        scheme,
        dict,
        pending: Vec::new(),
        pending_chunks: 0,
        out: 0,
    };
    let mut err = None;
    let start = Instant::now();
    let mut unique = 0u64;
    unique_chunks(before, &mut seen, |c| {
        unique += 1;
        if let Err(e) = sink.push(c) {
            err.get_or_insert(e);
        }
    })?;
    sink.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let first_bytes = std::mem::take(&mut sink.out);
    let mut new = 0u64;
    unique_chunks(after, &mut seen, |c| {
        new += 1;
        if let Err(e) = sink.push(c) {
            err.get_or_insert(e);
        }
    })?;
    sink.flush()?;
    if let Some(e) = err {
        return Err(e);
    }
    Ok(CompRow {
        set: set.into(),
        scheme: scheme.name(),
        first_bytes,
        growth_bytes: sink.out,
        secs,
        unique_chunks: unique,
        new_chunks: new,
    })
}

/// Every scheme on one database set (its `before` and `after` states).
pub fn compare(set: &str, before: &Path, after: &Path) -> Result<Vec<CompRow>> {
    let dict_bytes = train(before)?;
    let dict = zstd::dict::EncoderDictionary::copy(&dict_bytes, 1);
    let schemes = [
        Scheme::PerChunk(1),
        Scheme::PerChunk(3),
        Scheme::Dict(1),
        Scheme::Block(8, 1),
        Scheme::Block(16, 1),
        Scheme::Block(64, 1),
        Scheme::Block(128, 1),
        Scheme::Block(16, 3),
    ];
    schemes
        .iter()
        .map(|s| {
            eprintln!("[compression {set}] {}", s.name());
            measure(set, before, after, s, Some(&dict))
        })
        .collect()
}
