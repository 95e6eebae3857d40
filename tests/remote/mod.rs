//! Remote tests: real peers only (a directory, our HTTP server, a real sshd, S3 servers).

mod blocks;
mod encryption;
mod http;
mod malicious;
mod path;
mod prune;
mod roles;
pub(crate) mod s3;
mod scoped;
mod ssh;

use crate::support::{write, Env};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Extra environment for every dvol run of a host (tokens, ssh command, AWS settings).
pub type Vars = Vec<(String, String)>;

/// A directory remote and a laptop (no extra environment) with volume `db` initialised:
/// (remote directory, its URL, the laptop, its live directory).
pub fn laptop_and_dir_remote() -> (tempfile::TempDir, String, Host, PathBuf) {
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().to_str().unwrap().to_string();
    let laptop = Host::new(&Vars::new());
    laptop.ok(&["init", "db"]);
    let live = laptop.live();
    (remote, url, laptop, live)
}

/// One machine (laptop, QA, production): a dvol root plus environment.
pub struct Host {
    pub env: Env,
    pub vars: Vars,
}

impl Host {
    pub fn new(vars: &Vars) -> Host {
        Host {
            env: Env::new(),
            vars: vars.clone(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.env.dvol();
        c.env("DVOL_LOCK_TIMEOUT", "20");
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c.args(args).output().expect("run dvol")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dvol {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "dvol {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf8")
    }

    pub fn live(&self) -> PathBuf {
        PathBuf::from(self.ok(&["path"]).trim())
    }

    pub fn commit(&self, msg: &str) -> String {
        let out = self.ok(&["commit", "-m", msg]);
        out.split_whitespace().last().expect("id").to_string()
    }

    pub fn head(&self) -> String {
        let log = self.ok(&["log", "--oneline"]);
        log.split_whitespace().next().unwrap_or("").to_string()
    }
}

/// Bytes sent, parsed from a push summary (`…, N bytes sent …`).
pub fn bytes_sent(stdout: &str) -> u64 {
    let words: Vec<&str> = stdout.split_whitespace().collect();
    for w in words.windows(3) {
        if w[1] == "bytes" && w[2] == "sent" {
            return w[0].parse().expect("byte count");
        }
    }
    panic!("no bytes sent in {stdout:?}");
}

/// A small data set: text, a multi-chunk binary file, a symlink, an empty dir.
pub fn fill(dir: &Path, seed: u64) {
    write(&dir.join("hello.txt"), format!("hello {seed}\n"));
    write(
        &dir.join("data/table.db"),
        crate::support::noise(seed, 300_000),
    );
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let _ = std::os::unix::fs::symlink("hello.txt", dir.join("link"));
}

/// Recursively compare two directories (content, symlink targets, file kinds).
pub fn same_tree(a: &Path, b: &Path) {
    let list = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = walkdir(d)
            .into_iter()
            .map(|p| {
                let md = std::fs::symlink_metadata(&p).unwrap();
                let content = if md.file_type().is_symlink() {
                    let mut t = b"L".to_vec();
                    t.extend(std::fs::read_link(&p).unwrap().to_string_lossy().bytes());
                    t
                } else if md.is_dir() {
                    b"D".to_vec()
                } else {
                    std::fs::read(&p).unwrap()
                };
                (p.strip_prefix(d).unwrap().to_path_buf(), content)
            })
            .collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(
        la.iter().map(|x| &x.0).collect::<Vec<_>>(),
        lb.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert!(
        la == lb,
        "contents differ between {} and {}",
        a.display(),
        b.display()
    );
}

fn walkdir(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        out.push(p.clone());
        if md.is_dir() {
            out.extend(walkdir(&p));
        }
    }
    out
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts TCP connections on the port.
pub fn wait_port(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on port {port}");
}

/// A child process killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Find a peer binary or fail with a message saying how to install it (tests call
/// `support::require_binary` first, which skips them when it is missing).
pub fn need_binary(name: &str, install: &str) -> PathBuf {
    crate::support::find_binary(name).unwrap_or_else(|| {
        panic!(
            "{name} is required for this test and was not found on PATH: install it with `{install}`"
        )
    })
}

/// Start a command, wait for its stdout line containing `marker`, return the line.
pub fn start_with_line(mut cmd: Command, marker: &str) -> (Daemon, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("process exited before printing {marker:?}");
        }
        if line.contains(marker) {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    (Daemon(child), line.trim().to_string())
}

/// The common scenario every transport runs: laptop pushes, QA clones, changes and pushes
/// back, laptop pulls; a small change sends little; non-fast-forward is rejected.
pub fn round_trip(url: &str, vars: &Vars) {
    let laptop = Host::new(vars);
    let qa = Host::new(vars);
    laptop.ok(&["init", "db"]);
    let live = laptop.live();
    fill(&live, 1);
    let c1 = laptop.commit("first");
    laptop.ok(&["remote", "add", "origin", url]);
    let out = laptop.ok(&["push"]);
    assert!(out.contains("bytes sent"), "{out}");

    let out = qa.ok(&["clone", url, "db"]);
    assert!(out.contains("db"), "{out}");
    assert_eq!(qa.head(), c1[..12]);
    same_tree(&live, &qa.live());
    let remotes = qa.ok(&["remote", "-v"]);
    assert_eq!(
        remotes,
        format!("origin\t{url} (fetch)\norigin\t{url} (push)\n")
    );

    // QA rewrites one 8 KiB page of the big file and pushes: only a few KiB travel.
    let qlive = qa.live();
    let mut data = std::fs::read(qlive.join("data/table.db")).unwrap();
    data[8192 * 10..8192 * 11].copy_from_slice(&crate::support::noise(99, 8192));
    std::fs::write(qlive.join("data/table.db"), &data).unwrap();
    let c2 = qa.commit("page");
    let out = qa.ok(&["push", "origin"]);
    let sent = bytes_sent(&out);
    assert!(sent < 24_000, "a one-page change sent {sent} bytes: {out}");

    let out = laptop.ok(&["pull"]);
    assert!(out.contains("Fast-forward"), "{out}");
    assert_eq!(laptop.head(), c2[..12]);
    same_tree(&live, &qlive);
    assert_eq!(
        laptop.ok(&["pull"]).trim_end().lines().last(),
        Some("Already up to date.")
    );

    // Diverge: laptop commits and pushes, QA commits: QA's push is rejected.
    write(&live.join("hello.txt"), "laptop\n");
    laptop.commit("laptop change");
    laptop.ok(&["push"]);
    write(&qlive.join("qa.txt"), "qa\n");
    qa.commit("qa change");
    let err = qa.fails(&["push"]);
    assert!(
        err.contains("rejected") && err.contains("non-fast-forward") && err.contains("pull"),
        "{err}"
    );
}

/// Groups over a transport: the laptop pushes a group of two volumes (`app-a`, `app-b`), QA
/// clones it, commits the group and pushes, the laptop pulls; every member matches.
pub fn group_round_trip(url: &str, vars: &Vars) {
    let laptop = Host::new(vars);
    let qa = Host::new(vars);
    laptop.ok(&["init", "app-a"]);
    laptop.ok(&["init", "app-b"]);
    laptop.ok(&["group", "create", "app", "app-a", "app-b"]);
    let path = |h: &Host, v: &str| PathBuf::from(h.ok(&["path", v]).trim());
    let generation = |h: &Host, n: &str| {
        write(&path(h, "app-a").join("n"), n);
        write(&path(h, "app-b").join(n), "payload");
        h.ok(&["group", "commit", "app", "-m", n])
            .trim()
            .to_string()
    };
    let one = generation(&laptop, "1");
    laptop.ok(&["group", "remote", "app", "origin", url]);
    let out = laptop.ok(&["group", "push", "app"]);
    assert!(out.contains(&format!("(new) -> {}", &one[..12])), "{out}");
    let out = qa.ok(&["group", "clone", url, "app"]);
    assert!(out.contains("member app-b as volume app-b"), "{out}");
    let n = |h: &Host| std::fs::read_to_string(path(h, "app-a").join("n")).unwrap();
    assert_eq!(n(&qa), "1");
    assert!(path(&qa, "app-b").join("1").exists());

    let two = generation(&qa, "2");
    qa.ok(&["group", "push", "app"]);
    let out = laptop.ok(&["group", "pull", "app"]);
    assert!(out.contains(&two[..12]), "{out}");
    assert_eq!(n(&laptop), "2");
    assert!(path(&laptop, "app-b").join("2").exists());
    laptop.ok(&["fsck"]);
    qa.ok(&["fsck"]);
}
