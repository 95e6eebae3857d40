//! The plugin protocol, raw and through the Docker CLI.

use super::*;

#[test]
fn protocol_replies_as_docker_expects() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("proto");
    let sock = &plugin().socket;
    let (ctype, act) = plugin_call(sock, "Plugin.Activate", "");
    assert_eq!(ctype, "application/vnd.docker.plugins.v1.2+json");
    assert_eq!(act, serde_json::json!({"Implements": ["VolumeDriver"]}));
    let (_, caps) = plugin_call(sock, "VolumeDriver.Capabilities", "{}");
    assert_eq!(
        caps,
        serde_json::json!({"Capabilities": {"Scope": "local"}})
    );

    let (_, bad) = plugin_call(
        sock,
        "VolumeDriver.Create",
        r#"{"Name":"../etc","Opts":{}}"#,
    );
    assert!(
        bad["Err"]
            .as_str()
            .unwrap()
            .contains("invalid volume name \"../etc\""),
        "{bad}"
    );
    let (_, missing) = plugin_call(sock, "VolumeDriver.Get", r#"{"Name":"nope-never"}"#);
    assert!(
        missing["Err"].as_str().unwrap().contains("nope-never"),
        "{missing}"
    );
    let (_, badopt) = plugin_call(
        sock,
        "VolumeDriver.Create",
        &format!(r#"{{"Name":"{}x","Opts":{{"size":"1G"}}}}"#, s.tag),
    );
    assert!(
        badopt["Err"].as_str().unwrap().contains("unknown option"),
        "{badopt}"
    );

    // A volume made by `dvol init` is listed and can be mounted; Mount tracks ids.
    let v = s.volume("inited");
    s.dvol_ok(&["init", &v]);
    let (_, list) = plugin_call(sock, "VolumeDriver.List", "");
    let vols = list["Volumes"].as_array().unwrap();
    let live = s.live(&v);
    assert!(
        vols.iter()
            .any(|x| x["Name"] == v.as_str() && x["Mountpoint"] == live.to_str().unwrap()),
        "{list}"
    );
    let (_, m) = plugin_call(
        sock,
        "VolumeDriver.Mount",
        &format!(r#"{{"Name":"{v}","ID":"abc"}}"#),
    );
    assert_eq!(m["Err"], "");
    assert_eq!(m["Mountpoint"], live.to_str().unwrap());
    let (_, g) = plugin_call(sock, "VolumeDriver.Get", &format!(r#"{{"Name":"{v}"}}"#));
    assert_eq!(g["Volume"]["Name"], v.as_str());
    assert_eq!(g["Volume"]["Mountpoint"], live.to_str().unwrap());
    let (_, u) = plugin_call(
        sock,
        "VolumeDriver.Unmount",
        &format!(r#"{{"Name":"{v}","ID":"abc"}}"#),
    );
    assert_eq!(u["Err"], "");
    let (_, p) = plugin_call(sock, "VolumeDriver.Path", &format!(r#"{{"Name":"{v}"}}"#));
    assert_eq!(p["Mountpoint"], live.to_str().unwrap());
}

#[test]
fn socket_is_not_world_writable() {
    if !crate::support::require_docker() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let _s = Scope::new("perm");
    let mode = std::fs::metadata(&plugin().socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o007, 0, "socket mode {mode:o}");
    // Nobody else can replace the socket either: its directory is not writable by others.
    let dir = plugin().socket.parent().unwrap();
    let dmode = std::fs::metadata(dir).unwrap().permissions().mode();
    assert_eq!(dmode & 0o022, 0, "{dir:?} mode {dmode:o}");
}

#[test]
fn docker_run_creates_and_mounts_a_dvol_volume() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("run");
    // Names Docker and Compose generate: underscores, dashes, digits first.
    let v = format!("{}_1st-vol_2", s.tag);
    s.volume("1st-vol_2");
    let c = s.container("writer");
    docker_ok(&[
        "run",
        "--name",
        &c,
        "--volume-driver",
        s.driver(),
        "-v",
        &format!("{v}:/data"),
        BUSYBOX,
        "sh",
        "-c",
        "echo hello > /data/greeting",
    ]);
    let live = s.live(&v);
    assert!(live.ends_with(format!("{v}/branches/master")), "{live:?}");
    assert_eq!(read(&live.join("greeting")), "hello\n");
    let list = s.dvol_ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().take(2).eq([v.as_str(), "master"])
                || l.split_whitespace()
                    .skip(1)
                    .take(2)
                    .eq([v.as_str(), "master"])),
        "{list}"
    );

    // docker volume create / inspect / ls / rm.
    let made = s.volume("made");
    docker_ok(&["volume", "create", "-d", s.driver(), &made]);
    assert!(s.dvol_ok(&["list"]).contains(&made));
    let mp = docker_ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}} {{.Driver}}",
        &made,
    ]);
    assert_eq!(
        mp.trim(),
        format!("{} {}", s.live(&made).display(), s.driver())
    );
    let inited = s.volume("inited");
    s.dvol_ok(&["init", &inited]);
    let ls = docker_ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    for name in [&v, &made, &inited] {
        assert!(
            ls.lines().any(|l| l == format!("{} {name}", s.driver())),
            "{name} not in docker volume ls:\n{ls}"
        );
    }

    // docker volume rm keeps dvol data and history (only dvol rm deletes).
    s.dvol_ok(&["commit", "--volume", &v, "-m", "first"]);
    docker_ok(&["rm", &c]);
    docker_ok(&["volume", "rm", &v]);
    assert_eq!(read(&s.live(&v).join("greeting")), "hello\n");
    let log = s.dvol_ok(&["log", "--volume", &v, "--oneline"]);
    assert!(log.contains("first"), "{log}");
    // ... and docker can use it again.
    let again = docker_ok(&[
        "run",
        "--rm",
        "--volume-driver",
        s.driver(),
        "-v",
        &format!("{v}:/data"),
        BUSYBOX,
        "cat",
        "/data/greeting",
    ]);
    assert_eq!(again, "hello\n");
}

