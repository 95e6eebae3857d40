//! Encryption at rest (`remote add --encrypt`): what a remote's files reveal with and without
//! it (path and S3), round trips on every carrier, wrong or missing keys, tampered records,
//! indexes and refs, and a plain marker put in place of an encrypted one.

use super::{fill, same_tree, Host, Vars};
use crate::support::{noise, write};
use std::path::{Path, PathBuf};

const PASS: &str = "correct horse battery staple";

fn with_pass(vars: &Vars, pass: &str) -> Vars {
    let mut v = vars.clone();
    v.push(("DVOL_PASSPHRASE".into(), pass.into()));
    v
}

/// Every regular file under `dir`, with its contents.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.is_file() {
            let data = std::fs::read(&p).unwrap();
            out.push((p, data));
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What the files under `dir` reveal of `marker`: (its bytes, its raw id, its hex id).
fn reveals(dir: &Path, marker: &[u8]) -> (bool, bool, bool) {
    let id = blake3::hash(marker);
    let hex = id.to_hex();
    let all = files(dir);
    let any = |n: &[u8]| {
        all.iter()
            .any(|(p, d)| contains(d, n) || contains(p.as_os_str().as_encoded_bytes(), n))
    };
    (any(marker), any(id.as_bytes()), any(hex.as_bytes()))
}

/// Push a volume holding an incompressible 8 KiB marker at a chunk boundary to `url`.
fn push_marker(host: &Host, url: &str, encrypt: bool, marker: &[u8]) {
    host.ok(&["init", "db"]);
    let mut data = noise(1, 8192 * 5);
    data.extend_from_slice(marker);
    data.extend(noise(2, 8192 * 2));
    write(&host.live().join("table.db"), &data);
    host.commit("marker");
    let mut add = vec!["remote", "add"];
    if encrypt {
        add.push("--encrypt");
    }
    add.extend(["origin", url]);
    host.ok(&add);
    host.ok(&["push"]);
}

/// One remote of a marker test: its URL, the directory whose files hold what it stores, and the
/// environment that reaches it.
struct Target {
    url: String,
    storage: PathBuf,
    vars: Vars,
}

/// The control push reveals the marker's bytes and raw id; the encrypted one neither, nor its
/// hex id. (A plain remote stores ids raw, so the hex id is absent from both.)
fn marker_test(control: &Target, sealed: &Target) {
    let marker = noise(42, 8192);
    let plain = Host::new(&control.vars);
    push_marker(&plain, &control.url, false, &marker);
    let (bytes, raw, _) = reveals(&control.storage, &marker);
    assert!(
        bytes && raw,
        "the control remote shows the marker: {bytes} {raw}"
    );

    let secret = Host::new(&with_pass(&sealed.vars, PASS));
    push_marker(&secret, &sealed.url, true, &marker);
    assert_eq!(
        reveals(&sealed.storage, &marker),
        (false, false, false),
        "the encrypted remote reveals the marker"
    );
    let head = secret.ok(&["log", "--json"]);
    let commit = head.split('"').find(|s| s.len() == 64).expect("commit id");
    let all = files(&sealed.storage);
    assert!(!all.iter().any(|(_, d)| contains(d, commit.as_bytes())));
    // The encrypted remote clones bit-exact with the key.
    let qa = Host::new(&with_pass(&sealed.vars, PASS));
    qa.ok(&["clone", &sealed.url, "db"]);
    same_tree(&secret.live(), &qa.live());
}

#[test]
fn encryption_hides_content_and_ids_on_a_path_remote() {
    let dir = tempfile::tempdir().unwrap();
    let target = |name: &str| Target {
        url: dir.path().join(name).to_string_lossy().into_owned(),
        storage: dir.path().join(name),
        vars: Vars::new(),
    };
    marker_test(&target("plain"), &target("sealed"));
}

