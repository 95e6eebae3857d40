//! Encryption at rest for remotes (every carrier: path, ssh, http, s3).
//!
//! Owns the encrypted remote's marker (`dvol-remote.json` with an `encryption` section holding
//! the wrapped repository key), unlocking it with a passphrase (argon2id) or a key file, and
//! [`Seal`]: how records, pack indexes, ref values and object ids look on a remote. A plain
//! remote uses [`Seal::Plain`], which changes nothing, so the transfer code has one path.
//!
//! Format (docs/format.md, "Encrypted remotes", version [`CRYPT_VERSION`]):
//! - a random 256-bit master key, wrapped with XChaCha20-Poly1305 under a key-encryption key
//!   derived from the passphrase (argon2id) or the key file (blake3 `derive_key`);
//! - four subkeys derived from the master key with blake3 `derive_key`: records, indexes,
//!   refs, ids;
//! - a record is `nonce[24] || AEAD(header || payload) || tag[16]`, one per object, with the
//!   object id as associated data (a record moved to another id fails to open); compressed
//!   payloads are sealed as they are, never recompressed, and ranged reads still fetch one
//!   record;
//! - an index is `nonce[24] || AEAD(plain index)` with its pack's name as associated data, and
//!   lists keyed ids (blake3 keyed hash), so the remote never sees a plaintext content hash;
//! - a ref value is the hex of `nonce[24] || AEAD(commit id)` with `volume/branch` as
//!   associated data, so a ref cannot be replayed under another name.
//!
//! Volume and branch names stay readable (they are keys on the remote, so token scopes can
//! name them). This module never reads the environment or files: the CLI hands it a [`Secret`].

use super::{Backend, CasOutcome, FORMAT_KEY, REMOTE_VERSION};
use crate::store::pack::{RecordHeader, RECORD_HEADER_LEN};
use crate::store::ObjectId;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Version of the encryption format, recorded in the marker.
pub const CRYPT_VERSION: u32 = 1;
/// `format` of the marker of an encrypted remote (a dvol without encryption refuses it).
pub const ENCRYPTED_FORMAT: &str = "dvol-remote-encrypted";
/// The one cipher of format version 1.
pub const CIPHER: &str = "xchacha20poly1305";
/// Bytes a sealed record adds to the plain one: nonce and tag.
pub const RECORD_OVERHEAD: u64 = (NONCE_LEN + TAG_LEN) as u64;
/// A key file must hold at least this many bytes.
pub const MIN_KEY_FILE_LEN: usize = 32;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes of a sealed ref value (before hex): nonce, commit id, tag.
pub const SEALED_REF_LEN: usize = NONCE_LEN + 32 + TAG_LEN;
/// argon2id cost of new passphrase keys: 64 MiB, 3 passes, 1 lane.
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;
/// Ceiling on the argon2 memory a marker may ask for (a hostile remote must not exhaust RAM).
const ARGON2_MAX_M_KIB: u32 = 4 * 1024 * 1024;
const ARGON2_MAX_T: u32 = 64;

/// Errors about keys and sealed data, one line each.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("{remote} is encrypted: give its passphrase or key file (DVOL_PASSPHRASE, DVOL_PASSPHRASE_FILE, DVOL_KEY_FILE or --key-file)")]
    KeyRequired { remote: String },
    #[error("wrong passphrase or key file for the encrypted remote {remote}")]
    WrongKey { remote: String },
    #[error("{remote} is recorded as encrypted but its dvol-remote.json says it is not: refusing to send or trust data in the clear")]
    NotEncrypted { remote: String },
    #[error("{remote} already holds unencrypted dvol data: use a new, empty location for an encrypted remote")]
    AlreadyPlain { remote: String },
    #[error("{remote}: {detail}")]
    BadMarker { remote: String, detail: String },
    #[error(
        "{what} on the remote failed authentication (tampered with, or written with another key)"
    )]
    Tampered { what: String },
    #[error("key file is too short ({len} bytes): it must hold at least 32 random bytes, e.g. `head -c 32 /dev/urandom > KEYFILE`")]
    ShortKeyFile { len: usize },
}

/// The secret that unlocks an encrypted remote, read by the caller (the CLI).
pub enum Secret {
    Passphrase(Zeroizing<Vec<u8>>),
    KeyFile(Zeroizing<Vec<u8>>),
}

