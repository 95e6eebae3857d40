//! Access: the server wants its token on every route and method (known or not), compares it in
//! constant time, refuses bodies over the limit with 413 without writing anything; the local
//! store and the server's store are not writable by other users.

use super::remote_load::{serve, TOKEN};
use crate::remote::{fill, Host, Vars};
use crate::support::Env;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn raw(port: u16, head: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn files_in(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().display().to_string())
        .collect()
}

#[test]
fn server_needs_the_token_on_every_route_and_method() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let server = serve(&store, "022");
    let port = server.port;
    let body = dvol::remote::proto::encode(&dvol::remote::proto::Request::Put {
        key: "dvol-remote.json".into(),
        data: b"{}".to_vec(),
    });
    let mut tried = 0;
    for method in [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW",
    ] {
        for path in [
            "/v1/rpc",
            "/",
            "/v1",
            "/v1/rpc/extra",
            "/v2/rpc",
            "/packs/x",
            "/../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "*",
        ] {
            for auth in [
                String::new(),
                "Authorization: Bearer wrong-token-xyz\r\n".to_string(),
                format!("Authorization: Bearer {TOKEN}x\r\n"),
                format!("Authorization: Bearer {}\r\n", &TOKEN[..TOKEN.len() - 1]),
                format!("Authorization: Basic {TOKEN}\r\n"),
                format!("Authorization: bearer{TOKEN}\r\n"),
            ] {
                let resp = raw(
                    port,
                    &format!(
                        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        body.len()
                    ),
                );
                // hyper answers a request line it cannot parse with 400 before any route.
                assert!(
                    resp.starts_with("HTTP/1.1 401") || resp.starts_with("HTTP/1.1 400"),
                    "{method} {path} {auth:?}: {resp}"
                );
                tried += 1;
            }
        }
    }
    assert!(files_in(&store).is_empty(), "written without the token");
    eprintln!("unauthenticated requests refused: {tried}");
    // With the token: unknown routes are 404, the wrong method on the RPC route 405.
    let ok = format!("Authorization: Bearer {TOKEN}\r\n");
    let resp = raw(
        port,
        &format!("GET /nope HTTP/1.1\r\nHost: x\r\n{ok}Connection: close\r\n\r\n"),
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    let resp = raw(
        port,
        &format!("GET /v1/rpc HTTP/1.1\r\nHost: x\r\n{ok}Connection: close\r\n\r\n"),
    );
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
}

#[test]
fn server_compares_the_token_in_constant_time() {
    // Timing is too noisy to measure in a test: check that the comparison is subtle's, over
    // every token of the file without an early exit.
    let src = include_str!("../../src/remote/http.rs");
    let auth = &src[src.find("async fn auth(").expect("auth middleware")..];
    let auth = &auth[..auth.find("\n}\n").unwrap()];
    assert!(
        auth.contains("state.tokens.authenticate(given.as_bytes())"),
        "{auth}"
    );
    assert!(!auth.contains("==") && !auth.contains("ct_eq"), "{auth}");
    let scope = include_str!("../../src/remote/scope.rs");
    let check = &scope[scope.find("pub fn authenticate(").expect("authenticate")..];
    let check = &check[..check.find("\n    }\n").unwrap()];
    assert!(scope.contains("use subtle::{ConditionallySelectable, ConstantTimeEq};"));
    assert!(check.contains(".ct_eq(&hash)"), "{check}");
    assert!(
        !check.contains("return") && !check.contains("break") && !check.contains("=="),
        "{check}"
    );
    // And the router puts auth around every route, including the fallback.
    let router = &src[src.find("let app = axum::Router::new()").unwrap()..];
    let router = &router[..router.find(';').unwrap()];
    assert!(
        router.find(".fallback(").unwrap() < router.find("from_fn_with_state(").unwrap(),
        "auth must wrap the fallback too: {router}"
    );
}

