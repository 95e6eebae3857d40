//! Thin clones of a volume a container is writing to: the containers using the source are
//! paused (never stopped) for the moment of a reflink clone, by `dvol branch` and by the
//! plugin's `-o from=`, then run on; the clone holds the committed data.

use super::*;
use crate::support::loopfs::LoopFs;
use crate::support::{bin, Env};

/// `docker pause` / `unpause` events of container `c` since `since` (`unix_now`).
pub fn freezes(c: &str, since: &str) -> Vec<String> {
    let out = docker_ok(&[
        "events",
        "--since",
        since,
        "--until",
        &unix_now(),
        "--filter",
        &format!("container={c}"),
        "--filter",
        "event=pause",
        "--filter",
        "event=unpause",
        "--format",
        "{{.Action}}",
    ]);
    out.lines().map(str::to_string).collect()
}

/// Now as `docker events` takes it: unix seconds with nanoseconds.
pub fn unix_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// `dvol` on `env`'s root with Docker integration on.
fn dvol_with_docker(env: &Env, args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .env("DVOL_ROOT", env.root())
        .env_remove("DVOL_LOG")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dvol {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_reflink_clone_pauses_the_sources_writers() {
    let Some(fs) = LoopFs::new("xfs") else { return };
    let s = Scope::new("thinfreeze");
    let env = fs.env();
    env.ok(&["init", "v"]);
    let live = env.live();
    std::fs::write(live.join("table"), crate::support::noise(7, 4 << 20)).unwrap();
    std::fs::write(live.join("counter"), "0\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    env.ok(&["commit", "-m", "one"]);
    let table = std::fs::read(live.join("table")).unwrap();

    // A writer bound to the live directory, rewriting `counter` all the time.
    let c = s.container("writer");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "-v",
        &format!("{}:/data", live.display()),
        BUSYBOX,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /data/counter; done",
    ]);
    wait_for(Duration::from_secs(20), "the writer", || {
        std::fs::read_to_string(live.join("counter")).is_ok_and(|n| n.trim() != "0")
    });

    let since = unix_now();
    dvol_with_docker(&env, &["--clone-method", "reflink", "branch", "qa"]);
    let qa = env.root().join("v/branches/qa");
    assert_eq!(std::fs::read(qa.join("table")).unwrap(), table);
    assert_eq!(std::fs::read_to_string(qa.join("counter")).unwrap(), "0\n");
    assert!(running(&c), "the writer was not let go");
    let seen = freezes(&c, &since);
    assert_eq!(seen, ["pause", "unpause"], "dvol branch");

    // The plugin's `-o from=`, served from this root with Docker integration on.
    let socket = env.dir.path().join("p.sock");
    let mut plugin = std::process::Command::new(bin())
        .env("DVOL_ROOT", env.root())
        .args(["plugin", "serve", "--socket", socket.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "the plugin socket", || {
        socket.exists()
    });
    let since = unix_now();
    let r = plugin_call(
        &socket,
        "VolumeDriver.Create",
        r#"{"Name":"copy","Opts":{"from":"v","clone":"reflink"}}"#,
    )
    .1;
    // Stop the plugin this test started (by its pid).
    plugin.kill().unwrap();
    plugin.wait().unwrap();
    assert_eq!(r["Err"], "", "{r}");
    let copy = env.root().join("copy/branches/master");
    assert_eq!(std::fs::read(copy.join("table")).unwrap(), table);
    assert!(running(&c), "the writer was not let go");
    assert_eq!(freezes(&c, &since), ["pause", "unpause"], "-o from=");

    // A branch of a branch that is not current: no container uses it, none is paused.
    let since = unix_now();
    dvol_with_docker(
        &env,
        &[
            "--clone-method",
            "reflink",
            "--volume",
            "copy",
            "branch",
            "b",
        ],
    );
    assert!(freezes(&c, &since).is_empty());
}
