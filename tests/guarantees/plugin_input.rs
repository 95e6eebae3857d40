//! Hostile input to the Docker volume plugin, over its unix socket: random and mutated JSON,
//! hostile names (`../x`, `/abs`, `a/b`, NUL, non-ASCII, huge), deep nesting, oversized bodies,
//! unknown routes and methods. Every request gets a well-formed reply (HTTP status line, the
//! plugin content type, a JSON object) with a non-empty `"Err"` for bad input; the plugin
//! keeps answering `Plugin.Activate`; nothing is created outside its root. Also: the socket's
//! access rights and what `dvol plugin serve` does with an existing socket path.
//!
//! Each test runs its own `dvol plugin serve` on a socket in a temporary directory (not in
//! /run/docker/plugins, so Docker never sees it); no Docker needed.

use dvol::plugin::{check_create, decode_request, CONTENT_TYPE, MAX_BODY};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Calls that take a body naming a volume.
const BODY_ROUTES: [&str; 6] = [
    "VolumeDriver.Create",
    "VolumeDriver.Remove",
    "VolumeDriver.Mount",
    "VolumeDriver.Unmount",
    "VolumeDriver.Path",
    "VolumeDriver.Get",
];
/// Calls that ignore their body.
const PLAIN_ROUTES: [&str; 3] = [
    "Plugin.Activate",
    "VolumeDriver.List",
    "VolumeDriver.Capabilities",
];

pub(super) struct TestPlugin {
    pub(super) dir: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) socket: PathBuf,
    child: Child,
}

impl TestPlugin {
    pub(super) fn start() -> TestPlugin {
        let dir = tempfile::Builder::new()
            .prefix("dvol-plugin-input-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let socket = dir.path().join("plugin.sock");
        let child = serve(&root, &socket, &dir.path().join("plugin.log"), None);
        let start = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "plugin did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TestPlugin {
            dir,
            root,
            socket,
            child,
        }
    }

    /// The plugin process is alive and answers Plugin.Activate.
    pub(super) fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "plugin exited; log:\n{}",
            std::fs::read_to_string(self.dir.path().join("plugin.log")).unwrap_or_default()
        );
        let r = call(&self.socket, "POST", "Plugin.Activate", b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.json, json!({"Implements": ["VolumeDriver"]}));
    }

    /// Nothing outside the root; under it only `.dvol` and valid volume names that List
    /// reports, each a real directory with a live `branches/master`.
    pub(super) fn assert_contained(&self) {
        let mut outside: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !["root", "plugin.sock", "plugin.log"].contains(&n.as_str()))
            .collect();
        outside.sort();
        assert!(outside.is_empty(), "created outside the root: {outside:?}");
        let list = call(&self.socket, "POST", "VolumeDriver.List", b"");
        let listed: Vec<&str> = list.json["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Name"].as_str().unwrap())
            .collect();
        for e in std::fs::read_dir(&self.root).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".dvol" {
                continue;
            }
            dvol::names::validate("volume", &name).unwrap();
            assert!(listed.contains(&name.as_str()), "{name} not listed");
            assert!(e.file_type().unwrap().is_dir(), "{name} is not a directory");
            assert!(e.path().join("branches/master").is_dir());
        }
    }
}

impl Drop for TestPlugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `-o from=` volumes are overlay clones when the root is on ext4 and we are root.
        let _ = dvol::unmount_under(self.dir.path());
    }
}

/// `dvol -p ROOT plugin serve --socket SOCKET`, logging to `log`, with `umask` if given.
fn serve(root: &Path, socket: &Path, log: &Path, umask: Option<libc::mode_t>) -> Child {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvol"));
    cmd.arg("-p")
        .arg(root)
        .args(["plugin", "serve", "--socket"])
        .arg(socket)
        .env("DVOL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(mask) = umask {
        // SAFETY: the hook only calls umask, which is async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
    }
    cmd.spawn().expect("spawn dvol plugin serve")
}

pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) ctype: String,
    pub(super) json: Value,
}

