//! Revision syntax: `HEAD`, a branch or tag name, a full commit id or a unique prefix (at least
//! 4 hex digits), each optionally followed by `^` (first parent, repeatable) or `~N`. An empty
//! revision (or nothing before `^`/`~`) is an error, never `HEAD`.

use super::{commit, Repo};
use crate::store::ObjectId;
use crate::{Error, Result};

impl Repo {
    /// Resolve `spec` in the context of `volume`'s `branch`.
    pub fn resolve(&self, volume: &str, branch: &str, spec: &str) -> Result<ObjectId> {
        let split = spec.find(['^', '~']).unwrap_or(spec.len());
        let (base, mut suffix) = spec.split_at(split);
        if base.trim().is_empty() {
            return Err(Error::EmptyRevision(spec.into()));
        }
        let mut id = self.resolve_base(volume, branch, base, spec)?;
        while !suffix.is_empty() {
            let (steps, rest) = parse_step(suffix).ok_or_else(|| Error::UnknownRef(spec.into()))?;
            for _ in 0..steps {
                let c = commit::lookup(&self.conn, &id)?;
                id = *c.parents.first().ok_or_else(|| {
                    Error::Other(format!(
                        "{spec}: commit {} has no parent",
                        &id.to_hex()[..12]
                    ))
                })?;
            }
            suffix = rest;
        }
        Ok(id)
    }

    fn resolve_base(&self, volume: &str, branch: &str, base: &str, spec: &str) -> Result<ObjectId> {
        if base == "HEAD" {
            return self.branch_head(volume, branch)?.ok_or_else(|| {
                Error::Other(format!("{spec}: branch {branch} has no commits yet"))
            });
        }
        if self.branch_exists(volume, base)? {
            return self
                .branch_head(volume, base)?
                .ok_or_else(|| Error::Other(format!("{spec}: branch {base} has no commits yet")));
        }
        if let Some(id) = self.tag_target(volume, base)? {
            return Ok(id);
        }
        self.resolve_prefix(base, spec)
    }

    fn resolve_prefix(&self, prefix: &str, spec: &str) -> Result<ObjectId> {
        let hexish = prefix.len() >= 4
            && prefix.len() <= 64
            && prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if !hexish {
            return Err(Error::UnknownRef(spec.into()));
        }
        let lower = prefix.to_ascii_lowercase();
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM commits WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
        let upper = format!("{lower}g");
        let ids: Vec<String> = stmt
            .query_map([&lower, &upper], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match ids.as_slice() {
            [one] => ObjectId::from_hex(one).ok_or_else(|| Error::UnknownRef(spec.into())),
            [] => Err(Error::UnknownRef(spec.into())),
            _ => Err(Error::AmbiguousRef(spec.into())),
        }
    }
}

/// Parse one `^`, `^^…` or `~N` step: (number of first-parent steps, rest).
pub(crate) fn parse_step(s: &str) -> Option<(usize, &str)> {
    if let Some(rest) = s.strip_prefix('^') {
        return Some((1, rest));
    }
    let rest = s.strip_prefix('~')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n = if digits == 0 {
        1
    } else {
        rest[..digits].parse().ok()?
    };
    Some((n, &rest[digits..]))
}

#[cfg(test)]
mod tests {
    use super::parse_step;

    #[test]
    fn steps() {
        assert_eq!(parse_step("^"), Some((1, "")));
        assert_eq!(parse_step("^^"), Some((1, "^")));
        assert_eq!(parse_step("~3^"), Some((3, "^")));
        assert_eq!(parse_step("~"), Some((1, "")));
        assert_eq!(parse_step("x"), None);
    }
}
