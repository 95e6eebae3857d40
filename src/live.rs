//! Live data access: the only way dvol reads or changes a live directory (a branch's data, which
//! containers write while dvol works, and may fill with symlinks, FIFOs, device nodes and hard
//! links made to catch a root process out).
//!
//! Everything goes through [`Dir`] handles opened beneath the live root one name at a time with
//! `O_NOFOLLOW | O_DIRECTORY`, so no step follows a symlink, and every action is relative to a
//! handle: `fstatat`/`readlinkat`/`mkdirat`/`symlinkat`/`unlinkat`/`renameat` on a parent's
//! handle, `fchown`/`fchmod`/`futimens` on the object's own handle. A name is opened for reading
//! only after an `O_PATH | O_NOFOLLOW` handle showed it is a regular file, and then through that
//! handle (`/proc/self/fd`, non-blocking), so a FIFO or device swapped in is never opened.
//! Callers never change a regular file that has more than one link in place (a host file linked
//! into the volume must not be touched); [`Stat::nlink`] tells them.
//!
//! Depth is bounded by [`MAX_DEPTH`]; a walk holds one directory handle per level of its current
//! path, so handles cannot run out.
//!
//! Must not: be bypassed. No other module opens, reads, writes, stats, renames or removes anything
//! inside a live directory by path. Only the live roots themselves (`ROOT/<volume>/branches/<b>`
//! and their staging copies: directories dvol made, which no container can rename) are named by
//! path, and `repo` may move one as a whole (a staged branch into place, a volume to the trash).

use crate::error::IoContext;
use crate::{Error, Result};
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Deepest directory nesting dvol reads or writes below a live root. Far beyond real data
/// (a database's data directory is a few levels deep); it bounds the handles and stack a walk
/// uses. A deeper tree is refused with [`Error::PathTooDeep`].
pub const MAX_DEPTH: usize = 256;

/// How often an entry that keeps changing type under dvol is looked at again before giving up.
const RETRIES: usize = 8;

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
}

impl Kind {
    /// A short human name ("FIFO", "socket", ...).
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::BlockDevice => "block device",
            Kind::CharDevice => "character device",
        }
    }
}

/// The `stat` of one object, from `fstat` on a handle or `fstatat` without following links.
#[derive(Clone, Copy, Debug)]
pub struct Stat(rustix::fs::Stat);

// The `stat` field types differ between architectures; the casts are no-ops on some of them.
#[allow(clippy::unnecessary_cast)]
impl Stat {
    pub fn kind(&self) -> Kind {
        use rustix::fs::FileType as T;
        match T::from_raw_mode(self.0.st_mode as _) {
            T::RegularFile => Kind::File,
            T::Directory => Kind::Dir,
            T::Symlink => Kind::Symlink,
            T::Fifo => Kind::Fifo,
            T::Socket => Kind::Socket,
            T::BlockDevice => Kind::BlockDevice,
            _ => Kind::CharDevice,
        }
    }
    pub fn is_file(&self) -> bool {
        self.kind() == Kind::File
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == Kind::Dir
    }
    pub fn is_symlink(&self) -> bool {
        self.kind() == Kind::Symlink
    }
    pub fn size(&self) -> u64 {
        self.0.st_size as u64
    }
    /// Permission bits including setuid/setgid/sticky.
    pub fn mode(&self) -> u32 {
        self.0.st_mode as u32 & 0o7777
    }
    pub fn uid(&self) -> u32 {
        self.0.st_uid as u32
    }
    pub fn gid(&self) -> u32 {
        self.0.st_gid as u32
    }
    pub fn mtime(&self) -> i64 {
        self.0.st_mtime as i64
    }
    pub fn mtime_nsec(&self) -> u32 {
        self.0.st_mtime_nsec as u32
    }
    pub fn mtime_ns(&self) -> i64 {
        self.mtime() * 1_000_000_000 + self.mtime_nsec() as i64
    }
    pub fn ctime_ns(&self) -> i64 {
        self.0.st_ctime as i64 * 1_000_000_000 + self.0.st_ctime_nsec as i64
    }
    pub fn ino(&self) -> u64 {
        self.0.st_ino as u64
    }
    /// Bytes allocated on disk (`st_blocks` × 512).
    pub fn allocated(&self) -> u64 {
        (self.0.st_blocks as u64).saturating_mul(512)
    }
    pub fn nlink(&self) -> u64 {
        self.0.st_nlink as u64
    }
    /// Whether both describe the same inode.
    pub fn same_inode(&self, other: &Stat) -> bool {
        self.0.st_dev == other.0.st_dev && self.0.st_ino == other.0.st_ino
    }
    /// The stat of an open file.
    pub fn of(file: &File, path: &Path) -> Result<Stat> {
        fstat(file.as_fd(), path)
    }
}

