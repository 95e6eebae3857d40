//! Our HTTP(S) server: bearer token required on every route, 401 explained by the client.

use super::{free_port, round_trip, start_with_line, Daemon, Host, Vars};
use std::io::{Read, Write};
use std::process::Command;

pub(super) const TOKEN: &str = "s3cret-token-for-tests";

pub(super) fn server(
    store: &std::path::Path,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> (Daemon, u16) {
    server_with_tokens(store, tls, &format!("{TOKEN}\n"))
}

/// `dvol serve --listen` on a free port with a token file of `tokens`.
pub(super) fn server_with_tokens(
    store: &std::path::Path,
    tls: Option<(&std::path::Path, &std::path::Path)>,
    tokens: &str,
) -> (Daemon, u16) {
    let dir = store.parent().unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, tokens).unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvol"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--token-file",
    ])
    .arg(&token_file);
    if let Some((cert, key)) = tls {
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    cmd.arg(store);
    let (daemon, line) = start_with_line(cmd, "Listening on");
    assert!(line.contains(&port.to_string()), "{line}");
    (daemon, port)
}

fn raw_request(port: u16, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn remote_http_with_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server(&dir.path().join("store"), None);
    let vars: Vars = vec![("DVOL_TOKEN".into(), TOKEN.into())];
    round_trip(&format!("http://127.0.0.1:{port}"), &vars);
}

#[test]
fn group_round_trip_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server(&dir.path().join("store"), None);
    let vars: Vars = vec![("DVOL_TOKEN".into(), TOKEN.into())];
    super::group_round_trip(&format!("http://127.0.0.1:{port}"), &vars);
}

#[test]
fn remote_http_wrong_or_missing_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server(&dir.path().join("store"), None);
    let url = format!("http://127.0.0.1:{port}");
    for vars in [
        vec![("DVOL_TOKEN".to_string(), "wrong-token-123".to_string())],
        Vars::new(),
    ] {
        let host = Host::new(&vars);
        host.ok(&["init", "db"]);
        std::fs::write(host.live().join("f"), "x").unwrap();
        host.commit("one");
        host.ok(&["remote", "add", "origin", &url]);
        let err = host.fails(&["push"]);
        assert!(
            err.contains("401") && err.contains("token is missing or wrong"),
            "{err}"
        );
        let err = host.fails(&["clone", &url, "db", "copy"]);
        assert!(err.contains("401"), "{err}");
    }
    assert!(
        std::fs::read_dir(dir.path().join("store"))
            .unwrap()
            .next()
            .is_none(),
        "nothing written without the token"
    );
    // Every route, known or not, wants the token.
    for path in ["/v1/rpc", "/", "/packs/x", "/../etc/passwd"] {
        let resp = raw_request(
            port,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(resp.starts_with("HTTP/1.1 401"), "{path}: {resp}");
    }
    let resp = raw_request(
        port,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[test]
fn remote_https_with_tls() {
    if !crate::support::require_binary("openssl", "apt-get install openssl") {
        return;
    }
    let openssl = super::need_binary("openssl", "apt-get install openssl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = (d.join("ca.pem"), d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=dvol test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    ];
    for args in steps {
        let st = Command::new(&openssl)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    let (_server, port) = server(&dir.path().join("store"), Some((&cert, &key)));
    let vars: Vars = vec![
        ("DVOL_TOKEN".into(), TOKEN.into()),
        ("DVOL_TLS_CA".into(), ca.to_str().unwrap().into()),
    ];
    round_trip(&format!("https://localhost:{port}"), &vars);
}
