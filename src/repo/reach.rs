//! Reachability: the one definition of what an object reaches (a commit its parents and tree; a
//! tree its subdirectories, split-tree parts and file contents; a chunk-list node its children)
//! and of the limits that keep a walk over data from a peer bounded. gc, fsck, push planning and
//! fetch all walk through here.
//!
//! Walks are iterative (explicit stacks): nothing recurses on a depth the data controls.
//! Limits, checked while walking (docs/guarantees.md): directories from a peer nest at most
//! [`MAX_TREE_DEPTH`] deep (local gc/fsck walks accept any depth), split-tree indexes [`MAX_SPLIT_LEVELS`] deep, chunk lists 16 levels,
//! and every chunk-list node covers exactly the bytes its parent (or the file entry) declares.
//! This module must not know where objects come from: callers hand it a loader (the local
//! store, or verified records read from a remote).
//!
//! An id names bytes, not a role: a file's bytes may equal another file's chunk-list node, a
//! directory's tree or a commit (a container can write such a file on purpose). Walks therefore
//! reach an object once per role ([`Reached`]): reached first as a leaf chunk, the same id is
//! still walked as a list node or tree when something refers to it as one, so everything it
//! reaches in that role is reached too.

use super::commit::Commit;
use crate::snapshot::tree::{TreeObject, MAX_SPLIT_LEVELS};
use crate::snapshot::Node;
use crate::store::{self, Kind, ObjectId, CHUNK_SIZE};
use crate::{Error, Result};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

pub use crate::snapshot::tree::MAX_TREE_DEPTH;
/// Objects loaded together by [`walk`] (one batch of ranged reads, or parallel local reads).
const BATCH: usize = 256;

/// How an object was reached, which says what it must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Commit,
    /// A directory at `depth` (0: a commit's root), or part `split` levels below its index.
    Tree {
        depth: u32,
        split: u8,
    },
    /// A chunk-list node that must be at `level` (`None`: a file's root) and cover `len` bytes.
    List {
        level: Option<u8>,
        len: u64,
    },
    /// A chunk of `len` bytes.
    Chunk {
        len: u64,
    },
}

impl Edge {
    /// The object kind this edge requires.
    pub fn kind(&self) -> Kind {
        match self {
            Edge::Commit => Kind::Commit,
            Edge::Tree { .. } => Kind::Tree,
            Edge::List { .. } => Kind::List,
            Edge::Chunk { .. } => Kind::Chunk,
        }
    }

    /// A commit's root tree.
    pub fn root_tree() -> Edge {
        Edge::Tree { depth: 0, split: 0 }
    }

    /// A file's content: a file of at most one chunk is that bare chunk, a larger one the root
    /// of its chunk-list tree. The only place this rule is written.
    pub fn content(size: u64) -> Edge {
        if size <= CHUNK_SIZE as u64 {
            Edge::Chunk { len: size }
        } else {
            Edge::List {
                level: None,
                len: size,
            }
        }
    }
}

/// Decode `bytes` as the object `edge` says `id` is, check it against the edge's limits and
/// return what it reaches (a commit's parents before its tree).
pub fn children(id: &ObjectId, edge: Edge, bytes: &[u8]) -> Result<Vec<(ObjectId, Edge)>> {
    children_within(id, edge, bytes, MAX_TREE_DEPTH)
}

