//! Remotes: moving history between roots through a dumb, content-addressed object store.
//!
//! Every carrier (a local path, `ssh://` to `dvol serve --stdio`, `http(s)://` to
//! `dvol serve --listen`, `s3://` to any S3-compatible store) implements the one small
//! [`Backend`] trait: list, get, ranged get, atomic put, compare-and-swap put, delete. All the
//! intelligence (negotiation, packing, verification) lives in [`transfer`] on the client.
//!
//! Remote layout (docs/format.md, "Remote layout and protocol", version [`REMOTE_VERSION`]):
//! - `dvol-remote.json`: `{"format":"dvol-remote","version":1}`, checked on every use.
//! - `packs/<blake3>.pack`: the local pack format, records copied raw (no recompression).
//! - `packs/<blake3>.idx`: the objects of that pack (id, kind, offset, lengths), written
//!   after its pack, so an object listed in an index is durable.
//! - `refs/<volume>/heads/<branch>`: the commit id in hex plus a newline, changed only by
//!   compare-and-swap after every object it reaches is listed in an index.
//! - `expired/<volume>`: commits whose tree prune expired (see [`prune`]); `gc/pending`: packs
//!   remote gc found unreachable and when.
//! - `reflog/<volume>/heads/<branch>`: written only by `dvol serve` ([`server`]), every value
//!   the ref held before a move, so no token short of admin can erase pushed history.
//! - `groups/<group>/commits/<id>`: a group commit's encoding (sealed on encrypted remotes,
//!   listed under its remote id); `groups/<group>/refs/<branch>`: a group branch, a ref value
//!   naming a group commit, moved by compare-and-swap only after every member's objects and
//!   refs are on the remote (see [`group`]); `groups/<group>/reflog/<branch>`: its reflog,
//!   kept by `dvol serve` like a volume's. Every group key lies under `groups/`.

pub mod crypt;
mod error;
pub mod fs;
pub mod group;
pub mod http;
mod http_limits;
pub mod idx;
#[cfg(test)]
mod mem;
pub mod ops;
pub mod proto;
pub mod prune;
pub(crate) mod s3;
pub mod scope;
pub(crate) mod server;
pub mod ssh;
pub mod transfer;

pub use error::RemoteError;

use crate::remote_url::RemoteUrl;
use crate::{names, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the remote layout written to and checked in `dvol-remote.json`.
pub const REMOTE_VERSION: u32 = 1;
/// Key of the format marker.
pub const FORMAT_KEY: &str = "dvol-remote.json";

/// Outcome of a compare-and-swap put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CasOutcome {
    /// The key now holds the new value.
    Updated,
    /// The key did not hold the expected value; it holds `current` (None: absent).
    Conflict { current: Option<Vec<u8>> },
}

/// The operations every remote carrier provides. Keys are checked with [`check_key`].
pub trait Backend: Send + Sync {
    /// Human-readable location for messages.
    fn describe(&self) -> String;
    /// Keys directly under `prefix` (which ends with `/`), full keys, any order.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// The whole value of a key, `None` when absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// `len` bytes at `offset` of a key (an error if the key is shorter).
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Store a value atomically: readers see the old value or the whole new one.
    fn put(&self, key: &str, data: Vec<u8>) -> Result<()>;
    /// Store `new` only if the key holds `expected` (`None`: only if it is absent).
    fn cas(&self, key: &str, expected: Option<&[u8]>, new: Vec<u8>) -> Result<CasOutcome>;
    /// Remove a key (absent keys are fine).
    fn delete(&self, key: &str) -> Result<()>;
    /// When the carrier cannot make `cas` atomic, a warning saying why.
    fn cas_warning(&self) -> Option<String> {
        None
    }
    /// The volumes that have refs (`refs/<volume>/`), for remote gc, which must see every
    /// volume before it deletes anything. Carriers that cannot list them refuse remote gc.
    fn list_volumes(&self) -> Result<Vec<String>> {
        Err(RemoteError::GcUnsupported {
            remote: self.describe(),
        }
        .into())
    }
    /// The groups that have keys (`groups/<group>/`), for remote gc, which keeps what every
    /// group commit names. Carriers that cannot list them refuse remote gc.
    fn list_groups(&self) -> Result<Vec<String>> {
        self.list_volumes().map(|_| Vec::new())
    }
}

/// Check that a key follows the remote layout, so no key can name a path outside the remote.
pub fn check_key(key: &str) -> Result<()> {
    let bad = || -> Error {
        RemoteError::BadKey {
            what: "key",
            key: key.to_string(),
        }
        .into()
    };
    if key == FORMAT_KEY {
        return Ok(());
    }
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["packs", file] => {
            let (hash, ext) = file.split_once('.').ok_or_else(bad)?;
            if is_hex_id(hash) && (ext == "pack" || ext == "idx") {
                Ok(())
            } else {
                Err(bad())
            }
        }
        ["refs" | "reflog", volume, "heads", branch] => {
            names::validate("volume", volume)?;
            names::validate("branch", branch)
        }
        ["probe", name] if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(())
        }
        ["expired", volume] => names::validate("volume", volume),
        ["groups", group, "refs" | "reflog", branch] => {
            names::validate("group", group)?;
            names::validate("branch", branch)
        }
        ["groups", group, "commits", id] if is_hex_id(id) => names::validate("group", group),
        ["groups", group, "members"] => names::validate("group", group),
        ["gc", "pending"] => Ok(()),
        _ => Err(bad()),
    }
}

