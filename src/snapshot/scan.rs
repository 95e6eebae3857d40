//! Scanning a live directory into stored objects: walk it through [`crate::live`] handles
//! (sorted, never following symlinks, one handle per level of the current path), reuse the stat
//! cache for unchanged files, hash and compress the rest on all cores, and store one tree object
//! per directory bottom-up. FIFOs, sockets and devices are skipped with a warning, never opened
//! (the first [`MAX_SKIP_MESSAGES`] are named, the rest counted).
//!
//! Memory follows the directories being visited, never the volume: each directory's cache row
//! is read when it is entered and its new row staged when it is left (see [`super::statcache`]).

use super::statcache::{CacheEntry, DirCache, Slot, StatCache};
use super::tree::{Entry, Meta, Node, Tree};
use crate::error::IoContext;
use crate::live::{Dir, Found, Kind, Stat};
use crate::progress::Progress;
use crate::store::pack::MAX_BLOCK_CHUNKS;
use crate::store::{cut_of, defined_cuts, Cut, CHUNK_SIZE, DEFINED_MAX, PAGE_MULTIPLE};
use crate::store::{ListBuilder, ListEntry, ObjectId, ObjectSink, Record};
use crate::Result;
use rayon::prelude::*;
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub use crate::live::now_ns;

/// Bytes read from a file at a time; its chunks are hashed and compressed in parallel.
const READ_BLOCK: usize = 128 * CHUNK_SIZE;

/// Most messages kept about skipped entries; the others are counted in one more message.
pub const MAX_SKIP_MESSAGES: usize = 100;

/// The result of scanning a live directory. Its stat cache rows are staged in the cache the
/// scan was given: promote them once the scanned objects are durable.
pub struct Scan {
    /// Root tree id.
    pub tree: ObjectId,
    /// Entries that could not be stored (sockets, FIFOs, devices): a message for each of the
    /// first [`MAX_SKIP_MESSAGES`], then one counting the others.
    pub skipped: Vec<String>,
    /// Files whose content had to be read (cache misses).
    pub files_read: u64,
    /// Bytes read from those files.
    pub bytes_read: u64,
}

/// What one scan shares between the directories it visits in parallel.
pub(super) struct Ctx<'a> {
    sink: &'a dyn ObjectSink,
    cache: &'a StatCache,
    progress: &'a dyn Progress,
    skipped: Skips,
    files_read: AtomicU64,
    bytes_read: AtomicU64,
}

/// What scanning one regular file produced.
struct FileScan {
    stat: Stat,
    size: u64,
    content: Option<ObjectId>,
    /// What the cache may keep of it (`None`: changed while read, or too recent to trust).
    cached: Option<CacheEntry>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        sink: &'a dyn ObjectSink,
        cache: &'a StatCache,
        progress: &'a dyn Progress,
    ) -> Ctx<'a> {
        Ctx {
            sink,
            cache,
            progress,
            skipped: Skips::default(),
            files_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
        }
    }

    /// The stat cache the walk reads (and stages rows in).
    pub(super) fn cache(&self) -> &StatCache {
        self.cache
    }

    /// The messages about skipped entries.
    pub(super) fn into_skipped(self) -> Vec<String> {
        self.skipped.into_messages()
    }
}

/// Messages about skipped entries: the first [`MAX_SKIP_MESSAGES`] kept, the rest counted.
#[derive(Default)]
struct Skips(Mutex<(Vec<String>, u64)>);

impl Skips {
    /// Note an entry that cannot be stored (it is never opened); `rel` is its path in the
    /// volume.
    fn add(&self, rel: &[u8], kind: Kind) {
        let rel = String::from_utf8_lossy(rel);
        tracing::debug!(path = %rel, kind = kind.describe(), "skipped");
        let mut skips = self.0.lock().expect("skipped lock");
        if skips.0.len() < MAX_SKIP_MESSAGES {
            skips.0.push(format!(
                "skipped {} {rel}: sockets, FIFOs and devices cannot be stored",
                kind.describe(),
            ));
        } else {
            skips.1 += 1;
        }
    }

