//! The server side of every carrier (`dvol serve --listen` and `--stdio`): runs one protocol
//! request for an authenticated [`Grant`] against the served directory, after
//! [`scope::authorize`] and with the rules that keep pushed history safe from a client that
//! may write:
//! - a pack or index that exists is never replaced (created with a hard link; a byte-identical
//!   retry is accepted), a pack's name must be the hash of its bytes, an index needs its pack
//!   and (plain remotes) must decode;
//! - refs move only by compare-and-swap (a put of a ref is refused); below admin, a move must
//!   be a fast-forward, checked by walking the remote's own commits (plain remotes) under the
//!   compare-and-swap lock, so the check and the move are one step;
//! - group refs (`groups/<group>/refs/<branch>`) follow the same rules, walking group commits,
//!   with their reflog at `groups/<group>/reflog/<branch>`; on a plain remote a group commit
//!   is refused unless the grant covers every member volume it names;
//! - every value a ref held before a move is appended to `reflog/<volume>/heads/<branch>`,
//!   which no client may write: on an encrypted remote, whose commits the server cannot read,
//!   a read-write token can move a ref anywhere but cannot make the server forget it;
//! - below admin, `expired/<volume>` only grows, and (plain remotes) only with commits whose
//!   tree the remote does not hold; the marker can only be created.
//!
//! This module must not parse token files or speak HTTP; it must not trust a request's key.

use super::crypt::Seal;
use super::crypt::ENCRYPTED_FORMAT;
use super::fs::FsBackend;
use super::group::{download_chain, members_key};
use super::proto::{Request, Response, PROTO_VERSION};
use super::scope::{self, Access, Grant, KeyClass, Scope};
use super::transfer::{get_idx, read_objects, walk_commits, Remote, RemoteIndex};
use super::{check_key, check_prefix, Backend, CasOutcome, RemoteError, FORMAT_KEY};
use crate::repo::{Commit, GroupCommit};
use crate::store::{decode_payload, ObjectId};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The server reads its own commits as plain records (it never holds a key).
static PLAIN: Seal = Seal::Plain;

/// Commits a fast-forward check walks at most before refusing the move.
pub const MAX_FF_WALK: usize = 1 << 22;

/// The answer to one request: a protocol response, or a refusal of the grant (HTTP 403).
#[derive(Debug)]
pub enum Outcome {
    Answer(Response),
    Refused(String),
}

enum Denied {
    Refused(String),
    Failed(Error),
}

impl From<Error> for Denied {
    fn from(e: Error) -> Denied {
        Denied::Failed(e)
    }
}

type Step<T> = std::result::Result<T, Denied>;

fn refuse<T>(msg: impl Into<String>) -> Step<T> {
    Err(Denied::Refused(msg.into()))
}

/// The served directory.
pub struct Server {
    backend: FsBackend,
    own: Mutex<OwnIndex>,
}

/// The server's own pack indexes (plain remotes), each read once: an index is never replaced,
/// and when one disappears (remote gc) the next use reads them all again.
#[derive(Default)]
struct OwnIndex {
    keys: HashSet<String>,
    index: RemoteIndex,
}

impl Server {
    pub fn new(root: &Path) -> Server {
        Server {
            backend: FsBackend::new(root),
            own: Mutex::default(),
        }
    }

    pub fn backend(&self) -> &FsBackend {
        &self.backend
    }

    /// Run `req` for `grant`.
    pub fn handle(&self, grant: &Grant, req: Request) -> Outcome {
        match self.run(grant, req) {
            Ok(r) => Outcome::Answer(r),
            Err(Denied::Refused(m)) => Outcome::Refused(m),
            Err(Denied::Failed(e)) => Outcome::Answer(Response::Error(e.to_string())),
        }
    }