impl Secret {
    fn check(&self) -> crate::Result<()> {
        match self {
            Secret::KeyFile(k) if k.len() < MIN_KEY_FILE_LEN => {
                Err(CryptError::ShortKeyFile { len: k.len() }.into())
            }
            _ => Ok(()),
        }
    }
}

/// The `encryption` section of an encrypted remote's marker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encryption {
    pub version: u32,
    pub cipher: String,
    pub keys: Vec<WrappedKey>,
}

/// The master key wrapped under a passphrase or key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Random identifier (16 hex digits), part of the associated data.
    pub id: String,
    pub kdf: Kdf,
    /// Hex of the 24-byte nonce.
    pub nonce: String,
    /// Hex of the wrapped 32-byte master key and its 16-byte tag.
    pub ciphertext: String,
}

/// How the key-encryption key is derived.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "alg", rename_all = "lowercase")]
pub enum Kdf {
    /// argon2id (version 0x13) of the passphrase; memory in KiB.
    Argon2id {
        m_cost: u32,
        t_cost: u32,
        p_cost: u32,
        salt: String,
    },
    /// blake3 `derive_key` of salt and key file contents.
    Keyfile { salt: String },
}

/// The marker of an encrypted remote.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encryption: Option<Encryption>,
}

/// The subkeys of an unlocked remote.
pub struct Keys {
    records: XChaCha20Poly1305,
    indexes: XChaCha20Poly1305,
    refs: XChaCha20Poly1305,
    ids: Zeroizing<[u8; 32]>,
}

/// How data looks on a remote: plain, or sealed under a repository key.
pub enum Seal {
    Plain,
    Encrypted(Box<Keys>),
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

fn aead(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(key))
}

/// Seal `msg` as `nonce || ciphertext || tag`.
fn seal_bytes(cipher: &XChaCha20Poly1305, aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NONCE_LEN + msg.len() + TAG_LEN);
    seal_into(cipher, aad, msg, &mut out);
    out
}

/// Append `nonce || AEAD(parts…) || tag` to `out`, encrypting in place.
fn seal_into(cipher: &XChaCha20Poly1305, aad: &[u8], msg: &[u8], out: &mut Vec<u8>) {
    seal_parts(cipher, aad, &[msg], out)
}

fn seal_parts(cipher: &XChaCha20Poly1305, aad: &[u8], parts: &[&[u8]], out: &mut Vec<u8>) {
    let nonce: [u8; NONCE_LEN] = random();
    out.extend_from_slice(&nonce);
    let start = out.len();
    for p in parts {
        out.extend_from_slice(p);
    }
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[start..])
        .expect("XChaCha20-Poly1305 seals any length dvol uses");
    out.extend_from_slice(&tag);
}

/// Open `nonce || ciphertext || tag`; None when it does not authenticate.
fn open_bytes(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buf = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            &mut buf,
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(buf)
}

/// Associated data of a sealed block.
const BLOCK_AAD: &[u8] = b"dvol-block-v1";

fn record_aad(id: &ObjectId) -> [u8; 46] {
    let mut aad = [0u8; 46];
    aad[..14].copy_from_slice(b"dvol-record-v1");
    aad[14..].copy_from_slice(&id.0);
    aad
}

fn ref_aad(volume: &str, branch: &str) -> Vec<u8> {
    format!("dvol-ref-v1\0{volume}\0{branch}").into_bytes()
}

fn group_commit_aad(group: &str, id: &ObjectId) -> Vec<u8> {
    format!("dvol-group-commit-v1\0{group}\0{}", id.to_hex()).into_bytes()
}

impl Keys {
    fn from_master(master: &[u8; 32]) -> Keys {
        let sub = |ctx: &str| Zeroizing::new(blake3::derive_key(ctx, master));
        Keys {
            records: aead(&sub("dvol 2026 remote v1 record key")),
            indexes: aead(&sub("dvol 2026 remote v1 index key")),
            refs: aead(&sub("dvol 2026 remote v1 ref key")),
            ids: sub("dvol 2026 remote v1 object id key"),
        }
    }
}

