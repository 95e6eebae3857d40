//! Socket activation (the packaged `dvol-plugin.socket`): `dvol plugin serve` started with a
//! listening socket passed as descriptor 3 (`LISTEN_FDS=1`, `LISTEN_PID` = its pid) serves on
//! it instead of binding `--socket`, leaves the socket in place when it stops, and a call made
//! while no plugin runs waits in the socket's queue and is answered by the next plugin.
//! No Docker, no systemd, no root needed: the test plays systemd's part.

use super::plugin_input::call;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Start `dvol plugin serve --socket SOCKET` with `listener` as descriptor 3 and the
/// sd_listen_fds variables, as systemd does (`sh` sets LISTEN_PID to its own pid, which
/// `exec` hands on to dvol).
fn activated(root: &Path, socket: &Path, listener: &UnixListener) -> Child {
    let fd: RawFd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("export LISTEN_PID=$$; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_dvol"))
        .arg("-p")
        .arg(root)
        .args(["plugin", "serve", "--socket"])
        .arg(socket)
        .env("LISTEN_FDS", "1")
        .env("DVOL_LOG", "warn")
        .stdout(Stdio::null());
    // SAFETY: between fork and exec the hook only calls dup2 and fcntl, which are
    // async-signal-safe; `fd` stays open in the parent for the whole call.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto 3 clears close-on-exec on the copy; when the listener already is
            // descriptor 3, dup2 does nothing and the flag is cleared by hand.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, 3) == 3
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.spawn().expect("spawn dvol plugin serve")
}

fn stop(mut child: Child) {
    // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().expect("wait for the plugin");
    assert!(status.success(), "plugin exited with {status}");
}

#[test]
fn plugin_serves_a_passed_socket_and_calls_wait_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let socket = dir.path().join("dvol.sock");
    let listener = UnixListener::bind(&socket).unwrap();

    // The socket path exists and accepts connections (the test holds it, as systemd does):
    // a plugin that ignored the passed descriptor and bound --socket itself would refuse
    // to start ("is in use").
    let plugin = activated(&root, &socket, &listener);
    let r = call(&socket, "POST", "Plugin.Activate", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json["Implements"][0], "VolumeDriver", "{:?}", r.json);
    let r = call(&socket, "POST", "VolumeDriver.Create", br#"{"Name":"act"}"#);
    assert_eq!(r.json["Err"], "", "{:?}", r.json);
    stop(plugin);
    assert!(
        socket.exists(),
        "the plugin removed a socket it does not own"
    );

    // No plugin runs: a call is accepted by the kernel and waits in the queue...
    let mut pending = UnixStream::connect(&socket).expect("connect while the plugin is down");
    let body = br#"{"Name":"act"}"#;
    write!(
        pending,
        "POST /VolumeDriver.Get HTTP/1.1\r\nHost: plugin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    pending.write_all(body).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // ...and the next plugin answers it.
    let start = Instant::now();
    let plugin = activated(&root, &socket, &listener);
    pending
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reply = String::new();
    pending
        .read_to_string(&mut reply)
        .expect("reply to the queued call");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""Name":"act""#), "{reply}");
    eprintln!(
        "queued call answered {} ms after the plugin restarted",
        start.elapsed().as_millis()
    );
    stop(plugin);
}

#[test]
fn plugin_started_without_a_passed_socket_binds_and_removes_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("own.sock");
    // LISTEN_PID names another process: the variables are not for this plugin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvol"))
        .arg("-p")
        .arg(dir.path().join("root"))
        .args(["plugin", "serve", "--socket"])
        .arg(&socket)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("DVOL_LOG", "warn")
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "plugin did not bind"
        );
        assert!(child.try_wait().unwrap().is_none(), "plugin exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(call(&socket, "POST", "Plugin.Activate", b"").status, 200);
    stop(child);
    assert!(!socket.exists(), "the plugin left its own socket behind");
}
