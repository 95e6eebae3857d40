//! Several clients pushing and pulling at once against one `dvol serve --listen` (HTTP, with
//! its token) and against one path remote: racing pushes of diverging histories of the same
//! volume (exactly one wins, the loser is told non-fast-forward, nothing is lost), and pushes
//! and pulls of different volumes at once. Reports throughput and the slowest request from the
//! server's access log.

use crate::remote::{fill, free_port, Host, Vars};
use crate::support::{noise, write};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "load-test-token-0123";

/// A `dvol serve --listen` whose access log (stderr) is collected.
pub struct Server {
    child: Child,
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `dvol serve` on `store` (umask applied through `sh`, for the permission tests).
pub fn serve(store: &Path, umask: &str) -> Server {
    serve_tokens(store, umask, &format!("{TOKEN}\n"))
}

/// [`serve`] with a token file of `tokens`.
pub fn serve_tokens(store: &Path, umask: &str, tokens: &str) -> Server {
    let token_file = store.with_file_name("token");
    std::fs::write(&token_file, tokens).unwrap();
    let port = free_port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_dvol"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token-file",
        ])
        .arg(&token_file)
        .arg(store)
        .env("DVOL_LOG", "dvol::serve=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("Listening on"), "{line}");
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            sink.lock().unwrap().push(l);
        }
    });
    Server { child, port, log }
}

/// Figures from the access log lines of `rpc` requests.
#[derive(Debug, Default)]
pub struct LogStats {
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub slowest_us: u64,
    pub slowest: String,
}