    fn run(&self, grant: &Grant, req: Request) -> Step<Response> {
        let b = &self.backend;
        match req {
            Request::Hello { .. } => Ok(Response::Hello {
                version: PROTO_VERSION,
            }),
            Request::List { prefix } => self.list(grant, &prefix).map(Response::Keys),
            Request::ListVolumes => {
                let mut volumes = b.list_volumes()?;
                volumes.retain(|v| grant.covers(v));
                Ok(Response::Keys(volumes))
            }
            Request::Get { key } => {
                allow(grant, &key, Access::Read)?;
                self.allow_members(grant, &key, Access::Read, None)?;
                Ok(Response::Data(b.get(&key)?))
            }
            Request::GetRange { key, offset, len } => {
                allow(grant, &key, Access::Read)?;
                self.allow_members(grant, &key, Access::Read, None)?;
                Ok(Response::Data(Some(b.get_range(&key, offset, len)?)))
            }
            Request::Put { key, data } => {
                allow(grant, &key, Access::Write)?;
                self.allow_members(grant, &key, Access::Write, Some(&data))?;
                self.put(grant, &key, data)?;
                Ok(Response::Done)
            }
            Request::Cas { key, expected, new } => {
                allow(grant, &key, Access::Write)?;
                self.allow_members(grant, &key, Access::Write, Some(&new))?;
                self.cas(grant, &key, expected.as_deref(), new)
                    .map(Response::Cas)
            }
            Request::Delete { key } => {
                allow(grant, &key, Access::Delete)?;
                b.delete(&key)?;
                Ok(Response::Done)
            }
        }
    }

    fn list(&self, grant: &Grant, prefix: &str) -> Step<Vec<String>> {
        check_prefix(prefix)?;
        let class = match prefix.split('/').collect::<Vec<_>>().as_slice() {
            ["packs", ""] => KeyClass::Pack,
            ["refs", volume, "heads", ""] => KeyClass::Ref(volume),
            // Filtered below to the volumes the grant covers.
            ["expired", ""] => KeyClass::Marker,
            ["groups", group, "refs" | "commits", ""] => KeyClass::Group(group),
            _ => KeyClass::Other,
        };
        scope::authorize_class(grant, class, prefix, Access::Read).or_else(refuse)?;
        if let KeyClass::Group(group) = class {
            self.check_members(grant, group, prefix, "list", None)?;
        }
        let mut keys = self.backend.list(prefix)?;
        keys.retain(|k| match scope::classify(k) {
            KeyClass::Expired(v) => grant.covers(v),
            _ => true,
        });
        Ok(keys)
    }

    fn put(&self, grant: &Grant, key: &str, data: Vec<u8>) -> Step<()> {
        match scope::classify(key) {
            KeyClass::Pack => self.put_pack(key, &data),
            KeyClass::Ref(_) => refuse(format!(
                "refused to put {key}: refs move only by compare-and-swap"
            )),
            KeyClass::Group(group) if key.split('/').nth(2) == Some("commits") => {
                self.put_group_commit(grant, group, key, data)
            }
            _ if grant.scope < Scope::Admin => refuse(format!(
                "{} is {}: refused to overwrite {key} (only compare-and-swap may change it)",
                grant.holder,
                grant.scope.name()
            )),
            _ => Ok(self.backend.put(key, data)?),
        }
    }

    /// The member check of a group key ([`scope::authorize_members`]): the grant must cover
    /// every member volume the remote lists for the group, and those of a member list being
    /// written. Deleting needs an admin token for every volume (checked by [`allow`]).
    fn allow_members(
        &self,
        grant: &Grant,
        key: &str,
        access: Access,
        new: Option<&[u8]>,
    ) -> Step<()> {
        let KeyClass::Group(group) = scope::classify(key) else {
            return Ok(());
        };
        let verb = match access {
            Access::Read => "read",
            Access::Write => "write",
            Access::Delete => return Ok(()),
        };
        let is_list = key == members_key(group);
        // A member list that is not there reveals nothing: reading it is how a push starts.
        if is_list && access == Access::Read && !self.backend.exists(key)? {
            return Ok(());
        }
        let new = new.filter(|_| is_list);
        self.check_members(grant, group, key, verb, new)
    }

    fn check_members(
        &self,
        grant: &Grant,
        group: &str,
        what: &str,
        verb: &str,
        new: Option<&[u8]>,
    ) -> Step<()> {
        let mut members = self
            .backend
            .get(&members_key(group))?
            .map(|v| scope::parse_members(&v))
            .unwrap_or_default();
        members.extend(new.map(scope::parse_members).unwrap_or_default());
        scope::authorize_members(grant, group, &members, what, verb).or_else(refuse)
    }

