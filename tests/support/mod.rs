//! Shared fixtures: a temporary dvol root per test and a builder for `dvol` commands.
#![allow(dead_code)]

use assert_cmd::Command;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

pub mod handmade;
pub mod loopfs;

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

impl Drop for Env {
    /// Overlay clones (made as root on a file system without reflinks) are unmounted so the
    /// temporary directory can go.
    fn drop(&mut self) {
        let _ = dvol::unmount_under(self.dir.path());
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("dvol-test-")
            .tempdir()
            .expect("tempdir");
        loopfs::check_test_fs(dir.path());
        Env { dir }
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

    /// Run `dvol args…` under GNU time, assert success, return its peak RSS in KiB.
    pub fn ok_measured(&self, args: &[&str]) -> u64 {
        let rss_file = self.dir.path().join("rss");
        let out = std::process::Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(&rss_file)
            .arg(bin())
            .arg("--disable-docker-integration")
            .args(args)
            .env("DVOL_ROOT", self.root())
            .env_remove("DVOL_LOG")
            .output()
            .expect("run /usr/bin/time dvol");
        assert!(
            out.status.success(),
            "dvol {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rss = std::fs::read_to_string(&rss_file).unwrap();
        rss.lines().last().unwrap().trim().parse().unwrap()
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

    /// Run `dvol args…` with the failpoint `point` (kill -9 there); assert it was killed.
    pub fn run_killed(&self, point: &str, args: &[&str]) {
        let out = self
            .process()
            .env("DVOL_FAILPOINT", point)
            .args(args)
            .output()
            .expect("run dvol");
        assert!(!out.status.success(), "{point}: {args:?} was not killed");
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

/// Text rows like a table's: compressible, and different in every 8 KiB chunk.
pub fn rows(n: usize) -> String {
    use std::fmt::Write;
    (0..n).fold(String::new(), |mut s, i| {
        let _ = writeln!(
            s,
            "row {i:06} value {} name customer-{}",
            i * 7 % 1000,
            i % 97
        );
        s
    })
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

// --- The fast tier: tests that need a peer (Docker, root, a server binary) skip without it ---
//
// `cargo test` on a machine without Docker, sshd, the S3 servers or root runs every other test
// and prints one `SKIPPED <test>: needs ...` line per skipped test. `.ci/run` sets
// `DVOL_TEST_REQUIRE_ALL=1`, which turns every skip into a failure: CI runs everything.

/// Set to `1` to make a missing peer fail the test instead of skipping it.
pub const REQUIRE_ALL: &str = "DVOL_TEST_REQUIRE_ALL";

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

/// Report that the running test cannot run here: `false` after printing
/// `SKIPPED <test>: needs <what>`, or a panic when [`REQUIRE_ALL`] is set.
pub fn skip(what: &str) -> bool {
    let test = test_name();
    assert!(
        std::env::var(REQUIRE_ALL).as_deref() != Ok("1"),
        "{test}: needs {what} ({REQUIRE_ALL}=1: nothing may be skipped)"
    );
    // Written to the process's stderr directly, not with eprintln!, which libtest captures:
    // a plain `cargo test` shows every skip, one line each, beside the test list.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs {what}");
    false
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `true` when running as root; otherwise skip (see [`skip`]).
#[must_use]
pub fn require_root() -> bool {
    is_root() || skip("root (it mounts, chowns or serves /run/docker/plugins)")
}

/// `true` when the Docker daemon answers `docker info` (checked once per process) and this
/// process is root (the test plugin's socket lives in /run/docker/plugins); otherwise skip.
#[must_use]
pub fn require_docker() -> bool {
    static DOCKER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let state = DOCKER.get_or_init(|| {
        match std::process::Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(s) if s.success() => Ok(()),
            Ok(_) => Err("Docker (docker info failed: is dockerd running?)".to_string()),
            Err(e) => Err(format!("Docker (cannot run the docker CLI: {e})")),
        }
    });
    match state {
        Ok(()) => require_root(),
        Err(what) => skip(what),
    }
}

/// The path of the peer program `name` (on PATH, in ~/.cargo/bin or /usr/sbin), if installed.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .chain([
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin"),
            PathBuf::from("/usr/sbin"),
        ])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `true` when the peer program `name` is installed; otherwise skip, naming how to install it.
#[must_use]
pub fn require_binary(name: &str, install: &str) -> bool {
    find_binary(name).is_some() || skip(&format!("{name} (install it with `{install}`)"))
}
