//! Hostile input from remotes: every decoder of received bytes (wire frames, protocol messages,
//! pack indexes, refs, `dvol-remote.json`, keys and names) fed random and mutated bytes returns
//! an error instead of panicking, and a message claiming a huge length is refused before
//! anything that large is allocated (measured with a counting allocator). Keys and names from
//! a remote or a client are validated at every entry point; the server never touches a path
//! outside its store. Plus the regression corpus in tests/corpus.

use dvol::remote::idx::{self, IdxEntry};
use dvol::remote::proto::{self, Call, Request, Response, RpcBackend, MAX_FRAME};
use dvol::remote::{check_key, check_prefix, parse_ref, Backend, CasOutcome, RemoteFormat};
use dvol::store::{Kind, ObjectId};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The system allocator, recording the largest single allocation of threads that ask.
struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, so
// `Counting` keeps all of `System`'s guarantees; `note` does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(p, l) }
    }
}

fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The largest single allocation `f` made on this thread.
fn largest_alloc(f: impl FnOnce()) -> usize {
    LARGEST.with(|m| m.set(0));
    TRACK.with(|t| t.set(true));
    f();
    TRACK.with(|t| t.set(false));
    LARGEST.with(|m| m.get())
}

/// Bound on what decoding `input` may allocate at once: a small multiple of its size, or the
/// 1 MiB that serde and `read_frame` preallocate at most for a claimed length.
fn bound(input: &[u8]) -> usize {
    (input.len() * 4).max((1 << 20) + (64 << 10))
}

/// Every decoder of bytes received from a remote (client side) or a client (server side).
fn decode_all(bytes: &[u8]) {
    let _ = proto::read_frame(&mut &bytes[..]);
    let _ = proto::decode::<Request>(bytes);
    let _ = proto::decode::<Response>(bytes);
    let _ = idx::decode("packs/x.idx", bytes);
    let _ = parse_ref("refs/v/heads/b", bytes);
    let _ = serde_json::from_slice::<RemoteFormat>(bytes);
    let s = String::from_utf8_lossy(bytes);
    let _ = check_key(&s);
    let _ = check_prefix(&s);
    let _ = dvol::RemoteUrl::parse(&s);
    let _ = dvol::names::validate("branch", &s);
}

fn decode_bounded(bytes: &[u8]) {
    let n = largest_alloc(|| decode_all(bytes));
    assert!(
        n <= bound(bytes),
        "{n} bytes allocated at once for {} input bytes",
        bytes.len()
    );
}