    /// Add a group commit; one that exists is never replaced (a byte-identical retry is
    /// accepted). On a plain remote it must decode as the commit its key names, and the grant
    /// must cover every member volume it names (not only those of the member list).
    fn put_group_commit(&self, grant: &Grant, group: &str, key: &str, data: Vec<u8>) -> Step<()> {
        if !self.encrypted()? {
            let id = ObjectId::from_hex(key.rsplit('/').next().unwrap_or(""))
                .expect("checked group commit key");
            let commit = GroupCommit::decode(&id, &data)
                .or_else(|e| refuse(format!("refused to write {key}: {e}")))?;
            let named: Vec<String> = commit.members.into_iter().map(|(k, _)| k).collect();
            scope::authorize_members(grant, group, &named, key, "write").or_else(refuse)?;
        }
        if self.backend.put_new(key, &data)? || self.backend.get(key)?.as_deref() == Some(&data[..])
        {
            return Ok(());
        }
        refuse(format!(
            "refused to replace {key}: a group commit that exists is never replaced"
        ))
    }

    /// Add a pack or index; one that exists is never replaced.
    fn put_pack(&self, key: &str, data: &[u8]) -> Step<()> {
        let (stem, ext) = key
            .strip_prefix("packs/")
            .and_then(|f| f.split_once('.'))
            .expect("checked pack key");
        if ext == "pack" && blake3::hash(data).to_hex().as_str() != stem {
            return refuse(format!(
                "refused to write {key}: its name is not the blake3 hash of its bytes"
            ));
        }
        if ext == "idx" && !self.backend.exists(&format!("packs/{stem}.pack"))? {
            return refuse(format!(
                "refused to write {key}: its pack is not on the remote (send the pack first)"
            ));
        }
        // An index every reader would choke on is refused where the server can read it.
        if ext == "idx" && !self.encrypted()? {
            super::idx::decode(key, data)
                .or_else(|e| refuse(format!("refused to write {key}: {e}")))?;
        }
        if self.backend.put_new(key, data)? || self.backend.get(key)?.as_deref() == Some(data) {
            return Ok(());
        }
        refuse(format!(
            "refused to replace {key}: a pack or index that exists is never replaced"
        ))
    }

    fn cas(
        &self,
        grant: &Grant,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Step<CasOutcome> {
        let admin = grant.scope >= Scope::Admin;
        let mut refused = None;
        let mut check = |current: Option<&[u8]>| -> Result<()> {
            let verdict = match scope::classify(key) {
                KeyClass::Ref(_) => self.ref_move(grant, key, current, || {
                    self.forward_only(key, current, &new)
                }),
                KeyClass::Group(group) if key.split('/').nth(2) == Some("refs") => {
                    self.ref_move(grant, key, current, || {
                        self.group_forward_only(group, key, current, &new)
                    })
                }
                KeyClass::Expired(_) if !admin => self.expiring(key, current, &new),
                KeyClass::Marker if !admin && current.is_some() => refuse(format!(
                    "{} is {}: replacing {FORMAT_KEY} needs an admin token",
                    grant.holder,
                    grant.scope.name()
                )),
                KeyClass::Pack => refuse(format!(
                    "refused to compare-and-swap {key}: packs are only added"
                )),
                _ => Ok(()),
            };
            verdict.map_err(|d| match d {
                Denied::Refused(m) => {
                    refused = Some(m.clone());
                    RemoteError::Denied(m).into()
                }
                Denied::Failed(e) => e,
            })
        };
        match self
            .backend
            .cas_checked(key, expected, new.clone(), &mut check)
        {
            Ok(outcome) => Ok(outcome),
            Err(e) => match refused {
                Some(m) => refuse(m),
                None => Err(e.into()),
            },
        }
    }

    /// The checks of a ref move (a volume's or a group's), run under the compare-and-swap
    /// lock: below admin, `forward` (a value of the remote's kind that fast-forwards, on plain
    /// remotes); for everyone, the old value goes to the reflog first.
    fn ref_move(
        &self,
        grant: &Grant,
        key: &str,
        current: Option<&[u8]>,
        forward: impl FnOnce() -> Step<()>,
    ) -> Step<()> {
        if grant.scope < Scope::Admin {
            forward().or_else(|d| match d {
                Denied::Refused(m) => {
                    refuse(format!("{} is {}: {m}", grant.holder, grant.scope.name()))
                }
                failed @ Denied::Failed(_) => Err(failed),
            })?;
        }
        if let Some(old) = current {
            self.append_reflog(key, old)?;
        }
        Ok(())
    }

    /// The remote's pack indexes, brought up to date. An index that does not decode is left
    /// out (its objects are then unknown to the checks, which refuse what they cannot read).
    fn own_index(&self) -> Result<MutexGuard<'_, OwnIndex>> {
        let keys: HashSet<String> = self
            .backend
            .list("packs/")?
            .into_iter()
            .filter(|k| k.ends_with(".idx"))
            .collect();
        let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
        if !own.keys.is_subset(&keys) {
            *own = OwnIndex::default();
        }
        for key in keys {
            if own.keys.contains(&key) {
                continue;
            }
            if let Ok(Some((_, entries))) = get_idx(&self.backend, &key, &PLAIN) {
                let pack: Arc<str> = Arc::from(key.replace(".idx", ".pack"));
                own.index.add_pack(&pack, entries);
            }
            own.keys.insert(key);
        }
        Ok(own)
    }