/// One HTTP/1.1 request on a fresh connection. The body is written from another thread,
/// errors ignored: the plugin may answer (and close) before reading an oversized body.
pub(super) fn call(socket: &Path, method: &str, path: &str, body: &[u8]) -> Reply {
    let head = format!(
        "{method} /{path} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    raw(socket, head.as_bytes(), body)
}

fn raw(socket: &Path, head: &[u8], body: &[u8]) -> Reply {
    let mut s = UnixStream::connect(socket).expect("connect plugin");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut msg = head.to_vec();
    msg.extend_from_slice(body);
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&msg);
    });
    // A plugin that answers without reading the whole body closes with unread data, which
    // unix sockets report as ECONNRESET after the reply: keep what was read.
    let mut resp = Vec::new();
    if let Err(e) = s.read_to_end(&mut resp) {
        assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset && !resp.is_empty(),
            "read reply: {e}"
        );
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    let resp = String::from_utf8(resp).expect("reply is UTF-8");
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP reply: {resp:?}"));
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("reply {body:?}: {e}"));
    Reply {
        status,
        ctype,
        json,
    }
}

/// What the plugin must say about `body` on a body route: `true` if it must be refused.
fn must_refuse(route: &str, body: &[u8]) -> bool {
    match decode_request(body) {
        Err(_) => true,
        Ok(req) => {
            dvol::names::validate("volume", &req.name).is_err()
                || (route == "VolumeDriver.Create"
                    && check_create(&req.name, &req.opts.unwrap_or_default()).is_err())
        }
    }
}

/// Check one reply: well-formed, and a non-empty "Err" when the input is bad.
fn check_reply(p: &TestPlugin, route: &str, body: &[u8], r: &Reply) -> Result<(), String> {
    let known = BODY_ROUTES.contains(&route) || PLAIN_ROUTES.contains(&route);
    let want_status = if known { 200 } else { 404 };
    if r.status != want_status || r.ctype != CONTENT_TYPE || !r.json.is_object() {
        return Err(format!(
            "{route}: status {} type {:?} body {}",
            r.status, r.ctype, r.json
        ));
    }
    let err = &r.json["Err"];
    if !known {
        return match err.as_str() {
            Some(e) if !e.is_empty() => Ok(()),
            _ => Err(format!("{route}: no Err: {}", r.json)),
        };
    }
    if !BODY_ROUTES.contains(&route) {
        return Ok(());
    }
    let Some(e) = err.as_str() else {
        return Err(format!("{route}: Err is not a string: {}", r.json));
    };
    if must_refuse(route, body) && e.is_empty() {
        return Err(format!(
            "{route} accepted bad input {:?}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]),
            r.json
        ));
    }
    if route == "VolumeDriver.Create" && e.is_empty() {
        let name = decode_request(body).unwrap().name;
        if !p.root.join(&name).join("branches/master").is_dir() {
            return Err(format!("Create {name:?} succeeded but made no volume"));
        }
    }
    Ok(())
}