impl Seal {
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Seal::Encrypted(_))
    }

    /// The id an object is listed under on the remote (a keyed hash when encrypted).
    pub fn remote_id(&self, id: &ObjectId) -> ObjectId {
        match self {
            Seal::Plain => *id,
            Seal::Encrypted(k) => ObjectId(*blake3::keyed_hash(&k.ids, &id.0).as_bytes()),
        }
    }

    /// Bytes a record of `clen` payload bytes takes in a remote pack.
    pub fn record_len(&self, clen: u32) -> u64 {
        let plain = RECORD_HEADER_LEN as u64 + clen as u64;
        match self {
            Seal::Plain => plain,
            Seal::Encrypted(_) => plain + RECORD_OVERHEAD,
        }
    }

    /// Append one record (header and compressed payload, as stored) to a pack being built.
    pub fn append_record(&self, out: &mut Vec<u8>, header: &RecordHeader, payload: &[u8]) {
        match self {
            Seal::Plain => {
                out.extend_from_slice(&header.encode());
                out.extend_from_slice(payload);
            }
            Seal::Encrypted(k) => seal_parts(
                &k.records,
                &record_aad(&self.remote_id(&header.id)),
                &[&header.encode(), payload],
                out,
            ),
        }
    }

    /// Open the record listed under remote id `id` (see [`Seal::remote_id`]) read from `pack`:
    /// its header and payload. The record is bound to `id`, so a record moved to another
    /// entry is refused; the caller checks the header against the index and the content hash.
    pub fn open_record(
        &self,
        id: &ObjectId,
        raw: &[u8],
        pack: &str,
    ) -> crate::Result<(RecordHeader, Vec<u8>)> {
        let bad = |why: String| crate::Error::CorruptObject {
            id: id.to_hex(),
            detail: format!("{why} in remote {pack}"),
        };
        let plain;
        let bytes = match self {
            Seal::Plain => raw,
            Seal::Encrypted(k) => {
                plain = open_bytes(&k.records, &record_aad(id), raw).ok_or_else(|| {
                    bad("record failed authentication (tampered with, or another key)".into())
                })?;
                &plain[..]
            }
        };
        if bytes.len() < RECORD_HEADER_LEN {
            return Err(bad("truncated record".into()));
        }
        let header = RecordHeader::decode(&bytes[..RECORD_HEADER_LEN]).map_err(bad)?;
        Ok((header, bytes[RECORD_HEADER_LEN..].to_vec()))
    }

    /// Append one block (as encoded by `RawBlock::encode`) to a pack being built. Sealed, it
    /// is bound to no id: its members are listed under several, and each is re-hashed
    /// against its own id when read.
    pub fn append_block(&self, out: &mut Vec<u8>, block: &[u8]) {
        match self {
            Seal::Plain => out.extend_from_slice(block),
            Seal::Encrypted(k) => seal_into(&k.records, BLOCK_AAD, block, out),
        }
    }

    /// Open a block record read from `pack` (its encoded bytes; the caller parses and
    /// verifies them).
    pub fn open_block(&self, raw: &[u8], pack: &str) -> Result<Vec<u8>, String> {
        match self {
            Seal::Plain => Ok(raw.to_vec()),
            Seal::Encrypted(k) => open_bytes(&k.records, BLOCK_AAD, raw).ok_or_else(|| {
                format!(
                    "block failed authentication (tampered with, or another key) in remote {pack}"
                )
            }),
        }
    }

    /// The bytes stored as the index of pack `name`.
    pub fn seal_index(&self, name: &str, index: Vec<u8>) -> Vec<u8> {
        match self {
            Seal::Plain => index,
            Seal::Encrypted(k) => seal_bytes(&k.indexes, index_aad(name).as_bytes(), &index),
        }
    }

    /// The plain index from the bytes stored under `key` (`packs/<name>.idx`).
    pub fn open_index(&self, key: &str, stored: Vec<u8>) -> crate::Result<Vec<u8>> {
        match self {
            Seal::Plain => Ok(stored),
            Seal::Encrypted(k) => {
                let name = key
                    .strip_prefix("packs/")
                    .and_then(|k| k.strip_suffix(".idx"))
                    .unwrap_or(key);
                open_bytes(&k.indexes, index_aad(name).as_bytes(), &stored).ok_or_else(|| {
                    CryptError::Tampered {
                        what: format!("pack index {key}"),
                    }
                    .into()
                })
            }
        }
    }

    /// The bytes stored for group commit `id` of group `group` (its encoding `body`).
    pub fn seal_group_commit(&self, group: &str, id: &ObjectId, body: Vec<u8>) -> Vec<u8> {
        match self {
            Seal::Plain => body,
            Seal::Encrypted(k) => seal_bytes(&k.refs, &group_commit_aad(group, id), &body),
        }
    }

    /// The encoding of group commit `id` of `group` from the bytes stored under `key`.
    pub fn open_group_commit(
        &self,
        group: &str,
        id: &ObjectId,
        key: &str,
        stored: Vec<u8>,
    ) -> crate::Result<Vec<u8>> {
        match self {
            Seal::Plain => Ok(stored),
            Seal::Encrypted(k) => open_bytes(&k.refs, &group_commit_aad(group, id), &stored)
                .ok_or_else(|| {
                    CryptError::Tampered {
                        what: format!("group commit {key}"),
                    }
                    .into()
                }),
        }
    }

    /// The value stored in the ref of `volume`/`branch` for commit `id`.
    pub fn ref_value(&self, volume: &str, branch: &str, id: &ObjectId) -> Vec<u8> {
        match self {
            Seal::Plain => super::ref_value(id),
            Seal::Encrypted(k) => {
                let sealed = seal_bytes(&k.refs, &ref_aad(volume, branch), &id.0);
                format!("{}\n", hex::encode(sealed)).into_bytes()
            }
        }
    }

    /// The commit id held by the ref of `volume`/`branch` (stored under `key`).
    pub fn parse_ref(
        &self,
        volume: &str,
        branch: &str,
        key: &str,
        value: &[u8],
    ) -> crate::Result<ObjectId> {
        let Seal::Encrypted(k) = self else {
            return super::parse_ref(key, value);
        };
        let tampered = || CryptError::Tampered {
            what: format!("ref {key}"),
        };
        let sealed = std::str::from_utf8(value)
            .ok()
            .and_then(|s| hex::decode(s.trim()).ok())
            .ok_or_else(tampered)?;
        let id = open_bytes(&k.refs, &ref_aad(volume, branch), &sealed).ok_or_else(tampered)?;
        Ok(ObjectId::from_slice(&id).ok_or_else(tampered)?)
    }
}