/// Metadata to set on an object; `None` leaves that part as it is. The owner is set first
/// (a chown clears setuid/setgid bits), then the mode, then the modification time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attrs {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
    pub mtime: Option<(i64, u32)>,
}

impl Attrs {
    pub fn is_empty(&self) -> bool {
        self.owner.is_none() && self.mode.is_none() && self.mtime.is_none()
    }
}

/// A regular file opened for reading through its checked handle, with that handle's stat.
pub struct Opened {
    pub file: File,
    pub stat: Stat,
}

/// What [`Dir::open_file`] found at a name.
pub enum Found {
    File(Opened),
    /// Not a regular file (it was never opened for reading).
    Other(Stat),
    Missing,
}

/// A handle on a directory at or beneath a live root.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    depth: usize,
}

fn err(e: Errno) -> std::io::Error {
    e.into()
}

fn fstat(fd: BorrowedFd, path: &Path) -> Result<Stat> {
    rustix::fs::fstat(fd)
        .map(Stat)
        .map_err(err)
        .at("stat", path)
}

/// A tree entry or directory listing name must be one path component.
fn check_name<'n>(name: &'n [u8], dir: &Path) -> Result<&'n [u8]> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Error::BadEntryName {
            name: String::from_utf8_lossy(name).into_owned(),
            dir: dir.to_path_buf(),
        });
    }
    Ok(name)
}

