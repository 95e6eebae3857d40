//! Differences between two trees (either may be absent, or be an unstored scan of live data):
//! added, modified and deleted paths, skipping identical subtrees by id.

use super::tree::{Node, Tree};
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

/// Changes that turn tree `a` into tree `b`.
pub fn diff(load: &TreeLoader, a: Option<&ObjectId>, b: Option<&ObjectId>) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_dirs(load, a, b, "", &mut out)?;
    Ok(out)
}

fn diff_dirs(
    load: &TreeLoader,
    a: Option<&ObjectId>,
    b: Option<&ObjectId>,
    prefix: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    // Recursion here is one level per directory, bounded by the depth limit.
    if prefix.bytes().filter(|c| *c == b'/').count() > super::tree::MAX_TREE_DEPTH as usize {
        return Err(crate::Error::TooDeep {
            id: a.or(b).expect("a != b, so one is set").to_hex(),
            limit: super::tree::MAX_TREE_DEPTH,
        });
    }
    let ta = a.map(load).transpose()?;
    let tb = b.map(load).transpose()?;
    if let (Some(x), Some(y)) = (&ta, &tb) {
        if (x.meta.mode, x.meta.uid, x.meta.gid) != (y.meta.mode, y.meta.uid, y.meta.gid)
            && !prefix.is_empty()
        {
            out.push(change(prefix.to_string(), ChangeKind::Modified, 0, 0));
        }
    }
    let ea = ta.map(|t| t.entries).unwrap_or_default();
    let eb = tb.map(|t| t.entries).unwrap_or_default();
    if ea.is_empty() && eb.is_empty() && !prefix.is_empty() && (a.is_none() || b.is_none()) {
        let kind = if a.is_none() {
            ChangeKind::Added
        } else {
            ChangeKind::Deleted
        };
        out.push(change(prefix.to_string(), kind, 0, 0));
        return Ok(());
    }
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
        let name = String::from_utf8_lossy(&x.or(y).expect("one side").name).into_owned();
        let path = format!("{prefix}{name}");
        diff_nodes(load, x.map(|e| &e.node), y.map(|e| &e.node), &path, out)?;
        if ord != Ordering::Greater {
            i += 1;
        }
        if ord != Ordering::Less {
            j += 1;
        }
    }
    Ok(())
}

fn diff_nodes(
    load: &TreeLoader,
    a: Option<&Node>,
    b: Option<&Node>,
    path: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    let dir_of = |n: Option<&Node>| match n {
        Some(Node::Dir { tree }) => Some(*tree),
        _ => None,
    };
    let (da, db) = (dir_of(a), dir_of(b));
    if da.is_some() || db.is_some() {
        let dir_prefix = format!("{path}/");
        diff_dirs(load, da.as_ref(), db.as_ref(), &dir_prefix, out)?;
    }
    let leaf_a = a.filter(|n| !matches!(n, Node::Dir { .. }));
    let leaf_b = b.filter(|n| !matches!(n, Node::Dir { .. }));
    match (leaf_a, leaf_b) {
        (None, None) => {}
        (Some(x), None) => out.push(change(path.into(), ChangeKind::Deleted, size_of(x), 0)),
        (None, Some(y)) => out.push(change(path.into(), ChangeKind::Added, 0, size_of(y))),
        (Some(x), Some(y)) => {
            if !same_leaf(x, y) {
                out.push(change(
                    path.into(),
                    ChangeKind::Modified,
                    size_of(x),
                    size_of(y),
                ));
            }
        }
    }
    Ok(())
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
