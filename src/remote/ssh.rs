//! The ssh carrier: runs `dvol serve --stdio PATH` on the other host through the system `ssh`
//! client (so `~/.ssh/config`, agents and known hosts work as for git) and speaks the framed
//! protocol of [`super::proto`] over its stdin/stdout. `DVOL_SSH_COMMAND` replaces `ssh` (a
//! shell command line, like `GIT_SSH_COMMAND`); `DVOL_REMOTE_DVOL` names the remote binary.

use super::proto::{self, Call, Request, Response, RpcBackend, PROTO_VERSION};
use super::scope::Grant;
use super::server::{Outcome, Server};
use super::RemoteError;
use crate::{Error, Result};
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running `ssh … dvol serve --stdio` child.
pub struct SshConn {
    desc: String,
    io: Mutex<Option<(BufWriter<ChildStdin>, BufReader<ChildStdout>)>>,
    child: Mutex<Child>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// Quote a word for the remote POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Start ssh and check that a dvol server answers.
pub fn connect(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    path: &str,
    opts: &super::ConnectOptions,
) -> Result<RpcBackend<SshConn>> {
    let ssh = opts.ssh_command.as_deref().unwrap_or("ssh");
    let remote_dvol = opts.remote_dvol.as_deref().unwrap_or("dvol");
    let target = match user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("{ssh} \"$@\"")).arg("dvol-ssh");
    if let Some(p) = port {
        cmd.arg("-p").arg(p.to_string());
    }
    cmd.arg("--")
        .arg(&target)
        .arg(format!(
            "{} serve --stdio {}",
            shell_quote(remote_dvol),
            shell_quote(path)
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let desc = format!(
        "ssh://{target}{}{path}",
        port.map(|p| format!(":{p}")).unwrap_or_default()
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| RemoteError::setup(format!("cannot run {ssh}"), e))?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut s = sink.lock().expect("stderr lock");
            if s.len() < 64 << 10 {
                s.extend_from_slice(&buf[..n]);
            }
        }
    });
    let conn = SshConn {
        desc,
        io: Mutex::new(Some((BufWriter::new(stdin), BufReader::new(stdout)))),
        child: Mutex::new(child),
        stderr,
    };
    let hello = conn.call(Request::Hello {
        version: PROTO_VERSION,
    })?;
    proto::check_hello(&conn.desc, hello)?;
    Ok(RpcBackend(conn))
}

impl SshConn {
    fn broken(&self, what: &str, e: std::io::Error) -> Error {
        // Give ssh a moment to print why it failed.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let stderr = String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock"))
            .trim()
            .to_string();
        let detail = if stderr.is_empty() {
            String::new()
        } else {
            format!("; ssh said: {stderr}")
        };
        RemoteError::ConnectionLost {
            remote: self.desc.clone(),
            what: what.to_string(),
            detail: format!("{e}{detail}"),
        }
        .into()
    }
}

impl Call for SshConn {
    fn call(&self, req: Request) -> Result<Response> {
        let msg = proto::encode(&req);
        drop(req);
        let mut guard = self.io.lock().expect("ssh io lock");
        let io = guard.as_mut().expect("connection open");
        proto::write_frame(&mut io.0, &msg).map_err(|e| self.broken("sending", e))?;
        drop(msg);
        match proto::read_frame(&mut io.1) {
            Ok(Some(frame)) => proto::decode(&frame),
            Ok(None) => Err(self.broken(
                "receiving",
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"),
            )),
            Err(e) => Err(self.broken("receiving", e)),
        }
    }

    fn describe(&self) -> String {
        self.desc.clone()
    }
}

impl Drop for SshConn {
    fn drop(&mut self) {
        // Closing stdin ends the server loop and ssh; reap it, killing it if it lingers.
        if let Ok(mut io) = self.io.lock() {
            io.take();
        }
        if let Ok(mut child) = self.child.lock() {
            for _ in 0..200 {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `dvol serve --stdio PATH`: answer framed requests on stdin/stdout against the directory,
/// each within `grant` (admin on every volume unless `--scope`/`--volumes` narrow it, e.g. in
/// an `authorized_keys` forced command).
pub fn serve_stdio(path: &Path, grant: &Grant) -> Result<()> {
    let server = Server::new(path);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut input = BufReader::new(stdin.lock());
    let mut output = BufWriter::new(stdout.lock());
    loop {
        let frame = match proto::read_frame(&mut input) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(RemoteError::Stdio {
                    what: "reading request",
                    source,
                }
                .into())
            }
        };
        let resp = match proto::decode::<Request>(&frame) {
            Ok(req) => match server.handle(grant, req) {
                Outcome::Answer(r) => r,
                Outcome::Refused(m) => Response::Error(m),
            },
            Err(e) => Response::Error(e.to_string()),
        };
        drop(frame);
        proto::write_frame(&mut output, &proto::encode(&resp)).map_err(|source| {
            RemoteError::Stdio {
                what: "writing response",
                source,
            }
        })?;
    }
}