impl Dir {
    /// Open a live root (a directory dvol made); the last component must not be a symlink.
    pub fn open_root(path: &Path) -> Result<Dir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())
            .map_err(err)
            .at("open", path)?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
            depth: 0,
        })
    }

    /// Create a live root (and its parents, dvol's own directories) if missing, and open it.
    pub fn create_root(path: &Path) -> Result<Dir> {
        std::fs::create_dir_all(path).at("create", path)?;
        Dir::open_root(path)
    }

    /// The path of an entry, for messages only.
    pub fn child_path(&self, name: &[u8]) -> PathBuf {
        self.path.join(std::ffi::OsStr::from_bytes(name))
    }

    /// The directory's own stat.
    pub fn stat(&self) -> Result<Stat> {
        fstat(self.fd.as_fd(), &self.path)
    }

    /// Every entry with its stat (symlinks not followed), sorted by name. An entry removed
    /// between the listing and its stat is left out.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Stat)>> {
        let list = rustix::fs::Dir::read_from(&self.fd)
            .map_err(err)
            .at("list", &self.path)?;
        let mut out = Vec::new();
        for entry in list {
            let entry = entry.map_err(err).at("list", &self.path)?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => out.push((name.to_bytes().to_vec(), Stat(st))),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(err(e)).at("stat", self.child_path(name.to_bytes())),
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The stat of one entry (not following a symlink), `None` if there is none.
    pub fn stat_at(&self, name: &[u8]) -> Result<Option<Stat>> {
        let name = check_name(name, &self.path)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat(st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(err(e)).at("stat", self.child_path(name)),
        }
    }

    /// Open the subdirectory `name`; fails (with [`Error::Changed`]) if it is not a directory
    /// now, e.g. a symlink swapped in since it was listed.
    pub fn open_dir(&self, name: &[u8]) -> Result<Dir> {
        let name = check_name(name, &self.path)?;
        let path = self.child_path(name);
        if self.depth >= MAX_DEPTH {
            return Err(Error::PathTooDeep {
                path,
                limit: MAX_DEPTH,
            });
        }
        crate::failpoint::pause("live.open");
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Dir {
                fd,
                path,
                depth: self.depth + 1,
            }),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(Error::Changed { path }),
            Err(e) => Err(err(e)).at("open", path),
        }
    }

    /// Open `name` for reading if, and only if, it is a regular file: an `O_PATH` handle is
    /// opened without following links and `fstat`ed first, and the file is then reopened
    /// through that handle (non-blocking), so nothing else is ever opened for reading.
    pub fn open_file(&self, name: &[u8]) -> Result<Found> {
        let name = check_name(name, &self.path)?;
        crate::failpoint::pause("live.open");
        let Some(handle) = self.open_path(name)? else {
            return Ok(Found::Missing);
        };
        let stat = fstat(handle.as_fd(), &self.child_path(name))?;
        if !stat.is_file() {
            return Ok(Found::Other(stat));
        }
        let file = reopen(&handle, OFlags::RDONLY).at("open", self.child_path(name))?;
        Ok(Found::File(Opened { file, stat }))
    }

    /// An `O_PATH` handle on whatever `name` is (a symlink itself, not its target).
    fn open_path(&self, name: &[u8]) -> Result<Option<OwnedFd>> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(err(e)).at("open", self.child_path(name)),
        }
    }

    /// The target of the symlink `name` ([`Error::Changed`] if it is no longer a symlink).
    pub fn read_link(&self, name: &[u8]) -> Result<Vec<u8>> {
        let name = check_name(name, &self.path)?;
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(t) => Ok(t.into_bytes()),
            Err(Errno::INVAL | Errno::NOENT) => Err(Error::Changed {
                path: self.child_path(name),
            }),
            Err(e) => Err(err(e)).at("read symlink", self.child_path(name)),
        }
    }

    /// Create a new regular file (never opening an existing one, nor following a link).
    pub fn create_file(&self, name: &[u8], mode: u32) -> Result<File> {
        let name = check_name(name, &self.path)?;
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))
            .map(File::from)
            .map_err(err)
            .at("create", self.child_path(name))
    }

    /// Create `name` as a new file sharing the extents of the open regular file `src`
    /// (`FICLONE`: no data is copied). `Ok(None)` when the file system cannot share them
    /// (nothing is left behind); the caller then writes the file another way.
    pub fn clone_file(&self, name: &[u8], src: &File) -> Result<Option<File>> {
        let out = self.create_file(name, 0o600)?;
        match rustix::fs::ioctl_ficlone(&out, src) {
            Ok(()) => Ok(Some(out)),
            Err(e) => {
                drop(out);
                self.unlink(name, AtFlags::empty())?;
                match e {
                    Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOSYS => Ok(None),
                    e => Err(err(e)).at("clone", self.child_path(name)),
                }
            }
        }
    }

    /// A path naming this very directory (`/proc/self/fd/N`) for calls that take paths, such
    /// as `mount(2)`: it stays this directory whatever is renamed meanwhile. Valid while the
    /// handle lives.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn create_dir(&self, name: &[u8], mode: u32) -> Result<()> {
        let name = check_name(name, &self.path)?;
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode))
            .map_err(err)
            .at("create directory", self.child_path(name))
    }

    pub fn symlink(&self, target: &[u8], name: &[u8]) -> Result<()> {
        let name = check_name(name, &self.path)?;
        rustix::fs::symlinkat(target, &self.fd, name)
            .map_err(err)
            .at("create symlink", self.child_path(name))
    }

    /// Rename `from` to `to` within this directory (replacing a non-directory `to`).
    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let (from, to) = (check_name(from, &self.path)?, check_name(to, &self.path)?);
        rustix::fs::renameat(&self.fd, from, &self.fd, to)
            .map_err(err)
            .at("rename into place", self.child_path(to))
    }

    /// Remove whatever `name` is now: a file, link or special file is unlinked, a directory is
    /// emptied through its own handle and removed. Nothing is followed. An entry that keeps
    /// changing type while it is removed is an error ([`Error::Changed`]).
    pub fn remove(&self, name: &[u8]) -> Result<()> {
        let name = check_name(name, &self.path)?;
        for _ in 0..RETRIES {
            let Some(st) = self.stat_at(name)? else {
                return Ok(());
            };
            crate::failpoint::pause("live.remove");
            let done = if st.is_dir() {
                self.remove_dir(name)?
            } else {
                self.unlink(name, AtFlags::empty())?
            };
            if done {
                return Ok(());
            }
        }
        Err(Error::Changed {
            path: self.child_path(name),
        })
    }

    /// Empty and remove a directory; false if `name` turned out not to be one (look again).
    fn remove_dir(&self, name: &[u8]) -> Result<bool> {
        let sub = match self.open_dir(name) {
            Ok(d) => d,
            Err(Error::Changed { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        for (child, _) in sub.entries()? {
            sub.remove(&child)?;
        }
        self.unlink(name, AtFlags::REMOVEDIR)
    }

    /// `unlinkat`; false when the entry changed type (or gained entries) meanwhile.
    fn unlink(&self, name: &[u8], flags: AtFlags) -> Result<bool> {
        match rustix::fs::unlinkat(&self.fd, name, flags) {
            Ok(()) | Err(Errno::NOENT) => Ok(true),
            Err(Errno::ISDIR | Errno::NOTDIR | Errno::NOTEMPTY) => Ok(false),
            Err(e) => Err(err(e)).at("remove", self.child_path(name)),
        }
    }

    /// Set the directory's own owner, mode and time, on its handle.
    pub fn set_attrs(&self, a: &Attrs) -> Result<()> {
        set_attrs(self.fd.as_fd(), &self.path, a)
    }

    /// Set the owner and time of the symlink `name` itself, through an `O_PATH` handle that is
    /// checked to be a symlink (and `expected`'s inode, if given) before anything changes.
    pub fn set_link_attrs(&self, name: &[u8], expected: Option<&Stat>, a: &Attrs) -> Result<Stat> {
        let name = check_name(name, &self.path)?;
        let path = self.child_path(name);
        crate::failpoint::pause("live.open");
        let handle = self
            .open_path(name)?
            .ok_or(Error::Changed { path: path.clone() })?;
        let st = fstat(handle.as_fd(), &path)?;
        if !st.is_symlink() || expected.is_some_and(|e| !e.same_inode(&st)) {
            return Err(Error::Changed { path });
        }
        let empty = AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW;
        if let Some((uid, gid)) = a.owner {
            rustix::fs::chownat(&handle, "", Some(uid_of(uid)), Some(gid_of(gid)), empty)
                .map_err(err)
                .at("chown", &path)?;
        }
        if let Some(t) = a.mtime {
            rustix::fs::utimensat(&handle, "", &times(t), empty)
                .map_err(err)
                .at("set times of", &path)?;
        }
        fstat(handle.as_fd(), &path)
    }

    /// Flush the whole file system holding this directory to disk.
    pub fn sync_fs(&self) -> Result<()> {
        rustix::fs::syncfs(&self.fd)
            .map_err(err)
            .at("sync", &self.path)
    }
}

/// Set owner, mode and time of an open regular file, on its handle.
pub fn set_file_attrs(file: &File, path: &Path, a: &Attrs) -> Result<()> {
    set_attrs(file.as_fd(), path, a)
}

fn set_attrs(fd: BorrowedFd, path: &Path, a: &Attrs) -> Result<()> {
    if let Some((uid, gid)) = a.owner {
        rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid)))
            .map_err(err)
            .at("chown", path)?;
    }
    if let Some(mode) = a.mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
            .map_err(err)
            .at("chmod", path)?;
    }
    if let Some(t) = a.mtime {
        rustix::fs::futimens(fd, &times(t))
            .map_err(err)
            .at("set times of", path)?;
    }
    Ok(())
}