#[test]
fn encryption_hides_content_and_ids_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, vars) = super::s3::s3s_fs_server(dir.path());
    let target = |name: &str| Target {
        url: format!("s3://bucket/{name}"),
        storage: dir.path().join("bucket").join(name),
        vars: vars.clone(),
    };
    marker_test(&target("plain"), &target("sealed"));
}

/// The same on Garage, the distributed engine: one cluster per remote, so each data directory
/// holds one remote's blocks (stored uncompressed, so the control finds its marker).
#[test]
fn encryption_hides_content_and_ids_on_garage() {
    if !crate::support::require_binary("garage", "cargo install garage --locked") {
        return;
    }
    let (control, sealed) = (super::s3::garage(1), super::s3::garage(1));
    let target = |g: &super::s3::Garage| Target {
        url: "s3://bucket/dvol".into(),
        storage: g.data_dir(0),
        vars: g.vars(0),
    };
    marker_test(&target(&control), &target(&sealed));
}

/// Laptop pushes encrypted, QA clones, changes and pushes, laptop pulls: bit-exact.
pub fn encrypted_round_trip(url: &str, vars: &Vars) {
    let vars = with_pass(vars, PASS);
    let (laptop, qa) = (Host::new(&vars), Host::new(&vars));
    laptop.ok(&["init", "db"]);
    fill(&laptop.live(), 1);
    laptop.commit("first");
    laptop.ok(&["remote", "add", "--encrypt", "origin", url]);
    laptop.ok(&["push"]);
    qa.ok(&["clone", url, "db"]);
    same_tree(&laptop.live(), &qa.live());
    write(&qa.live().join("qa.txt"), "from qa\n");
    fill(&qa.live().join("more"), 7);
    qa.commit("qa");
    qa.ok(&["push"]);
    let out = laptop.ok(&["pull"]);
    assert!(out.contains("Fast-forward"), "{out}");
    same_tree(&laptop.live(), &qa.live());
    assert_eq!(laptop.head(), qa.head());
}

#[test]
fn encrypted_round_trip_path() {
    let dir = tempfile::tempdir().unwrap();
    encrypted_round_trip(dir.path().join("r").to_str().unwrap(), &Vars::new());
}

#[test]
fn encrypted_round_trip_s3() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, vars) = super::s3::s3s_fs_server(dir.path());
    encrypted_round_trip("s3://bucket/enc", &vars);
}

#[test]
fn encrypted_round_trip_http() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = super::http::server(&dir.path().join("store"), None);
    let vars: Vars = vec![("DVOL_TOKEN".into(), super::http::TOKEN.into())];
    encrypted_round_trip(&format!("http://127.0.0.1:{port}"), &vars);
}

#[test]
fn encrypted_round_trip_with_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, noise(5, 32)).unwrap();
    let url = dir.path().join("r").to_string_lossy().into_owned();
    let vars: Vars = vec![("DVOL_KEY_FILE".into(), key.to_string_lossy().into())];
    let (laptop, qa) = (Host::new(&vars), Host::new(&Vars::new()));
    laptop.ok(&["init", "db"]);
    fill(&laptop.live(), 3);
    laptop.commit("one");
    laptop.ok(&["remote", "add", "--encrypt", "origin", &url]);
    laptop.ok(&["push"]);
    // The passphrase is not the key file; the key file by flag is.
    let err = Host::new(&with_pass(&Vars::new(), PASS)).fails(&["clone", &url, "db"]);
    assert!(err.contains("wrong passphrase or key file"), "{err}");
    qa.ok(&["--key-file", key.to_str().unwrap(), "clone", &url, "db"]);
    same_tree(&laptop.live(), &qa.live());
    // A short key file is refused with a clear message.
    let short = dir.path().join("short");
    std::fs::write(&short, "abc").unwrap();
    let err = qa.fails(&["--key-file", short.to_str().unwrap(), "fetch"]);
    assert!(err.contains("key file is too short"), "{err}");
}

/// A remote's files and contents, to show that nothing was written.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files(dir)
}