fn hostile_name(canary: String) -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "../x".to_string(),
            "../../etc/passwd".into(),
            "/etc".into(),
            "/tmp".into(),
            canary,
            "a/b".into(),
            "a\\b".into(),
            "..".into(),
            ".".into(),
            String::new(),
            ".dvol".into(),
            "-rf".into(),
            "a\0b".into(),
            "\0".into(),
            "volüme".into(),
            "名前".into(),
            "a b".into(),
            "a\nb".into(),
            "HEAD~1".into(),
            "x@y".into(),
            "a".repeat(129),
        ]),
        2 => "[a-zA-Z0-9_.-]{1,20}",
        2 => "[ -~]{0,30}",
        2 => "\\PC{0,30}",
        1 => ".{0,30}",
        1 => (129usize..70_000).prop_map(|n| "v".repeat(n)),
    ]
    .boxed()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn nested(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Request bodies: well-shaped with hostile names, wrongly typed fields, random bytes,
/// mutated valid bodies, deep nesting, truncation.
fn body(canary: String) -> impl Strategy<Value = Vec<u8>> {
    let opts = prop_oneof![
        Just(None),
        prop::collection::btree_map(
            prop_oneof![Just("from".to_string()), "\\PC{0,10}"],
            "\\PC{0,40}",
            0..3
        )
        .prop_map(Some),
    ];
    let shaped = (
        hostile_name(canary.clone()),
        prop::option::of("\\PC{0,80}"),
        opts,
        prop::option::of(json_value()),
    )
        .prop_map(|(name, id, opts, extra)| {
            let mut v = json!({ "Name": name });
            if let Some(id) = id {
                v["ID"] = json!(id);
            }
            if let Some(o) = opts {
                v["Opts"] = json!(o);
            }
            if let Some(x) = extra {
                v["Extra"] = x;
            }
            v.to_string().into_bytes()
        });
    let typed = (json_value(), json_value(), json_value()).prop_map(|(n, i, o)| {
        json!({ "Name": n, "ID": i, "Opts": o })
            .to_string()
            .into_bytes()
    });
    let mutated = (
        hostile_name(canary),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    )
        .prop_map(|(name, flips)| {
            let mut b = json!({ "Name": name, "ID": "0123abcd", "Opts": {"from": "src@HEAD"} })
                .to_string()
                .into_bytes();
            for (i, x) in flips {
                let i = i.index(b.len());
                b[i] ^= x;
            }
            b
        });
    let deep = (1usize..20_000, 0..3u8).prop_map(|(d, how)| match how {
        0 => nested(d, "").into_bytes(),
        1 => format!(r#"{{"Name":"deep","Opts":{}}}"#, nested(d, "1")).into_bytes(),
        _ => format!(r#"{{"Name":"deep","Unknown":{}}}"#, nested(d, "{}")).into_bytes(),
    });
    let truncated = (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
        let b = json!({ "Name": "t", "Opts": v }).to_string().into_bytes();
        let n = i.index(b.len());
        b[..n].to_vec()
    });
    prop_oneof![
        4 => shaped,
        2 => typed,
        2 => prop::collection::vec(any::<u8>(), 0..300),
        2 => mutated,
        1 => deep,
        1 => truncated,
    ]
}

fn route() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        8 => prop::sample::select(BODY_ROUTES.to_vec()),
        2 => prop::sample::select(PLAIN_ROUTES.to_vec()),
        1 => prop::sample::select(vec!["VolumeDriver.Nope", "", "VolumeDriver.Create/../x"]),
    ]
}

