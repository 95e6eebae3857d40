//! Push and fetch: negotiation through the remote's pack indexes, raw record copies into new
//! packs (push), ranged reads of only the missing records with hash verification (fetch).
//!
//! Split by job: [`index`] reads the remote's pack indexes, [`records`] is the only place pack
//! records and indexes cross the wire (encode/upload, ranged read/decode), [`push`] plans and
//! sends, [`fetch`] downloads and verifies, [`verify`] checks a remote from the outside.
//!
//! Invariant kept on the remote and locally: an object that is listed in an index (or the
//! local store) has everything it reaches listed too. Push therefore emits objects children
//! first (chunks, list nodes, trees, then commits oldest first) and uploads each pack before
//! its index; negotiation can then stop at any object the other side already has.

mod fetch;
mod index;
mod push;
mod records;
mod verify;

pub use fetch::{download_history, Downloaded, FetchReport};
pub use index::{fresh_remote_index, remote_index, remote_packs, RemoteIndex, RemoteLoc};
pub use push::{
    plan_push, push, PushReport, PushRequest, PushStatus, RejectReason, PUSH_PACK_SIZE,
};
pub use records::{
    get_idx, load_batch, read_objects, read_pieces, walk_commits, PackOut, Piece, Remote,
};
pub use verify::{fsck_remote, RemoteFsckReport};

use super::crypt::Seal;
use super::Backend;
use crate::store::ObjectId;
use crate::Result;

/// The branches of a volume on a plain remote and their heads.
pub fn remote_branches(
    backend: &dyn Backend,
    remote_volume: &str,
) -> Result<Vec<(String, ObjectId)>> {
    remote_branches_sealed(backend, remote_volume, &Seal::Plain)
}

/// The branches of a volume on the remote and their heads, refs opened with `seal`.
pub fn remote_branches_sealed(
    backend: &dyn Backend,
    remote_volume: &str,
    seal: &Seal,
) -> Result<Vec<(String, ObjectId)>> {
    let prefix = format!("refs/{remote_volume}/heads/");
    let mut out = Vec::new();
    for key in backend.list(&prefix)? {
        let branch = key[prefix.len()..].to_string();
        if crate::names::validate("branch", &branch).is_err() {
            continue;
        }
        if let Some(v) = backend.get(&key)? {
            let head = seal.parse_ref(remote_volume, &branch, &key, &v)?;
            out.push((branch, head));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
