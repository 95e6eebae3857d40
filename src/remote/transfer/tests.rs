//! In-process tests of push and fetch against an in-memory backend: a round trip, an
//! incremental push that sends only what changed, and a fetch that refuses a record the
//! remote altered.

use super::*;
use crate::progress::NoProgress;
use crate::remote::mem::MemBackend;
use crate::remote::{Backend, RemoteError};
use crate::repo::{Repo, Unguarded};
use crate::Error;

fn repo_with(dir: &std::path::Path, files: &[(&str, Vec<u8>)]) -> Repo {
    let mut repo = Repo::open(dir).unwrap();
    repo.init_volume("v").unwrap();
    write_and_commit(&mut repo, files, "first");
    repo
}

fn write_and_commit(repo: &mut Repo, files: &[(&str, Vec<u8>)], msg: &str) -> ObjectId {
    let live = repo.branch_dir("v", "master");
    for (name, bytes) in files {
        std::fs::write(live.join(name), bytes).unwrap();
    }
    repo.commit("v", msg, &NoProgress, &Unguarded).unwrap().id
}

/// A plain push of `v`'s master.
fn master_request(cache: &std::path::Path) -> PushRequest<'_> {
    PushRequest {
        volume: "v",
        remote_volume: "v",
        branches: vec!["master".into()],
        force: false,
        repair: false,
        cache,
        seal: &Seal::Plain,
        extra: Vec::new(),
    }
}

fn push_master(repo: &Repo, remote: &MemBackend, cache: &std::path::Path) -> PushReport {
    push(repo, remote, &master_request(cache), &NoProgress).unwrap()
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn push_then_fetch_round_trips_every_object() {
    let (a, b, cache) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let repo = repo_with(
        a.path(),
        &[("f", pseudo_random(200_000, 1)), ("g", b"small".to_vec())],
    );
    let remote = MemBackend::default();
    let report = push_master(&repo, &remote, cache.path());
    assert!(
        matches!(report.branches[0].1, PushStatus::Pushed { .. }),
        "{report:?}"
    );
    let heads = remote_branches(&remote, "v").unwrap();
    assert_eq!(heads.len(), 1);
    let mut other = Repo::open(b.path()).unwrap();
    let got = download_history(
        &mut other,
        &remote,
        cache.path(),
        &[heads[0].1],
        &Seal::Plain,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(got.commits.len(), 1);
    assert!(got.objects >= 4, "{} objects", got.objects);
}

#[test]
fn a_second_push_sends_only_what_changed() {
    let (a, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut repo = repo_with(a.path(), &[("big", pseudo_random(1 << 20, 2))]);
    let remote = MemBackend::default();
    let first = push_master(&repo, &remote, cache.path());
    write_and_commit(&mut repo, &[("note", b"one more line".to_vec())], "second");
    let second = push_master(&repo, &remote, cache.path());
    assert!(
        second.bytes * 20 < first.bytes,
        "second push sent {} bytes after a first of {}",
        second.bytes,
        first.bytes
    );
}

#[test]
fn fetch_refuses_a_record_the_remote_altered() {
    let (a, b, cache) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let repo = repo_with(a.path(), &[("f", pseudo_random(100_000, 3))]);
    let remote = MemBackend::default();
    push_master(&repo, &remote, cache.path());
    for pack in remote
        .keys("packs/")
        .into_iter()
        .filter(|k| k.ends_with(".pack"))
    {
        remote.tamper(&pack, |bytes| {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x55;
        });
    }
    let head = remote_branches(&remote, "v").unwrap()[0].1;
    let mut other = Repo::open(b.path()).unwrap();
    let fresh_cache = tempfile::tempdir().unwrap();
    let err = download_history(
        &mut other,
        &remote,
        fresh_cache.path(),
        &[head],
        &Seal::Plain,
        &NoProgress,
    )
    .err()
    .expect("an altered record was accepted");
    assert!(
        matches!(err, Error::CorruptObject { .. } | Error::Remote(_)),
        "unexpected error: {err}"
    );
}

#[test]
fn push_errors_are_variants_callers_match_on() {
    let (a, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A volume whose master has no commit yet.
    let mut repo = Repo::open(a.path()).unwrap();
    repo.init_volume("v").unwrap();
    let remote = MemBackend::default();
    let err = push(&repo, &remote, &master_request(cache.path()), &NoProgress).unwrap_err();
    match err {
        Error::Remote(e) => assert!(
            matches!(&*e, RemoteError::NothingToPush(b) if b == "master"),
            "{e}"
        ),
        other => panic!("not a remote error: {other}"),
    }
    // Remote gc needs a carrier that lists volumes; the memory carrier says it cannot.
    let err = remote.list_volumes().unwrap_err();
    assert!(
        matches!(&err, Error::Remote(e) if matches!(**e, RemoteError::GcUnsupported { .. })),
        "{err}"
    );
}

#[test]
fn a_rejected_push_names_its_reason_as_a_variant() {
    let (a, b, cache) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let remote = MemBackend::default();
    let first = repo_with(a.path(), &[("f", b"one".to_vec())]);
    push_master(&first, &remote, cache.path());
    // An unrelated history pushed to the same branch is not a fast-forward.
    let second = repo_with(b.path(), &[("f", b"two".to_vec())]);
    let report = push_master(&second, &remote, cache.path());
    assert!(
        matches!(
            report.branches[0].1,
            PushStatus::Rejected {
                reason: RejectReason::NonFastForward,
                ..
            }
        ),
        "{:?}",
        report.branches
    );
    assert_eq!(RejectReason::NonFastForward.to_string(), "non-fast-forward");
}