    /// This remote read as a plain one, through `index`.
    fn plain_remote<'a>(&'a self, index: &'a RemoteIndex) -> Remote<'a> {
        Remote {
            backend: &self.backend,
            index,
            seal: &PLAIN,
        }
    }

    /// Below admin: a value of the remote's kind that (plain remotes) fast-forwards.
    fn forward_only(&self, key: &str, current: Option<&[u8]>, new: &[u8]) -> Step<()> {
        if self.encrypted()? {
            return check_sealed_ref(key, new);
        }
        let new = super::parse_ref(key, new).or_else(|e| refuse(e.to_string()))?;
        match current {
            Some(old) => self.fast_forward(key, old, new),
            None => Ok(()),
        }
    }

    /// Below admin, a group ref: a value of the remote's kind that (plain remotes) names a
    /// group commit the remote holds and that descends from the current one (walking group
    /// commits' parents, at most [`super::group`]'s bound).
    fn group_forward_only(
        &self,
        group: &str,
        key: &str,
        current: Option<&[u8]>,
        new: &[u8],
    ) -> Step<()> {
        if self.encrypted()? {
            return check_sealed_ref(key, new);
        }
        let new = super::parse_ref(key, new).or_else(|e| refuse(e.to_string()))?;
        let old = match current.map(|v| super::parse_ref(key, v)) {
            None => None,
            Some(Ok(old)) => Some(old),
            Some(Err(_)) => return refuse(format!(
                "refused to move {key}: its current value is not a group commit id (an admin token can replace it)"
            )),
        };
        let have = |id: &ObjectId| Ok(Some(*id) == old);
        let chain = download_chain(&self.backend, &PLAIN, group, new, &have)
            .or_else(|e| refuse(format!("refused to move {key} to {new}: {e}")))?;
        match old {
            Some(old) if old != new && !chain.iter().any(|(_, c)| c.parents.contains(&old)) => {
                refuse(format!(
                    "refused to move {key} from {old} to {new}: not a fast-forward (force-push needs an admin token)"
                ))
            }
            _ => Ok(()),
        }
    }

    fn encrypted(&self) -> Result<bool> {
        let Some(marker) = self.backend.get(FORMAT_KEY)? else {
            return Ok(false);
        };
        let fmt: serde_json::Value = serde_json::from_slice(&marker).unwrap_or_default();
        Ok(fmt.get("format").and_then(|f| f.as_str()) == Some(ENCRYPTED_FORMAT))
    }