    /// The messages, the last one counting those not kept.
    fn into_messages(self) -> Vec<String> {
        let (mut shown, more) = self.0.into_inner().expect("skipped lock");
        if more > 0 {
            shown.push(format!("skipped {more} more special files (not named)"));
        }
        shown
    }
}

/// Scan `root` into objects written to `sink`, trusting `cache` for files whose stat is
/// unchanged and staging its new rows there.
pub fn scan(
    sink: &dyn ObjectSink,
    root: &Path,
    cache: &StatCache,
    progress: &dyn Progress,
) -> Result<Scan> {
    let dir = Dir::open_root(root)?;
    let ctx = Ctx::new(sink, cache, progress);
    progress.start("scanning", None);
    let tree = scan_dir(&ctx, &dir, b"")?;
    // The rows leave memory now; they are kept once the caller has made the objects durable.
    cache.flush();
    progress.finish();
    Ok(Scan {
        tree,
        skipped: ctx.skipped.into_messages(),
        files_read: ctx.files_read.into_inner(),
        bytes_read: ctx.bytes_read.into_inner(),
    })
}

/// The metadata stored for an entry.
pub(super) fn meta_of(st: &Stat) -> Meta {
    Meta {
        mode: st.mode(),
        uid: st.uid(),
        gid: st.gid(),
        mtime_sec: st.mtime(),
        mtime_nsec: st.mtime_nsec(),
    }
}

/// `rel/name` as cache key bytes.
pub(super) fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        key.extend_from_slice(rel);
        key.push(b'/');
    }
    key.extend_from_slice(name);
    key
}

/// Store one directory (its entries in parallel, subdirectories first) and return its tree id;
/// stage its cache row if it changed and forget the rows of subdirectories that are gone.
fn scan_dir(ctx: &Ctx, dir: &Dir, rel: &[u8]) -> Result<ObjectId> {
    let own = dir.stat()?;
    let listed = dir.entries()?;
    let old = ctx.cache.dir(rel);
    let at = Here {
        dir,
        rel,
        old: &old,
    };
    let scanned: Vec<Option<(Entry, Option<Slot>)>> = listed
        .par_iter()
        .map(|(name, st)| {
            let r = scan_entry(ctx, &at, name, st);
            ctx.progress.advance(1);
            r
        })
        .collect::<Result<_>>()?;
    let mut row = DirCache::default();
    let mut entries = Vec::with_capacity(scanned.len());
    for (entry, slot) in scanned.into_iter().flatten() {
        if let Some(slot) = slot {
            row.entries.insert(entry.name.clone(), slot);
        }
        entries.push(entry);
    }
    keep_row(ctx.cache, rel, &old, &row);
    Tree {
        meta: meta_of(&own),
        entries,
    }
    .put(ctx.sink)
}

/// Stage the new `row` of directory `rel` where it differs from its `old` one, and forget the
/// rows below subdirectories `old` lists that `row` does not.
pub(super) fn keep_row(cache: &StatCache, rel: &[u8], old: &DirCache, row: &DirCache) {
    for gone in old
        .dirs()
        .filter(|d| row.entries.get(*d) != Some(&Slot::Dir))
    {
        cache.forget(&join_rel(rel, gone));
    }
    if row != old {
        cache.stage(rel, row);
    }
}

/// The directory a walk is in: its handle, its path in the volume and its cached row.
pub(super) struct Here<'a> {
    pub dir: &'a Dir,
    pub rel: &'a [u8],
    pub old: &'a DirCache,
}