/// [`children`] with a directory depth limit of `max_depth`.
fn children_within(
    id: &ObjectId,
    edge: Edge,
    bytes: &[u8],
    max_depth: u32,
) -> Result<Vec<(ObjectId, Edge)>> {
    let corrupt = |detail: String| Error::CorruptObject {
        id: id.to_hex(),
        detail,
    };
    match edge {
        Edge::Commit => {
            let c = Commit::decode(id, bytes)?;
            let mut out: Vec<_> = c.parents.iter().map(|p| (*p, Edge::Commit)).collect();
            out.push((c.tree, Edge::root_tree()));
            Ok(out)
        }
        Edge::Tree { depth, split } => match TreeObject::decode(id, bytes)? {
            TreeObject::Split(s) => {
                if split as usize >= MAX_SPLIT_LEVELS {
                    return Err(corrupt(format!(
                        "split tree nested more than {MAX_SPLIT_LEVELS} levels"
                    )));
                }
                let part = Edge::Tree {
                    depth,
                    split: split + 1,
                };
                Ok(s.parts.iter().map(|p| (*p, part)).collect())
            }
            TreeObject::Plain(t) => {
                let mut out = Vec::new();
                for e in &t.entries {
                    match &e.node {
                        Node::Dir { tree } => {
                            if depth >= max_depth {
                                return Err(Error::TooDeep {
                                    id: id.to_hex(),
                                    limit: max_depth,
                                });
                            }
                            let sub = Edge::Tree {
                                depth: depth.saturating_add(1),
                                split: 0,
                            };
                            out.push((*tree, sub));
                        }
                        Node::File {
                            size,
                            content: Some(c),
                            ..
                        } => out.push((*c, Edge::content(*size))),
                        _ => {}
                    }
                }
                Ok(out)
            }
        },
        Edge::List { level, len } => {
            let node = store::decode_list(id, bytes)?;
            store::check_node(id, &node, level, len)?;
            Ok(node
                .entries
                .iter()
                .map(|e| {
                    let edge = match node.level {
                        0 => Edge::Chunk { len: e.len },
                        l => Edge::List {
                            level: Some(l - 1),
                            len: e.len,
                        },
                    };
                    (e.id, edge)
                })
                .collect())
        }
        Edge::Chunk { len } => {
            if bytes.len() as u64 != len || len > CHUNK_SIZE as u64 {
                return Err(corrupt(format!(
                    "chunk is {} bytes, {len} expected",
                    bytes.len()
                )));
            }
            Ok(Vec::new())
        }
    }
}

/// The objects a walk has reached, each with the roles ([`Kind`]s) it was reached in.
#[derive(Debug, Default)]
pub struct Reached {
    roles: HashMap<ObjectId, u8>,
}

impl Reached {
    pub fn new() -> Reached {
        Reached::default()
    }

    /// Record `id` reached as `kind`; `false` when it already was, in that role.
    pub fn insert(&mut self, id: ObjectId, kind: Kind) -> bool {
        let bit = 1u8 << kind as u8;
        match self.roles.entry(id) {
            Entry::Occupied(mut o) => {
                let new = *o.get() & bit == 0;
                *o.get_mut() |= bit;
                new
            }
            Entry::Vacant(v) => {
                v.insert(bit);
                true
            }
        }
    }

    /// Whether `id` was reached in the role `kind`.
    pub fn has_role(&self, id: &ObjectId, kind: Kind) -> bool {
        self.roles
            .get(id)
            .is_some_and(|roles| roles & (1u8 << kind as u8) != 0)
    }

    /// Distinct objects reached.
    pub fn len(&self) -> usize {
        self.roles.len()
    }

    /// The distinct ids reached, in no order.
    pub fn ids(&self) -> impl Iterator<Item = &ObjectId> {
        self.roles.keys()
    }

    /// The set of distinct ids reached.
    pub fn into_ids(self) -> HashSet<ObjectId> {
        self.roles.into_keys().collect()
    }
}

/// How a [`walk`] reaches objects.
pub trait Visit {
    /// Whether `id` in the role `edge` (and so everything it reaches in that role) needs no
    /// walking: already present as that kind.
    fn skip(&mut self, id: &ObjectId, edge: Edge) -> Result<bool>;
    /// The verified bytes of `batch` (commits, trees, list nodes), in the same order.
    fn load(&mut self, batch: &[(ObjectId, Edge)]) -> Result<Vec<Vec<u8>>>;
    /// A chunk reached (chunks are leaves and are not loaded by the walk).
    fn chunk(&mut self, id: &ObjectId, len: u64) -> Result<()>;
    /// Deepest directory nesting accepted: [`MAX_TREE_DEPTH`] for data from a peer; a walk
    /// of the local store (gc, fsck) is iterative and accepts any depth.
    fn max_depth(&self) -> u32 {
        MAX_TREE_DEPTH
    }
    /// Whether `commit` was expired by prune: its tree is then not walked (its parents are).
    fn tree_expired(&self, _commit: &ObjectId) -> bool {
        false
    }
}

