//! Making a live directory exactly equal to a stored tree, touching only what differs: files
//! whose cached stat shows the right content keep their inode; others are written to a temp
//! file beside them and renamed over; extra entries are removed; metadata is applied last.
//! Paths come only from validated tree entries and symlinks are never followed, so a tree
//! (even a hostile one from a remote) cannot write outside `dest`.

use super::scan::store_file;
use super::statcache::{CacheEntry, StatCache};
use super::tree::{Entry, Meta, Node, Tree};
use crate::error::IoContext;
use crate::store::{self, is_zero_chunk, HashOnly, ListEntry, ObjectId, Store, CHUNK_SIZE};
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a materialization did.
#[derive(Debug, Default)]
pub struct Materialized {
    /// Stat cache describing the directory as it now is.
    pub cache: StatCache,
    pub files_written: u64,
    pub bytes_written: u64,
}

struct Ctx<'a> {
    store: &'a Store,
    old: &'a StatCache,
    new: Mutex<HashMap<Vec<u8>, CacheEntry>>,
    as_root: bool,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
}

/// Make `dest` (created if missing) hold exactly `tree`, then flush it to disk.
pub fn materialize(
    store: &Store,
    tree: &ObjectId,
    dest: &Path,
    old: &StatCache,
) -> Result<Materialized> {
    std::fs::create_dir_all(dest).at("create", dest)?;
    let ctx = Ctx {
        store,
        old,
        new: Mutex::new(HashMap::new()),
        as_root: unsafe { libc::geteuid() } == 0,
        files_written: AtomicU64::new(0),
        bytes_written: AtomicU64::new(0),
    };
    sync_dir(&ctx, tree, dest, Path::new(""))?;
    syncfs(dest)?;
    Ok(Materialized {
        cache: StatCache {
            entries: ctx.new.into_inner().expect("cache lock"),
        },
        files_written: ctx.files_written.into_inner(),
        bytes_written: ctx.bytes_written.into_inner(),
    })
}

fn sync_dir(ctx: &Ctx, tree_id: &ObjectId, dir: &Path, rel: &Path) -> Result<()> {
    let tree = Tree::load(ctx.store, tree_id)?;
    let dir_md = std::fs::symlink_metadata(dir).at("stat", dir)?;
    ensure_writable(ctx, dir, &dir_md)?;
    let existing = list_dir(dir)?;
    for (name, md) in &existing {
        let wanted = tree
            .entries
            .binary_search_by(|e| e.name.as_slice().cmp(name.as_slice()))
            .is_ok();
        if !wanted {
            remove_path(&dir.join(OsStr::from_bytes(name)), md)?;
        }
    }
    tree.entries.par_iter().try_for_each(|e| {
        let path = dir.join(OsStr::from_bytes(&e.name));
        let rel = rel.join(OsStr::from_bytes(&e.name));
        sync_entry(ctx, e, &path, &rel, existing.get(&e.name))
    })?;
    let now = std::fs::symlink_metadata(dir).at("stat", dir)?;
    apply_meta(ctx, dir, &tree.meta, Some(&now), false)?;
    Ok(())
}

fn sync_entry(
    ctx: &Ctx,
    e: &Entry,
    path: &Path,
    rel: &Path,
    existing: Option<&Metadata>,
) -> Result<()> {
    match &e.node {
        Node::File {
            meta,
            size,
            content,
        } => sync_file(ctx, path, rel, meta, *size, content.as_ref(), existing),
        Node::Dir { tree } => {
            match existing {
                Some(md) if md.is_dir() => {}
                other => {
                    if let Some(md) = other {
                        remove_path(path, md)?;
                    }
                    std::fs::create_dir(path).at("create directory", path)?;
                }
            }
            sync_dir(ctx, tree, path, rel)
        }
        Node::Symlink { meta, target } => sync_symlink(ctx, path, meta, target, existing),
    }
}

