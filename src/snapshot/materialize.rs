//! Making a live directory exactly equal to a stored tree, touching only what differs: files
//! whose cached stat shows the right content keep their inode; others are written to a temp
//! file beside them and renamed over; extra entries are removed; metadata is applied last.
//! Every step goes through [`crate::live`] directory handles (nothing is followed, metadata is
//! set on handles), entry names come only from validated tree entries, and a regular file with
//! more than one link is replaced, never changed in place, so neither a hostile tree nor a
//! container racing dvol can make it write outside `dest` or change a host file linked in.
//!
//! One directory at a time: its tree, its listing and its stat cache row are held while it is
//! written, never the volume's. The new rows are staged as each directory is finished and kept
//! ([`StatCache::promote`]) only after the final syncfs, so a run killed mid-way leaves the
//! cache as it was, or rows that describe files as they are on disk.

use super::scan::{join_rel, keep_row, store_file};
use super::statcache::{CacheEntry, DirCache, Slot, StatCache};
use super::tree::{Entry, Meta, Node, Tree};
use crate::error::IoContext;
use crate::live::{self, Attrs, Dir, Found, Stat};
use crate::store::{self, is_zero_chunk, HashOnly, ListEntry, ObjectId, Store};
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a materialization did.
#[derive(Debug, Default)]
pub struct Materialized {
    pub files_written: u64,
    pub bytes_written: u64,
}

/// How a tree is written. The default restores it exactly (the user's own commits).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Drop setuid/setgid from files (not directories): data from a remote must not plant
    /// set-id programs.
    pub strip_special_bits: bool,
}

struct Ctx<'a> {
    store: &'a Store,
    opts: &'a RestoreOptions,
    /// The cache vouching for the files `dest` holds now.
    old: &'a StatCache,
    /// The cache that receives the new rows (may be `old` itself).
    new: &'a StatCache,
    as_root: bool,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
}

/// The stat caches of a materialization: `old` vouches for what `dest` holds now, `new`
/// receives the rows of what it will hold (the same cache, or a fresh one).
#[derive(Clone, Copy)]
pub struct Caches<'a> {
    pub old: &'a StatCache,
    pub new: &'a StatCache,
}

