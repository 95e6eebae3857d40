//! Comparing live data with a stored tree (`status`, `diff` against the live data, the checks
//! before a pull) without storing anything: the live directory and the tree are walked
//! together a directory at a time, its files hashed on all cores (or trusted from the stat
//! cache, read only), and changes handed out in path order as they are found. Memory follows
//! the directories being visited, never the volume, and nothing of the scan is kept: the live
//! trees are never built.

use super::diff::TreeLoader;
use super::diff::{check_depth, diff_dirs, diff_leaves, dir_header, dir_of, merge, Emit};
use super::scan::{join_rel, meta_of, scan_leaf, Ctx, Here};
use super::statcache::StatCache;
use super::tree::{Entry, Node, Tree};
use crate::live::{Dir, Kind};
use crate::store::{ObjectId, ObjectSink, Record};
use crate::Result;
use rayon::prelude::*;
use std::path::Path;

/// A sink that only hashes: content ids are computed, nothing is kept.
struct Discard;

impl ObjectSink for Discard {
    fn prepare(
        &self,
        _id: ObjectId,
        _kind: crate::store::Kind,
        _data: &[u8],
    ) -> Result<Option<Record>> {
        Ok(None)
    }

    fn submit(&self, _records: Vec<Record>) -> Result<()> {
        Ok(())
    }
}

/// Hand to `emit` the changes that turn tree `head` (none before the first commit) into the
/// live directory `root`, trusting `cache` for unchanged files. Returns the messages about
/// entries that cannot be stored (capped, as a commit's).
pub fn live_diff(
    load: &TreeLoader,
    head: Option<&ObjectId>,
    root: &Path,
    cache: &StatCache,
    emit: &mut Emit,
) -> Result<Vec<String>> {
    let dir = Dir::open_root(root)?;
    let ctx = Ctx::new(&Discard, cache, &crate::progress::NoProgress);
    walk(&ctx, load, &dir, b"", head, emit)?;
    Ok(ctx.into_skipped())
}

/// Compare live directory `dir` (at `rel`) with tree `head`.
fn walk(
    ctx: &Ctx,
    load: &TreeLoader,
    dir: &Dir,
    rel: &[u8],
    head: Option<&ObjectId>,
    emit: &mut Emit,
) -> Result<()> {
    let prefix = prefix_of(rel);
    if let Some(id) = head {
        check_depth(&prefix, id)?;
    }
    let live = live_entries(ctx, dir, rel)?;
    let before = head.map(load).transpose()?;
    let after = Tree {
        meta: meta_of(&dir.stat()?),
        entries: live,
    };
    if !dir_header(
        before.as_ref(),
        Some(&after),
        after.entries.is_empty(),
        &prefix,
        emit,
    )? {
        return Ok(());
    }
    let old: &[Entry] = before.as_ref().map_or(&[], |t| &t.entries);
    merge(old, &after.entries, |x, y, name| {
        let path = format!("{prefix}{}", String::from_utf8_lossy(name));
        let was_dir = dir_of(x);
        if matches!(y, Some(Node::Dir { .. })) {
            let sub = dir.open_dir(name)?;
            walk(
                ctx,
                load,
                &sub,
                &join_rel(rel, name),
                was_dir.as_ref(),
                emit,
            )?;
        } else if was_dir.is_some() {
            diff_dirs(load, was_dir.as_ref(), None, &format!("{path}/"), emit)?;
        }
        diff_leaves(x, y, &path, emit)
    })
}

/// The live entries of `dir`, sorted: files and symlinks hashed (or trusted) in parallel,
/// subdirectories as placeholders (walked in order by the caller).
fn live_entries(ctx: &Ctx, dir: &Dir, rel: &[u8]) -> Result<Vec<Entry>> {
    let listed = dir.entries()?;
    let old = ctx.cache().dir(rel);
    let at = Here {
        dir,
        rel,
        old: &old,
    };
    let nodes: Vec<Option<Node>> = listed
        .par_iter()
        .map(|(name, st)| {
            if st.kind() == Kind::Dir {
                return Ok(Some(Node::Dir {
                    tree: ObjectId([0; 32]),
                }));
            }
            Ok(scan_leaf(ctx, &at, name, st)?.map(|(node, _)| node))
        })
        .collect::<Result<_>>()?;
    Ok(listed
        .into_iter()
        .zip(nodes)
        .filter_map(|((name, _), node)| node.map(|node| Entry { name, node }))
        .collect())
}

/// How changes below directory `rel` are named: `a/b/` (the root: empty).
fn prefix_of(rel: &[u8]) -> String {
    if rel.is_empty() {
        String::new()
    } else {
        format!("{}/", String::from_utf8_lossy(rel))
    }
}
