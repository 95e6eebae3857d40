//! `docker volume inspect` shows dvol's status (the plugin's `Get` → `Status`), read from
//! SQLite only, and dvol's own engine lookups, which read volumes back through inspect, still
//! find the containers using a volume.

use super::*;
use crate::support::write;

const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

fn status(v: &str) -> serde_json::Value {
    let out = docker_ok(&["volume", "inspect", "-f", "{{json .Status}}", v]);
    serde_json::from_str(out.trim()).expect("status json")
}

#[test]
fn volume_inspect_shows_dvol_status() {
    let s = Scope::new("status");
    let v = s.volume("db");
    s.dvol_ok(&["init", &v]);
    docker_ok(&["volume", "create", "-d", s.driver(), &v]);
    let st = status(&v);
    assert_eq!(st["Branch"], "master", "{st}");
    assert_eq!(st["Commits"], 0, "{st}");
    assert!(st.get("Head").is_none(), "{st}");

    write(&s.live(&v).join("a"), "a");
    s.dvol_ok(&["commit", "--volume", &v, "-m", "first"]);
    write(&s.live(&v).join("b"), "b");
    let out = s.dvol_ok(&[
        "commit",
        "--volume",
        &v,
        "-m",
        "second snapshot\n\nwith a body",
    ]);
    let head = out.split_whitespace().last().unwrap().to_string();
    let st = status(&v);
    assert_eq!(st["Branch"], "master", "{st}");
    assert_eq!(st["Branches"], 1, "{st}");
    assert_eq!(st["Commits"], 2, "{st}");
    assert_eq!(st["Head"], head.as_str(), "{st}");
    assert_eq!(st["HeadMessage"], "second snapshot", "{st}");
    assert!(st["HeadDate"].as_str().unwrap().contains(" 20"), "{st}");
    assert_eq!(st["Mounts"], 0, "{st}");

    // With a container using it, dvol's engine lookup (through inspect) still finds it:
    // `dvol list` names the container and `commit` stops and restarts it.
    let c = s.run_busybox("db", &v, IDLE);
    assert_eq!(status(&v)["Mounts"], 1);
    let list = s.dvol_ok(&["list"]);
    let row = list.lines().find(|l| l.contains(&v)).expect("row");
    assert!(row.trim_end().ends_with(&format!("/{c}")), "{list}");
    let before = started_at(&c);
    s.dvol_ok(&["commit", "--volume", &v, "-m", "third"]);
    assert_ne!(started_at(&c), before, "commit did not find the container");
    assert!(running(&c));
    assert_eq!(status(&v)["Commits"], 3);

    // Branch and expiry show up.
    s.dvol_ok(&["checkout", "--volume", &v, "-b", "feature"]);
    let st = status(&v);
    assert_eq!(
        (st["Branch"].as_str(), st["Branches"].as_u64()),
        (Some("feature"), Some(2))
    );
    s.dvol_ok(&["prune", "--volume", &v, "--keep-last", "1"]);
    // master's head and feature's head are the same commit; its two ancestors expire.
    assert_eq!(status(&v)["ExpiredCommits"], 2, "{}", status(&v));
    docker_ok(&["rm", "-f", &c]);
    s.dvol_ok(&["rm", "-f", &v]);
}

#[test]
fn get_is_cheap_on_a_large_volume() {
    let s = Scope::new("statusload");
    let v = s.volume("big");
    s.dvol_ok(&["init", &v]);
    let live = s.live(&v);
    for i in 0..5000 {
        write(&live.join(format!("d{}/f{i}", i % 50)), format!("{i}"));
    }
    s.dvol_ok(&["commit", "--volume", &v, "-m", "5000 files"]);
    for i in 0..5000 {
        write(
            &live.join(format!("d{}/f{i}", i % 50)),
            format!("changed {i}"),
        );
    }
    let body = format!("{{\"Name\":\"{v}\"}}");
    let start = Instant::now();
    let n = 200;
    for _ in 0..n {
        let (_, got) = plugin_call(&plugin().socket, "VolumeDriver.Get", &body);
        assert_eq!(got["Volume"]["Status"]["Commits"], 1, "{got}");
    }
    let per_call = start.elapsed() / n;
    eprintln!("VolumeDriver.Get with Status on 5000 changed files: {per_call:?} per call");
    assert!(per_call < Duration::from_millis(25), "{per_call:?} per Get");
    s.dvol_ok(&["rm", "-f", &v]);
}
