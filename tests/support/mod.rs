//! Shared fixtures: a temporary dvol root per test and a builder for `dvol` commands.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

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
        let mut c = Command::new(env!("CARGO_BIN_EXE_dvol"));
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