fn index_aad(name: &str) -> String {
    format!("dvol-index-v1\0{name}")
}

/// Derive the key-encryption key of `kdf` from the secret (None: the secret is of the other
/// kind, or the parameters are out of bounds).
fn kek(kdf: &Kdf, secret: &Secret) -> Option<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    match (kdf, secret) {
        (
            Kdf::Argon2id {
                m_cost,
                t_cost,
                p_cost,
                salt,
            },
            Secret::Passphrase(p),
        ) => {
            if *m_cost > ARGON2_MAX_M_KIB || *t_cost > ARGON2_MAX_T || *p_cost > 16 {
                return None;
            }
            let salt = hex::decode(salt).ok()?;
            let params = argon2::Params::new(*m_cost, *t_cost, *p_cost, Some(32)).ok()?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_into(p, &salt, &mut out[..])
                .ok()?;
        }
        (Kdf::Keyfile { salt }, Secret::KeyFile(k)) => {
            let mut h = blake3::Hasher::new_derive_key("dvol 2026 remote v1 key file");
            h.update(&hex::decode(salt).ok()?);
            h.update(k);
            out.copy_from_slice(h.finalize().as_bytes());
        }
        _ => return None,
    }
    Some(out)
}

fn wrap_aad(id: &str) -> Vec<u8> {
    format!("dvol-key-v1\0{id}").into_bytes()
}

/// Wrap a master key under `secret` with fresh salt and parameters.
fn wrap(master: &[u8; 32], secret: &Secret) -> WrappedKey {
    let salt = hex::encode(random::<16>());
    let kdf = match secret {
        Secret::Passphrase(_) => Kdf::Argon2id {
            m_cost: ARGON2_M_KIB,
            t_cost: ARGON2_T,
            p_cost: ARGON2_P,
            salt,
        },
        Secret::KeyFile(_) => Kdf::Keyfile { salt },
    };
    let id = hex::encode(random::<8>());
    let kek = kek(&kdf, secret).expect("fresh parameters are valid");
    let sealed = seal_bytes(&aead(&kek), &wrap_aad(&id), master);
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    WrappedKey {
        id,
        kdf,
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
    }
}

