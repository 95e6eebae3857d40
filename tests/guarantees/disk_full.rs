//! A store on a small file system that fills up: a clear error, nothing half-committed, the
//! previous state intact, and the failed attempt's space reclaimed by gc.

use crate::support::{listing, noise, write, Env};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `mb` MiB mounted for the test's lifetime (needs root, as CI runs).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn new(mb: u32) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        SmallFs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn env_on(fs: &SmallFs) -> Env {
    let env = Env::new();
    std::os::unix::fs::symlink(fs.path(), env.root()).unwrap();
    env
}

fn pack_count(root: &Path) -> usize {
    std::fs::read_dir(root.join(".dvol/packs")).unwrap().count()
}

#[test]
fn commit_and_checkout_on_a_full_disk_fail_cleanly() {
    if !crate::support::require_root() {
        return;
    }
    let fs = SmallFs::new(48);
    let env = env_on(&fs);
    let live = env.init("v");
    write(&live.join("a"), noise(1, 6 << 20));
    env.commit("fits");
    let before = listing(&live);
    let packs = pack_count(&env.root());
    // 24 MiB of incompressible data: the live copy fits, the stored copy does not.
    write(&live.join("b"), noise(2, 24 << 20));
    let used_before_failure = fs.used();
    let err = env.fails(&["commit", "-m", "too big"]);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(env.ok(&["log", "--oneline"]).lines().count(), 1);
    assert!(env.ok(&["fsck"]).contains("no problems"));
    env.ok(&["gc"]);
    assert_eq!(
        pack_count(&env.root()),
        packs,
        "failed attempt left packs behind"
    );
    assert!(
        fs.used() <= used_before_failure + (1 << 20),
        "space not reclaimed"
    );
    // A branch copy does not fit either: clear error, no half branch.
    std::fs::remove_file(live.join("b")).unwrap();
    write(&live.join("c"), noise(3, 30 << 20));
    let err = env.fails(&["checkout", "-b", "copy"]);
    // Refused before writing by the free-space check, or by the file system itself.
    assert!(
        err.contains("No space left on device") || err.contains("the file system has"),
        "{err}"
    );
    assert_eq!(env.ok(&["branch"]), "* master\n");
    std::fs::remove_file(live.join("c")).unwrap();
    assert_eq!(listing(&live), before);
    env.ok(&["checkout", "-b", "copy"]);
    assert!(env.ok(&["fsck"]).contains("no problems"));
}
