//! ssh:// through a real sshd (Debian openssh-server) on a loopback port.

use super::{free_port, need_binary, round_trip, wait_port, Daemon, Vars};
use std::process::{Command, Stdio};

#[test]
fn remote_ssh_round_trip() {
    if !(crate::support::require_binary("sshd", "apt-get install openssh-server")
        && crate::support::require_binary("ssh-keygen", "apt-get install openssh-client"))
    {
        return;
    }
    let sshd = need_binary("sshd", "apt-get install openssh-server");
    let keygen = need_binary("ssh-keygen", "apt-get install openssh-client");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, kind) in [
        ("host_key", "ed25519"),
        ("user_key", "ed25519"),
        ("ro_key", "ed25519"),
    ] {
        let st = Command::new(&keygen)
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(d.join(name))
            .status()
            .unwrap();
        assert!(st.success());
    }
    // A second key is limited by a forced command to read-only access to volumes d*.
    let store = d.join("remote store");
    let forced = format!(
        "command=\"{} serve --stdio --scope read-only --volumes 'd*' '{}'\",restrict {}",
        env!("CARGO_BIN_EXE_dvol"),
        store.display(),
        std::fs::read_to_string(d.join("ro_key.pub")).unwrap()
    );
    let keys = std::fs::read_to_string(d.join("user_key.pub")).unwrap() + &forced;
    std::fs::write(d.join("authorized_keys"), keys).unwrap();
    let port = free_port();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
         StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         UsePAM no\nPermitRootLogin prohibit-password\nPidFile {pid}\nAllowUsers {user}\n",
        hk = d.join("host_key").display(),
        ak = d.join("authorized_keys").display(),
        pid = d.join("sshd.pid").display(),
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    if unsafe_is_root() {
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    let mut child = Command::new(&sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    wait_port(port, &mut child, "sshd");
    let _daemon = Daemon(child);
    let ssh_cmd = format!(
        "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
        d.join("user_key").display()
    );
    let vars: Vars = vec![
        ("DVOL_SSH_COMMAND".into(), ssh_cmd.clone()),
        ("DVOL_REMOTE_DVOL".into(), env!("CARGO_BIN_EXE_dvol").into()),
    ];
    round_trip(
        &format!("ssh://{user}@127.0.0.1:{port}{}", store.display()).replace(' ', "%20"),
        &vars,
    );
    assert!(store.join("dvol-remote.json").is_file());
    // The same through an encrypted remote (docs/format.md, "Encrypted remotes").
    let sealed = d.join("sealed store");
    super::encryption::encrypted_round_trip(
        &format!("ssh://{user}@127.0.0.1:{port}{}", sealed.display()).replace(' ', "%20"),
        &vars,
    );

    // A group of volumes over ssh.
    let grouped = d.join("group store");
    super::group_round_trip(
        &format!("ssh://{user}@127.0.0.1:{port}{}", grouped.display()).replace(' ', "%20"),
        &vars,
    );

    // The port may also come from DVOL_SSH_COMMAND, as with GIT_SSH_COMMAND.
    let vars: Vars = vec![
        ("DVOL_SSH_COMMAND".into(), format!("{ssh_cmd} -p {port}")),
        ("DVOL_REMOTE_DVOL".into(), env!("CARGO_BIN_EXE_dvol").into()),
    ];
    let host = super::Host::new(&vars);
    let url = format!("ssh://127.0.0.1{}", store.display()).replace(' ', "%20");
    host.ok(&["clone", &url, "db"]);

    // The read-only key clones and fetches, and is refused on every write.
    let ro_vars: Vars = vec![(
        "DVOL_SSH_COMMAND".into(),
        format!("{} -p {port}", ssh_cmd.replace("user_key", "ro_key")),
    )];
    let ro = super::Host::new(&ro_vars);
    ro.ok(&["clone", &url, "db"]);
    ro.ok(&["fetch"]);
    crate::support::write(&ro.live().join("ro.txt"), "ro\n");
    ro.commit("ro");
    let err = ro.fails(&["push"]);
    assert!(
        err.contains("ssh access is read-only: refused to write"),
        "{err}"
    );

    // A wrong key: the error says what ssh said.
    let vars: Vars = vec![(
        "DVOL_SSH_COMMAND".into(),
        format!("ssh -i {} -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes", d.join("host_key").display()),
    )];
    let host = super::Host::new(&vars);
    let err = host.fails(&["clone", &url, "db"]);
    assert!(
        err.contains("ssh said") && err.contains("ermission denied"),
        "{err}"
    );
}

fn unsafe_is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::metadata("/root")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
            && Command::new("id")
                .arg("-u")
                .output()
                .map(|o| o.stdout == b"0\n")
                .unwrap_or(false)
}