impl<'a> Caches<'a> {
    /// One cache both vouching and receiving (a branch rewritten in place).
    pub fn same(cache: &'a StatCache) -> Caches<'a> {
        Caches {
            old: cache,
            new: cache,
        }
    }
}

/// Make `dest` (created if missing) hold exactly `tree`, then flush it to disk and keep the
/// new stat cache rows.
pub fn materialize(
    store: &Store,
    tree: &ObjectId,
    dest: &Path,
    caches: Caches,
) -> Result<Materialized> {
    materialize_with(store, tree, dest, caches, &RestoreOptions::default())
}

/// [`materialize`] with a restore policy.
pub fn materialize_with(
    store: &Store,
    tree: &ObjectId,
    dest: &Path,
    caches: Caches,
    opts: &RestoreOptions,
) -> Result<Materialized> {
    let root = Dir::create_root(dest)?;
    let ctx = Ctx {
        store,
        opts,
        old: caches.old,
        new: caches.new,
        // SAFETY: geteuid has no preconditions and touches no memory of ours.
        as_root: unsafe { libc::geteuid() } == 0,
        files_written: AtomicU64::new(0),
        bytes_written: AtomicU64::new(0),
    };
    sync_dir(&ctx, tree, &root, b"")?;
    root.sync_fs()?;
    crate::failpoint::hit("materialize.before-cache");
    caches.new.promote();
    Ok(Materialized {
        files_written: ctx.files_written.into_inner(),
        bytes_written: ctx.bytes_written.into_inner(),
    })
}

fn sync_dir(ctx: &Ctx, tree_id: &ObjectId, dir: &Dir, rel: &[u8]) -> Result<()> {
    let tree = Tree::load(ctx.store, tree_id)?;
    ensure_writable(ctx, dir, &dir.stat()?)?;
    let old = ctx.old.dir(rel);
    let existing: HashMap<Vec<u8>, Stat> = dir.entries()?.into_iter().collect();
    for name in existing.keys() {
        let wanted = tree
            .entries
            .binary_search_by(|e| e.name.as_slice().cmp(name.as_slice()))
            .is_ok();
        if !wanted {
            dir.remove(name)?;
        }
    }
    let slots: Vec<Option<Slot>> = tree
        .entries
        .par_iter()
        .map(|e| sync_entry(ctx, dir, e, rel, existing.get(&e.name), &old))
        .collect::<Result<_>>()?;
    let mut row = DirCache::default();
    for (e, slot) in tree.entries.iter().zip(slots) {
        if let Some(slot) = slot {
            row.entries.insert(e.name.clone(), slot);
        }
    }
    if std::ptr::eq(ctx.old, ctx.new) {
        keep_row(ctx.new, rel, &old, &row);
    } else {
        ctx.new.stage(rel, &row);
    }
    let attrs = changes(ctx, &tree.meta, Some(&dir.stat()?));
    dir.set_attrs(&attrs)
}

/// Make entry `e` of directory `rel` (whose cached row is `old`) as the tree wants it; what
/// the cache keeps of it.
fn sync_entry(
    ctx: &Ctx,
    dir: &Dir,
    e: &Entry,
    rel: &[u8],
    existing: Option<&Stat>,
    old: &DirCache,
) -> Result<Option<Slot>> {
    match &e.node {
        Node::File {
            meta,
            size,
            content,
        } => {
            let meta = restored_meta(ctx, meta);
            let want = Want {
                name: &e.name,
                meta: &meta,
                size: *size,
                content: content.as_ref(),
                cached: old.file(&e.name),
            };
            sync_file(ctx, dir, &want, existing).map(|c| Some(Slot::File(c)))
        }
        Node::Dir { tree } => {
            match existing {
                Some(st) if st.is_dir() => {}
                other => {
                    if other.is_some() {
                        dir.remove(&e.name)?;
                    }
                    dir.create_dir(&e.name, 0o700)?;
                }
            }
            sync_dir(ctx, tree, &dir.open_dir(&e.name)?, &join_rel(rel, &e.name))?;
            Ok(Some(Slot::Dir))
        }
        Node::Symlink { meta, target } => {
            sync_symlink(ctx, dir, &e.name, meta, target, existing)?;
            Ok(None)
        }
    }
}

/// A file's metadata as this restore writes it: setuid/setgid dropped when the policy says so.
fn restored_meta(ctx: &Ctx, meta: &Meta) -> Meta {
    if ctx.opts.strip_special_bits && meta.mode & 0o6000 != 0 {
        Meta {
            mode: meta.mode & !0o6000,
            ..*meta
        }
    } else {
        *meta
    }
}

/// A regular file as the tree wants it.
struct Want<'a> {
    name: &'a [u8],
    meta: &'a Meta,
    size: u64,
    content: Option<&'a ObjectId>,
    /// What the cache says of the file there now.
    cached: Option<&'a CacheEntry>,
}

/// Make one regular file as `w` wants it; its cache entry.
fn sync_file(ctx: &Ctx, dir: &Dir, w: &Want, existing: Option<&Stat>) -> Result<CacheEntry> {
    // Only a file with a single link may be kept (and its metadata changed in place).
    if let Some(st) = existing.filter(|st| st.is_file() && st.nlink() == 1) {
        if let Some(now) = keep_file(ctx, dir, w, st)? {
            return Ok(CacheEntry::new(&now, w.content.copied()));
        }
    }
    let path = dir.child_path(w.name);
    let stat = match existing {
        // Nothing there: write in place (an interrupted run is finished by the next one).
        None => {
            let file = write_file(ctx, dir, w.name, &path, w).inspect_err(|_| {
                let _ = dir.remove(w.name);
            })?;
            Stat::of(&file, &path)?
        }
        // Something there: write beside it and rename over it, so it is never half-replaced
        // and a file linked from elsewhere keeps its content, mode and owner.
        Some(old) => {
            let tmp = temp_name();
            let file = write_file(ctx, dir, &tmp, &path, w).inspect_err(|_| {
                let _ = dir.remove(&tmp);
            })?;
            if old.is_dir() {
                dir.remove(w.name)?;
            }
            dir.rename(&tmp, w.name)?;
            Stat::of(&file, &path)?
        }
    };
    crate::failpoint::hit("materialize.after-file");
    ctx.files_written.fetch_add(1, Ordering::Relaxed);
    ctx.bytes_written.fetch_add(w.size, Ordering::Relaxed);
    Ok(CacheEntry::new(&stat, w.content.copied()))
}

