//! Safe ownership: the root, `.dvol` and volume directories are private (0700) while a branch
//! directory keeps the volume's mode; clone and pull drop setuid/setgid unless
//! `--keep-special-bits`; a local commit and reset restore them exactly.

use crate::remote::{Host, Vars};
use crate::support::{write, Env};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// Whether user `nobody` can list `dir` (run through setpriv).
fn nobody_can_list(dir: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
        .arg(dir)
        .output()
        .expect("setpriv")
        .status
        .success()
}

#[test]
fn root_and_volume_directories_are_private() {
    let env = Env::new();
    // The temporary directory itself is reachable, as /var/lib is.
    chmod(env.dir.path(), 0o755);
    let live = env.init("db");
    chmod(&live, 0o755);
    write(&live.join("f"), "data\n");
    env.commit("one");
    let root = env.root();
    for dir in [
        root.clone(),
        root.join(".dvol"),
        root.join("db"),
        root.join("db/branches"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{dir:?}");
    }
    assert_eq!(mode(&live), 0o755, "the mount root keeps the volume's mode");
    env.ok(&["checkout", "-b", "qa"]);
    assert_eq!(mode(&env.live()), 0o755);
    if is_root() {
        assert!(nobody_can_list(env.dir.path()), "the test setup is wrong");
        for dir in [&root.join("db"), &live, &root.join(".dvol")] {
            assert!(!nobody_can_list(dir), "nobody can list {dir:?}");
        }
    }
}

#[test]
fn an_existing_open_root_is_tightened_and_0701_kept() {
    let env = Env::new();
    env.init("db");
    let root = env.root();
    chmod(&root, 0o755);
    chmod(&root.join("db"), 0o777);
    chmod(&root.join("db/branches"), 0o755);
    env.ok(&["list"]);
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("db")), 0o700);
    assert_eq!(mode(&root.join("db/branches")), 0o700);
    // Traverse-only for others is a deliberate choice (Docker userns-remap): kept.
    chmod(&root, 0o701);
    env.ok(&["list"]);
    assert_eq!(mode(&root), 0o701);
}

fn add_setid_files(live: &Path) {
    write(&live.join("bin/suid"), "#!/bin/sh\n");
    write(&live.join("bin/sgid"), "#!/bin/sh\n");
    std::fs::create_dir_all(live.join("shared")).unwrap();
    chmod(&live.join("bin/suid"), 0o4755);
    chmod(&live.join("bin/sgid"), 0o2755);
    chmod(&live.join("shared"), 0o2775);
}

fn check_setid(live: &Path, kept: bool) {
    let (suid, sgid) = if kept {
        (0o4755, 0o2755)
    } else {
        (0o755, 0o755)
    };
    assert_eq!(mode(&live.join("bin/suid")), suid);
    assert_eq!(mode(&live.join("bin/sgid")), sgid);
    assert_eq!(
        mode(&live.join("shared")),
        0o2775,
        "directories keep setgid"
    );
}

#[test]
fn clone_and_pull_drop_setid_bits_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("r").to_string_lossy().into_owned();
    let laptop = Host::new(&Vars::new());
    laptop.ok(&["init", "db"]);
    write(&laptop.live().join("plain"), "x");
    laptop.commit("plain");
    laptop.ok(&["remote", "add", "origin", &url]);
    laptop.ok(&["push"]);
    let (qa, keep) = (Host::new(&Vars::new()), Host::new(&Vars::new()));
    qa.ok(&["clone", &url, "db"]);
    keep.ok(&["clone", &url, "db"]);

    // Set-id files arrive by pull: dropped, or kept with the flag.
    add_setid_files(&laptop.live());
    laptop.commit("set-id files");
    laptop.ok(&["push"]);
    qa.ok(&["pull"]);
    check_setid(&qa.live(), false);
    keep.ok(&["pull", "--keep-special-bits"]);
    check_setid(&keep.live(), true);

    // And by clone.
    let (qa2, keep2) = (Host::new(&Vars::new()), Host::new(&Vars::new()));
    qa2.ok(&["clone", &url, "db"]);
    check_setid(&qa2.live(), false);
    keep2.ok(&["clone", "--keep-special-bits", &url, "db"]);
    check_setid(&keep2.live(), true);
    // The dropped bits show as a local change until committed (or restored by reset).
    let status = qa2.ok(&["status"]);
    assert!(status.contains("bin/suid"), "{status}");
    qa2.ok(&["reset", "--hard", "HEAD"]);
    check_setid(&qa2.live(), true);
}

#[test]
fn local_commit_and_reset_restore_setid_bits_exactly() {
    let env = Env::new();
    let live = env.init("db");
    write(&live.join("suid"), "x");
    chmod(&live.join("suid"), 0o4755);
    env.commit("one");
    chmod(&live.join("suid"), 0o644);
    env.ok(&["reset", "--hard", "HEAD"]);
    assert_eq!(mode(&live.join("suid")), 0o4755);
}
