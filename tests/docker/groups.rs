//! Groups of volumes with a real Compose app: two services whose volumes depend on each other
//! (an uploader writes `files/<n>`; an indexer appends `n` to `index/ids` once `files/<n>`
//! exists), written continuously. Group commits taken under load restore, as a group, to a
//! state where every indexed id has its file and at most a second's files are not indexed
//! yet; committing the members one after the other does not (the test shows the mismatch, so
//! the check can fail).

use super::*;

const APP: &str = r#"version: "3.7"
services:
  uploader:
    image: ${BUSYBOX_IMAGE}
    command:
      - sh
      - -c
      - >-
        trap 'exit 0' TERM;
        i=$$(ls /files | wc -l);
        while true; do i=$$((i+1)); echo $$i > /files/$$i; sleep 0.05; done
    volumes:
      - files:/files
    stop_grace_period: 1s
  indexer:
    image: ${BUSYBOX_IMAGE}
    command:
      - sh
      - -c
      - >-
        trap 'exit 0' TERM;
        touch /index/ids; n=$$(tail -n 1 /index/ids); n=$${n:-0};
        while true; do
        while [ -e /files/$$((n+1)) ]; do n=$$((n+1)); echo $$n >> /index/ids; done;
        sleep 0.1; done
    volumes:
      - files:/files:ro
      - index:/index
    stop_grace_period: 1s
volumes:
  files:
    driver: ${DVOL_DRIVER}
  index:
    driver: ${DVOL_DRIVER}
"#;

fn compose(s: &Scope, file: &Path, project: &str, args: &[&str]) {
    compose::compose_file(s, file, project, args);
}