fn uid_of(uid: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(uid)
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

/// Access and modification time both set to `t` (as a restore does).
fn times((sec, nsec): (i64, u32)) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Open the object an `O_PATH` handle refers to, through `/proc/self/fd` (the same inode,
/// whatever its name points to now), non-blocking.
fn reopen(handle: &OwnedFd, access: OFlags) -> std::io::Result<File> {
    let proc = format!("/proc/self/fd/{}", handle.as_raw_fd());
    let flags = access | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    Ok(File::from(rustix::fs::open(
        proc.as_str(),
        flags,
        Mode::empty(),
    )?))
}

/// Move `path` (a volume or branch directory dvol made, outside any live root) into `trash`
/// and delete it there through handles; a crash in between leaves only trash for gc.
pub fn discard(path: &Path, trash: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    std::fs::create_dir_all(trash).at("create", trash)?;
    let name = format!("{}-{}", std::process::id(), now_ns());
    std::fs::rename(path, trash.join(&name)).at("move to trash", path)?;
    Dir::open_root(trash)?.remove(name.as_bytes())
}

/// Delete everything in `dir` (dvol's trash) through handles, keeping `dir`.
pub fn empty_dir(dir: &Path) -> Result<()> {
    let d = Dir::open_root(dir)?;
    for (name, _) in d.entries()? {
        d.remove(&name)?;
    }
    Ok(())
}

/// Nanoseconds since the epoch, from the real-time clock.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_only_regular_files_and_never_follows() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("live");
        let host = t.path().join("host");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("secret"), b"host").unwrap();
        std::fs::write(root.join("f"), b"live").unwrap();
        symlink(&host, root.join("link")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            root.join("fifo"),
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let d = Dir::open_root(&root).unwrap();
        let names: Vec<_> = d.entries().unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(names, [&b"d"[..], b"f", b"fifo", b"link"]);
        let Found::File(mut o) = d.open_file(b"f").unwrap() else {
            panic!("f is a file")
        };
        let mut s = String::new();
        o.file.read_to_string(&mut s).unwrap();
        assert_eq!(s, "live");
        assert!(
            matches!(d.open_file(b"fifo").unwrap(), Found::Other(st) if st.kind() == Kind::Fifo)
        );
        assert!(matches!(d.open_file(b"link").unwrap(), Found::Other(st) if st.is_symlink()));
        assert!(matches!(d.open_dir(b"link"), Err(Error::Changed { .. })));
        assert!(d.create_file(b"link", 0o600).is_err());
        d.remove(b"link").unwrap();
        assert!(host.join("secret").exists());
        assert!(d.open_dir(b"../host").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let t = tempfile::tempdir().unwrap();
        let mut d = Dir::open_root(t.path()).unwrap();
        for _ in 0..MAX_DEPTH {
            d.create_dir(b"a", 0o700).unwrap();
            d = d.open_dir(b"a").unwrap();
        }
        d.create_dir(b"a", 0o700).unwrap();
        assert!(matches!(d.open_dir(b"a"), Err(Error::PathTooDeep { .. })));
    }
}
