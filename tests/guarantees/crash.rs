//! Kill -9 at every named step (failpoints compiled in with `--features failpoints`) of commit,
//! reset, checkout -b, branch -d, gc, rm and init; after each: fsck is clean, the last committed
//! state reads back bit for bit, and re-running the command finishes it.

use crate::support::{listing, noise, write, Env};
use std::path::Path;

fn run_killed(env: &Env, point: &str, args: &[&str]) {
    env.run_killed(point, args);
}

fn assert_fsck_clean(env: &Env, point: &str) {
    let out = env.process().arg("fsck").output().unwrap();
    assert!(
        out.status.success(),
        "fsck after {point}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn data(live: &Path, seed: u64) {
    write(&live.join("seg/a"), noise(seed, 3 << 20));
    write(&live.join("seg/b"), noise(seed + 1, 100_000));
    for i in 0..20 {
        write(&live.join(format!("small/{i}")), format!("{seed}-{i}"));
    }
}

/// A volume with two commits; returns (env, live dir, listing of HEAD, listing of HEAD^).
fn two_commits() -> (Env, std::path::PathBuf, Vec<String>, Vec<String>) {
    let env = Env::new();
    let live = env.init("v");
    data(&live, 1);
    env.commit("one");
    let one = listing(&live);
    data(&live, 2);
    env.commit("two");
    let two = listing(&live);
    (env, live, two, one)
}

const COMMIT_POINTS: [&str; 4] = [
    "commit.after-scan",
    "pack.after-record",
    "commit.before-transaction",
    "commit.before-cache-save",
];

#[test]
fn every_kill_point_leaves_a_valid_repository_and_rerunning_finishes() {
    let mut tried = 0;

    for point in COMMIT_POINTS {
        let (env, live, two, _) = two_commits();
        data(&live, 3);
        run_killed(&env, point, &["commit", "-m", "three"]);
        tried += 1;
        assert_fsck_clean(&env, point);
        let n = env.ok(&["log", "--oneline"]).lines().count();
        // The commit is either fully there or absent.
        assert!(
            n == 2 || (n == 3 && point == "commit.before-cache-save"),
            "{point}: {n} commits"
        );
        env.ok(&["commit", "-m", "three"]);
        env.ok(&["reset", "--hard", "HEAD~1"]);
        if n == 3 {
            env.ok(&["reset", "--hard", "HEAD~1"]);
        }
        assert_eq!(listing(&live), two, "{point}: HEAD~1 differs");
    }

    for point in [
        "reset.after-pending",
        "materialize.after-file",
        "reset.before-head-move",
    ] {
        let (env, live, _, one) = two_commits();
        run_killed(&env, point, &["reset", "--hard", "HEAD^"]);
        tried += 1;
        assert_fsck_clean(&env, point);
        // Commit refuses to snapshot a half-reset directory.
        let err = env.fails(&["commit", "-m", "half"]);
        assert!(err.contains("pending"), "{point}: {err}");
        env.ok(&["reset", "--hard", "HEAD^"]);
        assert_eq!(listing(&live), one, "{point}: reset not finished");
        assert_eq!(env.ok(&["log", "--oneline"]).lines().count(), 1);
        env.ok(&["commit", "-m", "after"]);
    }

    for point in [
        "materialize.after-file",
        "checkout.before-rename",
        "checkout.before-branch-row",
    ] {
        let (env, _, two, _) = two_commits();
        run_killed(&env, point, &["checkout", "-b", "dev"]);
        tried += 1;
        assert_fsck_clean(&env, point);
        env.ok(&["checkout", "-b", "dev"]);
        assert_eq!(
            listing(&env.live()),
            two,
            "{point}: checkout -b not finished"
        );
        assert!(env.ok(&["branch"]).contains("* dev"));
    }

    {
        let (env, _, _, _) = two_commits();
        env.ok(&["branch", "old"]);
        run_killed(&env, "branch-delete.after-row", &["branch", "-d", "old"]);
        tried += 1;
        assert_fsck_clean(&env, "branch-delete");
        assert_eq!(env.ok(&["branch"]), "* master\n");
        env.ok(&["branch", "old"]);
    }

    for point in [
        "gc.before-transaction",
        "gc.before-delete-packs",
        "pack.after-record",
    ] {
        let (env, live, _, _) = two_commits();
        env.ok(&["checkout", "-b", "tmp"]);
        data(&env.live(), 9);
        env.commit("garbage and shared");
        env.ok(&["checkout", "master"]);
        // master now shares part of tmp's pack, so gc must rewrite that pack.
        write(&live.join("seg/a"), noise(9, 3 << 20));
        env.commit("shares seg/a with tmp");
        let head = listing(&live);
        env.ok(&["branch", "-d", "tmp"]);
        run_killed(&env, point, &["gc"]);
        tried += 1;
        assert_fsck_clean(&env, point);
        env.ok(&["gc"]);
        assert_fsck_clean(&env, point);
        std::fs::remove_dir_all(&live).unwrap();
        std::fs::create_dir(&live).unwrap();
        env.ok(&["reset", "--hard", "HEAD"]);
        assert_eq!(listing(&live), head, "{point}: data lost by gc");
    }

    {
        let (env, _, _, _) = two_commits();
        run_killed(&env, "rm.before-discard", &["rm", "-f", "v"]);
        tried += 1;
        assert_fsck_clean(&env, "rm");
        assert_eq!(env.ok(&["list"]), "  VOLUME   BRANCH   CONTAINERS\n");
        env.ok(&["init", "v"]);
        assert!(
            std::fs::read_dir(env.live()).unwrap().next().is_none(),
            "stale data reused"
        );
    }

    {
        let env = Env::new();
        run_killed(&env, "init.before-transaction", &["init", "v"]);
        tried += 1;
        env.ok(&["init", "v"]);
        assert_fsck_clean(&env, "init");
    }

    eprintln!("failpoint kill points tried: {tried}");
    assert_eq!(tried, 16);
}

/// Kill a reset and a checkout -b right after a file is written, again and again: each re-run
/// keeps the files already written (it verifies them) and dies after the next one, until the
/// command completes. Every file is a kill point.
#[test]
fn kill_after_every_file_of_a_reset_and_a_checkout() {
    let (env, live, _, one) = two_commits();
    let mut tried = 0;
    // `checkout -b` by the default method (an overlay over a base as root on ext4, a reflink
    // clone on XFS/btrfs) and by a full copy.
    for args in [
        &["reset", "--hard", "HEAD^"][..],
        &["checkout", "-b", "copy"],
        &["--clone-method", "full", "checkout", "-b", "full-copy"],
    ] {
        let branches = env.ok(&["branch"]);
        let mut finished = false;
        for _ in 0..100 {
            let out = env
                .process()
                .env("DVOL_FAILPOINT", "materialize.after-file")
                .args(args)
                .output()
                .unwrap();
            if out.status.success() {
                finished = true;
                break;
            }
            tried += 1;
            assert_fsck_clean(&env, args[0]);
            assert_eq!(
                env.ok(&["branch"]),
                branches,
                "{args:?}: branch moved early"
            );
        }
        assert!(finished, "{args:?} never completed");
        assert_eq!(listing(&env.live()), one, "{args:?}: wrong result");
    }
    assert_eq!(listing(&live), one);
    eprintln!("per-file kill points tried: {tried}");
    assert!(tried >= 40, "{tried}");
}
