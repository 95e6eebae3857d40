//! Scoped access to `dvol serve`: the token file, and the one table of what each protocol
//! request needs ([`required`]).
//!
//! A token file holds either one bare token (admin on every volume, the original form) or one
//! token per line: `TOKEN SCOPE PATTERN`, scope `read-only`, `read-write` or `admin`, pattern a
//! volume name in which `*` and `?` may appear (`crate::names::matches`); a word starting with
//! `#` starts a comment.
//! Tokens are compared in constant time against every line (a hash of each, so neither the
//! matching line nor a token's length shows in the timing).
//!
//! The pattern governs refs, reflogs and expired lists (keys naming a volume). Packs are
//! content-addressed and shared: any token may read them, a read-write token may add them, and
//! only an admin token for every volume (`*`) may delete them or touch remote gc's state. What
//! a permitted write may change (fast-forward only, packs never replaced) is checked by
//! [`super::server`]; this module must not touch the remote.

use super::RemoteError;
use crate::Result;
use std::path::Path;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Shortest accepted token.
pub const MIN_TOKEN_LEN: usize = 8;

/// What a token may do, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    ReadOnly,
    ReadWrite,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read-only" => Some(Scope::ReadOnly),
            "read-write" => Some(Scope::ReadWrite),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::ReadOnly => "read-only",
            Scope::ReadWrite => "read-write",
            Scope::Admin => "admin",
        }
    }
}

/// What one authenticated client may do: a scope on the volumes matching a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    pub pattern: String,
    /// Who is refused, for messages: "token" (HTTP) or "ssh access" (`serve --stdio`).
    pub holder: &'static str,
}

impl Grant {
    /// Admin on every volume: the single-token file and `serve --stdio` without `--scope`.
    pub fn full(holder: &'static str) -> Grant {
        Grant {
            scope: Scope::Admin,
            pattern: "*".into(),
            holder,
        }
    }

    /// Whether the grant covers `volume`.
    pub fn covers(&self, volume: &str) -> bool {
        crate::names::matches(&self.pattern, volume)
    }

    /// Whether the grant covers every volume (needed for what is shared between volumes).
    pub fn covers_all(&self) -> bool {
        self.pattern == "*"
    }
}

/// The tokens of a token file.
pub struct Tokens {
    entries: Vec<([u8; 32], Grant)>,
}

fn token_hash(token: &[u8]) -> [u8; 32] {
    *blake3::hash(token).as_bytes()
}

impl Tokens {
    /// Read and check a token file (one error line naming the file and line).
    pub fn read(path: &Path) -> Result<Tokens> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RemoteError::setup(format!("cannot read token file {}", path.display()), e)
        })?;
        Tokens::parse(&text)
            .map_err(|e| RemoteError::setup(format!("token file {}", path.display()), e))
    }

    /// Parse a token file's text.
    pub fn parse(text: &str) -> std::result::Result<Tokens, String> {
        let lines: Vec<(usize, Vec<&str>)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, words(l)))
            .filter(|(_, words)| !words.is_empty())
            .collect();
        if lines.is_empty() {
            return Err(format!(
                "holds no token (at least {MIN_TOKEN_LEN} characters)"
            ));
        }
        let legacy = lines.len() == 1 && lines[0].1.len() == 1;
        let mut entries: Vec<([u8; 32], Grant)> = Vec::new();
        for (n, words) in &lines {
            let grant = match words.as_slice() {
                [_] if legacy => Grant::full("token"),
                [_, scope, pattern] => parse_grant(scope, pattern).map_err(|e| format!("line {n}: {e}"))?,
                _ => {
                    return Err(format!(
                        "line {n}: expected `TOKEN SCOPE PATTERN` (scope read-only, read-write or admin; pattern e.g. * or prod-*)"
                    ))
                }
            };
            let token = words[0];
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "line {n}: the token is too short (at least {MIN_TOKEN_LEN} characters)"
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "line {n}: the token must be printable ASCII without spaces"
                ));
            }
            let hash = token_hash(token.as_bytes());
            if entries.iter().any(|(h, _)| *h == hash) {
                return Err(format!("line {n}: the token is already on an earlier line"));
            }
            entries.push((hash, grant));
        }
        Ok(Tokens { entries })
    }

    /// The grant of `given`, if it is one of the tokens. Every token is compared (in constant
    /// time, as hashes), whichever matches.
    pub fn authenticate(&self, given: &[u8]) -> Option<&Grant> {
        let hash = token_hash(given);
        // No line matched: an index past the end.
        let mut found = u64::MAX;
        for (i, (h, _)) in self.entries.iter().enumerate() {
            found.conditional_assign(&(i as u64), h.ct_eq(&hash));
        }
        let found = usize::try_from(found).ok()?;
        self.entries.get(found).map(|e| &e.1)
    }
}

/// The words of a token file line before a comment (a word starting with `#`; a `#` inside a
/// token is part of it, as in the single-token form).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .take_while(|w| !w.starts_with('#'))
        .collect()
}

