//! `dvol serve` under hostile clients (issue 10): a declared body over the limit is refused
//! before it is read, and half-open unauthenticated connections from many addresses neither
//! starve an authenticated clone nor stay open.

use crate::remote::{free_port, start_with_line, Daemon, Host, Vars};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "limits-test-token";

/// `dvol serve` on a free port with its file limit at 512.
fn server(dir: &std::path::Path) -> (Daemon, u16) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=512:512")
        .arg(env!("CARGO_BIN_EXE_dvol"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token-file",
        ])
        .arg(&token_file)
        .arg(dir.join("store"));
    let (daemon, _) = start_with_line(cmd, "Listening on");
    (daemon, port)
}

#[test]
fn server_refuses_a_declared_oversized_body_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server(dir.path());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    write!(
        s,
        "POST /v1/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 100000000\r\n\r\n"
    )
    .unwrap();
    let mut out = [0u8; 200];
    let n = s.read(&mut out).unwrap();
    let head = String::from_utf8_lossy(&out[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn server_half_open_flood_does_not_starve_a_clone() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = server(dir.path());
    let url = format!("http://127.0.0.1:{port}");
    let vars: Vars = vec![("DVOL_TOKEN".into(), TOKEN.into())];
    let prod = Host::new(&vars);
    prod.ok(&["init", "db"]);
    crate::support::write(
        &prod.live().join("data.bin"),
        crate::support::noise(3, 64 << 20),
    );
    prod.commit("64 MiB");
    prod.ok(&["remote", "add", "origin", &url]);
    prod.ok(&["push"]);

    // 500 half-open, unauthenticated requests from 127.0.0.2-9.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut flood = Vec::new();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        for i in 0..500u32 {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8);
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind((ip, 0).into()).unwrap();
            if let Ok(mut s) = sock.connect(([127, 0, 0, 1], port).into()).await {
                let _ = s.write_all(b"POST /v1/rpc HTTP/1.1\r\nHost: x\r\n").await;
                flood.push(s);
            }
        }
    });
    assert!(
        flood.len() >= 400,
        "only {} connections opened",
        flood.len()
    );
    let started = Instant::now();

    let qa = Host::new(&vars);
    let t = Instant::now();
    qa.ok(&["clone", &url, "db"]);
    let clone_secs = t.elapsed().as_secs_f64();
    assert!(
        clone_secs < 5.0,
        "clone took {clone_secs:.1} s under the flood"
    );

    // Every half-open connection is closed by the server within 60 s.
    let closed_at = rt.block_on(async {
        use tokio::io::AsyncReadExt;
        let mut last = Duration::ZERO;
        for mut s in flood {
            let mut buf = [0u8; 512];
            let deadline = Duration::from_secs(60).saturating_sub(started.elapsed());
            let r = tokio::time::timeout(deadline, async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            })
            .await;
            assert!(r.is_ok(), "a half-open connection stayed open 60 s");
            last = last.max(started.elapsed());
        }
        last
    });
    eprintln!(
        "half-open flood: clone of 64 MiB in {clone_secs:.2} s, all 500 closed after {:.1} s",
        closed_at.as_secs_f64()
    );
}
