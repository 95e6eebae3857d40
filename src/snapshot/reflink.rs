//! Reflink clones: a new live directory that shares its files' extents with an existing one
//! (`FICLONE` on XFS with reflink, btrfs), so it costs the metadata of its files, not their
//! data. Only files the target tree wants, with the same content, are cloned:
//!
//! - the walk follows the target tree, so nothing the source holds beyond it (a container's
//!   junk, a FIFO, a device node, a million extra files) is looked at;
//! - a file is cloned only when the source's stat cache says it holds exactly the wanted
//!   content and its stat is unchanged both before and after the clone (a container writing
//!   meanwhile changes its ctime), so the clone is correct whether or not the source was
//!   frozen; anything else is left for [`super::materialize`] to write from the store;
//! - the source is read only through [`crate::live`] handles (opened beneath its root without
//!   following a symlink, only regular files opened), and every clone is a new inode: a hard
//!   link into the source is never made.
//!
//! The clone's stat cache (the new inodes with the source's content ids) is returned, so the
//! materialization that follows and the clone's first commit trust those files without
//! reading them.

use super::scan::join_rel;
use super::statcache::{CacheEntry, StatCache};
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
    /// Stat cache entries of the cloned files (new inodes, known content).
    pub cache: StatCache,
    pub files: u64,
    pub bytes: u64,
}

struct Ctx<'a> {
    store: &'a Store,
    source_cache: &'a StatCache,
    out: Mutex<HashMap<Vec<u8>, CacheEntry>>,
    files: AtomicU64,
    bytes: AtomicU64,
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
/// follows (which also writes everything that was not cloned).
pub fn clone_tree(
    store: &Store,
    tree: &ObjectId,
    source: &Path,
    source_cache: &StatCache,
    dest: &Path,
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
        out: Mutex::new(HashMap::new()),
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    clone_dir(&ctx, tree, &src, &dst, b"")?;
    Ok(Cloned {
        cache: StatCache {
            entries: ctx.out.into_inner().expect("cache lock"),
        },
        files: ctx.files.into_inner(),
        bytes: ctx.bytes.into_inner(),
    })
}

fn clone_dir(ctx: &Ctx, tree_id: &ObjectId, src: &Dir, dst: &Dir, rel: &[u8]) -> Result<()> {
    let tree = Tree::load(ctx.store, tree_id)?;
    let have: HashMap<Vec<u8>, Stat> = src.entries()?.into_iter().collect();
    tree.entries.par_iter().try_for_each(|e| {
        let Some(st) = have.get(&e.name) else {
            return Ok(());
        };
        let rel = join_rel(rel, &e.name);
        match &e.node {
            Node::Dir { tree } if st.is_dir() => {
                let sub = match src.open_dir(&e.name) {
                    Ok(d) => d,
                    // Swapped for something else since the listing: not cloned.
                    Err(Error::Changed { .. }) => return Ok(()),
                    Err(err) => return Err(err),
                };
                dst.create_dir(&e.name, 0o700)?;
                clone_dir(ctx, tree, &sub, &dst.open_dir(&e.name)?, &rel)
            }
            Node::File {
                size,
                content: Some(content),
                ..
            } if st.is_file() && st.size() == *size => {
                clone_file(ctx, src, dst, &e.name, &rel, content)
            }
            _ => Ok(()),
        }
    })
}

/// Clone one file if the source's cache vouches for its content before and after.
fn clone_file(
    ctx: &Ctx,
    src: &Dir,
    dst: &Dir,
    name: &[u8],
    rel: &[u8],
    want: &ObjectId,
) -> Result<()> {
    let Some(cached) = ctx
        .source_cache
        .entries
        .get(rel)
        .filter(|c| c.content.as_ref() == Some(want))
    else {
        return Ok(());
    };
    let Found::File(opened) = src.open_file(name)? else {
        return Ok(());
    };
    if !cached.matches(&opened.stat) {
        return Ok(());
    }
    crate::failpoint::pause("reflink.before-clone");
    let Some(out) = dst.clone_file(name, &opened.file)? else {
        return Ok(());
    };

    let source_path = src.child_path(name);
    if !cached.matches(&Stat::of(&opened.file, &source_path)?) {
        // Written while it was cloned: the copy's content is unknown, let it be rewritten.
        drop(out);
        return dst.remove(name);
    }
    let st = Stat::of(&out, &dst.child_path(name))?;
    ctx.out
        .lock()
        .expect("cache lock")
        .insert(rel.to_vec(), CacheEntry::new(&st, Some(*want)));
    ctx.files.fetch_add(1, Ordering::Relaxed);
    ctx.bytes.fetch_add(st.size(), Ordering::Relaxed);
    Ok(())
}
