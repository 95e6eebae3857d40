//! Kill -9 (failpoints, `--features failpoints`) at every step of push, fetch, pull and clone
//! against a path remote. After each kill: `dvol fsck` is clean locally, the remote is valid
//! (a fresh clone from it works and gives exactly the commit its ref names: refs only point at
//! complete data), the last committed state reads back bit for bit, and re-running the same
//! command finishes it.

use crate::support::{noise, write, Env};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// File contents and symlink targets of a tree, by relative path (directories as "D").
type Snap = BTreeMap<String, Vec<u8>>;

fn snap(root: &Path) -> Snap {
    let mut out = Snap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let ft = e.file_type();
        let v = if ft.is_symlink() {
            let mut v = b"L".to_vec();
            v.extend(
                std::fs::read_link(e.path())
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
            v
        } else if ft.is_dir() {
            b"D".to_vec()
        } else {
            std::fs::read(e.path()).unwrap()
        };
        out.insert(rel, v);
    }
    out
}

fn data(live: &Path, seed: u64) {
    write(&live.join("seg/a"), noise(seed, 1_500_000));
    write(&live.join("seg/b"), noise(seed + 1, 100_000));
    for i in 0..8 {
        write(&live.join(format!("small/{i}")), format!("{seed}-{i}"));
    }
}

