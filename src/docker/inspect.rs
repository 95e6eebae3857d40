//! Reading volumes back from the Docker engine without bollard's typed `Volume`: its `Status`
//! only accepts maps of empty objects, so it would reject the status dvol's own plugin
//! reports (branch, head, message, commits). One HTTP/1.0 GET over the engine's unix socket
//! (the default, or `DOCKER_HOST=unix://…`); other hosts (tcp, ssh) are left to bollard. Used
//! for a volume's mountpoint (`GET /volumes/NAME`) and the volumes of a Compose project
//! (`GET /volumes?filters=…`), nothing else.

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
    Some(request(&path, &format!("/volumes/{}", escape(name))).and_then(|answer| parse(&answer)))
}

/// Label Compose puts on the volumes of a project.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Label Compose puts on a volume: its name in the Compose file.
pub const COMPOSE_VOLUME: &str = "com.docker.compose.volume";

/// The volumes of Compose project `project`: (volume name, name in the Compose file);
/// `None` when the engine is not on a unix socket.
pub(crate) fn compose_volumes(project: &str) -> Option<Result<Vec<(String, String)>, String>> {
    let path = socket()?;
    let filters = format!("{{\"label\":[\"{COMPOSE_PROJECT}={project}\"]}}");
    Some(
        request(&path, &format!("/volumes?filters={}", escape(&filters)))
            .and_then(|answer| body(&answer))
            .map(|v| {
                let list = v.get("Volumes").and_then(|l| l.as_array()).cloned();
                list.unwrap_or_default()
                    .iter()
                    .filter_map(|vol| {
                        let name = vol.get("Name")?.as_str()?.to_string();
                        let key = vol
                            .get("Labels")
                            .and_then(|l| l.get(COMPOSE_VOLUME))
                            .and_then(|k| k.as_str())
                            .unwrap_or(&name)
                            .to_string();
                        Some((name, key))
                    })
                    .collect()
            }),
    )
}

/// Percent-encode everything but unreserved characters.
fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The raw answer to `GET url` on the engine's socket at `path`.
fn request(path: &std::path::Path, url: &str) -> Result<Vec<u8>, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(err)?;
    write!(s, "GET {url} HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(err)?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut answer).map_err(err)?;
    Ok(answer)
}

/// The JSON body of a raw HTTP answer with a 200 status.
fn body(answer: &[u8]) -> Result<serde_json::Value, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers in the engine's answer")?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("engine answered {status:?}"));
    }
    serde_json::from_slice(&answer[split + 4..]).map_err(|e| e.to_string())
}

/// The `Mountpoint` of a raw HTTP answer with a 200 status and a JSON body.
fn parse(answer: &[u8]) -> Result<String, String> {
    body(answer)?
        .get("Mountpoint")
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
