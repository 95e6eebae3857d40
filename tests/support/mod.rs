//! Shared fixtures: a temporary dvol root per test and a builder for `dvol` commands.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The binary under test: `DVOL_TEST_BIN` when set (to run a test against another build, e.g.
/// the code before a fix), else the one cargo built.
pub fn bin() -> PathBuf {
    std::env::var_os("DVOL_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dvol")))
}

/// A fresh dvol root in a temporary directory.
pub struct Env {
    pub dir: TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("dvol-test-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `dvol` with this root and Docker integration off.
    pub fn dvol(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("DVOL_ROOT", self.root())
            .env_remove("DVOL_LOG")
            .arg("--disable-docker-integration");
        c
    }

    /// A plain `std::process::Command` for `dvol`, for spawning and killing.
    pub fn process(&self) -> std::process::Command {
        let mut c = std::process::Command::new(bin());
        c.env("DVOL_ROOT", self.root())
            .env_remove("DVOL_LOG")
            .arg("--disable-docker-integration");
        c
    }

    /// Run `dvol args…`, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.dvol().args(args).output().expect("run dvol");
        assert!(
            out.status.success(),
            "dvol {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8 stdout")
    }

    /// Run `dvol args…`, assert failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.dvol().args(args).output().expect("run dvol");
        assert!(
            !out.status.success(),
            "dvol {args:?} unexpectedly succeeded"
        );
        String::from_utf8(out.stderr).expect("utf8 stderr")
    }

    /// Live directory of the current branch of the current volume.
    pub fn live(&self) -> PathBuf {
        PathBuf::from(self.ok(&["path"]).trim())
    }

    /// `init` a volume and return its live directory.
    pub fn init(&self, name: &str) -> PathBuf {
        self.ok(&["init", name]);
        self.live()
    }

    /// Commit and return the id (last word of stdout).
    pub fn commit(&self, msg: &str) -> String {
        let out = self.ok(&["commit", "-m", msg]);
        out.split_whitespace()
            .last()
            .expect("commit id")
            .to_string()
    }
}

/// Write a file, creating parent directories.
pub fn write(path: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Everything observable about a directory tree: path, type, permissions, size, content hash,
/// symlink target and (for files and symlinks) mtime. Two equal listings mean identical trees.
pub fn listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.expect("walk");
        let md = e.path().symlink_metadata().expect("lstat");
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let ft = md.file_type();
        let desc = if ft.is_symlink() {
            format!(
                "link -> {} mtime {}",
                std::fs::read_link(e.path()).unwrap().display(),
                md.mtime()
            )
        } else if ft.is_dir() {
            format!(
                "dir {:o} uid {} gid {}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            )
        } else {
            let data = std::fs::read(e.path()).expect("read");
            format!(
                "file {:o} {} {} mtime {}.{} uid {} gid {}",
                md.mode() & 0o7777,
                md.len(),
                blake3::hash(&data).to_hex(),
                md.mtime(),
                md.mtime_nsec(),
                md.uid(),
                md.gid()
            )
        };
        out.push(format!("{rel}: {desc}"));
    }
    out
}
