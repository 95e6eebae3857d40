//! Issue 9: a container racing dvol through its live directory cannot reach the host.
//!
//! A helper process (this test binary re-executed with `DVOL_RACE_PAIRS` set, running only
//! [`swapper`]) exchanges pairs of paths with `renameat2(RENAME_EXCHANGE)` in a tight loop: a
//! committed directory with a symlink to a host directory, a regular file with a FIFO. dvol runs
//! `reset --hard`, `checkout -b`, `commit`, `rm` and `pull` meanwhile. Then the same commands run
//! with a pause failpoint (`DVOL_FAILPOINT_PAUSE=live.open` / `live.remove`) that stops dvol
//! between each check and its use, and the test makes one exchange in exactly that window.
//!
//! After every round: nothing in the host directory changed (entries, content, mode, owner),
//! the command ended within 60 s, and no host file entered a commit. The helper is this test
//! binary rather than a `dvol` subcommand, so the product ships no race tooling.
//!
//! `DVOL_RACE_BIN` runs the same tests against another `dvol` binary (e.g. an older build, to
//! see them fail there).

use crate::support::{listing, Env};
use rustix::fs::{renameat_with, RenameFlags, CWD};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOST_SECRET: &[u8] = b"HOST-SECRET root-only 0600\n";
const DEADLINE: Duration = Duration::from_secs(60);

/// The helper process: exchange each pair of `DVOL_RACE_PAIRS` (paths joined by `|`) until the
/// file `DVOL_RACE_STOP` exists. A no-op when run as an ordinary test.
#[test]
fn swapper() {
    let Ok(pairs) = std::env::var("DVOL_RACE_PAIRS") else {
        return;
    };
    let stop = PathBuf::from(std::env::var("DVOL_RACE_STOP").expect("stop file"));
    let paths: Vec<&str> = pairs.split('|').collect();
    for n in 0u64.. {
        for pair in paths.chunks(2) {
            let _ = renameat_with(CWD, pair[0], CWD, pair[1], RenameFlags::EXCHANGE);
        }
        if n % 64 == 0 && stop.exists() {
            break;
        }
    }
}

fn dvol_bin() -> PathBuf {
    std::env::var_os("DVOL_RACE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dvol")))
}