/// If the existing single-link file `st` already holds the wanted content, fix its metadata
/// on its own handle and return its stat; `None` when it must be rewritten.
fn keep_file(ctx: &Ctx, dir: &Dir, w: &Want, st: &Stat) -> Result<Option<Stat>> {
    if st.size() != w.size {
        return Ok(None);
    }
    let cached = w.cached.filter(|c| c.matches(st));
    if cached.is_some_and(|c| c.content.as_ref() != w.content) {
        return Ok(None);
    }
    let attrs = changes(ctx, w.meta, Some(st));
    if cached.is_some() && attrs.is_empty() {
        return Ok(Some(*st));
    }
    // Open it through a checked handle: it must still be the same single-link file.
    let mut opened = match dir.open_file(w.name)? {
        Found::File(o) if o.stat.same_inode(st) && o.stat.nlink() == 1 => o,
        _ => return Ok(None),
    };
    if cached.is_none() {
        // Same size, unknown content (e.g. changed just before the last commit, too recent to
        // be cached): hashing it is cheaper than rewriting it.
        let path = dir.child_path(w.name);
        let sink = HashOnly::default();
        let (found, read) =
            store_file(&sink, &mut opened.file, &path, w.size, &Default::default())?;
        if read != w.size || found.as_ref() != w.content {
            return Ok(None);
        }
    }
    if attrs.is_empty() {
        return Ok(Some(opened.stat));
    }
    let path = dir.child_path(w.name);
    live::set_file_attrs(&opened.file, &path, &attrs)?;
    Ok(Some(Stat::of(&opened.file, &path)?))
}

/// Write a new file `name` in `dir` with a file's content (zero chunks become holes) and
/// metadata; `path` names it in messages.
fn write_file(ctx: &Ctx, dir: &Dir, name: &[u8], path: &Path, w: &Want) -> Result<File> {
    let (size, content) = (w.size, w.content);
    // The list must cover exactly `size` and the file must fit, before anything is written.
    let chunks = match content {
        Some(c) => {
            let chunks = store::chunks(ctx.store, c, size)?;
            super::check_free_space(path, size, || store::stored_bytes(ctx.store, c, size))?;
            Some(chunks)
        }
        None => None,
    };
    let mut file = dir.create_file(name, 0o600)?;
    // Zero chunks become holes: one seek per run of them, and only a file ending in a hole
    // needs its length set explicitly.
    let mut hole = 0u64;
    if let Some(mut chunks) = chunks {
        // 128 chunks (1 MiB) at a time, streamed from the list: located together, read and
        // verified in parallel, written in order while the next batch is read.
        let mut pending = read_batch(ctx.store, &mut chunks)?;
        while let Some((batch, data)) = pending.take() {
            let (written, next) = rayon::join(
                || write_batch(&mut file, path, &batch, &data, &mut hole),
                || read_batch(ctx.store, &mut chunks),
            );
            written?;
            pending = next?;
        }
    }
    if hole > 0 {
        file.set_len(size).at("write", path)?;
    }
    if size >= WRITEBACK_MIN {
        start_writeback(&file);
    }
    live::set_file_attrs(&file, path, &changes(ctx, w.meta, None))?;
    Ok(file)
}

/// A batch of list entries and the bytes of its non-zero chunks, in order.
type Batch = (Vec<ListEntry>, Vec<Vec<u8>>);

/// The next (up to) 128 chunks of a file, read and verified; `None` at its end.
fn read_batch(store: &Store, chunks: &mut store::Chunks) -> Result<Option<Batch>> {
    let batch: Vec<ListEntry> = chunks.by_ref().take(128).collect::<Result<_>>()?;
    if batch.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<ObjectId> = batch
        .iter()
        .filter(|c| !is_zero_chunk(&c.id))
        .map(|c| c.id)
        .collect();
    let data = if wanted.is_empty() {
        Vec::new()
    } else {
        store.get_many(&wanted)?
    };
    Ok(Some((batch, data)))
}