/// One entry of the directory `at` and what the cache keeps of it.
fn scan_entry(
    ctx: &Ctx,
    at: &Here,
    name: &[u8],
    st: &Stat,
) -> Result<Option<(Entry, Option<Slot>)>> {
    let (node, slot) = if st.kind() == Kind::Dir {
        let tree = scan_dir(ctx, &at.dir.open_dir(name)?, &join_rel(at.rel, name))?;
        (Node::Dir { tree }, Some(Slot::Dir))
    } else {
        match scan_leaf(ctx, at, name, st)? {
            Some(leaf) => leaf,
            None => return Ok(None),
        }
    };
    let entry = Entry {
        name: name.to_vec(),
        node,
    };
    Ok(Some((entry, slot)))
}

/// One entry of the directory `at` that is not a directory, and what the cache keeps of it;
/// `None` when it cannot be stored (skipped) or is gone.
pub(super) fn scan_leaf(
    ctx: &Ctx,
    at: &Here,
    name: &[u8],
    st: &Stat,
) -> Result<Option<(Node, Option<Slot>)>> {
    let (dir, rel) = (at.dir, at.rel);
    Ok(Some(match st.kind() {
        Kind::File => match scan_file(ctx, dir, name, st, rel, at.old.file(name))? {
            Some(f) => (
                Node::File {
                    meta: meta_of(&f.stat),
                    size: f.size,
                    content: f.content,
                },
                f.cached.map(Slot::File),
            ),
            None => return Ok(None),
        },
        Kind::Symlink => (
            Node::Symlink {
                meta: meta_of(st),
                target: dir.read_link(name)?,
            },
            None,
        ),
        other => {
            ctx.skipped.add(&join_rel(rel, name), other);
            return Ok(None);
        }
    }))
}

/// Content of one regular file of directory `rel`: from its cache entry `old` when its stat is
/// unchanged, otherwise read through a checked handle. `None` if it is no longer a regular
/// file (then it is skipped).
fn scan_file(
    ctx: &Ctx,
    dir: &Dir,
    name: &[u8],
    st: &Stat,
    rel: &[u8],
    old: Option<&CacheEntry>,
) -> Result<Option<FileScan>> {
    if let Some(c) = old.filter(|c| c.matches(st)) {
        return Ok(Some(FileScan {
            stat: *st,
            size: c.size,
            content: c.content,
            cached: Some(*c),
        }));
    }
    let mut opened = match dir.open_file(name)? {
        Found::File(o) => o,
        Found::Other(now) => {
            ctx.skipped.add(&join_rel(rel, name), now.kind());
            return Ok(None);
        }
        Found::Missing => return Ok(None),
    };
    let known = old
        .and_then(|c| c.content.map(|id| ctx.sink.known_chunks(&id, c.size)))
        .unwrap_or_default();
    let read_start_ns = now_ns();
    let path = dir.child_path(name);
    let before = opened.stat;
    let (content, size) = store_file(ctx.sink, &mut opened.file, &path, before.size(), &known)?;
    let after = Stat::of(&opened.file, &path)?;
    let seen = CacheEntry::new(&after, content);
    let unchanged_while_read = CacheEntry::new(&before, content) == seen && seen.size == size;
    let cached = (unchanged_while_read && !seen.is_racy(read_start_ns)).then_some(seen);
    ctx.files_read.fetch_add(1, Ordering::Relaxed);
    ctx.bytes_read.fetch_add(size, Ordering::Relaxed);
    Ok(Some(FileScan {
        stat: before,
        size,
        content,
        cached,
    }))
}