/// A volume whose committed tree invites escapes, and a host directory beside it.
struct Fixture {
    env: Env,
    host: PathBuf,
    host_before: Vec<String>,
    live: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let env = Env::new();
        let host = env.dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        for name in ["secret", "a", "b"] {
            std::fs::write(host.join(name), HOST_SECRET).unwrap();
            std::fs::set_permissions(host.join(name), PermissionsExt::from_mode(0o600)).unwrap();
        }
        std::fs::create_dir(host.join("sub")).unwrap();
        std::fs::write(host.join("sub/x"), HOST_SECRET).unwrap();
        std::fs::set_permissions(&host, PermissionsExt::from_mode(0o700)).unwrap();
        let live = env.init("v");
        let f = Fixture {
            host_before: listing(&host),
            env,
            host,
            live,
        };
        f.populate(&f.live.clone(), 0);
        f.env.commit("bait");
        f
    }

    /// Live data with a directory `d`, a symlink `swap` to the host directory (committed, as a
    /// container could), a file `f` and a FIFO `fifo`.
    fn populate(&self, live: &Path, version: u32) {
        std::fs::create_dir_all(live.join("d/sub")).unwrap();
        for name in ["secret", "a", "b", "sub/x", "c"] {
            std::fs::write(
                live.join("d").join(name),
                format!("live {name} {version}\n"),
            )
            .unwrap();
        }
        std::fs::set_permissions(live.join("d"), PermissionsExt::from_mode(0o757)).unwrap();
        std::fs::set_permissions(live.join("d/a"), PermissionsExt::from_mode(0o4777)).unwrap();
        let _ = symlink(&self.host, live.join("swap"));
        std::fs::write(live.join("f"), format!("file {version}\n")).unwrap();
        if !live.join("fifo").exists() {
            rustix::fs::mkfifoat(
                CWD,
                live.join("fifo"),
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .unwrap();
        }
    }

    /// The pairs a container exchanges in `live`.
    fn pairs(live: &Path) -> Vec<(PathBuf, PathBuf)> {
        vec![
            (live.join("d"), live.join("swap")),
            (live.join("f"), live.join("fifo")),
        ]
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(dvol_bin());
        c.env("DVOL_ROOT", self.env.root())
            .env("DVOL_LOCK_TIMEOUT", "10")
            .env_remove("DVOL_LOG")
            .arg("--disable-docker-integration")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Nothing in the host directory changed.
    fn check_host(&self, what: &str) {
        assert_eq!(
            listing(&self.host),
            self.host_before,
            "{what}: the host directory changed"
        );
    }

    /// A command that takes the volume lock still works (no hung command holds it).
    fn check_lock_free(&self, volume: &str, n: usize) {
        let out = self
            .command(&["--volume", volume, "tag", &format!("lock-check-{n}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "volume {volume} still locked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// How the test races a command.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// The helper process exchanges the pairs in a loop while the command runs.
    Loop,
    /// The command stops at this pause point at every check, and the test exchanges the pairs
    /// once in that window.
    Pause(&'static str),
}

/// Run one command under attack on `pairs`; returns whether it succeeded. Panics if it does
/// not end within 60 s. Afterwards every pair is back in its original order.
fn race(cmd: Command, pairs: &[(PathBuf, PathBuf)], attack: Attack, scratch: &Path) -> bool {
    race_with(cmd, pairs, &|| pairs.to_vec(), attack, scratch)
}

/// [`race`], where the pairs exchanged at a pause are found when it happens.
fn race_with(
    mut cmd: Command,
    pairs: &[(PathBuf, PathBuf)],
    at_pause: &dyn Fn() -> Vec<(PathBuf, PathBuf)>,
    attack: Attack,
    scratch: &Path,
) -> bool {
    let marker = scratch.join("paused");
    let stop = scratch.join("stop");
    let _ = std::fs::remove_file(&stop);
    let mut swapper = None;
    match attack {
        Attack::Loop => swapper = Some(start_swapper(pairs, &stop)),
        Attack::Pause(point) => {
            cmd.env("DVOL_FAILPOINT_PAUSE", point)
                .env("DVOL_FAILPOINT_PAUSE_FILE", &marker);
        }
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn dvol");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            stop_swapper(swapper, &stop);
            panic!("{cmd:?} did not end within 60 s under {attack:?}");
        }
        if marker.exists() {
            exchange(&at_pause());
            std::fs::remove_file(&marker).unwrap();
        } else {
            std::thread::sleep(Duration::from_micros(300));
        }
    };
    stop_swapper(swapper, &stop);
    restore(pairs);
    status.success()
}

fn start_swapper(pairs: &[(PathBuf, PathBuf)], stop: &Path) -> Child {
    let joined: Vec<String> = pairs
        .iter()
        .flat_map(|(a, b)| [a.display().to_string(), b.display().to_string()])
        .collect();
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "guarantees::races::swapper",
            "--test-threads",
            "1",
        ])
        .env("DVOL_RACE_PAIRS", joined.join("|"))
        .env("DVOL_RACE_STOP", stop)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn swapper")
}

fn stop_swapper(swapper: Option<Child>, stop: &Path) {
    if let Some(mut s) = swapper {
        std::fs::write(stop, b"").unwrap();
        let t = Instant::now();
        while s.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(10) {
                let _ = s.kill();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn exchange(pairs: &[(PathBuf, PathBuf)]) {
    for (a, b) in pairs {
        let _ = renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE);
    }
}

/// Put each pair back: the first path is the directory or regular file again.
fn restore(pairs: &[(PathBuf, PathBuf)]) {
    for (a, b) in pairs {
        let swapped = std::fs::symlink_metadata(a).is_ok_and(|m| {
            let t = m.file_type();
            t.is_symlink() || std::os::unix::fs::FileTypeExt::is_fifo(&t)
        });
        if swapped {
            let _ = renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE);
        }
    }
}

/// Every regular file under `dir` (not following links) whose content is the host's secret.
fn host_content_in(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|d| d == HOST_SECRET))
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Rounds per attack; the loop rounds are the ones that catch path-based code.
const LOOP_ROUNDS: usize = 100;
const PAUSE_ROUNDS: usize = 20;

fn attacks(points: &[&'static str]) -> Vec<(Attack, usize)> {
    let mut v = vec![(Attack::Loop, LOOP_ROUNDS)];
    v.extend(points.iter().map(|p| (Attack::Pause(p), PAUSE_ROUNDS)));
    v
}

#[test]
fn reset_hard_does_not_escape() {
    let fx = Fixture::new();
    let pairs = Fixture::pairs(&fx.live);
    let (mut n, mut ok) = (0, 0);
    for (attack, rounds) in attacks(&["live.open", "live.remove"]) {
        for _ in 0..rounds {
            // Something to repair: changed content, modes and an extra entry.
            std::fs::write(fx.live.join("d/secret"), b"changed").unwrap();
            std::fs::write(fx.live.join("d/extra"), b"extra").unwrap();
            std::fs::set_permissions(fx.live.join("d/b"), PermissionsExt::from_mode(0o600))
                .unwrap();
            let cmd = fx.command(&["reset", "--hard", "HEAD"]);
            if race(cmd, &pairs, attack, fx.env.dir.path()) {
                ok += 1;
            }
            // Refused midway, or finished while the container kept moving entries: a reset
            // without the attack repairs the live data.
            fx.env.ok(&["reset", "--hard", "HEAD"]);
            fx.check_host(&format!("reset --hard round {n} ({attack:?})"));
            n += 1;
        }
    }
    fx.check_lock_free("v", n);
    println!("reset --hard: {n} rounds ({ok} succeeded), host unchanged");
}

#[test]
fn checkout_new_branch_does_not_escape() {
    let fx = Fixture::new();
    let (mut n, mut succeeded) = (0, 0);
    for (attack, rounds) in attacks(&["live.open"]) {
        for _ in 0..rounds {
            let branch = format!("b{n}");
            // The new branch is written into a staging directory, then renamed into place.
            let branches = fx.live.parent().unwrap();
            let staging = branches.join(format!(".new-{branch}"));
            let cmd = fx.command(&["checkout", "-b", &branch]);
            let ok = race(cmd, &Fixture::pairs(&staging), attack, fx.env.dir.path());
            fx.check_host(&format!("checkout -b round {n} ({attack:?})"));
            if ok {
                succeeded += 1;
                fx.command(&["checkout", "master"]).output().unwrap();
            }
            n += 1;
        }
    }
    fx.check_lock_free("v", n);
    println!("checkout -b: {n} rounds ({succeeded} succeeded), host unchanged");
}

#[test]
fn commit_takes_no_host_file() {
    commit_under_attack(0, "a directory swapped for a symlink");
}

#[test]
fn commit_never_hangs_on_a_fifo() {
    commit_under_attack(1, "a file swapped for a FIFO");
}

/// Commits while pair `which` of [`Fixture::pairs`] is exchanged; every commit that succeeds
/// is read back (`checkout -b`) and must hold no host content.
fn commit_under_attack(which: usize, what: &str) {
    let fx = Fixture::new();
    let pairs = vec![Fixture::pairs(&fx.live).swap_remove(which)];
    let mut n = 0;
    let mut committed = 0;
    for (attack, rounds) in attacks(&["live.open"]) {
        for _ in 0..rounds {
            for name in ["secret", "a", "b", "sub/x"] {
                std::fs::write(fx.live.join("d").join(name), format!("round {n}\n")).unwrap();
            }
            std::fs::write(fx.live.join("f"), format!("round {n}\n")).unwrap();
            let cmd = fx.command(&["commit", "-m", &format!("round {n}")]);
            let ok = race(cmd, &pairs, attack, fx.env.dir.path());
            fx.check_host(&format!("commit round {n} ({attack:?})"));
            if ok {
                committed += 1;
                let check = format!("check{n}");
                fx.env.ok(&["checkout", "-b", &check]);
                let dir = fx.live.parent().unwrap().join(&check);
                let leaked = host_content_in(&dir);
                assert!(
                    leaked.is_empty(),
                    "round {n}: host file committed as {leaked:?}"
                );
                fx.env.ok(&["checkout", "master"]);
            }
            n += 1;
        }
    }
    fx.check_lock_free("v", n);
    println!("commit, {what}: {n} rounds ({committed} committed), no host file in any commit");
}

#[test]
fn rm_does_not_escape() {
    let fx = Fixture::new();
    let mut n = 0;
    for (attack, rounds) in attacks(&["live.remove"]) {
        for _ in 0..rounds / 2 {
            let name = format!("r{n}");
            let out = fx.command(&["init", &name]).output().unwrap();
            assert!(out.status.success());
            let live = fx.env.root().join(&name).join("branches/master");
            fx.populate(&live, 0);
            let cmd = fx.command(&["rm", "-f", &name]);
            // `rm` moves the volume to the trash, then deletes it there: at a pause, race in
            // whatever the trash holds.
            let trash = fx.env.root().join(".dvol/trash");
            let in_trash = || trash_pairs(&trash);
            race_with(
                cmd,
                &Fixture::pairs(&live),
                &in_trash,
                attack,
                fx.env.dir.path(),
            );
            fx.check_host(&format!("rm round {n} ({attack:?})"));
            n += 1;
        }
    }
    println!("rm: {n} rounds, host unchanged");
}

/// The pairs of every volume now in the trash (its name is only known once it is there).
fn trash_pairs(trash: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(trash) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .flat_map(|e| Fixture::pairs(&e.path().join("branches/master")))
        .collect()
}

#[test]
fn pull_does_not_escape() {
    let fx = Fixture::new();
    let remote = fx.env.dir.path().join("remote");
    std::fs::create_dir(&remote).unwrap();
    let remote_s = remote.display().to_string();
    fx.env.ok(&["remote", "add", "origin", &remote_s]);
    fx.env.ok(&["push"]);
    fx.env.ok(&["clone", &remote_s, "v", "w"]);
    let clone = fx.env.root().join("w/branches/master");
    let pairs = Fixture::pairs(&clone);
    let (mut n, mut succeeded) = (0, 0);
    for (attack, rounds) in attacks(&["live.open"]) {
        for _ in 0..rounds / 2 {
            fx.populate(&fx.live, n as u32 + 1);
            fx.env
                .ok(&["--volume", "v", "commit", "-m", &format!("pull {n}")]);
            fx.env.ok(&["--volume", "v", "push"]);
            let cmd = fx.command(&["--volume", "w", "pull"]);
            if race(cmd, &pairs, attack, fx.env.dir.path()) {
                succeeded += 1;
            }
            fx.check_host(&format!("pull round {n} ({attack:?})"));
            // A failed pull leaves a pending reset; finish it so the next round can pull.
            fx.command(&["--volume", "w", "reset", "--hard", "HEAD"])
                .output()
                .unwrap();
            n += 1;
        }
    }
    fx.check_lock_free("w", n);
    println!("pull: {n} rounds ({succeeded} succeeded), host unchanged");
}

#[test]
fn reset_never_changes_a_hard_linked_host_file() {
    let fx = Fixture::new();
    // The committed file d/a (mode 4777, root) is replaced by a hard link to a host file with
    // the same content but its own mode and owner.
    let committed = std::fs::read(fx.live.join("d/a")).unwrap();
    let host_file = fx.env.dir.path().join("host-linked");
    for n in 0..20 {
        std::fs::write(&host_file, &committed).unwrap();
        std::fs::set_permissions(&host_file, PermissionsExt::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(&host_file, Some(4321), Some(4321)).unwrap();
        let before = std::fs::metadata(&host_file).unwrap();
        std::fs::remove_file(fx.live.join("d/a")).unwrap();
        std::fs::hard_link(&host_file, fx.live.join("d/a")).unwrap();
        let out = fx.command(&["reset", "--hard", "HEAD"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = std::fs::metadata(&host_file).unwrap();
        assert_eq!(
            (after.mode(), after.uid(), after.gid(), after.mtime()),
            (before.mode(), before.uid(), before.gid(), before.mtime()),
            "round {n}: reset changed a host file linked into the volume"
        );
        assert_eq!(std::fs::read(&host_file).unwrap(), committed);
        let live = std::fs::metadata(fx.live.join("d/a")).unwrap();
        assert_eq!(
            live.mode() & 0o7777,
            0o4777,
            "the live file gets the committed mode"
        );
        assert_ne!(live.ino(), after.ino(), "the live file is a new file");
        std::fs::remove_file(&host_file).unwrap();
    }
}