pub fn stats(lines: &[String]) -> LogStats {
    let mut s = LogStats::default();
    for l in lines.iter().filter(|l| l.contains("rpc op=")) {
        let field = |name: &str| -> Option<&str> {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        let n = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        s.requests += 1;
        s.bytes += n("bytes_in") + n("bytes_out");
        if field("error") == Some("true") {
            s.errors += 1;
        }
        if n("us") > s.slowest_us {
            s.slowest_us = n("us");
            s.slowest = format!(
                "{} ({} B in, {} B out)",
                field("op").unwrap_or("?"),
                n("bytes_in"),
                n("bytes_out")
            );
        }
    }
    s
}

/// Run `f` on every item in its own thread at once; returns results and the slowest duration.
fn all_at_once<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> (Vec<R>, Duration) {
    let barrier = std::sync::Barrier::new(items.len());
    let results: Vec<(R, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .iter()
            .map(|it| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let t = Instant::now();
                    let r = f(it);
                    (r, t.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let slowest = results.iter().map(|r| r.1).max().unwrap_or_default();
    (results.into_iter().map(|r| r.0).collect(), slowest)
}

/// Two hosts that cloned `volume` from `url` and then committed diverging changes.
fn diverging(url: &str, vars: &Vars, volume: &str, round: u64) -> (Host, Host, String, String) {
    let (a, b) = (Host::new(vars), Host::new(vars));
    for (h, name) in [(&a, "a"), (&b, "b")] {
        h.ok(&["clone", url, volume]);
        write(
            &h.live().join(format!("{name}.bin")),
            noise(
                round * 10 + name.len() as u64 + name.as_bytes()[0] as u64,
                1 << 20,
            ),
        );
    }
    let ca = a.commit("a");
    let cb = b.commit("b");
    (a, b, ca, cb)
}

/// Race two pushes of diverging histories `rounds` times: exactly one wins each time, the
/// loser is rejected as non-fast-forward and keeps its commit, the remote names the winner's
/// commit and a fresh clone reads it back; then the loser force-pushes with `force_vars`.
fn race_same_volume(url: &str, vars: &Vars, force_vars: &Vars, rounds: u64) -> (u64, u64) {
    let seed = Host::new(vars);
    seed.ok(&["init", "shared"]);
    fill(&seed.live(), 1);
    seed.commit("base");
    seed.ok(&["remote", "add", "origin", url]);
    seed.ok(&["push"]);
    let (mut a_wins, mut b_wins) = (0, 0);
    for round in 0..rounds {
        let (a, b, ca, cb) = diverging(url, vars, "shared", round);
        let hosts = [(&a, &ca), (&b, &cb)];
        let (outs, _) = all_at_once(&hosts, |(h, _)| h.run(&["push"]));
        let won: Vec<bool> = outs.iter().map(|o| o.status.success()).collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: exactly one push must win: {:?}",
            outs.iter()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .collect::<Vec<_>>()
        );
        let (winner, loser, loser_out) = if won[0] {
            a_wins += 1;
            (hosts[0], hosts[1], &outs[1])
        } else {
            b_wins += 1;
            (hosts[1], hosts[0], &outs[0])
        };
        let err = String::from_utf8_lossy(&loser_out.stderr);
        assert!(
            err.contains("rejected") && err.contains("non-fast-forward") && err.contains("pull"),
            "round {round}: {err}"
        );
        // Nothing lost: the loser still has its commit, fsck is clean on both sides.
        assert_eq!(loser.0.head(), loser.1[..12], "round {round}");
        loser.0.ok(&["fsck"]);
        winner.0.ok(&["fsck"]);
        let fresh = Host::new(vars);
        fresh.ok(&["clone", url, "shared"]);
        assert_eq!(fresh.head(), winner.1[..12], "round {round}: remote head");
        crate::remote::same_tree(&fresh.live(), &winner.0.live());
        // The loser can still get its work in: pull is refused (diverged), force works.
        let err = loser.0.fails(&["pull"]);
        assert!(err.contains("diverged"), "{err}");
        let mut force = loser.0.env.dvol();
        force.envs(force_vars.iter().map(|(k, v)| (k, v)));
        let out = force.args(["push", "--force"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (a_wins, b_wins)
}

#[test]
fn concurrent_clients_against_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("store"), "022");
    let url = format!("http://127.0.0.1:{}", server.port);
    let vars: Vars = vec![("DVOL_TOKEN".into(), TOKEN.into())];

    // Same volume: racing pushes of diverging histories.
    let (a, b) = race_same_volume(&url, &vars, &vars, 4);
    eprintln!("racing pushes to one volume over HTTP: 4 rounds, first host won {a}, second {b}");

    // Different volumes: 4 pushers (8 MiB each) and 2 pullers of the shared volume at once.
    let pushers: Vec<Host> = (0..4)
        .map(|i| {
            let h = Host::new(&vars);
            let v = format!("vol{i}");
            h.ok(&["init", &v]);
            write(&h.live().join("data.bin"), noise(100 + i, 8 << 20));
            fill(&h.live(), i);
            h.commit("data");
            h.ok(&["remote", "add", "origin", &url]);
            h
        })
        .collect();
    let pullers: Vec<Host> = (0..2)
        .map(|_| {
            let h = Host::new(&vars);
            h.ok(&["init", "shared"]);
            h.ok(&["remote", "add", "origin", &url]);
            h
        })
        .collect();
    let mut jobs: Vec<(&Host, &[&str])> = pushers.iter().map(|h| (h, &["push"][..])).collect();
    jobs.extend(pullers.iter().map(|h| (h, &["pull"][..])));
    let before = server.log.lock().unwrap().len();
    let start = Instant::now();
    let (outs, slowest_cmd) = all_at_once(&jobs, |(h, args)| h.run(args));
    let wall = start.elapsed();
    for (o, (_, args)) in outs.iter().zip(&jobs) {
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let st = stats(&server.log.lock().unwrap()[before..]);
    // Every ref correct: fresh clones read every volume back.
    for (i, h) in pushers.iter().enumerate() {
        let fresh = Host::new(&vars);
        fresh.ok(&["clone", &url, &format!("vol{i}")]);
        assert_eq!(fresh.head(), h.head());
        crate::remote::same_tree(&fresh.live(), &h.live());
    }
    for p in &pullers {
        p.ok(&["fsck"]);
    }
    let all = stats(&server.log.lock().unwrap());
    let mb = st.bytes as f64 / (1 << 20) as f64;
    eprintln!(
        "HTTP load: 4 pushes of different volumes + 2 pulls at once: {} requests, {:.1} MiB in \
         {:.2}s = {:.1} MiB/s, {:.0} requests/s; slowest request {:.1} ms ({}); slowest client \
         command {:.2}s",
        st.requests,
        mb,
        wall.as_secs_f64(),
        mb / wall.as_secs_f64(),
        st.requests as f64 / wall.as_secs_f64(),
        st.slowest_us as f64 / 1000.0,
        st.slowest,
        slowest_cmd.as_secs_f64()
    );
    eprintln!(
        "HTTP whole test: {} requests answered ({} protocol errors), slowest {:.1} ms ({})",
        all.requests,
        all.errors,
        all.slowest_us as f64 / 1000.0,
        all.slowest
    );
    assert_eq!(st.errors, 0, "protocol errors during the load");
    assert!(st.requests > 20);
}

/// The same race with read-write tokens: the server's fast-forward check runs under the
/// compare-and-swap lock, so each round still has exactly one winner and the loser is told
/// non-fast-forward; a read-write force-push is refused, an admin one lands.
#[test]
fn concurrent_read_write_pushes_move_forward_only() {
    let dir = tempfile::tempdir().unwrap();
    let rw_token = "race-read-write-0123";
    let tokens = format!("{rw_token} read-write shared\n{TOKEN} admin *\n");
    let server = serve_tokens(&dir.path().join("store"), "022", &tokens);
    let url = format!("http://127.0.0.1:{}", server.port);
    let rw: Vars = vec![("DVOL_TOKEN".into(), rw_token.into())];
    let admin: Vars = vec![("DVOL_TOKEN".into(), TOKEN.into())];
    let (a, b) = race_same_volume(&url, &rw, &admin, 3);
    eprintln!("racing read-write pushes over HTTP: 3 rounds, first won {a}, second {b}");
    let (x, y, _, _) = diverging(&url, &rw, "shared", 9);
    x.ok(&["push"]);
    let err = y.fails(&["push", "--force"]);
    assert!(err.contains("not a fast-forward"), "{err}");
    assert_eq!(stats(&server.log.lock().unwrap()).errors, 0);
}

#[test]
fn concurrent_pushes_to_a_path_remote() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("remote").to_str().unwrap().to_string();
    let vars = Vars::new();
    let (a, b) = race_same_volume(&url, &vars, &vars, 3);
    eprintln!("racing pushes to one volume on a path remote: 3 rounds, first won {a}, second {b}");
    // Different branches of one volume at once: both land.
    let (x, y) = (Host::new(&vars), Host::new(&vars));
    for (h, br) in [(&x, "x"), (&y, "y")] {
        h.ok(&["clone", &url, "shared"]);
        h.ok(&["checkout", "-b", br]);
        write(
            &h.live().join(format!("{br}.bin")),
            noise(br.len() as u64 + 7, 2 << 20),
        );
        h.commit(br);
    }
    let (outs, _) = all_at_once(&[&x, &y], |h| h.run(&["push", "origin"]));
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let fresh = Host::new(&vars);
    fresh.ok(&["clone", &url, "shared"]);
    assert_eq!(fresh.ok(&["branch"]), "* master\n  x\n  y\n");
    for (h, br) in [(&x, "x"), (&y, "y")] {
        fresh.ok(&["checkout", br]);
        crate::remote::same_tree(&fresh.live(), &h.live());
    }
}
