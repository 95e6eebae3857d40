//! Validation of every name that becomes a path or a key: volumes, branches, tags, remotes.
//! One rule set for the CLI, the Docker plugin and remotes, so nothing outside ROOT is touched.
//!
//! New branch and tag names must also not read as a revision ([`validate_new_ref`]): `HEAD`,
//! a 4-64 digit hex string (a commit id prefix), or anything with `^`, `~`, `@{` or `:`.
//! Names made before this rule keep working; [`revision_like`] says why one is ambiguous so
//! `dvol branch` can mark it.
//!
//! Volume patterns (the scopes of `dvol serve` tokens, [`validate_pattern`], [`matches`]) are
//! names in which `*` stands for any run of characters and `?` for one character; neither can
//! appear in a name, so a pattern without them matches only that name.

use crate::{Error, Result};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Check a user-, Docker- or remote-supplied name. `what` is "volume", "branch", "tag" or
/// "remote" and appears in the error.
pub fn validate(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 128 characters")
    } else if !name.is_ascii() {
        Some("it contains non-ASCII characters")
    } else if name.contains('/') || name.contains('\\') {
        Some("it contains a slash")
    } else if name.contains("..") {
        Some("it contains '..'")
    } else if name.starts_with('.') {
        Some("it starts with a dot")
    } else if name.starts_with('-') {
        Some("it starts with a dash")
    } else if name.chars().any(|c| c.is_ascii_whitespace()) {
        Some("it contains white space")
    } else if name.chars().any(|c| c.is_ascii_control()) {
        Some("it contains control characters")
    } else if name.contains(['~', '^', ':', '@', '*', '?', '[']) {
        Some("it contains one of ~ ^ : @ * ? [")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            what,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Why an existing branch or tag name could be read as a revision, if it could.
pub fn revision_like(name: &str) -> Option<&'static str> {
    if name == "HEAD" {
        Some("it is HEAD")
    } else if (4..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some("it looks like a commit id")
    } else if name.contains(['^', '~', ':']) || name.contains("@{") {
        Some("it contains one of ^ ~ : @{")
    } else {
        None
    }
}

/// Check the name of a branch or tag about to be created: [`validate`] plus
/// [`revision_like`].
pub fn validate_new_ref(what: &'static str, name: &str) -> Result<()> {
    validate(what, name)?;
    match revision_like(name) {
        Some(reason) => Err(Error::InvalidName {
            what,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Check a volume pattern: a volume name in which `*` and `?` may also appear.
pub fn validate_pattern(pattern: &str) -> Result<()> {
    // Wildcards stand for name characters: the pattern with each replaced by one must be a
    // name (no slash, no dot-dot, not empty...).
    let sample: String = pattern
        .chars()
        .map(|c| if c == '*' || c == '?' { 'x' } else { c })
        .collect();
    validate("volume pattern", &sample).map_err(|_| Error::InvalidName {
        what: "volume pattern",
        name: pattern.to_string(),
        reason: "it must be a volume name in which * and ? may also appear",
    })
}

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one character).
/// Iterative with one backtrack point, so linear-ish in the lengths whatever the pattern.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Position after the last `*` and the name position it is tried against.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi + 1, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_patterns() {
        for (pat, name, yes) in [
            ("*", "db", true),
            ("prod-*", "prod-db", true),
            ("prod-*", "prod-", true),
            ("prod-*", "qa-db", false),
            ("qa-?", "qa-1", true),
            ("qa-?", "qa-12", false),
            ("*-db", "prod-db", true),
            ("*-db", "prod-dbx", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("db", "db", true),
            ("db", "db2", false),
        ] {
            assert_eq!(matches(pat, name), yes, "{pat} {name}");
        }
        for ok in ["*", "prod-*", "qa-?", "db"] {
            validate_pattern(ok).unwrap();
        }
        for bad in ["", "a/*", "..*", "-*", "a b", "[ab]", "*@*"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_new_refs_that_read_as_revisions() {
        for bad in [
            "HEAD",
            "abcd",
            "ABCDEF12",
            &"0".repeat(64),
            "HEAD~1",
            "HEAD^",
            "a@{1}",
        ] {
            let err = validate_new_ref("branch", bad).unwrap_err().to_string();
            assert!(err.contains("invalid branch name"), "{bad}: {err}");
        }
        for ok in ["head", "abc", "feature", "cafe-1", &"0".repeat(65), "v1.0"] {
            validate_new_ref("tag", ok).unwrap();
        }
        assert_eq!(revision_like("HEAD"), Some("it is HEAD"));
        assert_eq!(revision_like("master"), None);
    }

    #[test]
    fn accepts_docker_and_compose_names() {
        for ok in ["mydb", "proj_db_1", "1abc", "a-b", "A.b", "x_y-z.1"] {
            validate("volume", ok).unwrap();
        }
    }

    #[test]
    fn rejects_hostile_names() {
        let long = "a".repeat(129);
        for bad in [
            "", "a/b", "..", "a..b", ".hidden", "-rf", "a b", "tab\t", "é", &long, "HEAD~1",
        ] {
            let err = validate("volume", bad).unwrap_err().to_string();
            assert!(err.contains("invalid volume name"), "{bad}: {err}");
        }
    }
}
