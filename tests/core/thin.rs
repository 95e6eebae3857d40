//! Thin clones on real file systems: loop-mounted XFS (reflink=1), btrfs and ext4 images with
//! the dvol root inside. Each test makes its own image, loop device and mount, and removes
//! them (the device it attached, by name) even when it fails.

use crate::support::{require_binary, require_root, Env};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file system on a loop device, mounted; unmounted (with everything below) and detached
/// on drop.
struct LoopFs {
    dir: tempfile::TempDir,
    dev: String,
    /// One loop file system at a time: the disk-use figures of one test must not include
    /// another's background work on a file system of the same kind.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(cmd: &str, args: &[&str]) -> String {
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
    fn new(kind: &str) -> Option<LoopFs> {
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

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// A dvol environment whose root is on this file system.
    fn env(&self) -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("env-")
                .tempdir_in(self.mnt())
                .unwrap(),
        }
    }

    /// Free bytes (statvfs), after flushing.
    fn free(&self) -> u64 {
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

fn is_mount(p: &Path) -> bool {
    let (Ok(a), Ok(b)) = (std::fs::metadata(p), std::fs::metadata(p.join(".."))) else {
        return false;
    };
    a.dev() != b.dev()
}

const DATA: usize = 48 << 20;

/// Bytes that do not compress or dedupe: a xorshift stream.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A committed volume `v` holding a database-like file and a few small ones.
fn committed_volume(env: &Env) -> PathBuf {
    env.ok(&["init", "v"]);
    let live = env.live();
    std::fs::create_dir_all(live.join("base/1")).unwrap();
    std::fs::write(live.join("base/1/16384"), noise(DATA, 1)).unwrap();
    std::fs::write(live.join("PG_VERSION"), "15\n").unwrap();
    std::os::unix::fs::symlink("base/1", live.join("link")).unwrap();
    // A file changed within 20 ms of a scan is "racy" (as in git): the stat cache does not
    // vouch for it, so a reflink clone would copy it in full. Data a database wrote just
    // before a commit is rare; here it would make the disk-use figures depend on timing.
    std::thread::sleep(std::time::Duration::from_millis(100));
    env.ok(&["commit", "-m", "one"]);
    live
}

fn info(env: &Env) -> Vec<serde_json::Value> {
    serde_json::from_str(&env.ok(&["info", "--json"])).unwrap()
}

fn method_of(env: &Env, branch: &str) -> String {
    info(env)
        .iter()
        .find(|r| r["branch"] == branch)
        .map(|r| r["method"].as_str().unwrap().to_string())
        .unwrap()
}

/// A branch and its edits: the clone is exact, costs little disk, and nothing written to it
/// reaches the source; commit, status, diff and reset work on it.
fn branch_workflow(fs: &LoopFs, method: &str) {
    let env = fs.env();
    let master = committed_volume(&env);
    let original = std::fs::read(master.join("base/1/16384")).unwrap();
    // Uncommitted, hostile leftovers in the source are not carried over.
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        master.join("fifo"),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", master.join("base/1/16384.evil")).unwrap();
    // An uncommitted edit of the same size: the clone gets the committed bytes.
    std::fs::write(master.join("PG_VERSION"), "16\n").unwrap();
    if method == "overlay" {
        // The first clone of a commit materializes its base; later ones share it.
        env.ok(&["--clone-method", method, "branch", "warm"]);
    }
    let before = fs.free();
    env.ok(&["--clone-method", method, "checkout", "-b", "qa"]);
    let used = before.saturating_sub(fs.free());
    assert!(
        used < (DATA as u64) / 8,
        "{method}: the clone used {used} bytes of {DATA}"
    );
    assert_eq!(method_of(&env, "qa"), method);
    let qa = env.live();
    assert_ne!(qa, master);
    assert_eq!(std::fs::read(qa.join("base/1/16384")).unwrap(), original);
    assert!(!qa.join("fifo").exists() && !qa.join("base/1/16384.evil").exists());
    assert_eq!(
        std::fs::read_to_string(qa.join("PG_VERSION")).unwrap(),
        "15\n"
    );
    assert_eq!(
        std::fs::read_link(qa.join("link")).unwrap(),
        Path::new("base/1")
    );
    let fresh = env.ok(&["status"]);
    assert!(
        !fresh.contains("16384") && !fresh.contains("fifo"),
        "{fresh}"
    );

    // A page rewrite in the clone: the source keeps its bytes.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(qa.join("base/1/16384"))
        .unwrap();
    f.seek(SeekFrom::Start(8192)).unwrap();
    f.write_all(&[9u8; 8192]).unwrap();
    drop(f);
    std::fs::write(qa.join("new"), "qa only").unwrap();
    assert_eq!(
        std::fs::read(master.join("base/1/16384")).unwrap(),
        original
    );
    assert!(!master.join("new").exists());
    let status = env.ok(&["status"]);
    assert!(
        status.contains("base/1/16384") && status.contains("new"),
        "{status}"
    );
    assert!(env.ok(&["diff"]).contains("base/1/16384"));
    env.ok(&["commit", "-m", "qa edit"]);
    assert!(!env.ok(&["status"]).contains("16384"));
    env.ok(&["reset", "--hard", "HEAD^"]);
    assert_eq!(std::fs::read(qa.join("base/1/16384")).unwrap(), original);
    assert!(!qa.join("new").exists());
    env.ok(&["checkout", "master"]);
    assert_eq!(
        std::fs::read(master.join("base/1/16384")).unwrap(),
        original
    );
    env.ok(&["branch", "-d", "qa"]);
    assert!(!qa.exists());
}

#[test]
fn reflink_branch_on_xfs() {
    let Some(fs) = LoopFs::new("xfs") else { return };
    branch_workflow(&fs, "reflink");
}

#[test]
fn reflink_branch_on_btrfs() {
    let Some(fs) = LoopFs::new("btrfs") else {
        return;
    };
    branch_workflow(&fs, "reflink");
}

#[test]
fn overlay_branch_on_ext4() {
    let Some(fs) = LoopFs::new("ext4") else {
        return;
    };
    branch_workflow(&fs, "overlay");
}

/// `auto` picks what the file system can do; ext4 cannot share extents, so `reflink` is
/// refused there with a clear message and nothing is created.
#[test]
fn auto_picks_the_file_systems_method() {
    for (kind, want) in [
        ("xfs", "reflink"),
        ("btrfs", "reflink"),
        ("ext4", "overlay"),
    ] {
        let Some(fs) = LoopFs::new(kind) else { return };
        let env = fs.env();
        committed_volume(&env);
        env.ok(&["checkout", "-b", "a"]);
        assert_eq!(method_of(&env, "a"), want, "{kind}");
        env.ok(&["--clone-method", "full", "checkout", "-b", "b"]);
        assert_eq!(method_of(&env, "b"), "full", "{kind}");
        if kind == "ext4" {
            let err = env.fails(&["--clone-method", "reflink", "checkout", "-b", "c"]);
            assert!(err.contains("does not share extents"), "{err}");
            assert!(!env
                .ok(&["branch"])
                .lines()
                .any(|l| l.trim_start_matches("* ").trim() == "c"));
        }
    }
}

/// `-o from=` through the plugin on each file system: a thin clone of another volume.
#[test]
fn plugin_create_from_is_thin() {
    for (kind, method) in [
        ("xfs", "reflink"),
        ("btrfs", "reflink"),
        ("ext4", "overlay"),
    ] {
        let Some(fs) = LoopFs::new(kind) else { return };
        let env = fs.env();
        let master = committed_volume(&env);
        let socket = env.dir.path().join("p.sock");
        let mut plugin = env
            .process()
            .args(["plugin", "serve", "--socket", socket.to_str().unwrap()])
            .spawn()
            .unwrap();
        crate::docker::wait_for(std::time::Duration::from_secs(20), "socket", || {
            socket.exists()
        });
        let create = |name: &str, clone: &str| {
            let body = format!(r#"{{"Name":"{name}","Opts":{{"from":"v","clone":"{clone}"}}}}"#);
            crate::docker::plugin_call(&socket, "VolumeDriver.Create", &body).1
        };
        if method == "overlay" {
            assert_eq!(create("warm", method)["Err"], "");
        }
        let before = fs.free();
        let r = create("qa", method);
        let used = before.saturating_sub(fs.free());
        assert_eq!(r["Err"], "", "{kind}: {r}");
        let m =
            crate::docker::plugin_call(&socket, "VolumeDriver.Mount", r#"{"Name":"qa","ID":"x"}"#)
                .1;
        let mountpoint = PathBuf::from(m["Mountpoint"].as_str().unwrap());
        assert_eq!(
            std::fs::read(mountpoint.join("base/1/16384")).unwrap(),
            std::fs::read(master.join("base/1/16384")).unwrap()
        );
        let bad = create("bad", "zfs");
        assert!(
            bad["Err"]
                .as_str()
                .unwrap()
                .contains("unknown clone method"),
            "{bad}"
        );
        // Stop the plugin this test started (by its pid).
        plugin.kill().unwrap();
        plugin.wait().unwrap();
        assert!(
            used < (DATA as u64) / 8,
            "{kind}: -o from= used {used} bytes"
        );
        assert_eq!(method_of_volume(&env, "qa"), method, "{kind}");
    }
}

fn method_of_volume(env: &Env, volume: &str) -> String {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["--volume", volume, "info", "--json"])).unwrap();
    rows[0]["method"].as_str().unwrap().to_string()
}

/// An overlay clone whose mount is gone (a reboot) is mounted again by the next dvol command
/// and by the plugin at start, with its uncommitted data; gc removes a base only once no
/// clone uses it.
#[test]
fn overlay_survives_restart_and_gc_reclaims_bases() {
    let Some(fs) = LoopFs::new("ext4") else {
        return;
    };
    let env = fs.env();
    committed_volume(&env);
    env.ok(&["--clone-method", "overlay", "checkout", "-b", "qa"]);
    let qa = env.live();
    std::fs::write(qa.join("work"), "uncommitted").unwrap();
    run("umount", &[qa.to_str().unwrap()]);
    assert!(!qa.join("work").exists());
    // Any command that reads the live data mounts it again first.
    let status = env.ok(&["status"]);
    assert!(status.contains("work"), "{status}");
    assert_eq!(
        std::fs::read_to_string(qa.join("work")).unwrap(),
        "uncommitted"
    );

    // The plugin at start.
    run("umount", &[qa.to_str().unwrap()]);
    let socket = env.dir.path().join("p.sock");
    let mut plugin = env
        .process()
        .args(["plugin", "serve", "--socket", socket.to_str().unwrap()])
        .spawn()
        .unwrap();
    crate::docker::wait_for(std::time::Duration::from_secs(20), "socket", || {
        socket.exists()
    });
    plugin.kill().unwrap();
    plugin.wait().unwrap();
    assert!(is_mount(&qa));
    assert_eq!(
        std::fs::read_to_string(qa.join("work")).unwrap(),
        "uncommitted"
    );

    let bases = env.root().join(".dvol/bases");
    let count = || {
        std::fs::read_dir(&bases)
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    };
    assert_eq!(count(), 1);
    env.ok(&["gc"]);
    assert_eq!(count(), 1, "a base in use is kept");
    env.ok(&["checkout", "master"]);
    env.ok(&["branch", "-d", "qa"]);
    assert!(!is_mount(&qa));
    env.ok(&["gc"]);
    assert_eq!(count(), 0, "an unused base is reclaimed");
    // Removing a volume unmounts its clones first.
    env.ok(&["--clone-method", "overlay", "checkout", "-b", "again"]);
    env.ok(&["rm", "-f", "v"]);
    assert!(!env.root().join("v").exists());
}

/// A container writing to the source while it is cloned (at a pause between the check of a
/// file's stat and its `FICLONE`, the source file is overwritten in place, same size): the
/// clone still gets the committed bytes, because a file whose stat changed by the end of its
/// clone is written from the store instead.
#[test]
fn a_source_written_during_the_clone_does_not_leak_into_it() {
    let Some(fs) = LoopFs::new("xfs") else { return };
    let env = fs.env();
    let master = committed_volume(&env);
    let original = std::fs::read(master.join("base/1/16384")).unwrap();
    let marker = env.dir.path().join("paused");
    let mut child = env
        .process()
        .env("DVOL_FAILPOINT_PAUSE", "reflink.before-clone")
        .env("DVOL_FAILPOINT_PAUSE_FILE", &marker)
        .args(["--clone-method", "reflink", "checkout", "-b", "qa"])
        .spawn()
        .unwrap();
    let mut pauses = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if marker.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(master.join("base/1/16384"))
                .unwrap();
            f.write_all(&[0xEE; 8192]).unwrap();
            drop(f);
            pauses += 1;
            std::fs::remove_file(&marker).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert!(status.success());
    assert!(pauses >= 1, "the clone never paused");
    let qa = env.live();
    assert_eq!(std::fs::read(qa.join("base/1/16384")).unwrap(), original);
    assert!(!env.ok(&["status"]).contains("16384"));
}

/// A group's new branch is a thin clone in every member, by the chosen method.
#[test]
fn group_checkout_b_clones_every_member_thin() {
    for (kind, method) in [("xfs", "reflink"), ("ext4", "overlay")] {
        let Some(fs) = LoopFs::new(kind) else { return };
        let env = fs.env();
        for (i, v) in ["a", "b"].into_iter().enumerate() {
            env.ok(&["init", v]);
            std::fs::write(env.live().join("data"), noise(DATA / 2, i as u64 + 3)).unwrap();
        }
        env.ok(&["group", "create", "app", "a", "b"]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        env.ok(&["group", "commit", "app", "-m", "one"]);
        if method == "overlay" {
            // The first clone of a commit materializes its base; later ones share it.
            env.ok(&[
                "--clone-method",
                method,
                "group",
                "checkout",
                "app",
                "-b",
                "warm",
            ]);
        }
        let before = fs.free();
        env.ok(&[
            "--clone-method",
            method,
            "group",
            "checkout",
            "app",
            "-b",
            "qa",
        ]);
        let used = before.saturating_sub(fs.free());
        assert!(
            used < (DATA as u64) / 8,
            "{method}: the group clone used {used} bytes of {DATA}"
        );
        for (i, v) in ["a", "b"].into_iter().enumerate() {
            let rows: Vec<serde_json::Value> =
                serde_json::from_str(&env.ok(&["info", "--json", "--volume", v])).unwrap();
            let qa = rows
                .iter()
                .find(|r| r["branch"] == "qa" && r["volume"] == v);
            assert_eq!(
                qa.map(|r| r["method"].clone()),
                Some(method.into()),
                "{v}: {rows:?}"
            );
            let live = PathBuf::from(env.ok(&["path", v]).trim());
            assert!(live.ends_with("qa"), "{}", live.display());
            assert_eq!(
                std::fs::read(live.join("data")).unwrap(),
                noise(DATA / 2, i as u64 + 3)
            );
        }
        env.ok(&["group", "checkout", "app", "master"]);
        env.ok(&["fsck"]);
    }
}
