//! In-process tests of the core paths (scan, materialize, diff, gc, fsck) through the `Repo`
//! API on a temporary root: no binary, no Docker, fast. The end-to-end suite in `tests/`
//! drives the real CLI; these pin the library's behaviour where a failure is easiest to read.

use super::*;
use crate::progress::NoProgress;
use crate::snapshot::ChangeKind;
use std::os::unix::fs::{symlink, PermissionsExt};

/// A root with volume `v` whose master holds a small tree: files, a symlink, an empty
/// directory, a multi-chunk file, modes.
fn repo_with_tree() -> (tempfile::TempDir, Repo, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = Repo::open(dir.path()).unwrap();
    repo.init_volume("v").unwrap();
    let live = repo.branch_dir("v", "master");
    std::fs::create_dir_all(live.join("a/b")).unwrap();
    std::fs::create_dir(live.join("empty")).unwrap();
    std::fs::write(live.join("a/small"), b"hello").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(live.join("a/b/big"), &big).unwrap();
    std::fs::set_permissions(live.join("a/small"), std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink("a/small", live.join("link")).unwrap();
    (dir, repo, live)
}

fn commit(repo: &mut Repo, msg: &str) -> ObjectId {
    repo.commit("v", msg, &NoProgress, &Unguarded).unwrap().id
}

#[test]
fn reset_restores_contents_modes_links_and_removes_extras() {
    let (_dir, mut repo, live) = repo_with_tree();
    commit(&mut repo, "one");
    let big_before = std::fs::read(live.join("a/b/big")).unwrap();
    std::fs::write(live.join("a/small"), b"changed").unwrap();
    std::fs::remove_file(live.join("a/b/big")).unwrap();
    std::fs::write(live.join("extra"), b"x").unwrap();
    std::fs::remove_file(live.join("link")).unwrap();
    repo.reset_hard("v", "HEAD", &Unguarded).unwrap();
    assert_eq!(std::fs::read(live.join("a/small")).unwrap(), b"hello");
    assert_eq!(std::fs::read(live.join("a/b/big")).unwrap(), big_before);
    assert!(!live.join("extra").exists());
    assert!(live.join("empty").is_dir());
    assert_eq!(
        std::fs::read_link(live.join("link")).unwrap(),
        Path::new("a/small")
    );
    let mode = std::fs::metadata(live.join("a/small"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
}

#[test]
fn status_and_diff_name_exactly_what_changed() {
    let (_dir, mut repo, live) = repo_with_tree();
    commit(&mut repo, "one");
    let clean = status_of(&repo);
    assert!(clean.is_empty(), "{clean:?}");
    std::fs::write(live.join("a/small"), b"hello again").unwrap();
    std::fs::remove_dir(live.join("empty")).unwrap();
    std::fs::write(live.join("new"), b"n").unwrap();
    let changes = status_of(&repo);
    let seen: Vec<(String, ChangeKind)> = changes.into_iter().map(|c| (c.path, c.kind)).collect();
    assert!(
        seen.contains(&("a/small".into(), ChangeKind::Modified)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("new".into(), ChangeKind::Added)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("empty/".into(), ChangeKind::Deleted)),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    commit(&mut repo, "two");
    let between = diff_of(&repo, "HEAD^", Some("HEAD"));
    assert_eq!(between.len(), 3, "{between:?}");
}

/// Every change `status` finds, in the order it reports them.
fn status_of(repo: &Repo) -> Vec<crate::snapshot::Change> {
    let mut out = Vec::new();
    repo.status("v", "master", &mut |c| {
        out.push(c);
        Ok(())
    })
    .unwrap();
    out
}

/// Every change `diff from [to]` finds, in order.
fn diff_of(repo: &Repo, from: &str, to: Option<&str>) -> Vec<crate::snapshot::Change> {
    let mut out = Vec::new();
    repo.diff_refs("v", Some(from), to, &mut |c| {
        out.push(c);
        Ok(())
    })
    .unwrap();
    out
}

/// The live walk of `status` reports exactly what comparing the committed trees reports, in
/// the same order: files replaced by directories and back, a renamed directory, a mode
/// change, an emptied and a new empty directory, nested additions and deletions.
#[test]
fn status_streams_the_same_changes_as_a_diff_of_the_commit() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, mut repo, live) = repo_with_tree();
    std::fs::create_dir_all(live.join("d/deep/er")).unwrap();
    std::fs::write(live.join("d/deep/er/f"), b"1").unwrap();
    std::fs::write(live.join("d/x"), b"2").unwrap();
    std::fs::create_dir(live.join("was_dir")).unwrap();
    std::fs::write(live.join("was_dir/in"), b"3").unwrap();
    std::fs::write(live.join("was_file"), b"4").unwrap();
    commit(&mut repo, "one");
    std::fs::rename(live.join("d"), live.join("renamed")).unwrap();
    std::fs::remove_dir_all(live.join("was_dir")).unwrap();
    std::fs::write(live.join("was_dir"), b"now a file").unwrap();
    std::fs::remove_file(live.join("was_file")).unwrap();
    std::fs::create_dir(live.join("was_file")).unwrap();
    std::fs::write(live.join("was_file/inside"), b"5").unwrap();
    std::fs::create_dir(live.join("fresh_empty")).unwrap();
    std::fs::set_permissions(live.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let live_changes = status_of(&repo);
    let against_head = diff_of(&repo, "HEAD", None);
    commit(&mut repo, "two");
    let stored = diff_of(&repo, "HEAD^", Some("HEAD"));
    assert_eq!(live_changes, stored);
    assert_eq!(against_head, stored);
    let paths: Vec<&str> = stored.iter().map(|c| c.path.as_str()).collect();
    for p in [
        "d/deep/er/f",
        "renamed/x",
        "was_dir/in",
        "was_dir",
        "was_file",
        "was_file/inside",
        "fresh_empty/",
        "a/",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    assert!(status_of(&repo).is_empty());
}

#[test]
fn gc_keeps_what_refs_reach_and_frees_a_deleted_branch() {
    let (_dir, mut repo, live) = repo_with_tree();
    commit(&mut repo, "one");
    repo.checkout_new("v", "side", &Unguarded).unwrap();
    let side = repo.branch_dir("v", "side");
    let unique: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 239) as u8).collect();
    std::fs::write(side.join("only-on-side"), &unique).unwrap();
    commit(&mut repo, "side work");
    assert_eq!(repo.gc().unwrap().objects_removed, 0);
    repo.checkout("v", "master", &Unguarded).unwrap();
    repo.delete_branch("v", "side").unwrap();
    let freed = repo.gc().unwrap();
    assert!(
        freed.objects_removed > 0 && freed.commits_removed == 1,
        "{freed:?}"
    );
    let report = repo.fsck().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    std::fs::write(live.join("a/small"), b"dirty").unwrap();
    repo.reset_hard("v", "HEAD", &Unguarded).unwrap();
    assert_eq!(std::fs::read(live.join("a/small")).unwrap(), b"hello");
}

#[test]
fn fsck_reports_a_flipped_byte_in_a_pack() {
    let (dir, mut repo, _live) = repo_with_tree();
    commit(&mut repo, "one");
    let packs = dir.path().join(".dvol/packs");
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pack"))
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let report = repo.fsck().unwrap();
    assert!(!report.problems.is_empty(), "a flipped byte went unnoticed");
}

#[test]
fn an_unknown_object_kind_in_the_index_is_corruption_not_a_chunk() {
    let (_dir, mut repo, _live) = repo_with_tree();
    let id = commit(&mut repo, "one");
    repo.conn()
        .execute("UPDATE objects SET kind = 9 WHERE id = ?1", [&id.0[..]])
        .unwrap();
    let err = repo.store().locate(&id).unwrap_err();
    assert!(
        matches!(&err, Error::CorruptObject { detail, .. } if detail.contains("unknown kind 9")),
        "{err}"
    );
    let report = repo.fsck().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("unknown kind 9")),
        "{:?}",
        report.problems
    );
}