fn parse_grant(scope: &str, pattern: &str) -> std::result::Result<Grant, String> {
    let scope = Scope::parse(scope)
        .ok_or_else(|| format!("unknown scope {scope:?} (use read-only, read-write or admin)"))?;
    crate::names::validate_pattern(pattern).map_err(|e| e.to_string())?;
    Ok(Grant {
        scope,
        pattern: pattern.to_string(),
        holder: "token",
    })
}

/// What a key on the remote is, for authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClass<'a> {
    /// `dvol-remote.json`.
    Marker,
    /// `packs/<hash>.pack` or `packs/<hash>.idx`.
    Pack,
    /// `refs/<volume>/heads/<branch>`.
    Ref(&'a str),
    /// `reflog/<volume>/heads/<branch>`.
    Reflog(&'a str),
    /// `expired/<volume>`.
    Expired(&'a str),
    /// `groups/<group>/members`, `groups/<group>/refs/<branch>`, `groups/<group>/commits/<id>`:
    /// governed by the group's member volumes (the server reads the member list).
    Group(&'a str),
    /// `groups/<group>/reflog/<branch>`: written only by the server, like [`KeyClass::Reflog`].
    GroupReflog,
    /// Anything else (`gc/pending`, `probe/…`): remote gc and carrier internals.
    Other,
}

/// Classify a key that passed [`super::check_key`].
pub fn classify(key: &str) -> KeyClass<'_> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [k] if *k == super::FORMAT_KEY => KeyClass::Marker,
        ["packs", _] => KeyClass::Pack,
        ["refs", volume, "heads", _] => KeyClass::Ref(volume),
        ["reflog", volume, "heads", _] => KeyClass::Reflog(volume),
        ["expired", volume] => KeyClass::Expired(volume),
        ["groups", group, "members"] | ["groups", group, "refs" | "commits", _] => {
            KeyClass::Group(group)
        }
        ["groups", _, "reflog", _] => KeyClass::GroupReflog,
        _ => KeyClass::Other,
    }
}

/// What a request asks to do with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Put, or compare-and-swap.
    Write,
    Delete,
}

/// The scope a request on a key needs, and whether the grant's pattern must cover every
/// volume. `None`: no token may do it over the protocol (reflogs are written by the server).
pub fn required(class: KeyClass, access: Access) -> Option<(Scope, Need)> {
    use Access::{Delete, Read, Write};
    use KeyClass::{Expired, Group, GroupReflog, Marker, Other, Pack, Ref, Reflog};
    Some(match (class, access) {
        (Group(g), Read) => (Scope::ReadOnly, Need::Members(g)),
        (Group(g), Write) => (Scope::ReadWrite, Need::Members(g)),
        (Marker | Pack, Read) => (Scope::ReadOnly, Need::Any),
        (Ref(v) | Reflog(v) | Expired(v), Read) => (Scope::ReadOnly, Need::Volume(v)),
        // Creating the marker of an empty remote is part of a first push ([`super::server`]
        // refuses to replace it unless admin); packs are shared.
        (Marker | Pack, Write) => (Scope::ReadWrite, Need::Any),
        (Ref(v) | Expired(v), Write) => (Scope::ReadWrite, Need::Volume(v)),
        (Ref(v) | Reflog(v) | Expired(v), Delete) => (Scope::Admin, Need::Volume(v)),
        (Reflog(_) | GroupReflog, Write) => return None,
        (Marker | Pack | Other | Group(_) | GroupReflog, Delete)
        | (Other | GroupReflog, Read)
        | (Other, Write) => (Scope::Admin, Need::All),
    })
}