/// The master key from the first wrapped key `secret` opens.
fn unwrap(enc: &Encryption, secret: &Secret) -> Option<Zeroizing<[u8; 32]>> {
    enc.keys.iter().find_map(|w| {
        let kek = kek(&w.kdf, secret)?;
        let mut sealed = hex::decode(&w.nonce).ok()?;
        sealed.extend(hex::decode(&w.ciphertext).ok()?);
        let master = Zeroizing::new(open_bytes(&aead(&kek), &wrap_aad(&w.id), &sealed)?);
        if master.len() != 32 {
            return None;
        }
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&master);
        Some(out)
    })
}

/// How the caller wants the remote opened.
pub struct OpenRequest<'a> {
    /// The secret given by the user, if any.
    pub secret: Option<&'a Secret>,
    /// The local configuration says this remote is encrypted: a plain marker is refused.
    pub expect_encrypted: bool,
    /// Create the marker when absent (push, `remote add --encrypt`); encrypted when a secret
    /// is given and encryption is expected.
    pub create: bool,
}

/// Read the remote's marker and return how its data is sealed; None when it has no marker
/// and `create` is off. A plain marker is checked by [`super::check_format`].
pub fn open(backend: &dyn Backend, req: &OpenRequest) -> crate::Result<Option<Seal>> {
    let remote = backend.describe();
    let bytes = match backend.get(FORMAT_KEY)? {
        Some(b) => b,
        None if !req.create => return Ok(None),
        None if req.expect_encrypted => {
            let secret = req.secret.ok_or(CryptError::KeyRequired {
                remote: remote.clone(),
            })?;
            match create_marker(backend, secret)? {
                Some(seal) => return Ok(Some(seal)),
                None => backend.get(FORMAT_KEY)?.unwrap_or_default(),
            }
        }
        None => {
            super::check_format(backend, true)?;
            return open(backend, req);
        }
    };
    let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| CryptError::BadMarker {
        remote: remote.clone(),
        detail: format!("{FORMAT_KEY} is not a dvol remote marker: {e}"),
    })?;
    if marker.format != ENCRYPTED_FORMAT {
        if req.expect_encrypted {
            return Err(CryptError::NotEncrypted { remote }.into());
        }
        super::check_format(backend, false)?;
        return Ok(Some(Seal::Plain));
    }
    let bad = |detail: String| CryptError::BadMarker {
        remote: remote.clone(),
        detail,
    };
    let enc = match marker.encryption {
        Some(e) if marker.version == REMOTE_VERSION => e,
        Some(_) => {
            return Err(bad(format!(
                "remote format version {}; this dvol reads version {REMOTE_VERSION}",
                marker.version
            ))
            .into())
        }
        None => return Err(bad(format!("{FORMAT_KEY} has no encryption section")).into()),
    };
    if enc.version != CRYPT_VERSION || enc.cipher != CIPHER {
        return Err(bad(format!(
            "encryption format version {} ({}); this dvol reads version {CRYPT_VERSION} ({CIPHER})",
            enc.version, enc.cipher
        ))
        .into());
    }
    let secret = req.secret.ok_or(CryptError::KeyRequired {
        remote: remote.clone(),
    })?;
    secret.check()?;
    let master = unwrap(&enc, secret).ok_or(CryptError::WrongKey { remote })?;
    Ok(Some(Seal::Encrypted(Box::new(Keys::from_master(&master)))))
}

/// Make a remote encrypted (`remote add --encrypt`): create the marker with a new key when
/// the remote has none, or check that `secret` opens the key of an encrypted one.
pub fn init(backend: &dyn Backend, secret: &Secret) -> crate::Result<Seal> {
    secret.check()?;
    let req = OpenRequest {
        secret: Some(secret),
        expect_encrypted: true,
        create: true,
    };
    match open(backend, &req) {
        Err(crate::Error::Crypt(CryptError::NotEncrypted { remote })) => {
            Err(CryptError::AlreadyPlain { remote }.into())
        }
        other => Ok(other?.expect("open with create returns a seal")),
    }
}

