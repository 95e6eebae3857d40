//! Reading a volume's mountpoint back from the Docker engine (`GET /volumes/NAME`) without
//! bollard's typed `Volume`: its `Status` only accepts maps of empty objects, so it would
//! reject the status dvol's own plugin reports (branch, head, message, commits). One HTTP/1.0
//! request over the engine's unix socket (the default, or `DOCKER_HOST=unix://…`); other
//! hosts (tcp, ssh) are left to bollard. Must not be used for anything but this lookup.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Largest answer read (a volume's JSON is a few hundred bytes).
const MAX_ANSWER: u64 = 1 << 20;

/// The engine's unix socket, or `None` when `DOCKER_HOST` names another kind of host.
fn socket() -> Option<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Err(_) => Some(PathBuf::from("/var/run/docker.sock")),
        Ok(h) if h.is_empty() => Some(PathBuf::from("/var/run/docker.sock")),
        Ok(h) => h.strip_prefix("unix://").map(PathBuf::from),
    }
}

/// The `Mountpoint` Docker reports for volume `name`; `None` when the engine is not on a unix
/// socket (use bollard then).
pub(crate) fn mountpoint(name: &str) -> Option<Result<String, String>> {
    let path = socket()?;
    Some(request(&path, name))
}

fn request(path: &std::path::Path, name: &str) -> Result<String, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    let escaped: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    write!(s, "GET /volumes/{escaped} HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(err)?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut answer).map_err(err)?;
    parse(&answer)
}

/// The `Mountpoint` of a raw HTTP answer with a 200 status and a JSON body.
fn parse(answer: &[u8]) -> Result<String, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers in the engine's answer")?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("engine answered {status:?}"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&answer[split + 4..]).map_err(|e| e.to_string())?;
    v.get("Mountpoint")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .ok_or_else(|| "no Mountpoint in the engine's answer".into())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_a_volume_with_status() {
        let a = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Name\":\"db\",\"Mountpoint\":\"/r/db/branches/master\",\"Status\":{\"Branch\":\"master\",\"Commits\":3}}\n";
        assert_eq!(parse(a).unwrap(), "/r/db/branches/master");
        assert!(parse(b"HTTP/1.0 404 Not Found\r\n\r\n{}").is_err());
        assert!(parse(b"garbage").is_err());
    }
}