#[test]
fn server_refuses_oversized_bodies_with_413_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let server = serve(&store, "022");
    let limit = dvol::remote::proto::MAX_FRAME + 4096;
    let data = vec![7u8; limit + 1];
    let key = format!("packs/{}.pack", blake3::hash(&data).to_hex());
    let body = dvol::remote::proto::encode(&dvol::remote::proto::Request::Put {
        key: key.clone(),
        data,
    });
    for declared in [true, false] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let len_header = if declared {
            format!("Content-Length: {}\r\n", body.len())
        } else {
            "Transfer-Encoding: chunked\r\n".to_string()
        };
        s.write_all(
            format!(
                "POST /v1/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 {len_header}Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut w = s.try_clone().unwrap();
        let body = body.clone();
        // Stream the body while reading: the server may answer before it is all sent.
        let writer = std::thread::spawn(move || {
            for part in body.chunks(1 << 20) {
                let r = if declared {
                    w.write_all(part)
                } else {
                    w.write_all(format!("{:x}\r\n", part.len()).as_bytes())
                        .and_then(|_| w.write_all(part))
                        .and_then(|_| w.write_all(b"\r\n"))
                };
                if r.is_err() {
                    return;
                }
            }
            if !declared {
                let _ = w.write_all(b"0\r\n\r\n");
            }
        });
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let _ = writer.join();
        let resp = String::from_utf8_lossy(&resp);
        assert!(
            resp.starts_with("HTTP/1.1 413"),
            "declared={declared}: {}",
            &resp[..resp.len().min(300)]
        );
    }
    assert!(!store.join(&key).exists());
    assert!(
        files_in(&store).iter().all(|f| !f.contains("packs")),
        "{:?}",
        files_in(&store)
    );
    // A request at the limit's scale that is allowed still works (the limit is not too low):
    // a normal push goes through.
    let vars: Vars = vec![("DVOL_TOKEN".into(), TOKEN.into())];
    let h = Host::new(&vars);
    h.ok(&["init", "db"]);
    fill(&h.live(), 3);
    h.commit("one");
    h.ok(&[
        "remote",
        "add",
        "origin",
        &format!("http://127.0.0.1:{}", server.port),
    ]);
    h.ok(&["push"]);
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn local_store_is_private() {
    let env = Env::new();
    let live = env.init("db");
    std::fs::write(live.join("f"), "x").unwrap();
    env.commit("one");
    let meta = env.root().join(".dvol");
    assert_eq!(mode(&meta), 0o700, ".dvol must be private");
    // Even if someone loosened it, the next command tightens it again.
    std::fs::set_permissions(&meta, std::fs::Permissions::from_mode(0o777)).unwrap();
    env.ok(&["log"]);
    assert_eq!(mode(&meta), 0o700);
    // Nothing inside is group- or world-writable.
    for e in walkdir::WalkDir::new(&meta) {
        let e = e.unwrap();
        if e.file_type().is_symlink() {
            continue;
        }
        let m = mode(e.path());
        assert_eq!(m & 0o022, 0, "{} is {m:o}", e.path().display());
    }
}

#[test]
fn server_store_is_not_writable_by_others_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // umask 000: only explicit modes keep group and world out.
    let server = serve(&store, "000");
    let vars: Vars = vec![("DVOL_TOKEN".into(), TOKEN.into())];
    let h = Host::new(&vars);
    h.ok(&["init", "db"]);
    fill(&h.live(), 4);
    h.commit("one");
    h.ok(&[
        "remote",
        "add",
        "origin",
        &format!("http://127.0.0.1:{}", server.port),
    ]);
    h.ok(&["push"]);
    assert_eq!(mode(&store), 0o700, "the server's store root is private");
    let all: Vec<_> = walkdir::WalkDir::new(&store)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .collect();
    assert!(all.len() > 5, "{all:?}");
    for p in all {
        let m = mode(&p);
        assert_eq!(m & 0o022, 0, "{} is {m:o}", p.display());
    }
    // The same for a path remote written by a client with umask 000.
    let remote = dir.path().join("pathremote");
    h.ok(&["remote", "add", "p", remote.to_str().unwrap()]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_dvol"))
        .env("DVOL_ROOT", h.env.root())
        .args(["--disable-docker-integration", "push", "p"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for e in walkdir::WalkDir::new(&remote) {
        let p = e.unwrap().path().to_path_buf();
        let m = mode(&p);
        assert_eq!(m & 0o022, 0, "{} is {m:o}", p.display());
    }
}
