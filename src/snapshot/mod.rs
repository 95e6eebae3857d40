//! Snapshots of a live directory: scanning it into trees of stored objects ([`scan`]), the stat
//! cache that keeps scans proportional to what changed ([`statcache`]), writing a tree back
//! ([`materialize`]), and comparing trees ([`diff`]) or a tree with live data ([`status`]).
//! Knows nothing of volumes or branches. Every walk holds one directory at a time (per level
//! of the current path), so memory follows the largest directory, not the volume.

pub(crate) mod diff;
pub(crate) mod materialize;
pub(crate) mod reflink;
pub(crate) mod scan;
pub(crate) mod statcache;
pub(crate) mod status;
pub(crate) mod tree;
pub(crate) mod usage;

pub use diff::{diff, Change, ChangeKind, Emit};
pub use materialize::{materialize, materialize_with, Caches, Materialized, RestoreOptions};
pub use scan::{scan, Scan, MAX_SKIP_MESSAGES};
pub use statcache::StatCache;
pub use status::live_diff;
pub use tree::{Entry, Meta, Node, Tree};

use crate::error::IoContext;
use crate::Result;
use std::io::Write;
use std::path::Path;

/// Refuse to restore a file of `size` bytes at `path` when the file system has less room:
/// `stored` (called only when `size` alone does not fit) gives the bytes that are not holes.
pub fn check_free_space(
    path: &Path,
    size: u64,
    stored: impl FnOnce() -> Result<u64>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let free = free_bytes(dir)?;
    if size <= free {
        return Ok(());
    }
    let need = stored()?;
    if need > free {
        return Err(crate::Error::NoSpace {
            path: path.to_path_buf(),
            need,
            free,
        });
    }
    Ok(())
}

/// Bytes an unprivileged writer may still use on the file system holding `dir` (statvfs).
fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| crate::Error::Io {
        context: "statvfs",
        path: dir.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"),
    })?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory the
    // size of a statvfs, which the call fills on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).at("statvfs", dir);
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Write `bytes` to `path` atomically and durably: temp file in the same directory, fsync,
/// rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(path, bytes, true)
}

/// Replace `path` with `bytes` atomically (temp file + rename); fsync only if `durable`.
/// Derived data (stat caches) skips the fsyncs: after a power loss it is either intact, an
/// older but still self-consistent version, or fails its checksum and is ignored.
pub fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().expect("path has a parent");
    std::fs::create_dir_all(dir).at("create", dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at("create temp file in", dir)?;
    tmp.write_all(bytes).at("write", tmp.path())?;
    if durable {
        tmp.as_file().sync_all().at("fsync", tmp.path())?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .at("rename into place", path)?;
    if durable {
        crate::store::pack::sync_dir(dir)?;
    }
    Ok(())
}