/// The content id of the file at `path` (its components) in commit `id`.
fn content_at(repo: &Repo, id: &ObjectId, path: &[&str]) -> ObjectId {
    let commit = Commit::decode(id, &repo.store().get(id).unwrap()).unwrap();
    let mut tree = crate::snapshot::tree::Tree::load(repo.store(), &commit.tree).unwrap();
    for (i, name) in path.iter().enumerate() {
        let entry = tree
            .entries
            .iter()
            .find(|e| e.name == name.as_bytes())
            .unwrap_or_else(|| panic!("{name} in the tree"));
        match &entry.node {
            crate::snapshot::Node::Dir { tree: sub } if i + 1 < path.len() => {
                tree = crate::snapshot::tree::Tree::load(repo.store(), sub).unwrap();
            }
            crate::snapshot::Node::File {
                content: Some(c), ..
            } => return *c,
            other => panic!("{name}: {other:?}"),
        }
    }
    panic!("{path:?} names no file")
}

/// An id names bytes, not a role: a file holding exactly another file's chunk-list node is
/// reached by gc as a chunk first, then as that list. gc still keeps what the list reaches
/// (it walked each id once, whatever its role, and dropped the big file's chunks).
#[test]
fn gc_keeps_what_a_list_reaches_when_a_file_holds_its_bytes() {
    let (_dir, mut repo, live) = repo_with_tree();
    let first = commit(&mut repo, "with big");
    let big = std::fs::read(live.join("a/b/big")).unwrap();
    let list = content_at(&repo, &first, &["a", "b", "big"]);
    let node = repo.store().get(&list).unwrap();
    assert!(node.len() <= crate::store::CHUNK_SIZE, "one chunk");
    std::fs::remove_file(live.join("a/b/big")).unwrap();
    std::fs::write(live.join("a/node-bytes"), &node).unwrap();
    commit(&mut repo, "a file equal to the list node");
    repo.gc().unwrap();
    let fsck = repo.fsck().unwrap();
    assert!(fsck.problems.is_empty(), "{:?}", fsck.problems);
    repo.reset_hard("v", "HEAD^", &Unguarded).unwrap();
    assert_eq!(std::fs::read(live.join("a/b/big")).unwrap(), big);
}