/// Chunk, hash and store one open file (`expected` bytes long, as far as its stat knew);
/// returns its content id and the bytes read. Chunks in `known` are already stored and skip
/// the index lookup. `path` is for messages only. How the file is cut is
/// [`store::cut_of`](crate::store::cut_of) of its size and first bytes.
///
/// Holes of a page file are not read: `SEEK_DATA`/`SEEK_HOLE` find the file's data, and every
/// whole chunk of a hole is added as the all-zero chunk (whole zero subtrees where aligned),
/// the same content a read of the hole would give. A file system without hole reporting
/// reports the whole file as data. Content-defined files skip the whole maximal pieces of
/// their holes the same way (see `Reader::defined`); a run of zeros is cut in full chunks,
/// so it is restored as a hole.
pub fn store_file(
    sink: &dyn ObjectSink,
    f: &mut File,
    path: &Path,
    expected: u64,
    known: &HashSet<ObjectId>,
) -> Result<(Option<ObjectId>, u64)> {
    let cut = cut_of(expected, &head(f, expected).at("read", path)?);
    let mut list = ListBuilder::for_cut(sink, cut);
    // A whole number of chunks (so chunk boundaries stay aligned to the file start), no
    // bigger than the file needs: small files must not pay for a 1 MiB buffer.
    let want = expected as usize + 1;
    let mut reader = Reader {
        sink,
        known,
        path,
        buf: vec![0u8; want.next_multiple_of(CHUNK_SIZE).min(READ_BLOCK)],
    };
    if cut == Cut::Defined {
        let read = reader.defined(f, &mut list)?;
        return Ok((list.finish()?, read));
    }
    let chunk = CHUNK_SIZE as u64;
    // Only a file with fewer blocks than bytes can have holes: the others are read straight.
    let meta = f.metadata().at("read", path)?;
    if meta.blocks().saturating_mul(512) >= meta.len() {
        let (read, _) = reader.range(f, &mut list, 0, u64::MAX)?;
        return Ok((list.finish()?, read));
    }
    let mut pos = 0u64;
    loop {
        // `pos` is chunk-aligned: skip the whole chunks of a hole, read up to the next hole.
        let (data, hole) = next_data(f, pos).at("read", path)?;
        let zeros = (data / chunk * chunk).saturating_sub(pos) / chunk;
        list.push_zeros(zeros)?;
        pos += zeros * chunk;
        let end = hole.map_or(u64::MAX, |h| h.next_multiple_of(chunk));
        let (read, eof) = reader.range(f, &mut list, pos, end)?;
        pos += read;
        if eof {
            break;
        }
    }
    Ok((list.finish()?, pos))
}

