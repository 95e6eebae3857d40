//! Scoped tokens of `dvol serve` (issue 10): every route for each scope, through the CLI where
//! it has a path (clone, fetch, pull, push, push --force, prune --remote) and with hand-made
//! protocol requests for the rest, as a hostile client holding a token would send them.

use super::http::server_with_tokens;
use super::{Host, Vars};
use crate::support::write;
use dvol::remote::proto::{self, Request, Response};
use dvol::remote::CasOutcome;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const RO: &str = "ro-token-prod-1234";
const RW: &str = "rw-token-prod-1234";
const QA: &str = "rw-token-qa-123456";
const ADMIN: &str = "admin-token-123456";

const TOKENS: &str = "# scoped tokens\n\
    ro-token-prod-1234 read-only prod-*\n\
    rw-token-prod-1234 read-write prod-*   # the production host\n\
    rw-token-qa-123456 read-write qa-?\n\
    admin-token-123456 admin *\n";

fn vars(token: &str) -> Vars {
    vec![("DVOL_TOKEN".into(), token.into())]
}

/// Every file of the served directory (dot files, the lock, excluded) and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect()
}

fn ref_file(store: &Path, volume: &str) -> PathBuf {
    store.join("refs").join(volume).join("heads/master")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One protocol request over HTTP with `token`: the answer, or the refusal (a 403's body).
fn call(port: u16, token: &str, req: &Request) -> Result<Response, String> {
    let body = proto::encode(req);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let body = &out[split + 4..];
    match head.split(' ').nth(1) {
        Some("200") => Ok(proto::decode(body).unwrap()),
        Some("403") => Err(String::from_utf8_lossy(body).trim().to_string()),
        _ => panic!("unexpected answer {head}"),
    }
}

fn refused(port: u16, token: &str, req: &Request, want: &str) {
    match call(port, token, req) {
        Err(why) => assert!(why.contains(want), "{req:?}: {why}"),
        Ok(r) => panic!("{req:?} with {token} was not refused: {r:?}"),
    }
}

fn get(key: &str) -> Request {
    Request::Get { key: key.into() }
}

fn put(key: &str, data: &[u8]) -> Request {
    Request::Put {
        key: key.into(),
        data: data.to_vec(),
    }
}

fn cas(key: &str, expected: Option<&[u8]>, new: &[u8]) -> Request {
    Request::Cas {
        key: key.into(),
        expected: expected.map(<[u8]>::to_vec),
        new: new.to_vec(),
    }
}

fn delete(key: &str) -> Request {
    Request::Delete { key: key.into() }
}

/// A host whose `volume` has one commit (`file` holding `text`) pushed to `url` as origin
/// (`add`: extra `remote add` flags).
fn first_push(vars: &Vars, volume: &str, url: &str, add: &[&str], file: &str, text: &str) -> Host {
    let host = Host::new(vars);
    host.ok(&["init", volume]);
    write(&host.live().join(file), text);
    host.commit(text);
    host.ok(&[&["remote", "add"], add, &["origin", url]].concat());
    host.ok(&["push"]);
    host
}

/// Change `f`, commit and push.
fn push_change(host: &Host, text: &str) {
    write(&host.live().join("f"), text);
    host.commit(text);
    host.ok(&["push"]);
}

/// A production host pushes `prod-db` (two commits) and QA pushes `qa-1`; returns the hosts.
fn populate(url: &str) -> (Host, Host) {
    let prod = first_push(&vars(RW), "prod-db", url, &[], "f", "one\n");
    push_change(&prod, "two\n");
    let qa = first_push(&vars(QA), "qa-1", url, &[], "q", "qa\n");
    (prod, qa)
}

#[test]
fn scoped_tokens_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_server, port) = server_with_tokens(&store, None, TOKENS);
    let url = format!("http://127.0.0.1:{port}");
    let (mut prod, _qa) = populate(&url);

    // Read-only: clone, fetch and pull work.
    let ro = Host::new(&vars(RO));
    ro.ok(&["clone", &url, "prod-db"]);
    assert_eq!(ro.head(), prod.head());
    push_change(&prod, "three\n");
    ro.ok(&["fetch"]);
    ro.ok(&["pull"]);
    assert_eq!(ro.head(), prod.head());

    // ... and refused on every write, with one clear line; nothing on the server changes.
    write(&ro.live().join("ro.txt"), "ro\n");
    ro.commit("from a read-only host");
    let before = snapshot(&store);
    let err = ro.fails(&["push"]);
    assert!(
        err.contains(&format!(
            "remote {url}: token is read-only: refused to write"
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(snapshot(&store), before);

    // A token for other volumes sees nothing of them.
    let qa2 = Host::new(&vars(QA));
    let err = qa2.fails(&["clone", &url, "prod-db"]);
    assert!(err.contains("limited to volumes matching 'qa-?'"), "{err}");

    // Read-write pushes fast-forward only: a force-push is refused and moves nothing.
    let head_before = read(&ref_file(&store, "prod-db"));
    prod.ok(&["reset", "--hard", "HEAD~1"]);
    write(&prod.live().join("f"), "rewritten\n");
    prod.commit("rewrite");
    let err = prod.fails(&["push", "--force"]);
    assert!(
        err.contains("not a fast-forward") && err.contains("admin token"),
        "{err}"
    );
    assert_eq!(read(&ref_file(&store, "prod-db")), head_before);

    // Admin may force; the server's reflog keeps every value the ref held.
    prod.vars = vars(ADMIN);
    prod.ok(&["push", "--force"]);
    assert_ne!(read(&ref_file(&store, "prod-db")), head_before);
    let reflog = read(&store.join("reflog/prod-db/heads/master"));
    assert!(reflog.contains(head_before.trim()), "{reflog}");
    assert_eq!(reflog.lines().count(), 3, "{reflog}");

    // Remote gc: read-write is refused before anything changes; admin runs it.
    prod.vars = vars(RW);
    let prune = [
        "prune",
        "--remote",
        "origin",
        "--keep-last",
        "1",
        "--grace",
        "0",
    ];
    let before = snapshot(&store);
    let err = prod.fails(&prune);
    assert!(err.contains("admin token"), "{err}");
    assert_eq!(snapshot(&store), before);
    prod.vars = vars(ADMIN);
    let out = prod.ok(&prune);
    assert!(out.contains("expired"), "{out}");
    assert!(store.join("expired/prod-db").exists());
    // The other volume is untouched and still complete.
    let qa3 = Host::new(&vars(QA));
    qa3.ok(&["clone", &url, "qa-1"]);
    assert_eq!(read(&qa3.live().join("q")), "qa\n");
}

#[test]
fn hostile_clients_cannot_replace_delete_or_rewind() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_server, port) = server_with_tokens(&store, None, TOKENS);
    let url = format!("http://127.0.0.1:{port}");
    let (prod, _qa) = populate(&url);
    let head = read(&ref_file(&store, "prod-db"));
    let reflog = read(&store.join("reflog/prod-db/heads/master"));
    let parent = reflog.lines().last().unwrap().split(' ').nth(1).unwrap();
    let pack_path = std::fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .unwrap();
    let pack = format!("packs/{}", pack_path.file_name().unwrap().to_string_lossy());
    let pack_bytes = std::fs::read(&pack_path).unwrap();
    let prod_ref = "refs/prod-db/heads/master";
    let qa_ref = "refs/qa-1/heads/master";
    let junk = b"not a pack".as_slice();
    let junk_pack = format!("packs/{}.pack", blake3::hash(junk).to_hex());
    let before = snapshot(&store);

    // Read-only reads packs and its volumes' refs, and nothing else.
    for token in [RO, RW] {
        assert!(matches!(
            call(port, token, &get(&pack)),
            Ok(Response::Data(Some(d))) if d == pack_bytes
        ));
        let range = Request::GetRange {
            key: pack.clone(),
            offset: 2,
            len: 5,
        };
        assert!(
            matches!(call(port, token, &range), Ok(Response::Data(Some(d))) if d == pack_bytes[2..7])
        );
        let list = Request::List {
            prefix: "packs/".into(),
        };
        assert!(matches!(call(port, token, &list), Ok(Response::Keys(k)) if k.contains(&pack)));
        assert!(
            matches!(call(port, token, &get(prod_ref)), Ok(Response::Data(Some(v))) if v == head.as_bytes())
        );
        // Volumes outside the pattern: invisible in listings, refused by name.
        assert!(
            matches!(call(port, token, &Request::ListVolumes), Ok(Response::Keys(v)) if v == ["prod-db"])
        );
        refused(
            port,
            token,
            &get(qa_ref),
            "limited to volumes matching 'prod-*'",
        );
        let list_qa = Request::List {
            prefix: "refs/qa-1/heads/".into(),
        };
        refused(
            port,
            token,
            &list_qa,
            "limited to volumes matching 'prod-*'",
        );
        refused(port, token, &get("gc/pending"), "admin");
    }
    refused(
        port,
        RO,
        &put(&junk_pack, junk),
        "token is read-only: refused to write",
    );
    refused(
        port,
        RO,
        &cas(prod_ref, Some(head.as_bytes()), head.as_bytes()),
        "read-only",
    );
    refused(port, RO, &delete(&pack), "read-only");

    // Read-write: a pack or index that exists is never replaced (a byte-identical retry is
    // fine; a pack's bytes must hash to its name anyway).
    refused(port, RW, &put(&pack, junk), "refused to write");
    let idx = pack.replace(".pack", ".idx");
    let idx_bytes = std::fs::read(store.join(&idx)).unwrap();
    let other_idx = dvol::remote::idx::encode(&[]);
    refused(port, RW, &put(&idx, &other_idx), "never replaced");
    refused(port, ADMIN, &put(&idx, &other_idx), "never replaced");
    assert!(matches!(
        call(port, RW, &put(&pack, &pack_bytes)),
        Ok(Response::Done)
    ));
    assert!(matches!(
        call(port, RW, &put(&idx, &idx_bytes)),
        Ok(Response::Done)
    ));
    let misnamed = format!("packs/{}.pack", "0".repeat(64));
    refused(port, RW, &put(&misnamed, junk), "not the blake3 hash");
    let orphan_idx = format!("packs/{}.idx", "1".repeat(64));
    refused(
        port,
        RW,
        &put(&orphan_idx, junk),
        "its pack is not on the remote",
    );
    refused(port, RW, &cas(&pack, Some(&pack_bytes), junk), "only added");
    // No deletes below admin.
    for key in [pack.as_str(), prod_ref, "expired/prod-db", "gc/pending"] {
        refused(port, RW, &delete(key), "admin token");
    }
    // Refs move only by compare-and-swap, forward only.
    refused(
        port,
        RW,
        &put(prod_ref, parent.as_bytes()),
        "compare-and-swap",
    );
    let rewind = format!("{parent}\n");
    refused(
        port,
        RW,
        &cas(prod_ref, Some(head.as_bytes()), rewind.as_bytes()),
        "not a fast-forward",
    );
    let unknown = format!("{}\n", "2".repeat(64));
    refused(
        port,
        RW,
        &cas(prod_ref, Some(head.as_bytes()), unknown.as_bytes()),
        "cannot read its history",
    );
    refused(
        port,
        RW,
        &cas(prod_ref, Some(head.as_bytes()), b"junk"),
        "does not hold a commit id",
    );
    // A stale expected value is a conflict, not a change.
    assert!(matches!(
        call(port, RW, &cas(prod_ref, Some(rewind.as_bytes()), rewind.as_bytes())),
        Ok(Response::Cas(CasOutcome::Conflict { current: Some(c) })) if c == head.as_bytes()
    ));
    // Marking commits the remote keeps whole as expired would let gc delete them.
    let expire = format!("{}\n", head.trim());
    refused(
        port,
        RW,
        &cas("expired/prod-db", None, expire.as_bytes()),
        "holds the tree",
    );
    refused(
        port,
        RW,
        &put("expired/prod-db", expire.as_bytes()),
        "compare-and-swap",
    );
    // The marker can be created, never replaced below admin; the reflog by nobody.
    let marker = std::fs::read(store.join("dvol-remote.json")).unwrap();
    refused(
        port,
        RW,
        &cas("dvol-remote.json", Some(&marker), b"{}"),
        "admin token",
    );
    refused(port, RW, &put("dvol-remote.json", b"{}"), "read-write");
    refused(port, RW, &put("gc/pending", b"{}"), "admin");
    let reflog_key = "reflog/prod-db/heads/master";
    for token in [RW, ADMIN] {
        refused(port, token, &put(reflog_key, b""), "no token may change it");
    }
    // A token for qa-? cannot touch prod's refs.
    refused(
        port,
        QA,
        &cas(prod_ref, Some(head.as_bytes()), head.as_bytes()),
        "matching 'qa-?'",
    );
    assert_eq!(snapshot(&store), before, "nothing changed on the server");
    // Read-write adds packs; an index that does not decode is refused (plain remotes).
    assert!(matches!(
        call(port, RW, &put(&junk_pack, junk)),
        Ok(Response::Done)
    ));
    let junk_idx = junk_pack.replace(".pack", ".idx");
    refused(port, RW, &put(&junk_idx, junk), "refused to write");
    assert!(!store.join(&junk_idx).exists());

    // An admin token for some volumes cannot delete what every volume shares.
    let admin_qa = "admin-qa-token-1234";
    drop(_server);
    let tokens = format!("{TOKENS}{admin_qa} admin qa-*\n");
    let (_server, port) = server_with_tokens(&store, None, &tokens);
    refused(port, admin_qa, &delete(&pack), "use an admin token for '*'");
    assert!(matches!(
        call(port, ADMIN, &delete(&pack)),
        Ok(Response::Done)
    ));
    assert!(!pack_path.exists());
    drop(prod);
}

#[test]
fn encrypted_remote_keeps_every_replaced_ref_in_the_reflog() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_server, port) = server_with_tokens(&store, None, TOKENS);
    let url = format!("http://127.0.0.1:{port}");
    let with_pass = |token: &str| {
        let mut v = vars(token);
        v.push(("DVOL_PASSPHRASE".into(), "correct horse battery".into()));
        v
    };
    let prod = first_push(
        &with_pass(RW),
        "prod-db",
        &url,
        &["--encrypt"],
        "f",
        "one\n",
    );
    push_change(&prod, "two\n");
    let pushed = read(&ref_file(&store, "prod-db"));

    // The server cannot read sealed commits, so it cannot refuse a rewind: it keeps the value
    // the ref held instead, where no token below admin can reach it.
    prod.ok(&["reset", "--hard", "HEAD~1"]);
    write(&prod.live().join("f"), "rewritten\n");
    prod.commit("rewrite");
    prod.ok(&["push", "--force"]);
    assert_ne!(read(&ref_file(&store, "prod-db")), pushed);
    let reflog = read(&store.join("reflog/prod-db/heads/master"));
    assert!(reflog.contains(pushed.trim()), "{reflog}");

    // A value that is not a sealed ref is refused; read-only pushes nothing.
    let key = "refs/prod-db/heads/master";
    let now = read(&ref_file(&store, "prod-db"));
    refused(
        port,
        RW,
        &cas(
            key,
            Some(now.as_bytes()),
            format!("{}\n", "3".repeat(64)).as_bytes(),
        ),
        "not a sealed ref value",
    );
    let ro = Host::new(&with_pass(RO));
    ro.ok(&["clone", &url, "prod-db"]);
    write(&ro.live().join("x"), "x\n");
    ro.commit("ro");
    let before = snapshot(&store);
    let err = ro.fails(&["push"]);
    assert!(err.contains("token is read-only"), "{err}");
    assert_eq!(snapshot(&store), before);
}

