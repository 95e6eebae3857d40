//! Thin clones on real file systems: loop-mounted XFS (reflink=1), btrfs and ext4 images with
//! the dvol root inside. Each test makes its own image, loop device and mount, and removes
//! them (the device it attached, by name) even when it fails.

use crate::support::loopfs::{is_mount, run, LoopFs};
use crate::support::Env;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
    committed_volume_with(env, false)
}

/// [`committed_volume`]; with `racy`, the database file is one the commit's stat cache cannot
/// vouch for (its mtime is in the future, as close to the scan as can be), so a reflink clone
/// must check it by hashing.
fn committed_volume_with(env: &Env, racy: bool) -> PathBuf {
    env.ok(&["init", "v"]);
    let live = env.live();
    std::fs::create_dir_all(live.join("base/1")).unwrap();
    std::fs::write(live.join("base/1/16384"), noise(DATA, 1)).unwrap();
    std::fs::write(live.join("PG_VERSION"), "15\n").unwrap();
    std::os::unix::fs::symlink("base/1", live.join("link")).unwrap();
    if racy {
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(live.join("base/1/16384"))
            .unwrap()
            .set_modified(later)
            .unwrap();
    } else {
        // A file changed within 20 ms of a scan is "racy" (as in git): the stat cache does
        // not vouch for it, and a reflink clone hashes it before sharing it. Here the
        // disk-use figures must not depend on that check.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
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
    overwritten_during_the_clone(false);
}

/// The same attack on a racy file (no stat-cache entry: cloned unchecked, then hashed): the
/// overwritten clone fails its hash and is written from the store.
#[test]
fn a_racy_source_written_during_the_clone_does_not_leak_into_it() {
    overwritten_during_the_clone(true);
}

fn overwritten_during_the_clone(racy: bool) {
    let Some(fs) = LoopFs::new("xfs") else { return };
    let env = fs.env();
    let master = committed_volume_with(&env, racy);
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

/// A file written just before the commit (too recent for the stat cache to vouch for it) is
/// still shared by a reflink clone: the clone is hashed and kept, so the branch costs no more
/// disk than with a cached file, and its first commit does not read the file again.
#[test]
fn a_racy_file_is_shared_by_a_reflink_clone() {
    for kind in ["xfs", "btrfs"] {
        let Some(fs) = LoopFs::new(kind) else { return };
        let env = fs.env();
        let master = committed_volume_with(&env, true);
        let original = std::fs::read(master.join("base/1/16384")).unwrap();
        let before = fs.free();
        env.ok(&["--clone-method", "reflink", "branch", "qa"]);
        let used = before.saturating_sub(fs.free());
        assert!(
            used < (DATA as u64) / 8,
            "{kind}: the clone of a racy file used {used} bytes of {DATA}"
        );
        env.ok(&["checkout", "qa"]);
        let qa = env.live();
        assert_eq!(std::fs::read(qa.join("base/1/16384")).unwrap(), original);
        assert!(!env.ok(&["status"]).contains("16384"));
    }
}

/// The files (not directories) of an overlay clone's upper directory, what it copied up.
fn upper_files(env: &Env, branch: &str) -> Vec<String> {
    let upper = env.root().join("v/overlays").join(branch).join("upper");
    walkdir::WalkDir::new(&upper)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(&upper).unwrap().display().to_string())
        .collect()
}

/// The head commit id of the current branch.
fn head_id(env: &Env) -> String {
    let log: Vec<serde_json::Value> = serde_json::from_str(&env.ok(&["log", "--json"])).unwrap();
    log[0]["id"].as_str().unwrap().to_string()
}

/// `reset --hard` on an overlay clone does not write over the merged view: to the base
/// commit it drops the upper directory (nothing written, every copied-up byte freed); to
/// another commit it keeps only that commit's difference from the base; to the branch's own
/// head (closer than the base) it rewrites only the local changes.
#[test]
fn reset_of_an_overlay_clone_drops_its_copies() {
    let Some(fs) = LoopFs::new("ext4") else {
        return;
    };
    let env = fs.env();
    let master = committed_volume(&env);
    let original = std::fs::read(master.join("base/1/16384")).unwrap();
    let base = head_id(&env);
    env.ok(&["--clone-method", "overlay", "checkout", "-b", "qa"]);
    let qa = env.live();
    std::fs::write(qa.join("base/1/16384"), noise(DATA, 2)).unwrap();
    env.ok(&["commit", "-m", "masked"]);
    let masked_id = head_id(&env);
    std::fs::write(qa.join("PG_VERSION"), "16\n").unwrap();
    std::fs::write(qa.join("junk"), "local").unwrap();

    // To the base: nothing copied up is left, and the disk it held is free again.
    let before = fs.free();
    env.ok(&["reset", "--hard", &base]);
    assert!(
        upper_files(&env, "qa").is_empty(),
        "{:?}",
        upper_files(&env, "qa")
    );
    assert!(
        fs.free() > before + (DATA as u64) / 2,
        "the copies were not freed"
    );
    assert_eq!(std::fs::read(qa.join("base/1/16384")).unwrap(), original);
    assert!(!qa.join("junk").exists());
    assert_eq!(
        std::fs::read_to_string(qa.join("PG_VERSION")).unwrap(),
        "15\n"
    );
    assert!(env
        .ok(&["status"])
        .trim()
        .lines()
        .all(|l| !l.contains("PG_VERSION")));

    // To another commit: only its difference from the base is in the upper directory.
    std::fs::write(qa.join("PG_VERSION"), "16\n").unwrap();
    env.ok(&["reset", "--hard", &masked_id]);
    assert_eq!(upper_files(&env, "qa"), ["base/1/16384"]);
    assert_eq!(
        std::fs::read(qa.join("base/1/16384")).unwrap(),
        noise(DATA, 2)
    );
    assert_eq!(
        std::fs::read_to_string(qa.join("PG_VERSION")).unwrap(),
        "15\n"
    );

    // To its own head: the masked copy stays as it is, only the local edit is undone.
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let masked = env.root().join("v/overlays/qa/upper/base/1/16384");
    let kept = ino(&masked);
    std::fs::write(qa.join("PG_VERSION"), "16\n").unwrap();
    env.ok(&["reset", "--hard", "HEAD"]);
    assert_eq!(ino(&masked), kept, "the masked file was rewritten");
    assert_eq!(
        std::fs::read_to_string(qa.join("PG_VERSION")).unwrap(),
        "15\n"
    );
    assert!(!env.ok(&["status"]).contains("PG_VERSION"));
}

/// A volume cloned from a remote: its first branch is one materialization (the data is not on
/// this host yet), made by the same method (on ext4 as an overlay over the commit's base), and
/// then the source every later branch of that commit is cloned from.
#[test]
fn a_cloned_volume_seeds_thin_clones() {
    for (kind, method) in [("xfs", "reflink"), ("ext4", "overlay")] {
        let Some(fs) = LoopFs::new(kind) else { return };
        let laptop = fs.env();
        let master = committed_volume(&laptop);
        let original = std::fs::read(master.join("base/1/16384")).unwrap();
        let url = fs.mnt().join("remote").to_string_lossy().into_owned();
        laptop.ok(&["remote", "add", "origin", &url]);
        laptop.ok(&["push"]);
        let qa = fs.env();
        qa.ok(&["clone", &url, "v"]);
        assert_eq!(method_of(&qa, "master"), method, "{kind}");
        let before = fs.free();
        qa.ok(&["checkout", "-b", "tester"]);
        let used = before.saturating_sub(fs.free());
        assert!(
            used < (DATA as u64) / 8,
            "{kind}: a branch of the clone used {used} bytes of {DATA}"
        );
        assert_eq!(
            std::fs::read(qa.live().join("base/1/16384")).unwrap(),
            original
        );
    }
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