fn valid_messages(seed: &[u8]) -> Vec<Vec<u8>> {
    let key = format!("packs/{}.pack", ObjectId::hash(seed).to_hex());
    let entries = vec![IdxEntry {
        id: ObjectId::hash(seed),
        kind: Kind::Chunk,
        codec: 1,
        offset: 16,
        clen: seed.len() as u32,
        ulen: seed.len() as u32 * 2,
        boff: None,
    }];
    let mut framed = Vec::new();
    let put = proto::encode(&Request::Put {
        key: key.clone(),
        data: seed.to_vec(),
    });
    proto::write_frame(&mut framed, &put).unwrap();
    vec![
        put,
        framed,
        proto::encode(&Request::GetRange {
            key: key.clone(),
            offset: 3,
            len: 9,
        }),
        proto::encode(&Request::Cas {
            key: "refs/db/heads/master".into(),
            expected: Some(seed.to_vec()),
            new: seed.to_vec(),
        }),
        proto::encode(&Response::Keys(vec![key.clone(), "refs/a/heads/b".into()])),
        proto::encode(&Response::Data(Some(seed.to_vec()))),
        proto::encode(&Response::Cas(CasOutcome::Conflict {
            current: Some(seed.to_vec()),
        })),
        idx::encode(&entries),
        format!("{}\n", ObjectId::hash(seed).to_hex()).into_bytes(),
        br#"{"format":"dvol-remote","version":1}"#.to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_or_overallocate(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_bounded(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic_or_overallocate(
        seed in prop::collection::vec(any::<u8>(), 1..64),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        for mut bytes in valid_messages(&seed) {
            for (i, v) in &flips {
                let i = i.index(bytes.len());
                bytes[i] ^= v;
            }
            decode_bounded(&bytes);
            let end = cut.index(bytes.len() + 1);
            decode_bounded(&bytes[..end]);
        }
    }

    /// Whatever keys a hostile server lists, the client keeps only valid ones under the prefix,
    /// and names of branches it reports are valid names.
    #[test]
    fn hostile_server_answers_are_filtered(keys in prop::collection::vec(hostile_key(), 0..12)) {
        let fake = RpcBackend(Fake(Mutex::new(Response::Keys(keys.clone()))));
        for prefix in ["packs/", "refs/db/heads/"] {
            for k in fake.list(prefix).unwrap() {
                prop_assert!(k.starts_with(prefix) && check_key(&k).is_ok(), "{k}");
                prop_assert!(!k.contains(".."), "{k}");
            }
        }
        for (branch, _) in dvol::remote::transfer::remote_branches(&fake, "db").unwrap_or_default() {
            prop_assert!(dvol::names::validate("branch", &branch).is_ok(), "{branch}");
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Any key is either refused or names a file inside the store, and the server side never
    /// creates anything outside its directory.
    #[test]
    fn server_never_writes_outside_its_store(key in hostile_key(), data in prop::collection::vec(any::<u8>(), 0..16)) {
        if check_key(&key).is_ok() {
            prop_assert!(!key.starts_with('/') && !key.split('/').any(|c| c == ".." || c == "." || c.is_empty()), "{key}");
        }
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("a/b/store");
        let fs = dvol::remote::fs::FsBackend::new(&store);
        for req in [
            Request::Put { key: key.clone(), data: data.clone() },
            Request::Cas { key: key.clone(), expected: None, new: data.clone() },
            Request::Get { key: key.clone() },
            Request::GetRange { key: key.clone(), offset: 0, len: 1 },
            Request::List { prefix: key.clone() },
            Request::Delete { key: key.clone() },
        ] {
            let _ = proto::handle(&fs, req);
        }
        for e in walkdir::WalkDir::new(dir.path()).min_depth(1) {
            let p = e.unwrap().path().to_path_buf();
            prop_assert!(
                p.starts_with(&store) || store.starts_with(&p),
                "{} written for key {key:?}", p.display()
            );
        }
    }
}

/// Keys built from path components a hostile peer would try.
fn hostile_key() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("refs".to_string()),
        Just("packs".to_string()),
        Just("heads".to_string()),
        Just("db".to_string()),
        Just("master".to_string()),
        Just("dvol-remote.json".to_string()),
        Just(format!("{}.pack", "a".repeat(64))),
        Just(format!("{}.idx", "b".repeat(64))),
        Just("/etc/passwd".to_string()),
        "[a-z.~:/\\\\ -]{1,8}",
        any::<String>(),
    ];
    prop::collection::vec(part, 1..6).prop_map(|v| v.join("/"))
}

/// A server that answers every request with the same (hostile) response.
struct Fake(Mutex<Response>);

