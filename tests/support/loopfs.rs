//! Loop-mounted file systems for tests: an XFS (reflink=1), btrfs or ext4 image on a loop
//! device, mounted in a temporary directory, unmounted (with everything below) and detached
//! on drop, even when the test fails. Needs root and the mkfs tool (else `None`: skipped).

use super::{require_binary, require_root, Env};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file system on a loop device, mounted; unmounted (with everything below) and detached
/// on drop.
pub struct LoopFs {
    dir: tempfile::TempDir,
    dev: String,
    /// One loop file system at a time: the disk-use figures of one test must not include
    /// another's background work on a file system of the same kind.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl LoopFs {
    /// `kind`: xfs, btrfs or ext4; `None` (skipped) without root or the mkfs tool.
    pub fn new(kind: &str) -> Option<LoopFs> {
        let mkfs = format!("mkfs.{kind}");
        let pkg = match kind {
            "xfs" => "apt-get install xfsprogs",
            "btrfs" => "apt-get install btrfs-progs",
            _ => "apt-get install e2fsprogs",
        };
        if !require_root() || !require_binary(&mkfs, pkg) {
            return None;
        }
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dir = tempfile::Builder::new()
            .prefix("dvol-thin-")
            .tempdir()
            .unwrap();
        let image = dir.path().join("image");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let image_s = image.to_str().unwrap();
        match kind {
            "xfs" => run(&mkfs, &["-q", "-m", "reflink=1", image_s]),
            "btrfs" => run(&mkfs, &["-q", image_s]),
            _ => run(&mkfs, &["-q", "-F", image_s]),
        };
        let dev = run("losetup", &["--find", "--show", image_s])
            .trim()
            .to_string();
        let fs = LoopFs {
            dir,
            dev,
            _serial: serial,
        };
        std::fs::create_dir(fs.mnt()).unwrap();
        run("mount", &[&fs.dev, fs.mnt().to_str().unwrap()]);
        Some(fs)
    }

    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// A dvol environment whose root is on this file system.
    pub fn env(&self) -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("env-")
                .tempdir_in(self.mnt())
                .unwrap(),
        }
    }

    /// Free bytes (statvfs), after flushing.
    pub fn free(&self) -> u64 {
        run("sync", &["-f", self.mnt().to_str().unwrap()]);
        let c = std::ffi::CString::new(self.mnt().to_str().unwrap()).unwrap();
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: a valid C string and room for one statvfs.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) }, 0);
        // SAFETY: statvfs succeeded and filled it.
        let st = unsafe { st.assume_init() };
        st.f_bavail * st.f_frsize
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let mnt = self.mnt();
        let mnt = mnt.to_str().unwrap();
        // Everything below (overlay clones) first, then the file system itself.
        let _ = Command::new("umount").args(["-R", mnt]).status();
        if Path::new(mnt).exists() && is_mount(Path::new(mnt)) {
            let _ = Command::new("umount").args(["-R", "-l", mnt]).status();
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

pub fn is_mount(p: &Path) -> bool {
    let (Ok(a), Ok(b)) = (std::fs::metadata(p), std::fs::metadata(p.join(".."))) else {
        return false;
    };
    a.dev() != b.dev()
}

/// With `DVOL_TEST_FS` set (by tests/on-fs.sh), check that `dir` is on that file system, so a
/// run meant for XFS or btrfs cannot silently test another one.
pub fn check_test_fs(dir: &Path) {
    let Ok(want) = std::env::var("DVOL_TEST_FS") else {
        return;
    };
    let magic: i64 = match want.as_str() {
        "xfs" => 0x5846_5342,
        "btrfs" => 0x9123_683e,
        "ext4" => 0xef53,
        other => panic!("DVOL_TEST_FS={other}: expected xfs, btrfs or ext4"),
    };
    let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: a valid C string and room for one statfs.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) }, 0);
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    // SAFETY: statfs succeeded and filled it.
    let found = unsafe { st.assume_init() }.f_type as i64;
    assert_eq!(
        found,
        magic,
        "DVOL_TEST_FS={want}, but {} is on file system type {found:#x}",
        dir.display()
    );
}
