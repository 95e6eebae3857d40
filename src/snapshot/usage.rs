//! Disk use of a live directory or a thin clone, for `dvol info`: bytes the files claim,
//! bytes allocated, and how many of those are shared with other files (extents flagged
//! shared by `FIEMAP` on XFS and btrfs; an overlay clone's whole base). Walks through
//! [`crate::live`] handles and only opens regular files.

use crate::error::IoContext;
use crate::live::{Dir, Found, Kind};
use crate::Result;
use serde::Serialize;
use std::fs::File;
use std::path::Path;

/// What one directory tree uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub files: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Bytes allocated on disk for them (counting shared extents in full, like du).
    pub allocated: u64,
    /// Of `allocated`, bytes in extents shared with other files or clones.
    pub shared: u64,
}

impl Usage {
    /// Allocated bytes nothing else shares: what removing this tree would free.
    pub fn private(&self) -> u64 {
        self.allocated.saturating_sub(self.shared)
    }

    fn add(&mut self, other: &Usage) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.allocated += other.allocated;
        self.shared += other.shared;
    }
}

/// The use of the tree at `root` (an absent root uses nothing).
pub fn measure(root: &Path) -> Result<Usage> {
    if std::fs::symlink_metadata(root).is_err() {
        return Ok(Usage::default());
    }
    let mut u = Usage::default();
    walk(&Dir::open_root(root)?, &mut u)?;
    Ok(u)
}

/// An overlay clone: its base counts as shared, its upper directory (what was written and
/// copied up) as its own.
pub fn overlay(base: &Path, upper: &Path) -> Result<Usage> {
    let mut base = measure(base)?;
    base.shared = base.allocated;
    let own = measure(upper)?;
    base.add(&own);
    Ok(base)
}

fn walk(dir: &Dir, u: &mut Usage) -> Result<()> {
    for (name, st) in dir.entries()? {
        match st.kind() {
            Kind::Dir => match dir.open_dir(&name) {
                Ok(sub) => walk(&sub, u)?,
                Err(crate::Error::Changed { .. }) => {}
                Err(e) => return Err(e),
            },
            Kind::File => {
                if let Found::File(o) = dir.open_file(&name)? {
                    u.files += 1;
                    u.bytes += o.stat.size();
                    u.allocated += o.stat.allocated();
                    u.shared +=
                        shared_bytes(&o.file).at("map extents of", dir.child_path(&name))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `struct fiemap_extent` (linux/fiemap.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Extent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

const EXTENTS: usize = 128;

/// `struct fiemap` with room for [`EXTENTS`] extents.
#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [Extent; EXTENTS],
}

/// `FS_IOC_FIEMAP`: `_IOWR('f', 11, struct fiemap)` (the size field is the 32-byte header).
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

/// Bytes of `file` in extents the file system reports as shared (0 where it cannot say).
fn shared_bytes(file: &File) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut shared = 0u64;
    let mut start = 0u64;
    loop {
        let mut map = Fiemap {
            start,
            length: u64::MAX - start,
            flags: 0,
            mapped_extents: 0,
            extent_count: EXTENTS as u32,
            reserved: 0,
            extents: [Extent::default(); EXTENTS],
        };
        // SAFETY: `map` is a properly laid out `struct fiemap` followed by room for
        // `extent_count` extents, living for the whole call; the descriptor is borrowed from
        // `file`. The kernel writes at most `extent_count` extents.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, &raw mut map) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL) => Ok(shared),
                _ => Err(e),
            };
        }
        let n = (map.mapped_extents as usize).min(EXTENTS);
        if n == 0 {
            return Ok(shared);
        }
        for e in &map.extents[..n] {
            if e.flags & FIEMAP_EXTENT_SHARED != 0 {
                shared += e.length;
            }
            if e.flags & FIEMAP_EXTENT_LAST != 0 {
                return Ok(shared);
            }
        }
        let last = map.extents[n - 1];
        start = last.logical + last.length;
    }
}