#[test]
fn volume_create_from_another_volume_shares_storage() {
    if !crate::support::require_docker() {
        return;
    }
    let s = Scope::new("from");
    let prod = s.volume("prod");
    s.dvol_ok(&["init", &prod]);
    let live = s.live(&prod);
    std::fs::write(live.join("data"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(live.join("version"), "one").unwrap();
    let c1 = s.dvol_ok(&["commit", "--volume", &prod, "-m", "one"]);
    let c1 = c1.split_whitespace().last().unwrap().to_string();
    std::fs::write(live.join("version"), "two").unwrap();
    s.dvol_ok(&["commit", "--volume", &prod, "-m", "two"]);
    std::fs::write(live.join("version"), "uncommitted").unwrap();

    let qa = s.volume("qa");
    docker_ok(&[
        "volume",
        "create",
        "-d",
        s.driver(),
        "-o",
        &format!("from={prod}"),
        &qa,
    ]);
    assert_eq!(read(&s.live(&qa).join("version")), "two");
    assert_eq!(
        std::fs::metadata(s.live(&qa).join("data")).unwrap().len(),
        3 << 20
    );
    let old = s.volume("old");
    docker_ok(&[
        "volume",
        "create",
        "-d",
        s.driver(),
        "-o",
        &format!("from={prod}@{}", &c1[..12]),
        &old,
    ]);
    assert_eq!(read(&s.live(&old).join("version")), "one");
    let log = s.dvol_ok(&["log", "--volume", &old, "--oneline"]);
    assert!(log.starts_with(&c1[..12]), "{log}");
    // The new volumes start at prod's own commits (no new commit or tree: nothing stored
    // again). Other tests write to the same root meanwhile, so its pack size proves nothing.
    let head = |v: &str| {
        let log = s.dvol_ok(&["log", "--volume", v, "--oneline"]);
        log.split_whitespace().next().unwrap_or("").to_string()
    };
    assert_eq!(
        head(&qa),
        head(&prod),
        "creating from a volume made a new commit"
    );

    let bad = docker(&[
        "volume",
        "create",
        "-d",
        s.driver(),
        "-o",
        "from=no-such-volume",
        &s.volume("bad"),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-volume does not exist"));
}
