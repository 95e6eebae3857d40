//! Load on the plugin alone (no Docker): what Docker sends when 50 containers start at once,
//! as raw calls on the socket from 50 threads released together. Every call is answered
//! without error, each volume gets its own mountpoint, shared volumes get the same one, List
//! sees everything, and the store is sound afterwards. Prints calls/s and the slowest call
//! (figures in docs/guarantees.md); tests/docker/load.rs does the same through dockerd.

use super::plugin_input::{call, TestPlugin};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const THREADS: usize = 50;

/// Run `calls(i)` for i in 0..THREADS, one thread each, all released at once; returns the
/// wall time, the slowest call (route, duration) and every thread's replies.
fn burst(
    socket: &std::path::Path,
    calls: impl Fn(usize) -> Vec<(&'static str, Value)> + Sync,
) -> (Duration, (String, Duration), usize, Vec<Vec<Value>>) {
    let barrier = Arc::new(Barrier::new(THREADS));
    let (wall, results) = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..THREADS)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let calls = &calls;
                sc.spawn(move || {
                    let todo = calls(i);
                    barrier.wait();
                    let started = Instant::now();
                    let mut out = Vec::new();
                    for (route, body) in todo {
                        let t = Instant::now();
                        let r = call(socket, "POST", route, body.to_string().as_bytes());
                        assert_eq!(r.status, 200, "{route}");
                        out.push((route, t.elapsed(), r.json));
                    }
                    (started, out)
                })
            })
            .collect();
        let results: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let first = results.iter().map(|r| r.0).min().unwrap();
        (first.elapsed(), results)
    });
    let mut slowest = (String::new(), Duration::ZERO);
    let mut n = 0;
    let mut replies = Vec::new();
    for (_, out) in results {
        let mut mine = Vec::new();
        for (route, d, json) in out {
            n += 1;
            if d > slowest.1 {
                slowest = (route.to_string(), d);
            }
            mine.push(json);
        }
        replies.push(mine);
    }
    (wall, slowest, n, replies)
}

fn report(what: &str, wall: Duration, slowest: &(String, Duration), n: usize) {
    eprintln!(
        "plugin load: {what}: {n} calls in {:.2} s = {:.0} calls/s, slowest {} {:.0} ms",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        slowest.0,
        slowest.1.as_secs_f64() * 1000.0
    );
}

/// What `docker run -v NAME:/data --volume-driver X` sends, in order.
fn docker_run_calls(name: &str, id: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("VolumeDriver.Get", json!({ "Name": name })),
        ("VolumeDriver.Create", json!({ "Name": name, "Opts": {} })),
        ("VolumeDriver.Get", json!({ "Name": name })),
        ("VolumeDriver.Mount", json!({ "Name": name, "ID": id })),
    ]
}

#[test]
fn fifty_concurrent_docker_runs_worth_of_calls() {
    let mut p = TestPlugin::start();
    let mount = |replies: &[Value]| -> String {
        let m = replies.last().unwrap();
        assert_eq!(m["Err"], "", "{m}");
        m["Mountpoint"].as_str().unwrap().to_string()
    };

    // 50 new volumes at once.
    let (wall, slowest, n, replies) = burst(&p.socket, |i| {
        docker_run_calls(&format!("own{i}"), &format!("{i:064x}"))
    });
    report(
        "50 x (Get, Create, Get, Mount) on 50 new volumes",
        wall,
        &slowest,
        n,
    );
    let mut seen = std::collections::HashSet::new();
    for (i, r) in replies.iter().enumerate() {
        // The first Get fails (not yet created), everything after succeeds.
        assert!(r[0]["Err"].as_str().unwrap().contains("does not exist"));
        assert_eq!(r[1]["Err"], "");
        assert_eq!(r[2]["Err"], "");
        let mp = mount(r);
        assert_eq!(
            std::path::PathBuf::from(&mp),
            p.root.join(format!("own{i}/branches/master"))
        );
        assert!(std::path::Path::new(&mp).is_dir());
        assert!(seen.insert(mp), "mountpoint handed out twice");
    }

    // 50 more on 5 shared volumes (10 racing creates of each).
    let (wall, slowest, n, replies) = burst(&p.socket, |i| {
        docker_run_calls(&format!("shared{}", i % 5), &format!("{:064x}", 1000 + i))
    });
    report(
        "50 x (Get, Create, Get, Mount) on 5 shared volumes",
        wall,
        &slowest,
        n,
    );
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r[1]["Err"], "", "racing Create must succeed");
        assert_eq!(
            std::path::PathBuf::from(mount(r)),
            p.root.join(format!("shared{}/branches/master", i % 5))
        );
    }

    // Read-mostly traffic (what `docker volume ls` and inspect do) plus Unmounts.
    let (wall, slowest, n, replies) = burst(&p.socket, |i| {
        vec![
            ("VolumeDriver.List", json!({})),
            ("VolumeDriver.Path", json!({ "Name": format!("own{i}") })),
            (
                "VolumeDriver.Unmount",
                json!({ "Name": format!("own{i}"), "ID": format!("{i:064x}") }),
            ),
            ("VolumeDriver.Capabilities", json!({})),
        ]
    });
    report(
        "50 x (List, Path, Unmount, Capabilities)",
        wall,
        &slowest,
        n,
    );
    for r in &replies {
        assert_eq!(r[0]["Volumes"].as_array().unwrap().len(), 55, "{}", r[0]);
        assert_eq!(r[1]["Err"], "");
        assert_eq!(r[2]["Err"], "");
    }

    p.assert_alive();
    p.assert_contained();
    let fsck = std::process::Command::new(env!("CARGO_BIN_EXE_dvol"))
        .arg("-p")
        .arg(&p.root)
        .args(["--disable-docker-integration", "fsck"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}