/// 64 lowercase hex digits.
fn is_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Check a list prefix: `packs/`, `refs/<volume>/heads/`, `probe/` or `expired/`.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let bad = || -> Error {
        RemoteError::BadKey {
            what: "prefix",
            key: prefix.to_string(),
        }
        .into()
    };
    let inner = prefix.strip_suffix('/').ok_or_else(bad)?;
    let parts: Vec<&str> = inner.split('/').collect();
    match parts.as_slice() {
        ["packs"] | ["probe"] | ["expired"] => Ok(()),
        ["refs", volume, "heads"] => names::validate("volume", volume),
        ["groups", group, "refs" | "commits"] => names::validate("group", group),
        _ => Err(bad()),
    }
}

/// Key of a branch ref.
pub fn ref_key(volume: &str, branch: &str) -> String {
    format!("refs/{volume}/heads/{branch}")
}

/// How to reach remotes, as the caller (the CLI, from its flags and environment) says; the
/// library never reads the environment itself.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// The ssh client command line for `ssh://` remotes (default `ssh`).
    pub ssh_command: Option<String>,
    /// The dvol program on the far side of an ssh connection (default `dvol`).
    pub remote_dvol: Option<String>,
    /// The bearer token for `http(s)://` remotes.
    pub token: Option<String>,
    /// An extra CA certificate (PEM file) trusted for `https://` remotes.
    pub tls_ca: Option<PathBuf>,
    /// S3 client settings as `(key, value)` pairs named like object_store's
    /// `AmazonS3ConfigKey` (`aws_access_key_id`, `aws_endpoint`, `aws_region`, ...).
    pub s3_config: Vec<(String, String)>,
    /// How long the S3 client retries a failing request (default: object_store's 3 minutes).
    pub s3_retry_timeout: Option<std::time::Duration>,
}

/// Connect to the remote at `url`.
pub fn open(url: &str, opts: &ConnectOptions) -> Result<Box<dyn Backend>> {
    Ok(match RemoteUrl::parse(url)? {
        RemoteUrl::Path(p) => Box::new(fs::FsBackend::new(&p)),
        RemoteUrl::Ssh {
            user,
            host,
            port,
            path,
        } => Box::new(ssh::connect(user.as_deref(), &host, port, &path, opts)?),
        RemoteUrl::Http(base) => Box::new(http::connect(&base, opts)?),
        RemoteUrl::S3 { bucket, prefix } => Box::new(s3::S3Backend::new(
            &bucket,
            &prefix,
            &opts.s3_config,
            opts.s3_retry_timeout,
        )?),
    })
}

/// The content of `dvol-remote.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteFormat {
    pub format: String,
    pub version: u32,
}

/// Check the remote's format marker; `create` writes it when absent (for push).
/// Returns false when the remote has no marker and `create` is off.
pub fn check_format(backend: &dyn Backend, create: bool) -> Result<bool> {
    let marker = match backend.get(FORMAT_KEY)? {
        Some(m) => m,
        None if create => {
            let fmt = RemoteFormat {
                format: "dvol-remote".into(),
                version: REMOTE_VERSION,
            };
            let bytes = serde_json::to_vec(&fmt).expect("format serializes");
            match backend.cas(FORMAT_KEY, None, bytes.clone())? {
                CasOutcome::Updated => return Ok(true),
                CasOutcome::Conflict { current: Some(c) } => c,
                CasOutcome::Conflict { current: None } => {
                    return Err(RemoteError::MarkerNotCreated {
                        remote: backend.describe(),
                    }
                    .into())
                }
            }
        }
        None => return Ok(false),
    };
    let fmt: RemoteFormat = serde_json::from_slice(&marker).map_err(|e| {
        Error::from(RemoteError::BadMarker {
            remote: backend.describe(),
            why: e.to_string(),
        })
    })?;
    if fmt.format != "dvol-remote" || fmt.version != REMOTE_VERSION {
        return Err(RemoteError::WrongFormat {
            remote: backend.describe(),
            format: fmt.format,
            version: fmt.version,
        }
        .into());
    }
    Ok(true)
}

/// Parse a ref value (commit id in hex, optional trailing newline).
pub fn parse_ref(key: &str, value: &[u8]) -> Result<crate::store::ObjectId> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| crate::store::ObjectId::from_hex(s.trim()))
        .ok_or_else(|| RemoteError::bad_record(key, "does not hold a commit id"))
}

/// Encode a ref value.
pub fn ref_value(id: &crate::store::ObjectId) -> Vec<u8> {
    format!("{}\n", id.to_hex()).into_bytes()
}

/// Local cache directory for a remote URL: `ROOT/.dvol/remotes/<hash of url>`.
pub fn cache_dir(root: &Path, url: &str) -> PathBuf {
    let h = blake3::hash(url.as_bytes()).to_hex();
    root.join(".dvol").join("remotes").join(&h[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        check_key("dvol-remote.json").unwrap();
        check_key(&format!("packs/{}.pack", "a".repeat(64))).unwrap();
        check_key("refs/db/heads/master").unwrap();
        check_key("groups/app/refs/master").unwrap();
        check_key(&format!("groups/app/commits/{}", "b".repeat(64))).unwrap();
        check_prefix("groups/app/refs/").unwrap();
        for bad in [
            "../x",
            "packs/../../etc",
            "refs/../heads/x",
            "refs/a/heads/..",
            "/etc/passwd",
            "packs/x.pack",
            "groups/../refs/x",
            "groups/app/refs/..",
            "groups/app/commits/xyz",
            "groups/app/other/master",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        check_prefix("packs/").unwrap();
        assert!(check_prefix("../").is_err());
    }
}