fn sync_file(
    ctx: &Ctx,
    path: &Path,
    rel: &Path,
    meta: &Meta,
    size: u64,
    content: Option<&ObjectId>,
    existing: Option<&Metadata>,
) -> Result<()> {
    let key = rel.as_os_str().as_bytes().to_vec();
    if let Some(md) = existing.filter(|md| md.is_file()) {
        if has_content(ctx, path, &key, md, size, content)? {
            let changed = apply_meta(ctx, path, meta, Some(md), false)?;
            let md = if changed {
                std::fs::symlink_metadata(path).at("stat", path)?
            } else {
                md.clone()
            };
            remember(ctx, key, &md, content);
            return Ok(());
        }
    }
    let md = match existing {
        // Nothing there: write in place (an interrupted run is finished by the next one).
        None => {
            let file = write_file(ctx, path, meta, size, content).inspect_err(|_| {
                let _ = std::fs::remove_file(path);
            })?;
            file.metadata().at("stat", path)?
        }
        // Something there: write beside it and rename over it, so it is never half-replaced.
        Some(old) => {
            let tmp = temp_path(path);
            if let Err(e) = write_file(ctx, &tmp, meta, size, content) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            if old.is_dir() {
                remove_path(path, old)?;
            }
            std::fs::rename(&tmp, path).at("rename into place", path)?;
            std::fs::symlink_metadata(path).at("stat", path)?
        }
    };
    crate::failpoint::hit("materialize.after-file");
    remember(ctx, key, &md, content);
    ctx.files_written.fetch_add(1, Ordering::Relaxed);
    ctx.bytes_written.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

/// Whether the existing file `md` already holds `content`: trusted from the stat cache when
/// its stat is unchanged, otherwise (same size only) by hashing it, which is cheaper than
/// rewriting it (e.g. a file changed just before the last commit, too recent to be cached).
fn has_content(
    ctx: &Ctx,
    path: &Path,
    key: &[u8],
    md: &Metadata,
    size: u64,
    content: Option<&ObjectId>,
) -> Result<bool> {
    if md.len() != size {
        return Ok(false);
    }
    if let Some(c) = ctx.old.entries.get(key).filter(|c| c.matches(md)) {
        return Ok(c.content.as_ref() == content);
    }
    let (found, read, _) = store_file(&HashOnly::default(), path, &Default::default())?;
    Ok(read == size && found.as_ref() == content)
}

fn remember(ctx: &Ctx, key: Vec<u8>, md: &Metadata, content: Option<&ObjectId>) {
    ctx.new
        .lock()
        .expect("cache lock")
        .insert(key, CacheEntry::new(md, content.copied()));
}

/// Write a new file at `path` with a file's content (zero chunks become holes) and metadata.
fn write_file(
    ctx: &Ctx,
    path: &Path,
    meta: &Meta,
    size: u64,
    content: Option<&ObjectId>,
) -> Result<File> {
    // The list must cover exactly `size` and the file must fit, before anything is written.
    let mut chunks = match content {
        Some(c) => {
            let chunks = store::chunks(ctx.store, c, size)?;
            super::check_free_space(path, size, || store::stored_bytes(ctx.store, c, size))?;
            Some(chunks)
        }
        None => None,
    };
    let file = File::options()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .at("create", path)?;
    let mut out = BufWriter::with_capacity((size as usize).clamp(CHUNK_SIZE, 1 << 20), file);
    // Only a file ending in a hole needs its length set explicitly.
    let mut ends_in_hole = false;
    if let Some(chunks) = chunks.as_mut() {
        // 128 chunks (1 MiB) at a time, streamed from the list: located together, read and
        // verified in parallel, written in order; all-zero chunks become holes.
        loop {
            let batch: Vec<ListEntry> = chunks.by_ref().take(128).collect::<Result<_>>()?;
            if batch.is_empty() {
                break;
            }
            let wanted: Vec<ObjectId> = batch
                .iter()
                .filter(|c| !is_zero_chunk(&c.id))
                .map(|c| c.id)
                .collect();
            let mut data = ctx.store.get_many(&wanted)?.into_iter();
            for chunk in &batch {
                if is_zero_chunk(&chunk.id) {
                    out.seek(SeekFrom::Current(chunk.len as i64))
                        .at("write", path)?;
                    ends_in_hole = true;
                    continue;
                }
                let bytes = data.next().expect("one result per wanted chunk");
                if bytes.len() as u64 != chunk.len {
                    return Err(Error::CorruptObject {
                        id: chunk.id.to_hex(),
                        detail: "chunk length differs from its list entry".into(),
                    });
                }
                out.write_all(&bytes).at("write", path)?;
                ends_in_hole = false;
            }
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .at("write", path)?;
    if ends_in_hole {
        file.set_len(size).at("write", path)?;
    }
    if size >= WRITEBACK_MIN {
        start_writeback(&file);
    }
    apply_file_meta(ctx, &file, path, meta)?;
    Ok(file)
}

/// Files at least this large start writeback as soon as they are written.
const WRITEBACK_MIN: u64 = 1 << 20;

/// Owner (as root), mode and mtime of a file just written, through its handle.
fn apply_file_meta(ctx: &Ctx, file: &File, path: &Path, meta: &Meta) -> Result<()> {
    if ctx.as_root {
        std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid)).at("chown", path)?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode))
        .at("chmod", path)?;
    let t = filetime::FileTime::from_unix_time(meta.mtime_sec, meta.mtime_nsec);
    filetime::set_file_handle_times(file, Some(t), Some(t)).at("set times of", path)
}