#[test]
fn hostile_requests_get_an_error_and_the_plugin_survives() {
    let mut p = TestPlugin::start();
    let canary = p.dir.path().join("escaped").display().to_string();
    let cases: u32 = std::env::var("DVOL_PLUGIN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let start = Instant::now();
    let r = runner.run(&(route(), body(canary)), |(route, body)| {
        let r = call(&p.socket, "POST", route, &body);
        check_reply(&p, route, &body, &r).map_err(TestCaseError::fail)?;
        let a = call(&p.socket, "POST", "Plugin.Activate", b"");
        prop_assert_eq!(a.json, json!({"Implements": ["VolumeDriver"]}));
        Ok(())
    });
    eprintln!(
        "plugin fuzz: {cases} cases in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = r {
        panic!("{e}");
    }
    p.assert_alive();
    p.assert_contained();
}

#[test]
fn named_hostile_names_are_refused_by_every_route() {
    let mut p = TestPlugin::start();
    let canary = p.dir.path().join("escaped").display().to_string();
    let long = "n".repeat(129);
    let names = [
        "../x",
        "../../x",
        "/etc",
        canary.as_str(),
        "a/b",
        "..",
        ".",
        "",
        ".dvol",
        "a\0b",
        "volüme",
        "a b",
        long.as_str(),
    ];
    for name in names {
        for route in BODY_ROUTES {
            let body = json!({ "Name": name, "ID": "x" }).to_string();
            let r = call(&p.socket, "POST", route, body.as_bytes());
            assert_eq!(r.status, 200);
            assert_eq!(r.ctype, CONTENT_TYPE);
            let e = r.json["Err"].as_str().unwrap_or_default();
            assert!(
                e.contains("invalid volume name"),
                "{route} {name:?}: {}",
                r.json
            );
        }
    }
    // `from=` naming a hostile source volume.
    for from in ["../x", "/etc@HEAD", "a/b@master", "x@"] {
        let body = json!({ "Name": "ok", "Opts": { "from": from } }).to_string();
        let r = call(&p.socket, "POST", "VolumeDriver.Create", body.as_bytes());
        assert!(
            !r.json["Err"].as_str().unwrap().is_empty(),
            "{from}: {}",
            r.json
        );
    }
    p.assert_alive();
    p.assert_contained();
    assert!(!Path::new(&canary).exists());
}

#[test]
fn oversized_deep_and_malformed_requests() {
    let mut p = TestPlugin::start();
    let limit_err = |r: &Reply| {
        assert_eq!(r.status, 200);
        assert_eq!(r.ctype, CONTENT_TYPE);
        let e = r.json["Err"].as_str().unwrap_or_default().to_string();
        assert!(
            e.contains(&format!("limit of {MAX_BODY} bytes")),
            "{}",
            r.json
        );
    };
    // Just over the limit, and far over it, on every body route.
    let over = format!(r#"{{"Name":"{}"}}"#, "a".repeat(MAX_BODY));
    let huge = vec![b' '; 8 * MAX_BODY];
    for route in BODY_ROUTES {
        limit_err(&call(&p.socket, "POST", route, over.as_bytes()));
        limit_err(&call(&p.socket, "POST", route, &huge));
    }
    // Just under the limit: read, decoded, and refused for the name.
    let under = format!(r#"{{"Name":"{}"}}"#, "a".repeat(MAX_BODY - 20));
    let r = call(&p.socket, "POST", "VolumeDriver.Create", under.as_bytes());
    assert!(
        r.json["Err"].as_str().unwrap().contains("longer than 128"),
        "{}",
        r.json
    );
    // A Content-Length far beyond the limit, with no body sent: answered at once.
    let t = Instant::now();
    let r = raw(
        &p.socket,
        b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: p\r\nContent-Length: 1000000000000\r\nConnection: close\r\n\r\n",
        b"",
    );
    limit_err(&r);
    assert!(t.elapsed() < Duration::from_secs(10));
    // A chunked body that grows past the limit.
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", MAX_BODY / 2).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', MAX_BODY / 2));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    limit_err(&raw(
        &p.socket,
        b"POST /VolumeDriver.Mount HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        &chunked,
    ));
    // Nesting far deeper than serde_json's recursion limit: an error, not a stack overflow.
    for body in [
        nested(500_000, ""),
        format!(r#"{{"Name":"x","Opts":{}}}"#, nested(300_000, "")),
        format!(r#"{{"Name":"x","Other":{}}}"#, "{\"a\":".repeat(200_000)),
    ] {
        let r = call(&p.socket, "POST", "VolumeDriver.Create", body.as_bytes());
        assert!(
            r.json["Err"].as_str().unwrap().contains("bad request body"),
            "{}",
            r.json
        );
    }
    // Invalid UTF-8, wrong types, a huge mount ID.
    let id = "f".repeat(100_000);
    for body in [
        b"{\"Name\":\"\xff\xfe\"}".to_vec(),
        br#"{"Name":["a"]}"#.to_vec(),
        br#"{"Name":"a","Opts":{"from":null}}"#.to_vec(),
        br#"{"Name":"a","Opts":"from=x"}"#.to_vec(),
        format!(r#"{{"Name":"a","ID":"{id}"}}"#).into_bytes(),
    ] {
        let r = call(&p.socket, "POST", "VolumeDriver.Mount", &body);
        assert!(
            r.json["Err"].as_str().unwrap().contains("bad request body"),
            "{}",
            r.json
        );
    }
    // Unknown calls and other methods: a JSON error, not an empty body.
    let r = call(&p.socket, "POST", "VolumeDriver.Nope", b"{}");
    assert_eq!(r.status, 404);
    assert!(r.json["Err"]
        .as_str()
        .unwrap()
        .contains("unknown plugin call"));
    let r = call(&p.socket, "GET", "VolumeDriver.List", b"");
    assert_eq!(r.status, 405);
    assert!(!r.json["Err"].as_str().unwrap().is_empty());
    p.assert_alive();
    p.assert_contained();
}

/// tests/corpus/plugin-*: every body route refuses each case over the socket.
#[test]
fn plugin_regression_corpus_over_the_socket() {
    let mut p = TestPlugin::start();
    let mut n = 0;
    for (name, bytes) in super::decoders::corpus("plugin-") {
        for route in BODY_ROUTES {
            let r = call(&p.socket, "POST", route, &bytes);
            assert_eq!(r.status, 200, "{name}");
            let route_refuses = must_refuse(route, &bytes);
            let e = r.json["Err"].as_str().unwrap_or_default();
            assert!(
                !route_refuses || !e.is_empty(),
                "{route} accepted {name}: {}",
                r.json
            );
        }
        // Create refuses every case in the corpus but the plugin-ok-* ones.
        let r = call(&p.socket, "POST", "VolumeDriver.Create", &bytes);
        let refused = !r.json["Err"].as_str().unwrap_or_default().is_empty();
        assert_eq!(
            refused,
            !name.starts_with("plugin-ok-"),
            "Create on {name}: {}",
            r.json
        );
        n += 1;
    }
    assert!(n >= 8, "only {n} plugin-* cases");
    p.assert_alive();
    p.assert_contained();
}

// ---- Access -------------------------------------------------------------------------------

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn socket_and_created_parents_are_not_writable_by_others_even_with_umask_0() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a/b/plugin.sock");
    let mut child = serve(
        &dir.path().join("root"),
        &socket,
        &dir.path().join("log"),
        Some(0),
    );
    let start = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "plugin did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = mode(&socket);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(m & 0o007, 0, "socket mode {m:o}");
    for d in [dir.path().join("a"), dir.path().join("a/b")] {
        let m = mode(&d);
        assert_eq!(m & 0o022, 0, "{d:?} mode {m:o}");
    }
}

#[test]
fn serve_refuses_a_live_socket_replaces_a_stale_one_and_keeps_other_files() {
    let p = TestPlugin::start();
    let dir = tempfile::tempdir().unwrap();
    // Another plugin answers on the socket: refuse, clearly, and leave it working.
    let out = Command::new(env!("CARGO_BIN_EXE_dvol"))
        .arg("-p")
        .arg(dir.path().join("root"))
        .args(["plugin", "serve", "--socket"])
        .arg(&p.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in use: another plugin answers on it"),
        "{err}"
    );
    assert_eq!(
        call(&p.socket, "POST", "Plugin.Activate", b"").json["Implements"],
        json!(["VolumeDriver"])
    );

    // A stale socket (its server gone) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists() && UnixStream::connect(&stale).is_err());
    let mut child = serve(
        &dir.path().join("root"),
        &stale,
        &dir.path().join("log"),
        None,
    );
    let start = Instant::now();
    while UnixStream::connect(&stale).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "plugin refused a stale socket: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap()
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "plugin did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(call(&stale, "POST", "Plugin.Activate", b"").status, 200);
    child.kill().unwrap();
    child.wait().unwrap();

    // A path that is not a socket is never deleted.
    let file = dir.path().join("precious");
    std::fs::write(&file, "keep me").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for path in [&file, &link] {
        let out = Command::new(env!("CARGO_BIN_EXE_dvol"))
            .arg("-p")
            .arg(dir.path().join("root"))
            .args(["plugin", "serve", "--socket"])
            .arg(path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("exists and is not a socket"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
}