/// Whether `child` of `parent` is the root tree of a commit whose tree is expired.
fn is_expired_tree(
    parent: &ObjectId,
    parent_edge: Edge,
    child: &(ObjectId, Edge),
    expired: &dyn Fn(&ObjectId) -> bool,
) -> bool {
    parent_edge == Edge::Commit && child.1 == Edge::root_tree() && expired(parent)
}

/// Walk everything `roots` reach that `seen` does not hold yet (in the role reached) and `v`
/// does not skip, loading objects [`BATCH`] at a time. Iterative; memory is the `seen` set
/// plus the pending stack.
pub fn walk(
    roots: impl IntoIterator<Item = (ObjectId, Edge)>,
    seen: &mut Reached,
    v: &mut dyn Visit,
) -> Result<()> {
    let mut stack: Vec<(ObjectId, Edge)> = Vec::new();
    let offer = |stack: &mut Vec<(ObjectId, Edge)>,
                 seen: &mut Reached,
                 v: &mut dyn Visit,
                 (id, edge): (ObjectId, Edge)|
     -> Result<()> {
        if seen.has_role(&id, edge.kind()) || v.skip(&id, edge)? {
            return Ok(());
        }
        seen.insert(id, edge.kind());
        match edge {
            Edge::Chunk { len } => v.chunk(&id, len),
            _ => {
                stack.push((id, edge));
                Ok(())
            }
        }
    };
    for root in roots {
        offer(&mut stack, seen, v, root)?;
    }
    while !stack.is_empty() {
        let batch = stack.split_off(stack.len().saturating_sub(BATCH));
        let loaded = v.load(&batch)?;
        let max_depth = v.max_depth();
        for ((id, edge), bytes) in batch.iter().zip(loaded) {
            for child in children_within(id, *edge, &bytes, max_depth)? {
                if is_expired_tree(id, *edge, &child, &|c| v.tree_expired(c)) {
                    continue;
                }
                offer(&mut stack, seen, v, child)?;
            }
        }
    }
    Ok(())
}

/// Everything `roots` reach that `skip` (given the role reached) does not stop at, children
/// before the objects that refer to them (parent commits before their children), as a sender
/// must emit them. An id reached in two roles appears twice. Iterative depth-first walk;
/// objects are loaded one at a time through `load`.
pub fn post_order(
    roots: &[(ObjectId, Edge)],
    skip: &dyn Fn(&ObjectId, Kind) -> bool,
    tree_expired: &dyn Fn(&ObjectId) -> bool,
    load: &mut dyn FnMut(&ObjectId) -> Result<Vec<u8>>,
) -> Result<Vec<(ObjectId, Edge)>> {
    struct Frame {
        id: ObjectId,
        edge: Edge,
        children: Vec<(ObjectId, Edge)>,
        next: usize,
    }
    let mut out = Vec::new();
    let mut seen = Reached::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut enter = |stack: &mut Vec<Frame>,
                     out: &mut Vec<(ObjectId, Edge)>,
                     (id, edge): (ObjectId, Edge)|
     -> Result<()> {
        if skip(&id, edge.kind()) || !seen.insert(id, edge.kind()) {
            return Ok(());
        }
        if let Edge::Chunk { .. } = edge {
            out.push((id, edge));
            return Ok(());
        }
        let mut children = children(&id, edge, &load(&id)?)?;
        children.retain(|c| !is_expired_tree(&id, edge, c, tree_expired));
        stack.push(Frame {
            id,
            edge,
            children,
            next: 0,
        });
        Ok(())
    };
    for root in roots {
        enter(&mut stack, &mut out, *root)?;
        while let Some(top) = stack.last_mut() {
            if let Some(child) = top.children.get(top.next).copied() {
                top.next += 1;
                enter(&mut stack, &mut out, child)?;
            } else {
                let done = stack.pop().expect("a top frame");
                out.push((done.id, done.edge));
            }
        }
    }
    Ok(out)
}
