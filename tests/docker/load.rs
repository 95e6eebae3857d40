//! Issue 5, load: 50 containers started at once on 50 dvol volumes through the plugin
//! (implicit creation), then 50 containers sharing 5 volumes. Every request is answered, each
//! container writes to its own volume's live directory, `docker volume ls` lists every volume,
//! and after stopping them all `dvol fsck` is clean. Prints throughput and the slowest
//! `docker run` (figures in docs/guarantees.md).

use super::*;
use std::sync::{Arc, Barrier};

const CONTAINERS: usize = 50;
const SHARED_VOLUMES: usize = 5;

/// A container that writes its own name to `/data/<file>` and idles until SIGTERM.
fn script(file: &str, name: &str) -> String {
    format!("trap 'exit 0' TERM; echo {name} > /data/{file}; while :; do sleep 1; done")
}

/// `docker run -d` every (container, volume, script) at once, one thread each, released
/// together by a barrier. Returns (wall time, each run's duration).
fn run_all(s: &Scope, jobs: &[(String, String, String)]) -> (Duration, Vec<Duration>) {
    let barrier = Arc::new(Barrier::new(jobs.len() + 1));
    let driver = s.driver().to_string();
    let handles: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|(c, v, sh)| {
            let (barrier, driver) = (Arc::clone(&barrier), driver.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let t = Instant::now();
                let out = docker(&[
                    "run",
                    "-d",
                    "--name",
                    &c,
                    "--volume-driver",
                    &driver,
                    "-v",
                    &format!("{v}:/data"),
                    BUSYBOX,
                    "sh",
                    "-c",
                    &sh,
                ]);
                (c, t.elapsed(), out)
            })
        })
        .collect();
    let start = Instant::now();
    barrier.wait();
    let mut times = Vec::new();
    let mut failed = Vec::new();
    for h in handles {
        let (c, d, out) = h.join().expect("docker run thread");
        if !out.status.success() {
            failed.push(format!("{c}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        times.push(d);
    }
    let wall = start.elapsed();
    assert!(
        failed.is_empty(),
        "{} of {} docker run failed:\n{}",
        failed.len(),
        jobs.len(),
        failed.join("\n")
    );
    (wall, times)
}

fn report(what: &str, wall: Duration, times: &[Duration]) {
    let slowest = times.iter().max().unwrap();
    let mut sorted = times.to_vec();
    sorted.sort();
    eprintln!(
        "load: {what}: {} containers in {:.2} s = {:.1} containers/s; docker run median {:.2} s, slowest {:.2} s",
        times.len(),
        wall.as_secs_f64(),
        times.len() as f64 / wall.as_secs_f64(),
        sorted[sorted.len() / 2].as_secs_f64(),
        slowest.as_secs_f64()
    );
}

/// The plugin's own time per call during the rounds, from its log (`call=X ms=N` lines).
fn plugin_side(from: u64) {
    let log = std::fs::read(&plugin().log).unwrap_or_default();
    let log = String::from_utf8_lossy(&log[from as usize..]);
    let mut per_call: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for line in log.lines() {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(|v| v.trim_matches('"').to_string())
        };
        if let (Some(call), Some(ms)) = (field("call="), field("ms=")) {
            let e = per_call.entry(call).or_default();
            e.0 += 1;
            e.1 = e.1.max(ms.parse().unwrap_or(0));
        }
    }
    let summary: Vec<String> = per_call
        .iter()
        .map(|(c, (n, max))| format!("{c} x{n} max {max} ms"))
        .collect();
    eprintln!("load: plugin side: {}", summary.join(", "));
}

/// Every container in `names` is running (one `docker inspect` for all).
fn all_running(names: &[String]) -> Vec<String> {
    let args: Vec<&str> = ["inspect", "-f", "{{.Name}} {{.State.Running}}"]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .collect();
    docker_ok(&args)
        .lines()
        .filter(|l| !l.ends_with(" true"))
        .map(str::to_string)
        .collect()
}

#[test]
fn fifty_containers_at_once_through_the_plugin() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("load");

    // Round 1: 50 containers, 50 new volumes, created implicitly by `docker run`.
    let jobs: Vec<(String, String, String)> = (0..CONTAINERS)
        .map(|i| {
            let c = s.container(&format!("own{i}"));
            let v = s.volume(&format!("own{i}"));
            let sh = script("marker", &c);
            (c, v, sh)
        })
        .collect();
    let log_from = std::fs::metadata(&plugin().log)
        .map(|m| m.len())
        .unwrap_or(0);
    let (wall1, times1) = run_all(&s, &jobs);
    report("50 containers on 50 new volumes", wall1, &times1);

    // Round 2: 50 more containers sharing 5 new volumes (10 each), each its own marker file.
    let shared: Vec<String> = (0..SHARED_VOLUMES)
        .map(|i| s.volume(&format!("shared{i}")))
        .collect();
    let jobs2: Vec<(String, String, String)> = (0..CONTAINERS)
        .map(|i| {
            let c = s.container(&format!("sh{i}"));
            let v = shared[i % SHARED_VOLUMES].clone();
            let sh = script(&format!("marker-{c}"), &c);
            (c, v, sh)
        })
        .collect();
    let (wall2, times2) = run_all(&s, &jobs2);
    report("50 containers on 5 shared volumes", wall2, &times2);
    let all_times: Vec<Duration> = times1.iter().chain(&times2).copied().collect();
    eprintln!(
        "load: overall {} containers in {:.2} s = {:.1} containers/s, slowest docker run {:.2} s",
        all_times.len(),
        (wall1 + wall2).as_secs_f64(),
        all_times.len() as f64 / (wall1 + wall2).as_secs_f64(),
        all_times.iter().max().unwrap().as_secs_f64()
    );

    plugin_side(log_from);

    let names: Vec<String> = jobs.iter().chain(&jobs2).map(|j| j.0.clone()).collect();
    let not_running = all_running(&names);
    assert!(not_running.is_empty(), "not running: {not_running:?}");

    // Each container wrote into its own volume's live directory, and nowhere else.
    for (c, v, _) in &jobs {
        let live = s.live(v);
        let marker = live.join("marker");
        wait_for(Duration::from_secs(30), &format!("{marker:?}"), || {
            read(&marker) == format!("{c}\n")
        });
        let files: Vec<_> = std::fs::read_dir(&live).unwrap().collect();
        assert_eq!(files.len(), 1, "{live:?} has {files:?}");
    }
    for (i, v) in shared.iter().enumerate() {
        let live = s.live(v);
        let mine: Vec<&String> = jobs2
            .iter()
            .enumerate()
            .filter(|(j, _)| j % SHARED_VOLUMES == i)
            .map(|(_, j)| &j.0)
            .collect();
        for c in &mine {
            let marker = live.join(format!("marker-{c}"));
            wait_for(Duration::from_secs(30), &format!("{marker:?}"), || {
                read(&marker) == format!("{c}\n")
            });
        }
        let n = std::fs::read_dir(&live).unwrap().count();
        assert_eq!(
            n,
            mine.len(),
            "{live:?}: {n} files for {} containers",
            mine.len()
        );
    }

    // Docker and dvol both know every volume.
    let ls = docker_ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    let listed: std::collections::HashSet<&str> = ls.lines().collect();
    let volumes: Vec<&String> = jobs.iter().map(|j| &j.1).chain(&shared).collect();
    for v in &volumes {
        let line = format!("{} {v}", s.driver());
        assert!(
            listed.contains(line.as_str()),
            "{v} not in docker volume ls"
        );
    }
    let dvol_list = s.dvol_ok(&["list", "--json"]);
    for v in &volumes {
        assert!(
            dvol_list.contains(&format!("\"{v}\"")),
            "{v} not in dvol list"
        );
    }

    // Stop everything at once (docker stop runs in parallel), then the store is sound and the
    // data is still there; commit a few volumes and check again.
    let t = Instant::now();
    let args: Vec<&str> = ["stop", "-t", "5"]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .collect();
    docker_ok(&args);
    eprintln!(
        "load: stopped {} containers in {:.2} s",
        names.len(),
        t.elapsed().as_secs_f64()
    );
    for (c, v, _) in jobs.iter().take(5) {
        assert_eq!(read(&s.live(v).join("marker")), format!("{c}\n"));
        s.dvol_ok(&["commit", "--volume", v, "-m", "after load"]);
    }
    for v in &shared {
        s.dvol_ok(&["commit", "--volume", v, "-m", "after load"]);
    }
    let fsck = s.dvol().arg("fsck").output().unwrap();
    assert!(
        fsck.status.success(),
        "dvol fsck after load: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}