fn sync_symlink(
    ctx: &Ctx,
    path: &Path,
    meta: &Meta,
    target: &[u8],
    existing: Option<&Metadata>,
) -> Result<()> {
    if let Some(md) = existing {
        let same = md.file_type().is_symlink()
            && std::fs::read_link(path).is_ok_and(|t| t.as_os_str().as_bytes() == target);
        if same {
            apply_meta(ctx, path, meta, Some(md), true)?;
            return Ok(());
        }
        remove_path(path, md)?;
    }
    std::os::unix::fs::symlink(OsStr::from_bytes(target), path).at("create symlink", path)?;
    apply_meta(ctx, path, meta, None, true)?;
    Ok(())
}

/// Apply owner (as root), mode and mtime where they differ from `current`; true if anything
/// changed. Never follows a symlink.
fn apply_meta(
    ctx: &Ctx,
    path: &Path,
    meta: &Meta,
    current: Option<&Metadata>,
    is_link: bool,
) -> Result<bool> {
    let mut changed = false;
    let differs = |f: &dyn Fn(&Metadata) -> bool| current.is_none_or(f);
    if ctx.as_root && differs(&|md| md.uid() != meta.uid || md.gid() != meta.gid) {
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)).at("chown", path)?;
        changed = true;
    }
    if !is_link && (changed || differs(&|md| md.mode() & 0o7777 != meta.mode)) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))
            .at("chmod", path)?;
        changed = true;
    }
    if changed
        || differs(&|md| md.mtime() != meta.mtime_sec || md.mtime_nsec() as u32 != meta.mtime_nsec)
    {
        let t = filetime::FileTime::from_unix_time(meta.mtime_sec, meta.mtime_nsec);
        filetime::set_symlink_file_times(path, t, t).at("set times of", path)?;
        changed = true;
    }
    Ok(changed)
}

/// Without root, a read-only directory must become writable before its entries change; its
/// stored mode is applied again at the end.
fn ensure_writable(ctx: &Ctx, dir: &Path, md: &Metadata) -> Result<()> {
    if !ctx.as_root && md.mode() & 0o300 != 0o300 {
        std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode(md.mode() & 0o7777 | 0o700),
        )
        .at("chmod", dir)?;
    }
    Ok(())
}

fn list_dir(dir: &Path) -> Result<HashMap<Vec<u8>, Metadata>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).at("list", dir)? {
        let entry = entry.at("list", dir)?;
        let md = std::fs::symlink_metadata(entry.path()).at("stat", entry.path())?;
        out.insert(entry.file_name().as_bytes().to_vec(), md);
    }
    Ok(out)
}

/// Remove a file, symlink or whole directory (symlinks are removed, never followed).
fn remove_path(path: &Path, md: &Metadata) -> Result<()> {
    if md.is_dir() {
        std::fs::remove_dir_all(path).at("remove", path)
    } else {
        std::fs::remove_file(path).at("remove", path)
    }
}

fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".dvol-tmp-{}-{n}", std::process::id()))
}

/// Ask the kernel to start writing a finished file back now, so the final syncfs finds little
/// left to do and disk writes overlap with the rest of the work.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // Advisory only: a failure here is caught by the syncfs at the end.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Flush everything written under `dir` to disk (one syncfs instead of an fsync per file).
fn syncfs(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).at("open", dir)?;
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).at("sync", dir);
    }
    Ok(())
}