/// Write a new encrypted marker by compare-and-swap; None when another writer won the race.
fn create_marker(backend: &dyn Backend, secret: &Secret) -> crate::Result<Option<Seal>> {
    secret.check()?;
    let master = Zeroizing::new(random::<32>());
    let marker = Marker {
        format: ENCRYPTED_FORMAT.into(),
        version: REMOTE_VERSION,
        encryption: Some(Encryption {
            version: CRYPT_VERSION,
            cipher: CIPHER.into(),
            keys: vec![wrap(&master, secret)],
        }),
    };
    let bytes = serde_json::to_vec_pretty(&marker).expect("marker serializes");
    Ok(match backend.cas(FORMAT_KEY, None, bytes)? {
        CasOutcome::Updated => Some(Seal::Encrypted(Box::new(Keys::from_master(&master)))),
        CasOutcome::Conflict { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;

    fn keyfile() -> Secret {
        Secret::KeyFile(Zeroizing::new(vec![7u8; 32]))
    }

    fn sealed() -> Seal {
        Seal::Encrypted(Box::new(Keys::from_master(&[1u8; 32])))
    }

    #[test]
    fn record_round_trip_and_binding() {
        let seal = sealed();
        let id = ObjectId::hash(b"payload");
        let header = RecordHeader {
            id,
            kind: Kind::Chunk,
            codec: 0,
            ulen: 7,
            clen: 7,
        };
        let mut out = Vec::new();
        seal.append_record(&mut out, &header, b"payload");
        assert_eq!(out.len() as u64, seal.record_len(7));
        let (h, p) = seal.open_record(&seal.remote_id(&id), &out, "p").unwrap();
        assert_eq!((h, p.as_slice()), (header, &b"payload"[..]));
        // Another id, or one flipped bit, is refused.
        assert!(seal.open_record(&ObjectId::hash(b"x"), &out, "p").is_err());
        out[30] ^= 1;
        assert!(seal.open_record(&seal.remote_id(&id), &out, "p").is_err());
    }

    #[test]
    fn every_flipped_bit_of_a_record_index_or_ref_is_refused() {
        let seal = sealed();
        let id = ObjectId::hash(b"some bytes of a chunk");
        let header = RecordHeader {
            id,
            kind: Kind::Chunk,
            codec: 0,
            ulen: 21,
            clen: 21,
        };
        let mut record = Vec::new();
        seal.append_record(&mut record, &header, b"some bytes of a chunk");
        let index = seal.seal_index("p", vec![5u8; 100]);
        let refv = seal.ref_value("db", "master", &id);
        let mut rounds = 0;
        for bit in 0..record.len() * 8 {
            let mut bad = record.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                seal.open_record(&seal.remote_id(&id), &bad, "p").is_err(),
                "bit {bit}"
            );
            rounds += 1;
        }
        for bit in 0..index.len() * 8 {
            let mut bad = index.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(seal.open_index("packs/p.idx", bad).is_err(), "bit {bit}");
            rounds += 1;
        }
        for at in 0..refv.len() - 1 {
            let mut bad = refv.clone();
            bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
            assert!(
                seal.parse_ref("db", "master", "k", &bad).is_err(),
                "at {at}"
            );
            rounds += 1;
        }
        assert!(rounds > 2000, "{rounds}");
        // Truncated or empty.
        assert!(seal
            .open_record(&id, &record[..record.len() - 1], "p")
            .is_err());
        assert!(seal.open_record(&seal.remote_id(&id), &[], "p").is_err());
    }

    #[test]
    fn refs_are_bound_to_their_name() {
        let seal = sealed();
        let id = ObjectId::hash(b"c");
        let v = seal.ref_value("db", "master", &id);
        assert_eq!(seal.parse_ref("db", "master", "k", &v).unwrap(), id);
        assert!(seal.parse_ref("db", "qa", "k", &v).is_err());
        assert!(seal.parse_ref("other", "master", "k", &v).is_err());
    }

    #[test]
    fn wrap_unwrap() {
        let master = [9u8; 32];
        let enc = Encryption {
            version: 1,
            cipher: CIPHER.into(),
            keys: vec![wrap(&master, &keyfile())],
        };
        assert_eq!(*unwrap(&enc, &keyfile()).unwrap(), master);
        let wrong = Secret::KeyFile(Zeroizing::new(vec![8u8; 32]));
        assert!(unwrap(&enc, &wrong).is_none());
        let pass = Secret::Passphrase(Zeroizing::new(b"x".to_vec()));
        assert!(unwrap(&enc, &pass).is_none());
    }
}