#[test]
fn wrong_or_missing_key_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("r");
    let url = store.to_string_lossy().into_owned();
    let mut laptop = Host::new(&with_pass(&Vars::new(), PASS));
    laptop.ok(&["init", "db"]);
    fill(&laptop.live(), 1);
    laptop.commit("one");
    laptop.ok(&["remote", "add", "--encrypt", "origin", &url]);
    laptop.ok(&["push"]);
    let before = snapshot(&store);

    // Wrong passphrase: clone, push (after a new commit), fetch, remote add --encrypt.
    let wrong = with_pass(&Vars::new(), "not the passphrase");
    let other = Host::new(&wrong);
    let err = other.fails(&["clone", &url, "db"]);
    assert_eq!(
        err.trim(),
        format!("Error: wrong passphrase or key file for the encrypted remote {url}")
    );
    assert!(!other.ok(&["list"]).contains("db"), "no volume is left");
    write(&laptop.live().join("new.txt"), "new\n");
    laptop.commit("two");
    laptop.vars = wrong.clone();
    let err = laptop.fails(&["push"]);
    assert!(err.contains("wrong passphrase or key file"), "{err}");
    let err = laptop.fails(&["fetch"]);
    assert!(err.contains("wrong passphrase or key file"), "{err}");
    other.ok(&["init", "x"]);
    let err = other.fails(&["remote", "add", "--encrypt", "origin", &url]);
    assert!(err.contains("wrong passphrase or key file"), "{err}");
    assert_eq!(other.ok(&["remote"]), "", "no remote is recorded");

    // No key at all.
    let none = Host::new(&Vars::new());
    let err = none.fails(&["clone", &url, "db"]);
    assert!(
        err.contains("is encrypted: give its passphrase or key file"),
        "{err}"
    );
    none.ok(&["init", "y"]);
    let err = none.fails(&["remote", "add", "--encrypt", "o", &url]);
    assert!(err.contains("--encrypt needs a passphrase"), "{err}");
    assert_eq!(
        before,
        snapshot(&store),
        "a failed command changed the remote"
    );
}

#[test]
fn plain_and_encrypted_remotes_do_not_mix() {
    let dir = tempfile::tempdir().unwrap();
    let plain_url = dir.path().join("plain").to_string_lossy().into_owned();
    let host = Host::new(&with_pass(&Vars::new(), PASS));
    host.ok(&["init", "db"]);
    fill(&host.live(), 1);
    host.commit("one");
    host.ok(&["remote", "add", "plain", &plain_url]);
    host.ok(&["push", "plain"]);
    // A location that holds plain data cannot become encrypted.
    let err = host.fails(&["remote", "add", "--encrypt", "enc", &plain_url]);
    assert!(err.contains("already holds unencrypted dvol data"), "{err}");

    // Someone replaces an encrypted remote's marker with a plain one: refused.
    let enc = dir.path().join("enc");
    let enc_url = enc.to_string_lossy().into_owned();
    host.ok(&["remote", "add", "--encrypt", "enc", &enc_url]);
    host.ok(&["push", "enc"]);
    std::fs::copy(
        dir.path().join("plain/dvol-remote.json"),
        enc.join("dvol-remote.json"),
    )
    .unwrap();
    write(&host.live().join("n"), "n");
    host.commit("two");
    let err = host.fails(&["push", "enc"]);
    assert!(
        err.contains("recorded as encrypted") && err.contains("in the clear"),
        "{err}"
    );
}

/// Clone fails naming the object or file that was tampered with; no volume is left.
fn clone_fails(url: &str, what: &str) -> String {
    let qa = Host::new(&with_pass(&Vars::new(), PASS));
    let err = qa.fails(&["clone", url, "db"]);
    assert!(err.contains(what), "{err}");
    assert!(!qa.ok(&["list"]).contains("db"));
    err
}