impl Call for Fake {
    fn call(&self, req: Request) -> dvol::Result<Response> {
        let r = self.0.lock().unwrap();
        // Responses are not Clone: round-trip through the encoding.
        let bytes = proto::encode(&*r);
        let _ = req;
        proto::decode(&bytes)
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

/// An in-memory remote holding whatever a hostile remote would store.
struct Mem(Mutex<BTreeMap<String, Vec<u8>>>);

impl Backend for Mem {
    fn describe(&self) -> String {
        "mem".into()
    }
    fn list(&self, prefix: &str) -> dvol::Result<Vec<String>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn get(&self, key: &str) -> dvol::Result<Option<Vec<u8>>> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> dvol::Result<Vec<u8>> {
        let m = self.0.lock().unwrap();
        let v = m
            .get(key)
            .ok_or_else(|| dvol::remote::RemoteError::MissingKey {
                what: "a key".into(),
                key: key.into(),
            })?;
        v.get(offset as usize..(offset + len) as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                dvol::remote::RemoteError::ShortRead {
                    remote: "test".into(),
                    key: key.into(),
                    got: v.len() as u64,
                    want: len,
                }
                .into()
            })
    }
    fn put(&self, key: &str, data: Vec<u8>) -> dvol::Result<()> {
        self.0.lock().unwrap().insert(key.into(), data);
        Ok(())
    }
    fn cas(&self, key: &str, _: Option<&[u8]>, new: Vec<u8>) -> dvol::Result<CasOutcome> {
        self.put(key, new)?;
        Ok(CasOutcome::Updated)
    }
    fn delete(&self, key: &str) -> dvol::Result<()> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

#[test]
fn a_frame_claiming_a_huge_length_is_refused_before_allocating() {
    // Over the limit: refused from the 4-byte header alone.
    let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    let n = largest_alloc(|| {
        let e = proto::read_frame(&mut input).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    });
    assert!(n < 4096, "{n}");
    // At the limit but cut short: memory grows only with the bytes that arrive.
    let mut frame = (MAX_FRAME as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&[0; 100]);
    let n = largest_alloc(|| assert!(proto::read_frame(&mut &frame[..]).is_err()));
    assert!(n <= 2 << 20, "{n} bytes allocated for a 104-byte frame");
    // A message whose byte string claims 2^63 bytes.
    let put = [
        4u8, 1, b'x', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ];
    let n = largest_alloc(|| assert!(proto::decode::<Request>(&put).is_err()));
    assert!(n < 4096, "{n}");
    // An index claiming 2^32 entries.
    let mut i = b"DVOLIDX\0".to_vec();
    i.extend_from_slice(&1u32.to_le_bytes());
    i.extend_from_slice(&u32::MAX.to_le_bytes());
    i.extend_from_slice(&[0; 32]);
    let n = largest_alloc(|| assert!(idx::decode("packs/x.idx", &i).is_err()));
    assert!(n < 4096, "{n}");
}

#[test]
fn hostile_remote_contents_are_refused_with_errors() {
    let m = Mem(Mutex::new(BTreeMap::new()));
    // No marker, a foreign marker, a marker of another version, garbage.
    assert!(!dvol::remote::check_format(&m, false).unwrap());
    for bad in [
        &br#"{"format":"git","version":1}"#[..],
        br#"{"format":"dvol-remote","version":2}"#,
        br#"{"format":"dvol-remote"}"#,
        b"\xff\xfe",
        &[b'['; 5000],
    ] {
        m.put("dvol-remote.json", bad.to_vec()).unwrap();
        assert!(dvol::remote::check_format(&m, true).is_err(), "{bad:?}");
    }
    // Refs: a branch name that is not a valid name is skipped; a ref value that is not a
    // commit id is an error naming the ref.
    let id = ObjectId::hash(b"c").to_hex();
    m.put("refs/db/heads/ok", format!("{id}\n").into_bytes())
        .unwrap();
    for bad in ["..", ".hidden", "a b", "-x", "x~1", "HEAD^"] {
        m.put(
            &format!("refs/db/heads/{bad}"),
            format!("{id}\n").into_bytes(),
        )
        .unwrap();
    }
    let refs = dvol::remote::transfer::remote_branches(&m, "db").unwrap();
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0].0, "ok");
    m.put("refs/db/heads/ok", b"not a commit".to_vec()).unwrap();
    let err = dvol::remote::transfer::remote_branches(&m, "db")
        .unwrap_err()
        .to_string();
    assert!(err.contains("refs/db/heads/ok"), "{err}");
    // Keys and prefixes that would leave the store are refused at the client too.
    let fake = RpcBackend(Fake(Mutex::new(Response::Done)));
    for key in [
        "refs/../../etc/heads/x",
        "refs/db/heads/..",
        "refs/db/heads/a/b",
        "packs/../../x.pack",
        "/etc/passwd",
        "../dvol-remote.json",
    ] {
        assert!(fake.get(key).is_err(), "{key}");
        assert!(fake.put(key, vec![]).is_err(), "{key}");
        assert!(fake.cas(key, None, vec![]).is_err(), "{key}");
        assert!(fake.delete(key).is_err(), "{key}");
    }
    for prefix in ["refs/../heads/", "../", "refs/db/heads/x/", "/"] {
        assert!(fake.list(prefix).is_err(), "{prefix}");
    }
}

#[test]
fn bad_names_from_users_for_remotes_are_refused() {
    let env = crate::support::Env::new();
    env.init("db");
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("r");
    let url = url.to_str().unwrap();
    env.ok(&["remote", "add", "origin", url]);
    for bad in ["..", "../x", "a/b", ".x", "x:y"] {
        let err = env.fails(&["clone", url, bad]);
        assert!(err.contains("invalid volume name"), "{bad}: {err}");
        let err = env.fails(&["clone", url, "db2", bad]);
        assert!(err.contains("invalid volume name"), "{bad}: {err}");
        let err = env.fails(&["remote", "add", bad, url]);
        assert!(err.contains("invalid remote name"), "{bad}: {err}");
        let err = env.fails(&["remote", "add", "r", url, "--remote-volume", bad]);
        assert!(err.contains("invalid volume name"), "{bad}: {err}");
        let err = env.fails(&["push", "origin", bad]);
        assert!(err.contains("invalid"), "{bad}: {err}");
    }
    assert!(!dir.path().join("r").exists(), "nothing written");
}

#[test]
fn remote_regression_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/corpus exists") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        decode_bounded(&bytes);
        n += 1;
    }
    assert!(n >= 9, "{n}");
}
