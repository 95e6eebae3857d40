//! Differences between two trees (either may be absent): added, modified and deleted paths,
//! skipping identical subtrees by id. Changes are handed to the caller one at a time, in path
//! order, as each directory is compared: one directory's trees are held at a time, never the
//! list of a volume's changes. [`super::status`] compares live data the same way.

use super::tree::{Entry, Node, Tree};
use crate::store::ObjectId;
use crate::Result;
use serde::Serialize;
use std::cmp::Ordering;

/// How a path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One changed path. Directories end with '/'.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    pub old_size: u64,
    pub new_size: u64,
}

/// Loads a tree by id (from the store, or from an in-memory scan).
pub type TreeLoader<'a> = dyn Fn(&ObjectId) -> Result<Tree> + 'a;

/// Receives changes one at a time, in path order.
pub type Emit<'a> = dyn FnMut(Change) -> Result<()> + 'a;

/// Changes that turn tree `a` into tree `b`, handed to `emit` as they are found.
pub fn diff(
    load: &TreeLoader,
    a: Option<&ObjectId>,
    b: Option<&ObjectId>,
    emit: &mut Emit,
) -> Result<()> {
    diff_dirs(load, a, b, "", emit)
}

/// Changes from directory `a` to directory `b`, both at `prefix` (empty, or ending in '/').
pub(super) fn diff_dirs(
    load: &TreeLoader,
    a: Option<&ObjectId>,
    b: Option<&ObjectId>,
    prefix: &str,
    emit: &mut Emit,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    check_depth(prefix, a.or(b).expect("a != b, so one is set"))?;
    let ta = a.map(load).transpose()?;
    let tb = b.map(load).transpose()?;
    let (ea, eb) = (entries_of(ta.as_ref()), entries_of(tb.as_ref()));
    if !dir_header(ta.as_ref(), tb.as_ref(), eb.is_empty(), prefix, emit)? {
        return Ok(());
    }
    merge(ea, eb, |x, y, name| {
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        let (da, db) = (dir_of(x), dir_of(y));
        if da.is_some() || db.is_some() {
            diff_dirs(load, da.as_ref(), db.as_ref(), &format!("{path}/"), emit)?;
        }
        diff_leaves(x, y, &path, emit)
    })
}

/// Refuse to compare past the depth limit (recursion is one level per directory).
pub(super) fn check_depth(prefix: &str, id: &ObjectId) -> Result<()> {
    if prefix.bytes().filter(|c| *c == b'/').count() > super::tree::MAX_TREE_DEPTH as usize {
        return Err(crate::Error::TooDeep {
            id: id.to_hex(),
            limit: super::tree::MAX_TREE_DEPTH,
        });
    }
    Ok(())
}

fn entries_of(t: Option<&Tree>) -> &[Entry] {
    t.map_or(&[], |t| &t.entries)
}

/// What a directory at `prefix` contributes itself, `a` before and `b` after (`b_empty`: it
/// has no entries after): a change of owner or mode, or, when it appears or disappears
/// empty, that. Returns whether its entries still need comparing.
pub(super) fn dir_header(
    a: Option<&Tree>,
    b: Option<&Tree>,
    b_empty: bool,
    prefix: &str,
    emit: &mut Emit,
) -> Result<bool> {
    if prefix.is_empty() {
        return Ok(true);
    }
    if let (Some(x), Some(y)) = (a, b) {
        if (x.meta.mode, x.meta.uid, x.meta.gid) != (y.meta.mode, y.meta.uid, y.meta.gid) {
            emit(change(prefix.to_string(), ChangeKind::Modified, 0, 0))?;
        }
    }
    let a_empty = entries_of(a).is_empty();
    if a_empty && b_empty && (a.is_none() || b.is_none()) {
        let kind = if a.is_none() {
            ChangeKind::Added
        } else {
            ChangeKind::Deleted
        };
        emit(change(prefix.to_string(), kind, 0, 0))?;
        return Ok(false);
    }
    Ok(true)
}

/// Walk two name-sorted entry lists together, calling `f` with each name's node on either
/// side and the name.
pub(super) fn merge<'a>(
    ea: &'a [Entry],
    eb: &'a [Entry],
    mut f: impl FnMut(Option<&'a Node>, Option<&'a Node>, &'a [u8]) -> Result<()>,
) -> Result<()> {
    let (mut i, mut j) = (0, 0);
    while i < ea.len() || j < eb.len() {
        let ord = match (ea.get(i), eb.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (x, y) = match ord {
            Ordering::Less => (ea.get(i), None),
            Ordering::Greater => (None, eb.get(j)),
            Ordering::Equal => (ea.get(i), eb.get(j)),
        };
        let name = &x.or(y).expect("one side").name;
        f(x.map(|e| &e.node), y.map(|e| &e.node), name)?;
        if ord != Ordering::Greater {
            i += 1;
        }
        if ord != Ordering::Less {
            j += 1;
        }
    }
    Ok(())
}

/// The tree of a directory node.
pub(super) fn dir_of(n: Option<&Node>) -> Option<ObjectId> {
    match n {
        Some(Node::Dir { tree }) => Some(*tree),
        _ => None,
    }
}

/// The change at `path` between two nodes, directories aside (they are compared by
/// [`diff_dirs`]).
pub(super) fn diff_leaves(
    a: Option<&Node>,
    b: Option<&Node>,
    path: &str,
    emit: &mut Emit,
) -> Result<()> {
    let leaf_a = a.filter(|n| !matches!(n, Node::Dir { .. }));
    let leaf_b = b.filter(|n| !matches!(n, Node::Dir { .. }));
    match (leaf_a, leaf_b) {
        (Some(x), None) => emit(change(path.into(), ChangeKind::Deleted, size_of(x), 0)),
        (None, Some(y)) => emit(change(path.into(), ChangeKind::Added, 0, size_of(y))),
        (Some(x), Some(y)) if !same_leaf(x, y) => emit(change(
            path.into(),
            ChangeKind::Modified,
            size_of(x),
            size_of(y),
        )),
        _ => Ok(()),
    }
}

/// Leaves are equal when content, type and permissions/owner are; mtime alone is not a change.
fn same_leaf(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (
            Node::File {
                meta: ma,
                size: sa,
                content: ca,
            },
            Node::File {
                meta: mb,
                size: sb,
                content: cb,
            },
        ) => sa == sb && ca == cb && (ma.mode, ma.uid, ma.gid) == (mb.mode, mb.uid, mb.gid),
        (
            Node::Symlink {
                meta: ma,
                target: ta,
            },
            Node::Symlink {
                meta: mb,
                target: tb,
            },
        ) => ta == tb && (ma.uid, ma.gid) == (mb.uid, mb.gid),
        _ => false,
    }
}

fn size_of(n: &Node) -> u64 {
    match n {
        Node::File { size, .. } => *size,
        Node::Symlink { target, .. } => target.len() as u64,
        Node::Dir { .. } => 0,
    }
}

fn change(path: String, kind: ChangeKind, old_size: u64, new_size: u64) -> Change {
    Change {
        path,
        kind,
        old_size,
        new_size,
    }
}
