//! examples/compose/docker-compose.yml with Debian's docker-compose.

use super::*;

fn compose(s: &Scope, project: &str, args: &[&str]) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose/docker-compose.yml");
    compose_file(s, &file, project, args)
}

/// `docker-compose -p PROJECT -f FILE ARGS…` with the test driver and image; stdout.
pub fn compose_file(s: &Scope, file: &Path, project: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("docker-compose")
        .arg("-p")
        .arg(project)
        .arg("-f")
        .arg(file)
        .args(args)
        .env("DVOL_DRIVER", s.driver())
        .env("BUSYBOX_IMAGE", BUSYBOX)
        .output()
        .expect("docker-compose (apt-get install docker-compose)");
    assert!(
        out.status.success(),
        "docker-compose {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn compose_example_runs_on_dvol_volumes() {
    if !(crate::support::require_docker()
        && crate::support::require_binary("docker-compose", "apt-get install docker-compose"))
    {
        return;
    }
    let s = Scope::new("compose");
    let project = format!("{}c", s.tag);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose/docker-compose.yml");
    s.projects.borrow_mut().push((project.clone(), file));
    let volume = s.track_volume(&format!("{project}_appdata"));

    compose(&s, &project, &["up", "-d"]);
    let container = format!("{project}_app_1");
    wait_for(Duration::from_secs(30), "compose service start", || {
        read(&s.live(&volume).join("starts")).lines().count() == 1
    });
    let list = s.dvol_ok(&["list"]);
    let row = list
        .lines()
        .find(|l| l.contains(&volume))
        .expect("volume row");
    assert!(row.contains(&format!("/{container}")), "{list}");

    s.dvol_ok(&["commit", "--volume", &volume, "-m", "compose checkpoint"]);
    assert!(s.live(&volume).join("last-shutdown").exists());
    wait_for(Duration::from_secs(30), "restart", || {
        read(&s.live(&volume).join("starts")).lines().count() == 2
    });

    // `down -v` removes the volume from Docker, never from dvol.
    compose(&s, &project, &["down", "-v", "-t", "5"]);
    let log = s.dvol_ok(&["log", "--volume", &volume, "--oneline"]);
    assert!(log.contains("compose checkpoint"), "{log}");
    assert!(s.live(&volume).join("starts").exists());
}
