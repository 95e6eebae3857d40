//! Overlay mounts for thin clones on file systems without shared extents (ext4): a read-only
//! lower directory (a base materialized once per commit) and a private upper and work
//! directory per branch, mounted with overlayfs at the branch's live directory, as Docker's
//! own overlay2 driver does for image layers.
//!
//! Every layer is opened as a [`Dir`] handle (no symlink followed) and handed to the kernel
//! as `/proc/self/fd/N`, so neither a renamed path nor a comma or colon in the dvol root can
//! change what is mounted. Only directories dvol made (under its 0700 root) are named by path
//! here.
//!
//! Must not: know about branches, commits or SQLite (`repo::thin` decides what is mounted
//! where).

use crate::error::IoContext;
use crate::live::Dir;
use crate::{Error, Result};
use rustix::mount::{MountFlags, UnmountFlags};
use std::path::{Path, PathBuf};

/// Mount `lower` (read-only), `upper` and `work` (private, empty at first, on one file
/// system) as an overlay at `target`.
pub fn mount(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let (l, u, w) = (
        Dir::open_root(lower)?,
        Dir::open_root(upper)?,
        Dir::open_root(work)?,
    );
    let t = Dir::open_root(target)?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.proc_path().display(),
        u.proc_path().display(),
        w.proc_path().display()
    );
    let options = std::ffi::CString::new(options).expect("no NUL in /proc paths");
    rustix::mount::mount(
        "dvol",
        t.proc_path().as_path(),
        "overlay",
        MountFlags::empty(),
        options.as_c_str(),
    )
    .map_err(std::io::Error::from)
    .at("mount overlay at", target)
}

/// Whether `path` is a mount point now (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::symlink_metadata(path),
        path.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    me.is_dir() && me.dev() != parent.dev()
}

/// Detach whatever is mounted at `path` (a container still using it keeps its view until it
/// lets go); nothing mounted is fine.
pub fn unmount(path: &Path) -> Result<()> {
    match rustix::mount::unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
        Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)).at("unmount", path),
    }
}

/// Detach every mount at or below `dir` (deepest first, and again while some remain: one
/// path may carry several stacked mounts), so the directory can be moved and deleted: a
/// volume or branch being removed, or the leftovers of an interrupted clone.
pub fn unmount_under(dir: &Path) -> Result<()> {
    // mountinfo names mount points by their resolved path.
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(());
    };
    for _ in 0..8 {
        let below = mounts_under(&dir);
        if below.is_empty() {
            break;
        }
        below.iter().try_for_each(|p| unmount(p))?;
    }
    Ok(())
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut below: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(dir))
        .collect();
    below.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    below.dedup();
    below
}

/// A mount point as mountinfo writes it (space, tab, newline and backslash as `\ooo`).
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Whether overlay mounts work here: a tiny overlay is mounted and unmounted in a fresh
/// temporary directory inside `dir` (needs CAP_SYS_ADMIN, overlayfs, and a `dir` that is not
/// itself on an overlay).
pub fn supported(dir: &Path) -> bool {
    let Ok(tmp) = tempfile::Builder::new().prefix(".probe-").tempdir_in(dir) else {
        return false;
    };
    let p = |n: &str| tmp.path().join(n);
    let made = ["lower", "upper", "work", "merged"]
        .iter()
        .all(|n| std::fs::create_dir(p(n)).is_ok());
    let ok = made && mount(&p("lower"), &p("upper"), &p("work"), &p("merged")).is_ok();
    if ok {
        let _ = unmount(&p("merged"));
    }
    ok
}

/// The error for an overlay clone whose mount is gone and cannot be made again.
pub fn not_mounted(path: &Path, why: &Error) -> Error {
    Error::OverlayNotMounted {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(
            super::unescape(r"/a\040b\011c\134d"),
            std::path::PathBuf::from("/a b\tc\\d")
        );
    }
}