#[test]
fn tampered_records_indexes_and_refs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("r");
    let url = store.to_string_lossy().into_owned();
    let laptop = Host::new(&with_pass(&Vars::new(), PASS));
    laptop.ok(&["init", "db"]);
    fill(&laptop.live(), 1);
    laptop.commit("one");
    laptop.ok(&["checkout", "-b", "qa"]);
    write(&laptop.live().join("qa.txt"), "qa\n");
    laptop.commit("qa");
    laptop.ok(&["remote", "add", "--encrypt", "origin", &url]);
    laptop.ok(&["push", "--all"]);
    let pack = files(&store.join("packs"))
        .into_iter()
        .find(|(p, _)| p.extension().is_some_and(|e| e == "pack"))
        .unwrap();

    // One bit of every record in turn (sampled): clone refuses, naming the object.
    let mut rounds = 0;
    for at in (16..pack.1.len()).step_by(pack.1.len() / 40 + 1) {
        let mut bad = pack.1.clone();
        bad[at] ^= 0x10;
        std::fs::write(&pack.0, &bad).unwrap();
        let err = clone_fails(&url, "is corrupt");
        assert!(
            err.contains("failed authentication") || err.contains("record does not match"),
            "{err}"
        );
        let id = err.split_whitespace().nth(2).unwrap();
        assert_eq!(id.len(), 64, "the object is named: {err}");
        rounds += 1;
    }
    assert!(rounds >= 39, "{rounds}");
    std::fs::write(&pack.0, &pack.1).unwrap();

    // An index.
    let idx = pack.0.with_extension("idx");
    let good_idx = std::fs::read(&idx).unwrap();
    let mut bad = good_idx.clone();
    bad[40] ^= 1;
    std::fs::write(&idx, &bad).unwrap();
    clone_fails(&url, "failed authentication");
    std::fs::write(&idx, &good_idx).unwrap();

    // A ref replayed under another branch name.
    let refs = store.join("refs/db/heads");
    let master = std::fs::read(refs.join("master")).unwrap();
    let qa = std::fs::read(refs.join("qa")).unwrap();
    std::fs::write(refs.join("qa"), &master).unwrap();
    let err = clone_fails(
        &url,
        "ref refs/db/heads/qa on the remote failed authentication",
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::write(refs.join("qa"), &qa).unwrap();

    // Restored: the clone works.
    let qa_host = Host::new(&with_pass(&Vars::new(), PASS));
    qa_host.ok(&["clone", &url, "db"]);
    laptop.ok(&["checkout", "master"]);
    same_tree(&laptop.live(), &qa_host.live());
    laptop.ok(&["checkout", "qa"]);
    qa_host.ok(&["checkout", "qa"]);
    same_tree(&laptop.live(), &qa_host.live());
}

/// A locally pruned commit pushed to an encrypted remote is listed as expired under its keyed
/// id: no file of the remote names a commit id, and a clone still shows the commit expired.
#[test]
fn expired_lists_on_an_encrypted_remote_name_no_commit_id() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("r");
    let url = storage.to_str().unwrap();
    let vars = with_pass(&Vars::new(), PASS);
    let (laptop, qa) = (Host::new(&vars), Host::new(&vars));
    laptop.ok(&["init", "db"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        write(&laptop.live().join("data"), noise(40 + i, 64 << 10));
        ids.push(laptop.commit(&format!("c{i}")));
    }
    laptop.ok(&["prune", "--keep-last", "1"]);
    laptop.ok(&["remote", "add", "--encrypt", "origin", url]);
    laptop.ok(&["push"]);
    let all = files(&storage);
    assert!(all
        .iter()
        .any(|(p, _)| p.starts_with(storage.join("expired"))));
    for id in &ids {
        assert!(id.len() >= 12, "commit printed {id:?}");
        let named = all.iter().any(|(p, d)| {
            contains(d, id.as_bytes()) || contains(p.as_os_str().as_encoded_bytes(), id.as_bytes())
        });
        assert!(!named, "the encrypted remote names commit {id}");
    }
    qa.ok(&["clone", url, "db"]);
    let log = qa.ok(&["log", "--oneline"]);
    assert_eq!(
        log.lines().filter(|l| l.contains("(expired)")).count(),
        2,
        "{log}"
    );
}