/// Run a dvol command with a failpoint; true when the failpoint killed it (false: it finished).
fn run_with(env: &Env, vars: &[(&str, String)], args: &[&str]) -> bool {
    let mut c = env.process();
    c.env("DVOL_LOCK_TIMEOUT", "20");
    for (k, v) in vars {
        c.env(k, v);
    }
    let out: Output = c.args(args).output().unwrap();
    if out.status.signal() == Some(9) {
        return true;
    }
    assert!(
        out.status.success(),
        "{args:?} {vars:?} failed without being killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

fn fsck(env: &Env, what: &str) {
    let out = env.process().arg("fsck").output().unwrap();
    assert!(
        out.status.success(),
        "fsck after {what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh clone of `volume` from `url` works and reads back exactly `expect`.
fn remote_valid(url: &str, volume: &str, expect: &Snap, what: &str) {
    let env = Env::new();
    env.ok(&["clone", url, volume]);
    assert!(
        snap(&env.live()) == *expect,
        "{what}: remote content differs"
    );
    fsck(&env, what);
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// The laptop: volume `db` with master at c1 (pushed to `base`) and c2 committed on top,
/// plus a `feature` branch (pushed). Returns (laptop, snapshot c1, snapshot c2, snapshot
/// feature, remote dir holding c1, remote dir holding c2).
struct Fixture {
    _dir: tempfile::TempDir,
    laptop: Env,
    c1: Snap,
    c2: Snap,
    feature: Snap,
    base: PathBuf,
    full: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("dvol-rcrash-")
        .tempdir()
        .unwrap();
    let base = dir.path().join("base");
    let full = dir.path().join("full");
    let laptop = Env::new();
    let live = laptop.init("db");
    data(&live, 1);
    laptop.commit("one");
    let c1 = snap(&live);
    laptop.ok(&["checkout", "-b", "feature"]);
    write(&laptop.live().join("feature.txt"), "feature\n");
    laptop.commit("feature");
    let feature = snap(&laptop.live());
    laptop.ok(&["checkout", "master"]);
    laptop.ok(&["remote", "add", "origin", base.to_str().unwrap()]);
    laptop.ok(&["push", "--all"]);
    data(&live, 2);
    laptop.commit("two");
    let c2 = snap(&live);
    copy_dir(&base, &full);
    laptop.ok(&["remote", "add", "full", full.to_str().unwrap()]);
    laptop.ok(&["push", "full", "master"]);
    Fixture {
        _dir: dir,
        laptop,
        c1,
        c2,
        feature,
        base,
        full,
    }
}

const SMALL: [(&str, &str); 2] = [
    ("DVOL_TEST_PACK_SIZE", "262144"),
    ("DVOL_TEST_FETCH_CHECKPOINT", "262144"),
];

fn vars(point: &str, skip: u32) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&str, String)> = SMALL.iter().map(|(k, v)| (*k, v.to_string())).collect();
    v.push(("DVOL_FAILPOINT", point.to_string()));
    v.push(("DVOL_FAILPOINT_SKIP", skip.to_string()));
    v
}

/// Kill `dvol push` at every pack upload, index upload and before the ref CAS.
#[test]
fn kill_push_at_every_step() {
    let f = fixture();
    let url = f.base.to_str().unwrap().to_string();
    let pristine = f.base.with_file_name("pristine");
    copy_dir(&f.base, &pristine);
    let mut tried = 0;
    for point in [
        "push.after-pack-upload",
        "push.after-idx-upload",
        "push.before-ref-cas",
    ] {
        for skip in 0.. {
            copy_dir(&pristine, &f.base);
            if !run_with(&f.laptop, &vars(point, skip), &["push"]) {
                assert!(skip > 0, "{point} never reached");
                break;
            }
            tried += 1;
            let what = format!("push killed at {point} #{skip}");
            fsck(&f.laptop, &what);
            // The remote ref still names c1, and everything it reaches is there.
            remote_valid(&url, "db", &f.c1, &what);
            // Re-running the same push finishes it; what already arrived is reused.
            let out = f.laptop.ok(&["push"]);
            assert!(out.contains("master -> master"), "{what}: {out}");
            remote_valid(&url, "db", &f.c2, &what);
            assert!(
                snap(&f.laptop.live()) == f.c2,
                "{what}: local live data changed"
            );
            fsck(&f.laptop, &what);
        }
    }
    eprintln!("push kill points tried: {tried}");
    assert!(tried >= 12, "{tried}");
}

/// Kill `dvol fetch` and `dvol pull` at every step of downloading, recording and the
/// fast-forward of the live data; re-running finishes, and c1 still reads back bit for bit.
#[test]
fn kill_fetch_and_pull_at_every_step() {
    let f = fixture();
    let base = f.base.to_str().unwrap();
    let full = f.full.to_str().unwrap();
    let mut tried = 0;
    let fetch_points: [(&str, &[u32]); 4] = [
        ("fetch.after-checkpoint", &[0, 1, 2, 4]),
        ("pack.after-record", &[0, 1, 3]),
        ("fetch.before-record", &[0]),
        ("fetch.before-record-commit", &[0]),
    ];
    for (point, skips) in fetch_points {
        for &skip in skips {
            for verb in ["fetch", "pull"] {
                let qa = Env::new();
                qa.ok(&["clone", base, "db"]);
                qa.ok(&["remote", "add", "up", full]);
                let args: &[&str] = if verb == "fetch" {
                    &["fetch", "up"]
                } else {
                    &["pull", "up", "master"]
                };
                let what = format!("{verb} killed at {point} #{skip}");
                if !run_with(&qa, &vars(point, skip), args) {
                    panic!("{what}: not reached");
                }
                tried += 1;
                fsck(&qa, &what);
                assert!(snap(&qa.live()) == f.c1, "{what}: live data changed");
                qa.ok(args);
                fsck(&qa, &what);
                if verb == "fetch" {
                    qa.ok(&["pull", "up", "master"]);
                }
                assert!(snap(&qa.live()) == f.c2, "{what}: not finished");
                qa.ok(&["reset", "--hard", "HEAD^"]);
                assert!(snap(&qa.live()) == f.c1, "{what}: c1 does not read back");
            }
        }
    }
    // The fast-forward of the live data: one clone, reset back to c1 between runs.
    let qa = Env::new();
    qa.ok(&["clone", base, "db"]);
    qa.ok(&["remote", "add", "up", full]);
    qa.ok(&["fetch", "up"]);
    let mut points: Vec<(&str, u32)> =
        vec![("pull.after-pending", 0), ("pull.before-head-move", 0)];
    points.extend((0..40).map(|s| ("materialize.after-file", s)));
    for (point, skip) in points {
        let what = format!("pull killed at {point} #{skip}");
        if !run_with(&qa, &vars(point, skip), &["pull", "up", "master"]) {
            assert_eq!(point, "materialize.after-file", "{what}: not reached");
            assert!(skip > 5, "{what}: too few files");
            assert!(snap(&qa.live()) == f.c2, "{what}: not finished");
            break;
        }
        tried += 1;
        fsck(&qa, &what);
        // Half-written live data is not committed by mistake...
        let out = qa
            .process()
            .args(["commit", "-m", "half"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: commit of half-pulled data");
        // ...and the same pull finishes it.
        qa.ok(&["pull", "up", "master"]);
        assert!(snap(&qa.live()) == f.c2, "{what}: not finished");
        fsck(&qa, &what);
        qa.ok(&["reset", "--hard", "HEAD^"]);
        assert!(snap(&qa.live()) == f.c1, "{what}: c1 does not read back");
    }
    eprintln!("fetch/pull kill points tried: {tried}");
    assert!(tried >= 30, "{tried}");
}

/// A resumed clone drops nothing done in the volume since the interruption: a commit made
/// on the half-cloned volume, or uncommitted changes in it, make the resume fail, naming
/// them, and the volume stays (with the work, and its clone record so the clone can be run
/// again once the work is moved away).
#[test]
fn a_resumed_clone_keeps_work_done_since_the_interruption() {
    let f = fixture();
    let url = f.full.to_str().unwrap();
    let qa = Env::new();
    assert!(run_with(
        &qa,
        &vars("clone.before-finish", 0),
        &["clone", url, "db"]
    ));
    qa.ok(&["switch", "db"]);
    qa.ok(&["reset", "--hard", "HEAD^"]);
    write(&qa.live().join("mine.txt"), "not committed\n");
    let err = qa.fails(&["clone", url, "db"]);
    assert!(
        err.contains(
            "Cannot resume the clone of volume db: volume db has uncommitted changes on branch master (e.g. mine.txt)"
        ),
        "{err}"
    );
    qa.commit("mine");
    let mine = snap(&qa.live());
    let err = qa.fails(&["clone", url, "db"]);
    assert!(
        err.contains("branch master of volume db is at")
            && err.contains("a commit the remote does not have"),
        "{err}"
    );
    assert!(snap(&qa.live()) == mine, "the work is gone");
    assert!(qa.ok(&["log", "--oneline"]).contains("mine"));
    fsck(&qa, "after the refused resumes");
    // Moved to a branch of its own: the clone finishes, the work stays on that branch.
    qa.ok(&["checkout", "-b", "kept"]);
    qa.ok(&["checkout", "master"]);
    qa.ok(&["reset", "--hard", "HEAD^"]);
    let out = qa.ok(&["clone", url, "db"]);
    assert!(out.contains("Cloned volume db"), "{out}");
    assert!(snap(&qa.live()) == f.c2, "master differs");
    qa.ok(&["checkout", "kept"]);
    assert!(snap(&qa.live()) == mine, "kept differs");
    fsck(&qa, "after the resume");
}

/// Kill `dvol clone` at every step: after the volume is created, after `origin` is added,
/// during the download and its recording, before and during the materialization of each
/// branch, and before the clone is marked finished. Re-running the same clone finishes it; a
/// different URL or a volume that is not an interrupted clone is refused.
#[test]
fn kill_clone_at_every_step() {
    let f = fixture();
    let url = f.full.to_str().unwrap();
    let other = f.base.to_str().unwrap();
    let mut points: Vec<(&str, u32)> = vec![
        ("clone.after-create-volume", 0),
        ("clone.after-add-remote", 0),
        ("fetch.after-checkpoint", 0),
        ("fetch.after-checkpoint", 3),
        ("pack.after-record", 10),
        ("fetch.before-record", 0),
        ("fetch.before-record-commit", 0),
        ("clone.before-materialize", 0),
        ("checkout.before-rename", 0),
        ("pull.before-branch-row", 0),
        ("pull.after-pending", 0),
        ("pull.before-head-move", 0),
        ("clone.before-finish", 0),
    ];
    points.extend((0..40).map(|s| ("materialize.after-file", s)));
    let mut tried = 0;
    for (point, skip) in points {
        let qa = Env::new();
        qa.ok(&["init", "other"]);
        let what = format!("clone killed at {point} #{skip}");
        if !run_with(&qa, &vars(point, skip), &["clone", url, "db"]) {
            assert_eq!(point, "materialize.after-file", "{what}: not reached");
            assert!(skip > 10, "{what}: too few files");
            break;
        }
        tried += 1;
        fsck(&qa, &what);
        if point == "clone.after-create-volume" {
            // Not an interrupted clone of that URL: refused with a clear message.
            let err = qa.fails(&["clone", other, "db"]);
            assert!(
                err.contains("interrupted clone") && err.contains(url),
                "{what}: {err}"
            );
            let err = qa.fails(&["clone", url, "other"]);
            assert!(err.contains("already exists"), "{what}: {err}");
        }
        let out = qa.ok(&["clone", url, "db"]);
        assert!(out.contains("Cloned volume db"), "{what}: {out}");
        fsck(&qa, &what);
        let list = qa.ok(&["list"]);
        assert!(list.contains("* db"), "{what}: {list}");
        assert_eq!(qa.ok(&["branch"]), "  feature\n* master\n", "{what}");
        assert!(snap(&qa.live()) == f.c2, "{what}: master differs");
        qa.ok(&["checkout", "feature"]);
        assert!(snap(&qa.live()) == f.feature, "{what}: feature differs");
        qa.ok(&["checkout", "master"]);
        qa.ok(&["reset", "--hard", "HEAD^"]);
        assert!(snap(&qa.live()) == f.c1, "{what}: c1 does not read back");
        // The finished clone is an ordinary volume now.
        let err = qa.fails(&["clone", url, "db"]);
        assert!(err.contains("already exists"), "{what}: {err}");
    }
    eprintln!("clone kill points tried: {tried}");
    assert!(tried >= 20, "{tried}");
    drop(f.laptop);
}