/// Ids in the index whose file is missing, and files not in the index.
fn mismatch(files: &Path, index: &Path) -> (Vec<u64>, usize) {
    let ids: Vec<u64> = read(&index.join("ids"))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let present: std::collections::HashSet<u64> = std::fs::read_dir(files)
        .expect("files dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let missing = ids
        .iter()
        .copied()
        .filter(|i| !present.contains(i))
        .collect();
    let indexed: std::collections::HashSet<u64> = ids.into_iter().collect();
    let unindexed = present.iter().filter(|f| !indexed.contains(f)).count();
    (missing, unindexed)
}

#[test]
fn group_commits_under_load_restore_consistently_and_single_commits_do_not() {
    if !(crate::support::require_docker()
        && crate::support::require_binary("docker-compose", "apt-get install docker-compose"))
    {
        return;
    }
    let s = Scope::new("groups");
    let project = format!("{}g", s.tag);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, APP).expect("compose file");
    s.projects
        .borrow_mut()
        .push((project.clone(), file.clone()));
    let files = s.track_volume(&format!("{project}_files"));
    let index = s.track_volume(&format!("{project}_index"));
    compose(&s, &file, &project, &["up", "-d"]);
    wait_for(Duration::from_secs(30), "the app indexing files", || {
        read(&s.live(&index).join("ids")).lines().count() >= 20
    });

    let group = format!("{project}app");
    let created = s.dvol_ok(&["group", "create", &group, "--compose-project", &project]);
    assert!(
        created.contains(&files) && created.contains(&index),
        "{created}"
    );
    let shown = s.dvol_ok(&["group", "show", &group]);
    assert!(
        shown.contains(&format!("member files (volume {files})")),
        "{shown}"
    );

    // Group commits under load (containers paused together), then the members one after
    // the other (each volume's containers paused on their own, at a different instant).
    for i in 0..3 {
        s.dvol_ok(&["group", "commit", &group, "-m", &format!("group {i}")]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut singles = Vec::new();
    for i in 0..3 {
        let f = s.dvol_ok(&[
            "commit",
            "--pause",
            "--volume",
            &files,
            "-m",
            &format!("alone {i}"),
        ]);
        // A different instant for the second member: the uploader and the indexer run on
        // (about 20 files and 10 index passes a second), so the index commit holds ids the
        // files commit does not, however fast the two commits are.
        std::thread::sleep(Duration::from_secs(1));
        let x = s.dvol_ok(&[
            "commit",
            "--pause",
            "--volume",
            &index,
            "-m",
            &format!("alone {i}"),
        ]);
        singles.push((f.trim().to_string(), x.trim().to_string()));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Committing a member alone did not move the group.
    let log: serde_json::Value =
        serde_json::from_str(&s.dvol_ok(&["group", "log", &group, "--json"])).expect("json");
    let entries = log.as_array().expect("log entries");
    assert_eq!(entries.len(), 3, "{log}");

    // Restore with the app stopped, so the checks read exactly what was committed.
    compose(&s, &file, &project, &["stop", "-t", "1"]);
    for e in entries {
        let id = e["id"].as_str().expect("id");
        s.dvol_ok(&["group", "reset", &group, "--hard", id]);
        let (missing, unindexed) = mismatch(&s.live(&files), &s.live(&index));
        assert!(
            missing.is_empty(),
            "group commit {id}: indexed ids without their file: {missing:?}"
        );
        // The uploader writes 20 files a second; the indexer looks every 0.1 s.
        assert!(
            unindexed <= 20,
            "group commit {id}: {unindexed} files not indexed"
        );
    }
    let mut inconsistent = 0;
    for (f, x) in &singles {
        s.dvol_ok(&["reset", "--hard", f, "--volume", &files]);
        s.dvol_ok(&["reset", "--hard", x, "--volume", &index]);
        let (missing, _) = mismatch(&s.live(&files), &s.live(&index));
        inconsistent += usize::from(!missing.is_empty());
    }
    assert!(
        inconsistent > 0,
        "committing the members one after the other never showed a mismatch: the check cannot fail"
    );

    // The plugin makes a copy of the app from one group commit, one volume per member.
    let first = entries.last().expect("first group commit")["id"]
        .as_str()
        .expect("id");
    let copy = |member: &str| {
        let v = s.volume(&format!("copy{member}"));
        docker_ok(&[
            "volume",
            "create",
            "-d",
            s.driver(),
            "-o",
            &format!("from={group}@{}", &first[..12]),
            "-o",
            &format!("member={member}"),
            &v,
        ]);
        v
    };
    let (copy_files, copy_index) = (copy("files"), copy("index"));
    let (missing, unindexed) = mismatch(&s.live(&copy_files), &s.live(&copy_index));
    assert!(
        missing.is_empty() && unindexed <= 20,
        "{missing:?} {unindexed}"
    );
    let ids = read(&s.live(&copy_index).join("ids")).lines().count();
    assert!(ids >= 20, "the copy holds {ids} ids");
    let out = docker(&[
        "volume",
        "create",
        "-d",
        s.driver(),
        "-o",
        &format!("from={group}"),
        "-o",
        "member=nope",
        &s.volume("copynope"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no member nope"),
        "{err}"
    );
    s.dvol_ok(&["group", "rm", &group]);
}

pub const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

pub fn status(c: &str) -> String {
    inspect(c, "{{.State.Status}}")
}

/// A dvol root of one test's own, its volumes bind-mounted into containers: no other test's
/// command runs on it, so none lets go (recovers) what this test's killed commands held.
pub struct Private {
    root: tempfile::TempDir,
}

impl Private {
    pub fn new() -> Private {
        Private {
            root: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn dvol(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dvol"));
        c.env("DVOL_ROOT", self.root.path()).env_remove("DVOL_LOG");
        c
    }

    pub fn dvol_ok(&self, args: &[&str]) -> String {
        let out = self.dvol().args(args).output().expect("run dvol");
        assert!(
            out.status.success(),
            "dvol {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    pub fn live(&self, volume: &str) -> PathBuf {
        PathBuf::from(self.dvol_ok(&["path", volume]).trim())
    }

    /// Volume `volume` here and a busybox container `name` (of scope `s`, which removes it)
    /// running `script` with its live data bind-mounted at /data.
    pub fn run_busybox(&self, s: &Scope, name: &str, volume: &str, script: &str) -> String {
        self.dvol_ok(&["init", volume]);
        let c = s.container(name);
        let bind = format!("{}:/data", self.live(volume).display());
        docker_ok(&[
            "run", "-d", "--name", &c, "-v", &bind, BUSYBOX, "sh", "-c", script,
        ]);
        c
    }
}

/// Run dvol killed (SIGKILL) at failpoint `point` (after `skip` earlier hits).
pub fn killed(s: &Private, point: &str, skip: &str, args: &[&str]) {
    let out = s
        .dvol()
        .env("DVOL_FAILPOINT", point)
        .env("DVOL_FAILPOINT_SKIP", skip)
        .args(args)
        .output()
        .expect("run dvol");
    assert!(!out.status.success(), "{args:?} was not killed at {point}");
}

/// Start `dvol plugin serve` on the scope's root and stop it once it listens: it lets go the
/// containers of killed commands before it listens, so once the socket is there the work is
/// done.
fn start_and_stop_plugin(s: &Private) {
    drop(s.serve(&[]));
}

/// A `dvol plugin serve` a test started on its private root (on a socket Docker does not
/// know), stopped by its pid when dropped.
pub struct Served {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Private {
    /// Start `dvol plugin serve` on this root with `env` (and `DVOL_LOG=warn`), once it listens.
    pub fn serve(&self, env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("p.sock");
        let log = dir.path().join("plugin.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = self
            .dvol()
            .args(["plugin", "serve", "--socket"])
            .arg(&socket)
            .env("DVOL_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("plugin");
        wait_for(Duration::from_secs(30), "the plugin socket", || {
            socket.exists()
        });
        Served {
            child,
            _dir: dir,
            log,
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Stop the plugin this test started (by its pid).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dvol killed while it holds an app's containers (paused for a group commit or a single
/// `commit --pause`, stopped for a group reset) leaves a durable record; the next dvol
/// command lets them go (a reset's only after it is rolled forward), and so does a plugin
/// that starts (itself, not through the CLI). The first kill shows the containers really
/// were left paused.
#[test]
fn containers_held_by_a_killed_dvol_are_let_go_by_the_next_command() {
    if !crate::support::require_docker() {
        return;
    }
    let scope = Scope::new("held");
    let s = Private::new();
    let (a, b) = ("a".to_string(), "b".to_string());
    let ca = s.run_busybox(&scope, "a", &a, IDLE);
    let cb = s.run_busybox(&scope, "b", &b, IDLE);
    wait_for(Duration::from_secs(20), "both running", || {
        status(&ca) == "running" && status(&cb) == "running"
    });
    let group = format!("{}g", scope.tag);
    s.dvol_ok(&["group", "create", &group, &a, &b]);
    std::fs::write(s.live(&a).join("n"), "1").expect("write");
    s.dvol_ok(&["group", "commit", &group, "-m", "one"]);

    // Group commit killed with both containers paused.
    killed(
        &s,
        "guard.after-hold",
        "0",
        &["group", "commit", &group, "-m", "x"],
    );
    assert_eq!(
        (status(&ca), status(&cb)),
        ("paused".into(), "paused".into())
    );
    let out = s
        .dvol()
        .args(["group", "log", &group])
        .output()
        .expect("dvol");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Let go containers"), "{err}");
    assert_eq!(
        (status(&ca), status(&cb)),
        ("running".into(), "running".into())
    );

    // A single commit --pause killed: the next command on the member lets it go.
    killed(
        &s,
        "guard.after-hold",
        "0",
        &["commit", "--pause", "--volume", &a, "-m", "x"],
    );
    assert_eq!(status(&ca), "paused");
    s.dvol_ok(&["status", "--volume", &a]);
    assert_eq!(status(&ca), "running");

    // Killed again; this time a plugin starting on the root lets it go.
    killed(
        &s,
        "guard.after-hold",
        "0",
        &["commit", "--pause", "--volume", &a, "-m", "x"],
    );
    assert_eq!(status(&ca), "paused");
    start_and_stop_plugin(&s);
    assert_eq!(status(&ca), "running");

    // A group reset killed between members, containers stopped: the next group command
    // rolls the reset forward and then starts them (not before: they never see a mix).
    std::fs::write(s.live(&a).join("n"), "2").expect("write");
    s.dvol_ok(&["group", "commit", &group, "-m", "two"]);
    killed(
        &s,
        "group-reset.after-member",
        "0",
        &["group", "reset", &group, "--hard", "HEAD^"],
    );
    assert_eq!(
        (status(&ca), status(&cb)),
        ("exited".into(), "exited".into())
    );
    // Neither a plugin starting nor a command holding the containers of a member (and
    // finishing nothing) lets them go while the reset is pending: b is not reset yet.
    start_and_stop_plugin(&s);
    s.dvol_ok(&["commit", "--volume", &a, "-m", "meanwhile"]);
    assert_eq!(
        (status(&ca), status(&cb)),
        ("exited".into(), "exited".into())
    );
    s.dvol_ok(&["group", "show", &group]);
    assert_eq!(
        (status(&ca), status(&cb)),
        ("running".into(), "running".into())
    );
    assert_eq!(read(&s.live(&a).join("n")), "1");
    s.dvol_ok(&["group", "rm", &group]);
}