/// `dvol serve --stdio --scope read-only --volumes 'qa-*'` (an ssh forced command).
#[test]
fn stdio_server_honours_scope_and_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dvol"))
        .args([
            "serve",
            "--stdio",
            "--scope",
            "read-only",
            "--volumes",
            "qa-*",
        ])
        .arg(&store)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut ask = |req: &Request| -> Response {
        proto::write_frame(&mut stdin, &proto::encode(req)).unwrap();
        proto::decode(&proto::read_frame(&mut stdout).unwrap().unwrap()).unwrap()
    };
    assert!(matches!(
        ask(&Request::Hello {
            version: proto::PROTO_VERSION
        }),
        Response::Hello { .. }
    ));
    let junk = b"x".as_slice();
    let key = format!("packs/{}.pack", blake3::hash(junk).to_hex());
    assert!(
        matches!(ask(&put(&key, junk)), Response::Error(e) if e.contains("ssh access is read-only"))
    );
    assert!(matches!(
        ask(&get("refs/prod/heads/master")),
        Response::Error(e) if e.contains("limited to volumes matching 'qa-*'")
    ));
    assert!(matches!(
        ask(&get("refs/qa-1/heads/master")),
        Response::Data(None)
    ));
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(!store.join("packs").exists());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvol"))
        .args(["serve", "--stdio", "--scope", "owner"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown --scope"));
}

#[test]
fn bad_token_files_are_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    for (text, want) in [
        ("", "holds no token"),
        ("short\n", "too short"),
        (
            "# c\nlong-enough-token read-only *\nlong-enough-token admin *\n",
            "line 3: the token is already",
        ),
        (
            "long-enough-token owner *\n",
            "line 1: unknown scope \"owner\"",
        ),
        (
            "long-enough-token admin prod/*\n",
            "line 1: invalid volume pattern",
        ),
        (
            "long-enough-token admin\n",
            "line 1: expected `TOKEN SCOPE PATTERN`",
        ),
        (
            "long-enough-token admin *\nshort admin *\n",
            "line 2: the token is too short",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dvol"))
            .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(&file)
            .arg(dir.path().join("store"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?}");
        assert!(err.contains(want), "{text:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

const GROUP_TOKENS: &str = "rw-token-app-12345 read-write app-*\n\
    rw-token-appa-1234 read-write app-a\n\
    ro-token-app-12345 read-only app-*\n";

/// A group's remote keys are governed by its member volumes: a token scoped to every member
/// pushes, clones and pulls a group (no admin token needed); a token that misses one member
/// is refused before anything is written, and the refusal names the member.
#[test]
fn group_push_needs_a_token_covering_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_server, port) = server_with_tokens(&store, None, GROUP_TOKENS);
    let url = format!("http://127.0.0.1:{port}");
    super::group_round_trip(&url, &vars("rw-token-app-12345"));
    let ro = Host::new(&vars("ro-token-app-12345"));
    ro.ok(&["group", "clone", &url, "app"]);
    let err = ro.fails(&["group", "push", "app"]);
    assert!(err.contains("read-only"), "{err}");

    // Only app-a covered: refused naming app-b, on a remote that never saw the group.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("store")).unwrap();
    let (_server2, port2) = server_with_tokens(&other.join("store"), None, GROUP_TOKENS);
    let url2 = format!("http://127.0.0.1:{port2}");
    let host = Host::new(&vars("rw-token-appa-1234"));
    host.ok(&["init", "app-a"]);
    host.ok(&["init", "app-b"]);
    host.ok(&["group", "create", "app", "app-a", "app-b"]);
    write(&host.live().join("f"), "x");
    host.ok(&["group", "commit", "app", "-m", "one"]);
    host.ok(&["group", "remote", "app", "origin", &url2]);
    let err = host.fails(&["group", "push", "app"]);
    assert!(
        err.contains("member volume app-b of group app is not covered"),
        "{err}"
    );
    // Nothing but the remote's marker (made by the first connection) was written.
    let written: Vec<PathBuf> = snapshot(&other.join("store")).into_keys().collect();
    assert_eq!(
        written,
        vec![other.join("store").join("dvol-remote.json")],
        "the refused push wrote"
    );
    // By hand: a member list naming a volume the token does not cover is refused too.
    let req = Request::Cas {
        key: "groups/x/members".into(),
        expected: None,
        new: b"app-a\nprod-db\n".to_vec(),
    };
    refused(
        port2,
        "rw-token-appa-1234",
        &req,
        "member volume prod-db of group x",
    );
}

const EVIL_TOKENS: &str = "rw-token-a-1234567 read-write a*\n\
    rw-token-all-12345 read-write *\n";

/// The attacker holds a token for `a*`: its own volumes `a1` (data X) and `a2` (data Y) are
/// pushed; the victim's `b1` is pushed with a token for every volume. Returns the attacker's
/// group commit naming {a1: X, b1: Y} and its hex id.
fn forged_group_commit(url: &str, store: &Path) -> (Vec<u8>, String) {
    let _victim = first_push(&vars("rw-token-all-12345"), "b1", url, &[], "f", "victim\n");
    let a = "rw-token-a-1234567";
    let _x = first_push(&vars(a), "a1", url, &[], "f", "x\n");
    let _y = first_push(&vars(a), "a2", url, &[], "f", "attacker\n");
    let id = |v: &str| dvol::store::ObjectId::from_hex(read(&ref_file(store, v)).trim()).unwrap();
    let forged = dvol::repo::GroupCommit {
        parents: Vec::new(),
        members: vec![("a1".into(), id("a1")), ("b1".into(), id("a2"))],
        author: "Mallory <m@example.com>".into(),
        time: 0,
        tz_offset_min: 0,
        message: "evil".into(),
    };
    let body = forged.encode();
    let hex = forged.id().to_hex();
    (body, hex)
}

/// A token for `a*` lists only `a1` as the members of a new group, then writes a group commit
/// that also names `b1`: the server refuses the commit (it names a volume the token does not
/// cover); and when such a commit is on the remote anyway (placed in the served directory, as
/// on an encrypted remote the server cannot read), `dvol group clone` refuses it because `b1`
/// is not in the remote's member list, before making any volume.
#[test]
fn group_commit_naming_an_uncovered_volume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_server, port) = server_with_tokens(&store, None, EVIL_TOKENS);
    let url = format!("http://127.0.0.1:{port}");
    let (body, hex) = forged_group_commit(&url, &store);
    let a = "rw-token-a-1234567";
    let listed = call(port, a, &cas("groups/evil/members", None, b"a1\n"));
    assert!(
        matches!(listed, Ok(Response::Cas(CasOutcome::Updated))),
        "{listed:?}"
    );
    let key = format!("groups/evil/commits/{hex}");
    refused(
        port,
        a,
        &put(&key, &body),
        "member volume b1 of group evil is not covered",
    );
    assert!(!store.join(&key).exists(), "the refused commit was written");

    // The same commit placed on the remote behind the server's back, with the group ref.
    write(&store.join(&key), body);
    write(&store.join("groups/evil/refs/master"), format!("{hex}\n"));
    let victim = Host::new(&vars("rw-token-all-12345"));
    let err = victim.fails(&["group", "clone", &url, "evil"]);
    assert!(
        err.contains(&format!(
            "remote group commit {hex} of group evil names volume b1, which is not in the group's member list on the remote"
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = victim.ok(&["ls"]);
    assert!(!out.contains("b1") && !out.contains("a1"), "{out}");
}

/// Below admin, a group ref on a plain remote moves only forward, to a group commit the remote
/// holds, and every value it held is kept in `groups/<group>/reflog/<branch>`, which no token
/// may write.
#[test]
fn group_ref_moves_forward_only_with_a_reflog() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_server, port) = server_with_tokens(&store, None, GROUP_TOKENS);
    let url = format!("http://127.0.0.1:{port}");
    super::group_round_trip(&url, &vars("rw-token-app-12345"));
    let rw = "rw-token-app-12345";
    let key = "groups/app/refs/master";
    let head = read(&store.join(key));
    let log = read(&store.join("groups/app/reflog/master"));
    let one = log
        .split_whitespace()
        .nth(1)
        .expect("the first push's head")
        .to_string();
    assert_ne!(head.trim(), one, "{log}");

    // Rewind to the first group commit, or point at a group commit the remote lacks.
    refused(
        port,
        rw,
        &cas(key, Some(head.as_bytes()), format!("{one}\n").as_bytes()),
        "not a fast-forward (force-push needs an admin token)",
    );
    let missing = "ab".repeat(32);
    refused(
        port,
        rw,
        &cas(
            key,
            Some(head.as_bytes()),
            format!("{missing}\n").as_bytes(),
        ),
        &format!("the remote lacks group commit {missing}"),
    );
    let listed = call(port, rw, &cas("groups/fresh/members", None, b"app-a\n"));
    assert!(
        matches!(listed, Ok(Response::Cas(CasOutcome::Updated))),
        "{listed:?}"
    );
    refused(
        port,
        rw,
        &cas(
            "groups/fresh/refs/master",
            None,
            format!("{missing}\n").as_bytes(),
        ),
        &format!("the remote lacks group commit {missing}"),
    );
    assert_eq!(
        read(&store.join(key)),
        head,
        "a refused move changed the ref"
    );
    // The reflog is the server's: no token may write it.
    refused(
        port,
        rw,
        &put("groups/app/reflog/master", b""),
        "the server keeps it and no token may change it",
    );
    assert_eq!(read(&store.join("groups/app/reflog/master")), log);
}