    /// Refuse unless `new` descends from the commit `old_value` names, by the remote's own
    /// commits.
    fn fast_forward(&self, key: &str, old_value: &[u8], new: ObjectId) -> Step<()> {
        let Ok(old) = super::parse_ref(key, old_value) else {
            // A damaged ref: nothing to lose, but only admin may decide.
            return refuse(format!(
                "refused to move {key}: its current value is not a commit id (an admin token can replace it)"
            ));
        };
        if old == new {
            return Ok(());
        }
        let own = self.own_index()?;
        let index = &own.index;
        let remote = self.plain_remote(index);
        let (mut found, mut walked) = (false, 0usize);
        walk_commits(&remote, &[new], |_, c| {
            walked += 1;
            found = c.parents.contains(&old);
            Ok(!found && walked < MAX_FF_WALK)
        })
        .or_else(|e| {
            refuse(format!(
                "refused to move {key} to {new}: the server cannot read its history ({e})"
            ))
        })?;
        if found {
            return Ok(());
        }
        refuse(format!(
            "refused to move {key} from {old} to {new}: not a fast-forward (force-push needs an admin token)"
        ))
    }

    /// Below admin, an expired list may only gain commits, and (plain remotes) only commits
    /// whose tree the remote does not hold: a push of locally pruned history says so of what
    /// it sends, but marking commits the remote keeps whole would let remote gc delete them.
    fn expiring(&self, key: &str, current: Option<&[u8]>, new: &[u8]) -> Step<()> {
        let new = super::prune::parse_list(key, new).or_else(|e| refuse(e.to_string()))?;
        let old = match current {
            Some(c) => super::prune::parse_list(key, c)?,
            None => std::collections::BTreeSet::new(),
        };
        if !old.is_subset(&new) {
            return refuse(format!(
                "refused to write {key}: removing commits from an expired list needs an admin token"
            ));
        }
        if self.encrypted()? {
            return Ok(());
        }
        let own = self.own_index()?;
        let index = &own.index;
        let remote = self.plain_remote(index);
        let added: Vec<ObjectId> = new.difference(&old).copied().collect();
        let mut kept = None;
        read_objects(&remote, &added, |h, payload| {
            let c = Commit::decode(&h.id, &decode_payload(&h.id, &h, &payload)?)?;
            if index.contains_key(&c.tree) {
                kept = Some(h.id);
            }
            Ok(())
        })
        .or_else(|e| refuse(format!("refused to write {key}: {e}")))?;
        match kept {
            Some(id) => refuse(format!(
                "refused to write {key}: the remote holds the tree of commit {id}; expiring it needs an admin token (dvol prune --remote)"
            )),
            None => Ok(()),
        }
    }

    /// Append `old` to the ref's reflog (`<unix seconds> <value>` per line): the reflog of
    /// `refs/<v>/heads/<b>` is `reflog/<v>/heads/<b>`, that of `groups/<g>/refs/<b>` is
    /// `groups/<g>/reflog/<b>`.
    fn append_reflog(&self, key: &str, old: &[u8]) -> Result<()> {
        let log_key = match key.strip_prefix("groups/") {
            Some(rest) => format!("groups/{}", rest.replacen("/refs/", "/reflog/", 1)),
            None => key.replacen("refs/", "reflog/", 1),
        };
        let value = old.trim_ascii();
        let shown = if !value.is_empty() && value.iter().all(u8::is_ascii_graphic) {
            String::from_utf8_lossy(value).into_owned()
        } else {
            format!("hex:{}", hex::encode(old))
        };
        let mut log = self.backend.get(&log_key)?.unwrap_or_default();
        log.extend_from_slice(format!("{} {shown}\n", chrono::Utc::now().timestamp()).as_bytes());
        self.backend.put(&log_key, log)
    }
}

fn allow(grant: &Grant, key: &str, access: Access) -> Step<()> {
    check_key(key)?;
    scope::authorize(grant, key, access).or_else(refuse)
}

/// An encrypted remote's ref value must look like one: the hex of a sealed commit id.
fn check_sealed_ref(key: &str, value: &[u8]) -> Step<()> {
    let ok = std::str::from_utf8(value)
        .ok()
        .and_then(|s| hex::decode(s.trim()).ok())
        .is_some_and(|b| b.len() == super::crypt::SEALED_REF_LEN);
    if ok {
        Ok(())
    } else {
        refuse(format!("refused to write {key}: not a sealed ref value"))
    }
}
