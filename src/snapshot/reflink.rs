//! Reflink clones: a new live directory that shares its files' extents with an existing one
//! (`FICLONE` on XFS with reflink, btrfs), so it costs the metadata of its files, not their
//! data. Only files the target tree wants, with the same content, are cloned:
//!
//! - the walk follows the target tree, so nothing the source holds beyond it (a container's
//!   junk, a FIFO, a device node, a million extra files) is looked at;
//! - a file is cloned when the source's stat cache says it holds exactly the wanted content
//!   and its stat is unchanged both before and after the clone (a container writing
//!   meanwhile changes its ctime), so the clone is correct whether or not the source was
//!   frozen; a file the cache has no entry for (written too close to the commit to be cached)
//!   is cloned without a cache entry, and [`super::materialize`] hashes the clone and keeps it
//!   only if it holds the wanted content; anything else is left for it to write from the
//!   store;
//! - the source is read only through [`crate::live`] handles (opened beneath its root without
//!   following a symlink, only regular files opened), and every clone is a new inode: a hard
//!   link into the source is never made.
//!
//! The clone's stat cache rows (the new inodes with the source's content ids) are written to
//! the clone's cache a directory at a time and kept at the end, so the materialization that
//! follows and the clone's first commit trust those files without reading them. One
//! directory's tree, listing and cache rows are held at a time, never the volume's.

use super::scan::join_rel;
use super::statcache::{CacheEntry, DirCache, StatCache};
use super::tree::{Node, Tree};
use crate::error::IoContext;
use crate::live::{Dir, Found, Stat};
use crate::store::{ObjectId, Store};
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a clone shared.
#[derive(Debug, Default)]
pub struct Cloned {
    pub files: u64,
    pub bytes: u64,
    /// Cloned files the source's cache had no entry for, left for the materialization to
    /// check by hashing.
    pub unverified: u64,
}

struct Ctx<'a> {
    store: &'a Store,
    source_cache: &'a StatCache,
    out: &'a StatCache,
    files: AtomicU64,
    bytes: AtomicU64,
    unverified: AtomicU64,
}

/// Whether the file system holding `dir` shares extents between files: a one-block probe
/// file is cloned with `FICLONE` in a fresh temporary directory inside `dir`. Decided by
/// trying, never by the file system's name (`copy_file_range` would silently copy on ext4).
pub fn supported(dir: &Path) -> bool {
    let Ok(tmp) = tempfile::Builder::new().prefix(".probe-").tempdir_in(dir) else {
        return false;
    };
    let probe = || -> Result<bool> {
        let d = Dir::open_root(tmp.path())?;
        let mut a = d.create_file(b"a", 0o600)?;
        std::io::Write::write_all(&mut a, &[7u8; 4096]).at("write", tmp.path())?;
        let a = match d.open_file(b"a")? {
            Found::File(o) => o.file,
            _ => return Ok(false),
        };
        Ok(d.clone_file(b"b", &a)?.is_some())
    };
    probe().unwrap_or(false)
}

/// Create `dest` (which must not exist) holding reflink clones of the files of `tree` that
/// the live directory `source` holds with the wanted content according to `source_cache`,
/// and the directories leading to them. Metadata is left to the materialization that
/// follows (which also writes everything that was not cloned). The clones' cache rows go to
/// `out` (and are kept there).
pub fn clone_tree(
    store: &Store,
    tree: &ObjectId,
    source: &Path,
    source_cache: &StatCache,
    dest: &Path,
    out: &StatCache,
) -> Result<Cloned> {
    let src = Dir::open_root(source)?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).at("create", parent)?;
    }
    std::fs::create_dir(dest).at("create", dest)?;
    let dst = Dir::open_root(dest)?;
    let ctx = Ctx {
        store,
        source_cache,
        out,
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        unverified: AtomicU64::new(0),
    };
    clone_dir(&ctx, tree, &src, &dst, b"")?;
    out.promote();
    Ok(Cloned {
        files: ctx.files.into_inner(),
        bytes: ctx.bytes.into_inner(),
        unverified: ctx.unverified.into_inner(),
    })
}

/// Clone what directory `rel` of the source holds of `tree_id` into `dst`, and stage the row
/// of the clones made (subdirectories listed, so the clone's cache knows them).
fn clone_dir(ctx: &Ctx, tree_id: &ObjectId, src: &Dir, dst: &Dir, rel: &[u8]) -> Result<()> {
    let tree = Tree::load(ctx.store, tree_id)?;
    let have: HashMap<Vec<u8>, Stat> = src.entries()?.into_iter().collect();
    let source_row = ctx.source_cache.dir(rel);
    let row = Mutex::new(DirCache::default());
    tree.entries.par_iter().try_for_each(|e| {
        let Some(st) = have.get(&e.name) else {
            return Ok(());
        };
        match &e.node {
            Node::Dir { tree } if st.is_dir() => {
                let sub = match src.open_dir(&e.name) {
                    Ok(d) => d,
                    // Swapped for something else since the listing: not cloned.
                    Err(Error::Changed { .. }) => return Ok(()),
                    Err(err) => return Err(err),
                };
                dst.create_dir(&e.name, 0o700)?;
                clone_dir(
                    ctx,
                    tree,
                    &sub,
                    &dst.open_dir(&e.name)?,
                    &join_rel(rel, &e.name),
                )?;
                row.lock().expect("row lock").insert_dir(&e.name);
                Ok(())
            }
            Node::File {
                size,
                content: Some(content),
                ..
            } if st.is_file() && st.size() == *size => {
                let cached = source_row.file(&e.name);
                if let Some(entry) = clone_file(ctx, src, dst, &e.name, cached, content)? {
                    row.lock().expect("row lock").insert_file(&e.name, entry);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    })?;
    ctx.out.stage(rel, &row.into_inner().expect("row lock"));
    Ok(())
}

/// Clone one file if the source's cache vouches for its content before and after, or if the
/// cache has no entry for it (a file written too close to the commit's scan to be cached,
/// "racy"): such a clone gets no cache entry, so the materialization that follows hashes it
/// (the clone is a private inode nothing else writes) and keeps it only if it holds the
/// wanted content, else rewrites it from the store. `cached` is the source's cache entry for
/// the file; returns the clone's entry when it is vouched for.
fn clone_file(
    ctx: &Ctx,
    src: &Dir,
    dst: &Dir,
    name: &[u8],
    cached: Option<&CacheEntry>,
    want: &ObjectId,
) -> Result<Option<CacheEntry>> {
    if cached.is_some_and(|c| c.content.as_ref() != Some(want)) {
        return Ok(None);
    }
    let Found::File(opened) = src.open_file(name)? else {
        return Ok(None);
    };
    if cached.is_some_and(|c| !c.matches(&opened.stat)) {
        return Ok(None);
    }
    crate::failpoint::pause("reflink.before-clone");
    let Some(out) = dst.clone_file(name, &opened.file)? else {
        return Ok(None);
    };
    let st = Stat::of(&out, &dst.child_path(name))?;
    let entry = match cached {
        Some(cached) => {
            if !cached.matches(&Stat::of(&opened.file, &src.child_path(name))?) {
                // Written while it was cloned: the copy's content is unknown, let it be
                // rewritten.
                drop(out);
                dst.remove(name)?;
                return Ok(None);
            }
            Some(CacheEntry::new(&st, Some(*want)))
        }
        None => {
            ctx.unverified.fetch_add(1, Ordering::Relaxed);
            None
        }
    };
    ctx.files.fetch_add(1, Ordering::Relaxed);
    ctx.bytes.fetch_add(st.size(), Ordering::Relaxed);
    Ok(entry)
}
