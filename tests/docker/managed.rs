//! The managed plugin built by plugin/build.sh, for real: containers use it, and the host
//! CLI sees (and is container-aware on) the same data.

use super::*;

struct Managed {
    name: String,
    /// The host root build.sh made a shared mount of itself.
    host_root: PathBuf,
}

impl Drop for Managed {
    fn drop(&mut self) {
        let id = docker(&["plugin", "inspect", "-f", "{{.Id}}", &self.name]);
        let _ = docker(&["plugin", "disable", "-f", &self.name]);
        let _ = docker(&["plugin", "rm", "-f", &self.name]);
        let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
        if !id.is_empty() {
            let prop = format!("/var/lib/docker/plugins/{id}/propagated-mount");
            let _ = std::process::Command::new("umount").arg(&prop).status();
        }
        let _ = dvol::unmount_under(&self.host_root);
    }
}

#[test]
fn managed_plugin_serves_host_root() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("managed");
    let host_root = tempfile::Builder::new()
        .prefix("dvol-managed-")
        .tempdir()
        .unwrap();
    let name = format!("dvoltestmanaged-{}:latest", std::process::id());
    let build =
        std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin/build.sh"))
            .arg(&name)
            .env("DVOL_BIN", env!("CARGO_BIN_EXE_dvol"))
            .env("DVOL_HOST_ROOT", host_root.path())
            .output()
            .unwrap();
    let _guard = Managed {
        name: name.clone(),
        host_root: host_root.path().to_path_buf(),
    };
    assert!(
        build.status.success(),
        "plugin/build.sh failed: {}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let v = s.volume("mv");
    let c = s.container("mc");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "--volume-driver",
        &name,
        "-v",
        &format!("{v}:/data"),
        BUSYBOX,
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo hi > /data/f; while true; do sleep 0.1; done",
    ]);
    let host = |args: &[&str]| -> String {
        let out = s
            .dvol()
            .env("DVOL_ROOT", host_root.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dvol {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let master = host_root.path().join(&v).join("branches/master");
    wait_for(Duration::from_secs(20), "container writes", || {
        read(&master.join("f")) == "hi\n"
    });
    let list = host(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.contains(&v) && l.contains(&format!("/{c}"))),
        "{list}"
    );
    host(&["commit", "--volume", &v, "-m", "managed"]);
    host(&["checkout", "--volume", &v, "-b", "b2"]);
    docker_ok(&["exec", &c, "sh", "-c", "echo b2 > /data/f"]);
    assert_eq!(
        read(&host_root.path().join(&v).join("branches/b2/f")),
        "b2\n"
    );
    assert_eq!(read(&master.join("f")), "hi\n");
    docker_ok(&["rm", "-f", &c]);
    docker_ok(&["volume", "rm", &v]);
}