/// Write a batch at the file's position: runs of chunks with one `writev` each, zero chunks
/// added to `hole` (skipped by a seek before the next data).
fn write_batch(
    file: &mut File,
    path: &Path,
    batch: &[ListEntry],
    data: &[Vec<u8>],
    hole: &mut u64,
) -> Result<()> {
    let mut data = data.iter();
    let mut run: Vec<std::io::IoSlice> = Vec::with_capacity(batch.len());
    for chunk in batch {
        if is_zero_chunk(&chunk.id) {
            write_all_vectored(file, &mut run).at("write", path)?;
            *hole += chunk.len;
            continue;
        }
        let bytes = data.next().expect("one result per wanted chunk");
        if bytes.len() as u64 != chunk.len {
            return Err(Error::CorruptObject {
                id: chunk.id.to_hex(),
                detail: "chunk length differs from its list entry".into(),
            });
        }
        if *hole > 0 {
            let skip = i64::try_from(std::mem::take(hole))
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::FileTooLarge))
                .at("write", path)?;
            file.seek(SeekFrom::Current(skip)).at("write", path)?;
        }
        run.push(std::io::IoSlice::new(bytes));
    }
    write_all_vectored(file, &mut run).at("write", path)
}

/// Write every slice of `run` (then empty it), however the kernel splits the writes.
fn write_all_vectored(file: &mut File, run: &mut Vec<std::io::IoSlice>) -> std::io::Result<()> {
    let mut bufs = &mut run[..];
    while !bufs.is_empty() {
        let n = file.write_vectored(bufs)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut bufs, n);
    }
    run.clear();
    Ok(())
}

/// Files at least this large start writeback as soon as they are written.
const WRITEBACK_MIN: u64 = 1 << 20;

fn sync_symlink(
    ctx: &Ctx,
    dir: &Dir,
    name: &[u8],
    meta: &Meta,
    target: &[u8],
    existing: Option<&Stat>,
) -> Result<()> {
    if let Some(st) = existing {
        // A symlink with other links (made outside the volume) is replaced, like a file.
        let same =
            st.is_symlink() && st.nlink() == 1 && dir.read_link(name).is_ok_and(|t| t == target);
        if same {
            let attrs = changes(ctx, meta, Some(st));
            if !attrs.is_empty() {
                dir.set_link_attrs(name, Some(st), &attrs)?;
            }
            return Ok(());
        }
        dir.remove(name)?;
    }
    dir.symlink(target, name)?;
    dir.set_link_attrs(name, None, &changes(ctx, meta, None))?;
    Ok(())
}

/// What must change for an object whose stat is `current` (`None`: just created) to carry
/// `meta`: the owner (as root) where it differs, the mode (not for symlinks, which have none)
/// where it differs or after a chown (which clears setuid/setgid), and the mtime where it
/// differs or after any other change.
fn changes(ctx: &Ctx, meta: &Meta, current: Option<&Stat>) -> Attrs {
    let differs = |f: &dyn Fn(&Stat) -> bool| current.is_none_or(f);
    let mut a = Attrs::default();
    if ctx.as_root && differs(&|st| st.uid() != meta.uid || st.gid() != meta.gid) {
        a.owner = Some((meta.uid, meta.gid));
    }
    let is_link = current.is_some_and(|st| st.is_symlink());
    if !is_link && (a.owner.is_some() || differs(&|st| st.mode() != meta.mode)) {
        a.mode = Some(meta.mode);
    }
    if !a.is_empty()
        || differs(&|st| st.mtime() != meta.mtime_sec || st.mtime_nsec() != meta.mtime_nsec)
    {
        a.mtime = Some((meta.mtime_sec, meta.mtime_nsec));
    }
    a
}

/// Without root, a read-only directory must become writable before its entries change; its
/// stored mode is applied again at the end.
fn ensure_writable(ctx: &Ctx, dir: &Dir, st: &Stat) -> Result<()> {
    if !ctx.as_root && st.mode() & 0o300 != 0o300 {
        dir.set_attrs(&Attrs {
            mode: Some(st.mode() | 0o700),
            ..Attrs::default()
        })?;
    }
    Ok(())
}

/// A name for a file written beside its destination before it is renamed over it.
fn temp_name() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".dvol-tmp-{}-{n}", std::process::id()).into_bytes()
}

/// Ask the kernel to start writing a finished file back now, so the final syncfs finds little
/// left to do and disk writes overlap with the rest of the work.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // Advisory only: a failure here is caught by the syncfs at the end.
    // SAFETY: the descriptor is borrowed from `file`, which outlives the call; no memory of
    // ours is read or written.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}