/// Which volumes a grant must cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    Any,
    Volume(&'a str),
    /// Shared by every volume (deleting packs, remote gc state).
    All,
    /// Every member volume of a group (checked with [`authorize_members`] by the server,
    /// which reads the member list).
    Members(&'a str),
}

/// Check that `grant` covers every volume of `members`, the member volumes of `group` (the
/// list on the remote, and the one being written), for `verb` on `what`. No list at all:
/// only a grant for every volume may act.
pub fn authorize_members(
    grant: &Grant,
    group: &str,
    members: &[String],
    what: &str,
    verb: &str,
) -> std::result::Result<(), String> {
    let limited = format!(
        "{} is limited to volumes matching '{}': refused to {verb} {what}",
        grant.holder, grant.pattern
    );
    if members.is_empty() && !grant.covers_all() {
        return Err(format!(
            "{limited}: group {group} has no member list on the remote (push the group with \
             this dvol first)"
        ));
    }
    match members.iter().find(|m| !grant.covers(m)) {
        Some(m) => Err(format!(
            "{limited}: member volume {m} of group {group} is not covered"
        )),
        None => Ok(()),
    }
}

/// The member volumes of a `groups/<group>/members` value (one per line).
pub fn parse_members(value: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(value)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(ToString::to_string)
        .collect()
}

/// Check `grant` for `access` to `key`; the error is the one line the client shows.
pub fn authorize(grant: &Grant, key: &str, access: Access) -> std::result::Result<(), String> {
    authorize_class(grant, classify(key), key, access)
}

/// Check `grant` for `access` to something of `class` (a key or a list prefix, `what`).
pub fn authorize_class(
    grant: &Grant,
    class: KeyClass,
    what: &str,
    access: Access,
) -> std::result::Result<(), String> {
    let verb = match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::Delete => "delete",
    };
    let holder = grant.holder;
    let Some((scope, need)) = required(class, access) else {
        return Err(format!(
            "refused to {verb} {what}: the server keeps it and no {holder} may change it"
        ));
    };
    if let Need::Volume(v) = need {
        if !grant.covers(v) {
            return Err(format!(
                "{holder} is limited to volumes matching '{}': refused to {verb} {what}",
                grant.pattern
            ));
        }
    }
    if grant.scope < scope {
        let why = match scope {
            Scope::Admin => format!("to {verb} {what} needs an admin token"),
            _ => format!("refused to {verb} {what}"),
        };
        return Err(format!("{holder} is {}: {why}", grant.scope.name()));
    }
    if need == Need::All && !grant.covers_all() {
        return Err(format!(
            "{holder} is limited to volumes matching '{}': to {verb} {what}, which every volume shares, use an admin token for '*'",
            grant.pattern
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACK: &str =
        "packs/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.pack";

    fn grant(scope: Scope, pattern: &str) -> Grant {
        Grant {
            scope,
            pattern: pattern.into(),
            holder: "token",
        }
    }

    #[test]
    fn token_files() {
        let t = Tokens::parse("  # the token\nwith#hash-token\n").unwrap();
        assert_eq!(
            t.authenticate(b"with#hash-token"),
            Some(&Grant::full("token"))
        );
        let t = Tokens::parse("just-one-token\n").unwrap();
        assert_eq!(
            t.authenticate(b"just-one-token"),
            Some(&Grant::full("token"))
        );
        assert_eq!(t.authenticate(b"just-one-toke"), None);
        let t = Tokens::parse(
            "# tokens\nro-token-1234 read-only qa-*\nrw-token-1234 read-write prod-?  # comment\nadm-token-1234 admin *\n",
        )
        .unwrap();
        assert_eq!(
            t.authenticate(b"rw-token-1234"),
            Some(&grant(Scope::ReadWrite, "prod-?"))
        );
        assert_eq!(t.authenticate(b""), None);
        for (bad, want) in [
            ("", "no token"),
            ("short", "too short"),
            ("a-long-token read-only *\nsecond-token", "line 2: expected"),
            ("a-long-token writer *", "line 1: unknown scope"),
            ("a-long-token admin a/b", "line 1: invalid volume pattern"),
            (
                "a-long-token admin *\na-long-token read-only x",
                "line 2: the token is already",
            ),
            ("short admin *", "line 1: the token is too short"),
        ] {
            let err = Tokens::parse(bad).err().expect(bad);
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn every_key_class_needs_its_scope() {
        let ro = grant(Scope::ReadOnly, "qa-*");
        let rw = grant(Scope::ReadWrite, "qa-*");
        let admin_qa = grant(Scope::Admin, "qa-*");
        let admin = grant(Scope::Admin, "*");
        let r = "refs/qa-1/heads/master";
        let other = "refs/prod/heads/master";
        assert!(authorize(&ro, PACK, Access::Read).is_ok());
        assert!(authorize(&ro, r, Access::Read).is_ok());
        assert!(authorize(&ro, other, Access::Read)
            .unwrap_err()
            .contains("matching 'qa-*'"));
        let e = authorize(&ro, r, Access::Write).unwrap_err();
        assert_eq!(e, format!("token is read-only: refused to write {r}"));
        assert!(authorize(&ro, PACK, Access::Write).is_err());
        assert!(authorize(&rw, PACK, Access::Write).is_ok());
        assert!(authorize(&rw, r, Access::Write).is_ok());
        assert!(authorize(&rw, other, Access::Write).is_err());
        assert!(authorize(&rw, "expired/qa-1", Access::Write).is_ok());
        for key in [
            PACK,
            r,
            "expired/qa-1",
            "gc/pending",
            super::super::FORMAT_KEY,
        ] {
            assert!(
                authorize(&rw, key, Access::Delete)
                    .unwrap_err()
                    .contains("admin"),
                "{key}"
            );
        }
        assert!(authorize(&admin_qa, r, Access::Delete).is_ok());
        assert!(authorize(&admin_qa, PACK, Access::Delete)
            .unwrap_err()
            .contains("'*'"));
        assert!(authorize(&admin, PACK, Access::Delete).is_ok());
        assert!(authorize(&admin, "gc/pending", Access::Write).is_ok());
        assert!(authorize(&rw, "gc/pending", Access::Read).is_err());
        let reflog = "reflog/qa-1/heads/master";
        assert!(authorize(&ro, reflog, Access::Read).is_ok());
        assert!(authorize(&admin, reflog, Access::Write).is_err());
    }
}
