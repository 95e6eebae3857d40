//! Revision syntax: `HEAD`, a branch or tag name, a full commit id or a unique prefix (at least
//! 4 hex digits), each optionally followed by `^` (first parent, repeatable) or `~N`. An empty
//! revision (or nothing before `^`/`~`) is an error, never `HEAD`.

use super::{commit, Repo};
use crate::store::ObjectId;
use crate::{Error, Result};

impl Repo {
    /// Resolve `spec` in the context of `volume`'s `branch`.
    pub fn resolve(&self, volume: &str, branch: &str, spec: &str) -> Result<ObjectId> {
        resolve_spec(
            spec,
            "commit",
            |base| self.resolve_base(volume, branch, base, spec),
            |id| Ok(commit::lookup(&self.conn, id)?.parents.first().copied()),
        )
    }

    fn resolve_base(&self, volume: &str, branch: &str, base: &str, spec: &str) -> Result<ObjectId> {
        if base == "HEAD" {
            return self
                .branch_head(volume, branch)?
                .ok_or_else(|| Error::NoCommits {
                    spec: spec.to_string(),
                    branch: branch.to_string(),
                });
        }
        if self.branch_exists(volume, base)? {
            return self
                .branch_head(volume, base)?
                .ok_or_else(|| Error::NoCommits {
                    spec: spec.to_string(),
                    branch: base.to_string(),
                });
        }
        if let Some(id) = self.tag_target(volume, base)? {
            return Ok(id);
        }
        self.resolve_prefix(base, spec)
    }

    fn resolve_prefix(&self, prefix: &str, spec: &str) -> Result<ObjectId> {
        resolve_prefix_in(
            &self.conn,
            "SELECT id FROM commits WHERE id >= ?1 AND id < ?2 LIMIT 2",
            &[],
            prefix,
            spec,
        )
    }
}

/// Resolve `spec`: its base (before any `^`/`~`) by `base`, then each step by `first_parent`
/// (`None`: no parent). `what` names the kind of commit in errors.
pub(crate) fn resolve_spec(
    spec: &str,
    what: &'static str,
    base: impl FnOnce(&str) -> Result<ObjectId>,
    first_parent: impl Fn(&ObjectId) -> Result<Option<ObjectId>>,
) -> Result<ObjectId> {
    let split = spec.find(['^', '~']).unwrap_or(spec.len());
    let (head, mut suffix) = spec.split_at(split);
    if head.trim().is_empty() {
        return Err(Error::EmptyRevision(spec.into()));
    }
    let mut id = base(head)?;
    while !suffix.is_empty() {
        let (steps, rest) = parse_step(suffix).ok_or_else(|| Error::UnknownRef(spec.into()))?;
        for _ in 0..steps {
            id = first_parent(&id)?.ok_or_else(|| Error::NoParent {
                spec: spec.to_string(),
                what,
                short_id: id.to_hex()[..12].to_string(),
            })?;
        }
        suffix = rest;
    }
    Ok(id)
}

/// The one id `query` (bound to `params`, then the lower and upper bound of the prefix) finds
/// for a hex `prefix` of at least 4 digits; unknown or ambiguous otherwise.
pub(crate) fn resolve_prefix_in(
    conn: &rusqlite::Connection,
    query: &str,
    params: &[&str],
    prefix: &str,
    spec: &str,
) -> Result<ObjectId> {
    let hexish =
        prefix.len() >= 4 && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit());
    if !hexish {
        return Err(Error::UnknownRef(spec.into()));
    }
    let lower = prefix.to_ascii_lowercase();
    let upper = format!("{lower}g");
    let mut bound: Vec<&str> = params.to_vec();
    bound.extend([lower.as_str(), upper.as_str()]);
    let mut stmt = conn.prepare(query)?;
    let ids: Vec<String> = stmt
        .query_map(rusqlite::params_from_iter(bound), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    match ids.as_slice() {
        [one] => ObjectId::from_hex(one).ok_or_else(|| Error::UnknownRef(spec.into())),
        [] => Err(Error::UnknownRef(spec.into())),
        _ => Err(Error::AmbiguousRef(spec.into())),
    }
}

/// Parse one `^`, `^^…` or `~N` step: (number of first-parent steps, rest).
fn parse_step(s: &str) -> Option<(usize, &str)> {
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