/// The first bytes of a file of `size` bytes that [`cut_of`] looks at (none when its size
/// alone decides).
fn head(f: &File, size: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    if size <= CHUNK_SIZE as u64 || !size.is_multiple_of(PAGE_MULTIPLE) {
        return Ok(Vec::new());
    }
    let mut head = vec![0u8; 512];
    let mut filled = 0;
    while filled < head.len() {
        match f.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// From chunk-aligned `pos`: where the next data starts and where the hole after it begins
/// (`None`: read to the end of the file). Past the last data, the data start is the end of
/// the file, so only its last partial chunk is read.
fn next_data(f: &File, pos: u64) -> std::io::Result<(u64, Option<u64>)> {
    use rustix::fs::{seek, SeekFrom};
    match seek(f, SeekFrom::Data(pos)) {
        Ok(data) => Ok((data, seek(f, SeekFrom::Hole(data)).ok())),
        Err(rustix::io::Errno::NXIO) => Ok((f.metadata()?.len().max(pos), None)),
        // No hole reporting here: all of it is data.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => Ok((pos, None)),
        Err(e) => Err(e.into()),
    }
}

/// Reads one file's data into chunks.
struct Reader<'a> {
    sink: &'a dyn ObjectSink,
    known: &'a HashSet<ObjectId>,
    path: &'a Path,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Reads, hashes and stores the chunks of `pos..end` (chunk-aligned) into `list`, a
    /// buffer at a time; returns the bytes read and whether the file ended.
    fn range(
        &mut self,
        f: &mut File,
        list: &mut ListBuilder,
        pos: u64,
        end: u64,
    ) -> Result<(u64, bool)> {
        f.seek(SeekFrom::Start(pos)).at("read", self.path)?;
        let mut read = 0u64;
        while pos + read < end {
            let room = usize::try_from(end - pos - read)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let n = read_full(f, &mut self.buf[..room]).at("read", self.path)?;
            let lens: Vec<usize> = (0..n)
                .step_by(CHUNK_SIZE)
                .map(|at| CHUNK_SIZE.min(n - at))
                .collect();
            self.store_chunks(list, &lens)?;
            read += n as u64;
            if n < room {
                return Ok((read, true));
            }
        }
        Ok((read, false))
    }

    /// Reads, hashes and stores the whole file from its start into `list`, cut where its
    /// content says; returns the bytes it covers. The bytes after the last cut that is certain
    /// (see [`defined_cuts`]) move to the front of the buffer and wait for the next read.
    /// Holes are not read: at a cut with a whole maximal piece of hole ahead, that piece is
    /// added as the zero chunks a read would give (zeros never make a cut, so a piece that
    /// starts in a hole runs to the maximal length, in full chunks).
    fn defined(&mut self, f: &mut File, list: &mut ListBuilder) -> Result<u64> {
        if self.buf.len() < 2 * DEFINED_MAX {
            self.buf.resize(2 * DEFINED_MAX, 0);
        }
        let meta = f.metadata().at("read", self.path)?;
        let sparse = meta.blocks().saturating_mul(512) < meta.len();
        let mut filled = 0;
        let mut total = 0u64;
        loop {
            if sparse {
                let skipped = self.skip_hole(f, list, total)?;
                if skipped > 0 {
                    total += skipped;
                    filled = 0;
                }
                // Asking for the next data moved the file offset: back to what is unread.
                f.seek(SeekFrom::Start(total + filled as u64))
                    .at("read", self.path)?;
            }
            let n = read_full(f, &mut self.buf[filled..]).at("read", self.path)?;
            let eof = filled + n < self.buf.len();
            filled += n;
            // A file that turned out to fit one chunk is that chunk, as for every cut.
            let lens = if eof && total == 0 && filled <= CHUNK_SIZE {
                if filled == 0 {
                    Vec::new()
                } else {
                    vec![filled]
                }
            } else {
                defined_cuts(&self.buf[..filled], eof)
            };
            self.store_chunks(list, &lens)?;
            let used: usize = lens.iter().sum();
            total += used as u64;
            if eof {
                return Ok(total);
            }
            self.buf.copy_within(used..filled, 0);
            filled -= used;
        }
    }

    /// At the cut `at` of a sparse content-defined file: the whole maximal pieces of hole
    /// that start there, added to `list` as zero chunks without reading them; returns the
    /// bytes they cover (0 when less than a piece of hole lies ahead).
    fn skip_hole(&self, f: &File, list: &mut ListBuilder, at: u64) -> Result<u64> {
        let (data, _) = next_data(f, at).at("read", self.path)?;
        let piece = DEFINED_MAX as u64;
        let pieces = data.saturating_sub(at) / piece;
        let zero = ListEntry {
            id: crate::store::zero_chunk_id(),
            len: CHUNK_SIZE as u64,
        };
        for _ in 0..pieces * piece / CHUNK_SIZE as u64 {
            list.push(zero)?;
        }
        Ok(pieces * piece)
    }

    /// Hashes the chunks at the start of the buffer (`lens` long, in order) in parallel,
    /// hands each run of up to [`MAX_BLOCK_CHUNKS`] consecutive new chunks to the sink as one
    /// block (compressed in parallel) and appends every chunk to `list`.
    fn store_chunks(&self, list: &mut ListBuilder, lens: &[usize]) -> Result<()> {
        let mut chunks: Vec<&[u8]> = Vec::with_capacity(lens.len());
        let mut rest = &self.buf[..];
        for &len in lens {
            let (chunk, tail) = rest.split_at(len);
            chunks.push(chunk);
            rest = tail;
        }
        let ids: Vec<ObjectId> = chunks.par_iter().map(|c| ObjectId::hash(c)).collect();
        let records: Vec<Record> = chunks
            .par_chunks(MAX_BLOCK_CHUNKS)
            .zip(ids.par_chunks(MAX_BLOCK_CHUNKS))
            .map(|(chunks, ids)| {
                let run: Vec<(ObjectId, &[u8])> = ids
                    .iter()
                    .copied()
                    .zip(chunks.iter().copied())
                    .filter(|(id, _)| !self.known.contains(id))
                    .collect();
                self.sink.prepare_run(&run)
            })
            .filter_map(Result::transpose)
            .collect::<Result<_>>()?;
        self.sink.submit(records)?;
        ids.into_iter().zip(chunks).try_for_each(|(id, c)| {
            list.push(ListEntry {
                id,
                len: c.len() as u64,
            })
        })
    }
}

/// Read until `buf` is full or the input ends.
pub(super) fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HashOnly;
    use std::os::unix::fs::FileExt;

    /// A file cut where its content says gets the same content id whatever buffer it is read
    /// with (the buffer follows the size the stat gave, which may be stale), and restores to
    /// its bytes; a page file of the same bytes plus padding is cut in fixed blocks.
    #[test]
    fn defined_cuts_do_not_depend_on_the_read_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump");
        let mut bytes: Vec<u8> = (0..(5 << 20) + 333u32)
            .map(|i| (i % 251) as u8 ^ (i / 4093) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let hash = |p: &Path, expected: u64| {
            let sink = HashOnly::default();
            let mut f = File::open(p).unwrap();
            store_file(&sink, &mut f, p, expected, &HashSet::new()).unwrap()
        };
        let len = bytes.len() as u64;
        let whole = hash(&path, len);
        assert_eq!(whole.1, len);
        assert_eq!(hash(&path, 9000), whole);
        assert_eq!(hash(&path, 100_001), whole);
        bytes.truncate(5 << 20);
        std::fs::write(&path, &bytes).unwrap();
        assert_ne!(hash(&path, 5 << 20), hash(&path, (5 << 20) - 1));
    }

    /// A file with holes stores the same content as the same bytes written out in full,
    /// whatever the alignment of its data and holes to chunks.
    #[test]
    fn holes_give_the_same_content_as_written_zeros() {
        let layouts: &[(u64, &[(u64, usize)])] = &[
            (10 << 20, &[]),
            (10 << 20, &[(0, 100)]),
            (10 << 20, &[(4096, 4096), (3 << 20, 70_000)]),
            ((10 << 20) + 123, &[((10 << 20) - 5, 5)]),
            ((9 << 20) + 77, &[(8 << 20, 1)]),
            (300 << 20, &[(1 << 20, 8192), (256 << 20, 3)]),
            // Cut by content: data first, then holes of many maximal pieces.
            ((10 << 20) + 7, &[(0, 100), (3 << 20, 70_000)]),
            ((12 << 20) + 1, &[(0, 300_000), (65_536 * 40 + 5, 9)]),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (len, writes) in layouts {
            let sparse_path = dir.path().join("sparse");
            let sparse = File::create(&sparse_path).unwrap();
            sparse.set_len(*len).unwrap();
            let mut dense_bytes = vec![0u8; usize::try_from(*len).unwrap()];
            for (i, &(at, n)) in writes.iter().enumerate() {
                let data: Vec<u8> = (0..n).map(|j| (i * 31 + j % 251 + 1) as u8).collect();
                sparse.write_all_at(&data, at).unwrap();
                let at = usize::try_from(at).unwrap();
                dense_bytes[at..at + n].copy_from_slice(&data);
            }
            let dense_path = dir.path().join("dense");
            std::fs::write(&dense_path, &dense_bytes).unwrap();
            let hash = |p: &Path| {
                let sink = HashOnly::default();
                let mut f = File::open(p).unwrap();
                store_file(&sink, &mut f, p, *len, &HashSet::new()).unwrap()
            };
            assert_eq!(hash(&sparse_path), hash(&dense_path), "{len} {writes:?}");
            assert_eq!(hash(&sparse_path).1, *len);
        }
    }
}
