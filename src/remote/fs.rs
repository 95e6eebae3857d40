//! The filesystem carrier: a remote that is a directory (a local path, `file://`, and the far
//! side of `ssh://` and `http(s)://`). Puts go to a temporary file that is fsynced and renamed;
//! compare-and-swap holds an exclusive lock file while it reads, compares and renames (and,
//! for `dvol serve`, runs the server's checks: [`FsBackend::cas_checked`]); keys that must
//! never be replaced are created with a hard link, which fails if the name exists
//! ([`FsBackend::put_new`]).

use super::{check_key, check_prefix, Backend, CasOutcome, RemoteError};
use crate::error::IoContext;
use crate::Result;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A remote stored in a directory.
pub struct FsBackend {
    root: PathBuf,
}

impl FsBackend {
    pub fn new(root: &Path) -> FsBackend {
        FsBackend {
            root: root.to_path_buf(),
        }
    }

    /// Create the remote's directory for a server (`dvol serve`): private to its owner (0700).
    pub fn create_private_root(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if !self.root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .at("create", &self.root)?;
        }
        Ok(())
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        path.try_exists().at("stat", &path)
    }

    /// Compare-and-swap that runs `check` under the lock once the key holds `expected`,
    /// before the write: whatever `check` verifies cannot change before the key does (every
    /// compare-and-swap of this remote takes the same lock). An error from `check` leaves the
    /// key as it was.
    pub fn cas_checked(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
        check: &mut dyn FnMut(Option<&[u8]>) -> Result<()>,
    ) -> Result<CasOutcome> {
        let path = self.path(key)?;
        mkdirs(&self.root)?;
        let _lock = crate::lock::acquire(
            &self.root.join(".lock"),
            "remote refs",
            true,
            crate::lock::DEFAULT_TIMEOUT,
        )?;
        let current = self.get(key)?;
        if current.as_deref() != expected {
            return Ok(CasOutcome::Conflict { current });
        }
        check(current.as_deref())?;
        self.write_atomic(&path, &new)?;
        Ok(CasOutcome::Updated)
    }

    /// Create `key` with `data` only if it does not exist (a hard link of a synced temporary
    /// file, which fails if the name is taken, so two writers cannot both succeed). Returns
    /// false, changing nothing, when the key exists.
    pub fn put_new(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(key)?;
        let dir = path.parent().expect("key has a parent");
        let tmp = synced_temp(dir, data)?;
        match std::fs::hard_link(tmp.path(), &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e).at("link into place", &path),
        }
        crate::store::pack::sync_dir(dir)?;
        Ok(true)
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let dir = path.parent().expect("key has a parent");
        let tmp = synced_temp(dir, data)?;
        tmp.persist(path)
            .map_err(|e| e.error)
            .at("rename into place", path)?;
        crate::store::pack::sync_dir(dir)
    }
}

/// A temporary file in `dir` (created if needed) holding `data`, fsynced.
fn synced_temp(dir: &Path, data: &[u8]) -> Result<tempfile::NamedTempFile> {
    mkdirs(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .at("create temp file in", dir)?;
    tmp.write_all(data).at("write", tmp.path())?;
    tmp.as_file().sync_all().at("fsync", tmp.path())?;
    Ok(tmp)
}

/// Create directories without group or world write whatever the umask (files are created
/// 0600 by the temporary-file writer).
fn mkdirs(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .at("create", dir)
}

/// The entries of `dir`, or `None` when it does not exist (nothing was pushed there yet).
fn read_dir_if_any(dir: &Path) -> Result<Option<std::fs::ReadDir>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at("list", dir),
    }
}

impl FsBackend {
    /// The valid `what` names directly under directory `top` of the remote.
    fn list_names(&self, top: &str, what: &'static str) -> Result<Vec<String>> {
        let dir = self.root.join(top);
        let Some(rd) = read_dir_if_any(&dir)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in rd {
            let name = entry.at("list", &dir)?.file_name();
            let name = name.to_string_lossy();
            if crate::names::validate(what, &name).is_ok() {
                out.push(name.into_owned());
            }
        }
        Ok(out)
    }
}

impl Backend for FsBackend {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        check_prefix(prefix)?;
        let dir = self.root.join(prefix);
        let Some(rd) = read_dir_if_any(&dir)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.at("list", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().at("stat", entry.path())?.is_file() {
                continue;
            }
            let key = format!("{prefix}{name}");
            if check_key(&key).is_ok() {
                out.push(key);
            }
        }
        Ok(out)
    }

    fn list_volumes(&self) -> Result<Vec<String>> {
        self.list_names("refs", "volume")
    }

    fn list_groups(&self) -> Result<Vec<String>> {
        self.list_names("groups", "group")
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at("read", &path),
        }
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        if len > super::proto::MAX_FRAME as u64 {
            return Err(RemoteError::RangeTooLarge(len).into());
        }
        let f = std::fs::File::open(&path).at("open", &path)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset).at("read", &path)?;
        Ok(buf)
    }

    fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        self.write_atomic(&path, &data)
    }

    fn cas(&self, key: &str, expected: Option<&[u8]>, new: Vec<u8>) -> Result<CasOutcome> {
        self.cas_checked(key, expected, new, &mut |_| Ok(()))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("remove", &path),
            _ => Ok(()),
        }
    }
}
