//! Thin clones: how the live data of a new branch (`checkout -b`, `branch`, a pulled branch)
//! or a new volume (`-o from=`, `create_volume_from`) is made, and what it shares.
//!
//! - `reflink` (XFS with reflink, btrfs; found by trying `FICLONE`, see
//!   [`snapshot::reflink`]): the files of a branch already at (or near) the target commit are
//!   cloned by extent into a hidden directory, the difference is materialized over it, and it
//!   is renamed into place. Time O(files + difference), disk O(difference).
//! - `overlay` (file systems without shared extents, ext4; needs CAP_SYS_ADMIN): the commit is
//!   materialized once as a read-only base (`ROOT/.dvol/bases/<commit>/data`, its stat cache
//!   beside it), shared by every clone of that commit; each branch gets a private upper and
//!   work directory (`ROOT/<volume>/overlays/<branch>/`) and the overlay is mounted at its
//!   usual live directory, so every path (Docker's mountpoint, `dvol path`) stays the same.
//!   A mount that is gone (host or plugin restart) is made again by [`Repo::live_dir`], which
//!   every command that reads or writes live data goes through, and by the plugin at start.
//! - `full`: the whole tree is materialized (the fallback, and what `--clone-method full`
//!   forces).
//!
//! The method of each branch is a row of `layouts` (none: full), written in the transaction
//! that creates the branch row. `gc` removes bases no row uses.
//!
//! Must not: decide about containers (callers run this inside their `LiveGuard`), or touch a
//! live directory except through [`crate::live`] (mounting names dvol's own directories).

use super::Repo;
use crate::error::IoContext;
use crate::overlay;
use crate::snapshot::{self, reflink, Caches, RestoreOptions, StatCache};
use crate::store::ObjectId;
use crate::{Error, Result};
use rusqlite::OptionalExtension;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The `layouts` table: one row per branch whose live data is a thin clone.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS layouts(volume TEXT NOT NULL, branch TEXT NOT NULL, method TEXT NOT NULL,
    base TEXT, PRIMARY KEY(volume, branch));
";

/// How new live data is made (`--clone-method`, the plugin's `-o clone=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloneMethod {
    /// reflink where the file system shares extents, else overlay where dvol may mount,
    /// else full.
    #[default]
    Auto,
    Full,
    Reflink,
    Overlay,
}

impl CloneMethod {
    pub const NAMES: [&'static str; 4] = ["auto", "full", "reflink", "overlay"];

    pub fn parse(s: &str) -> Result<CloneMethod> {
        match s {
            "auto" => Ok(CloneMethod::Auto),
            "full" => Ok(CloneMethod::Full),
            "reflink" => Ok(CloneMethod::Reflink),
            "overlay" => Ok(CloneMethod::Overlay),
            other => Err(Error::UnknownCloneMethod(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How one branch's live data sits on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    Full,
    Reflink,
    /// Mounted over the base of this commit.
    Overlay {
        base: ObjectId,
    },
}

impl Layout {
    pub fn method(&self) -> &'static str {
        match self {
            Layout::Full => "full",
            Layout::Reflink => "reflink",
            Layout::Overlay { .. } => "overlay",
        }
    }
}

/// A branch whose live data can seed a reflink clone (its files and stat cache).
pub struct Source<'a> {
    pub volume: &'a str,
    pub branch: &'a str,
}

/// One branch as `dvol info` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BranchLayout {
    pub volume: String,
    pub branch: String,
    pub method: &'static str,
    /// The commit whose base an overlay clone is mounted over.
    pub base: Option<String>,
    /// Whether an overlay clone is mounted now.
    pub mounted: Option<bool>,
    pub usage: snapshot::usage::Usage,
}

impl Repo {
    /// Use `method` for the live data this repository makes from now on.
    pub fn set_clone_method(&mut self, method: CloneMethod) {
        self.clone_method = method;
    }

    /// Keep the users of a source's live data still through `freeze` (the CLI and the plugin
    /// pass Docker's pause) for the moment a reflink clone reads it, when the source is the
    /// current branch of its volume (the one containers mount). Without it (the default, and
    /// where the caller already holds the source, as `checkout -b` does), the before/after stat
    /// check alone keeps a file written meanwhile out of the clone.
    pub fn set_source_freeze(&mut self, freeze: Box<dyn super::LiveGuard + Send>) {
        self.source_freeze = freeze;
    }

    fn bases_dir(&self) -> PathBuf {
        self.meta.join("bases")
    }

    fn overlay_dir(&self, volume: &str, branch: &str) -> PathBuf {
        self.root.join(volume).join("overlays").join(branch)
    }

    /// The method a new clone uses: the chosen one, checked, or for `auto` the best one that
    /// works under this root.
    fn resolve_method(&self) -> Result<CloneMethod> {
        let reflink_ok = || reflink::supported(&self.meta);
        let overlay_ok = || overlay::supported(&self.meta);
        let refuse = |m: &str, why: &str| {
            Err(Error::CloneMethodUnavailable {
                method: m.to_string(),
                why: why.to_string(),
                root: self.root.clone(),
            })
        };
        match self.clone_method {
            CloneMethod::Auto if reflink_ok() => Ok(CloneMethod::Reflink),
            CloneMethod::Auto if overlay_ok() => Ok(CloneMethod::Overlay),
            CloneMethod::Auto | CloneMethod::Full => Ok(CloneMethod::Full),
            CloneMethod::Reflink if !reflink_ok() => refuse(
                "reflink",
                "the file system does not share extents (FICLONE failed)",
            ),
            CloneMethod::Overlay if !overlay_ok() => refuse(
                "overlay",
                "overlayfs cannot be mounted (it needs root or CAP_SYS_ADMIN, and a root not itself on an overlay)",
            ),
            m => Ok(m),
        }
    }

    /// Write commit `head` as the live data of `branch`, which has no row yet, by the chosen
    /// method; `source` (a branch at or near `head`) seeds a reflink clone. Returns the layout
    /// to record with the branch row ([`record_layout`]).
    pub(crate) fn make_branch_data(
        &self,
        volume: &str,
        branch: &str,
        head: &ObjectId,
        opts: &RestoreOptions,
        source: Option<&Source>,
    ) -> Result<Layout> {
        let tree = super::prune::kept_tree(&self.conn, head)?;
        let live = self.branch_dir(volume, branch);
        let staging = live.with_file_name(format!(".new-{branch}"));
        // The layers of an interrupted overlay attempt (its mount is detached first).
        self.discard_dir(&self.overlay_dir(volume, branch))?;
        let method = self.resolve_method()?;
        // An interrupted attempt's staging copy is finished rather than started again.
        let resume = staging.exists();
        // Whatever an earlier attempt (or a deleted branch of the same name) left is not
        // trusted: the new data gets a new cache, filled as it is written.
        let cache = self.fresh_cache(volume, branch)?;
        match method {
            CloneMethod::Overlay => {
                self.discard_dir(&staging)?;
                return self.overlay_branch(volume, branch, head, &tree, opts, &cache);
            }
            CloneMethod::Reflink if !resume => {
                self.reflink_seed(head, source, &tree, &staging, &cache)?;
            }
            _ => {}
        }
        snapshot::materialize_with(&self.store, &tree, &staging, Caches::same(&cache), opts)
            .inspect_err(|_| {
                // Best effort: do not leave a half-written copy taking space (e.g. disk full).
                let _ = self.discard_dir(&staging);
            })?;
        crate::failpoint::hit("checkout.before-rename");
        self.discard_dir(&live)?;
        std::fs::rename(&staging, &live).at("rename into place", &live)?;
        crate::failpoint::hit("checkout.before-branch-row");
        Ok(if method == CloneMethod::Reflink {
            Layout::Reflink
        } else {
            Layout::Full
        })
    }

    /// Reflink-clone into `staging` what a seeding branch holds of `tree`; the clones' stat
    /// cache rows go to `out`.
    fn reflink_seed(
        &self,
        head: &ObjectId,
        source: Option<&Source>,
        tree: &ObjectId,
        staging: &Path,
        out: &StatCache,
    ) -> Result<()> {
        let Some((volume, branch)) = self.seed_branch(head, source)? else {
            return Ok(());
        };
        let dir = self.live_dir(&volume, &branch)?;
        let cache = self.read_cache(&volume, &branch);
        let clone = || reflink::clone_tree(&self.store, tree, &dir, &cache, staging, out);
        let cloned = if self.current_branch(&volume)? == branch {
            super::guarded(&*self.source_freeze, &volume, "clone", clone)?
        } else {
            clone()?
        };
        tracing::debug!(
            files = cloned.files,
            bytes = cloned.bytes,
            unverified = cloned.unverified,
            "reflink clone of {volume}/{branch}"
        );
        Ok(())
    }

    /// The branch to clone extents from: one whose head is `head` (`source` itself first,
    /// then its volume's), else `source` anyway (files it shares with `head` are still
    /// cloned).
    fn seed_branch(
        &self,
        head: &ObjectId,
        source: Option<&Source>,
    ) -> Result<Option<(String, String)>> {
        let (volume, branch) = source.map_or(("", ""), |s| (s.volume, s.branch));
        let at_head: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT volume, name FROM branches WHERE head = ?1
                 ORDER BY volume = ?2 AND name = ?3 DESC, volume = ?2 DESC, volume, name
                 LIMIT 1",
                [head.to_hex().as_str(), volume, branch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(at_head.or(source.map(|s| (s.volume.to_string(), s.branch.to_string()))))
    }

    /// Mount an overlay of `head`'s base at the branch's live directory and check it against
    /// the tree (metadata only: the base's stat cache vouches for every file).
    fn overlay_branch(
        &self,
        volume: &str,
        branch: &str,
        head: &ObjectId,
        tree: &ObjectId,
        opts: &RestoreOptions,
        cache: &StatCache,
    ) -> Result<Layout> {
        let base = self.ensure_base(head, tree)?;
        let live = self.branch_dir(volume, branch);
        self.discard_dir(&live)?;
        self.mount_overlay(volume, branch, &base)?;
        let caches = Caches {
            old: &base_cache(&base),
            new: cache,
        };
        snapshot::materialize_with(&self.store, tree, &live, caches, opts)?;
        // The same crash points as a full copy: the data is in place, the row is not.
        crate::failpoint::hit("checkout.before-rename");
        crate::failpoint::hit("checkout.before-branch-row");
        Ok(Layout::Overlay { base: *head })
    }

    /// Create the branch's empty upper and work directories (if missing) and mount.
    fn mount_overlay(&self, volume: &str, branch: &str, base: &Path) -> Result<()> {
        let dirs = self.overlay_dir(volume, branch);
        let live = self.branch_dir(volume, branch);
        for d in [dirs.join("upper"), dirs.join("work"), live.clone()] {
            std::fs::create_dir_all(&d).at("create", &d)?;
        }
        overlay::mount(
            &base.join("data"),
            &dirs.join("upper"),
            &dirs.join("work"),
            &live,
        )
    }

    /// The base of commit `head` (its tree `tree`), materialized now if missing: into a
    /// hidden directory, then renamed into place. One builder per base at a time (a lock
    /// file beside it, which gc removes with unused bases); a killed build is finished by the
    /// next one, a failed one is removed.
    fn ensure_base(&self, head: &ObjectId, tree: &ObjectId) -> Result<PathBuf> {
        let hex = head.to_hex();
        let base = self.bases_dir().join(&hex);
        if base.join("data").is_dir() {
            return Ok(base);
        }
        let bases = self.bases_dir();
        std::fs::create_dir_all(&bases).at("create", &bases)?;
        let lock_path = self.bases_dir().join(format!(".lock-{hex}"));
        let _one = crate::lock::acquire(&lock_path, "base", true, self.options.lock_timeout)?;
        if base.join("data").is_dir() {
            return Ok(base);
        }
        let staging = self.bases_dir().join(format!(".new-{hex}"));
        let built = {
            // Closed before the rename below moves its file.
            let cache = StatCache::fresh(&staging.join(BASE_CACHE));
            snapshot::materialize(
                &self.store,
                tree,
                &staging.join("data"),
                Caches::same(&cache),
            )
        };
        if let Err(e) = built {
            // Best effort, as for a full copy: no half-written base taking space.
            let _ = self.discard_dir(&staging);
            return Err(e);
        }
        std::fs::rename(&staging, &base).at("rename into place", &base)?;
        Ok(base)
    }

    /// The layout of a branch.
    pub fn layout(&self, volume: &str, branch: &str) -> Result<Layout> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT method, base FROM layouts WHERE volume = ?1 AND branch = ?2",
                [volume, branch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(Layout::Full),
            Some((m, _)) if m == "reflink" => Ok(Layout::Reflink),
            Some((m, Some(base))) if m == "overlay" => Ok(Layout::Overlay {
                base: super::heads::parse_ref(&format!("base of {volume}/{branch}"), &base)?,
            }),
            Some((m, _)) => Err(Error::Format(format!(
                "branch {volume}/{branch} has an unknown layout {m:?}"
            ))),
        }
    }

    /// The live directory of a branch, ready to read and write: an overlay clone whose mount
    /// is gone (after a reboot, or a plugin restart in its own namespace) is mounted again.
    pub fn live_dir(&self, volume: &str, branch: &str) -> Result<PathBuf> {
        let live = self.branch_dir(volume, branch);
        if let Layout::Overlay { base } = self.layout(volume, branch)? {
            if overlay::is_mounted(&live) {
                return Ok(live);
            }
            let _one = self.mounts_lock()?;
            if !overlay::is_mounted(&live) {
                let base_dir = self.bases_dir().join(base.to_hex());
                self.mount_overlay(volume, branch, &base_dir)
                    .map_err(|e| overlay::not_mounted(&live, &e))?;
                tracing::info!("mounted the overlay of {volume}/{branch} again");
            }
        }
        Ok(live)
    }

    /// The live directory `reset --hard` (op `reset`) writes `target` over, and the stat cache
    /// vouching for it. An overlay clone drops its local state instead of writing over it when
    /// that writes less: its upper directory is removed and the overlay mounted again over its
    /// base, so a reset to the base commit writes nothing and frees every copied-up file, and
    /// one to another commit writes only what differs from the base. Kept (and written over)
    /// when the target is closer to the branch's head than to the base, as when a tester
    /// resets a masked branch to its own head: then only the local changes are rewritten.
    /// Other layouts, and other ops: the live directory as it is.
    pub(crate) fn rewrite_live(
        &self,
        volume: &str,
        branch: &str,
        op: &str,
        head: Option<&ObjectId>,
        target: &ObjectId,
    ) -> Result<(PathBuf, RewriteCaches)> {
        let as_is = || {
            Ok((
                self.live_dir(volume, branch)?,
                RewriteCaches::InPlace(self.own_cache(volume, branch)),
            ))
        };
        let Layout::Overlay { base } = self.layout(volume, branch)? else {
            return as_is();
        };
        if op != "reset" || !self.closer_to_base(&base, head, target)? {
            return as_is();
        }
        let base_dir = self.ensure_base(&base, &super::prune::kept_tree(&self.conn, &base)?)?;
        let live = self.branch_dir(volume, branch);
        let _one = self.mounts_lock()?;
        overlay::unmount_under(&live)?;
        self.discard_dir(&self.overlay_dir(volume, branch))?;
        self.mount_overlay(volume, branch, &base_dir)?;
        tracing::debug!("dropped the overlay's upper directory of {volume}/{branch}");
        let caches = RewriteCaches::OverBase {
            base: base_cache(&base_dir),
            own: self.fresh_cache(volume, branch)?,
        };
        Ok((live, caches))
    }

    /// Whether making `target` over the base `base` writes no more bytes than making it over
    /// the commit `head` (local changes not counted: they only add to the second).
    fn closer_to_base(
        &self,
        base: &ObjectId,
        head: Option<&ObjectId>,
        target: &ObjectId,
    ) -> Result<bool> {
        if base == target {
            return Ok(true);
        }
        let to_target = |from: Option<&ObjectId>| -> Result<u64> {
            let from = from
                .map(|c| super::prune::kept_tree(&self.conn, c))
                .transpose()?;
            let to = super::prune::kept_tree(&self.conn, target)?;
            let load = |id: &ObjectId| snapshot::Tree::load(&self.store, id);
            let mut bytes = 0u64;
            snapshot::diff(&load, from.as_ref(), Some(&to), &mut |c| {
                bytes += c.new_size;
                Ok(())
            })?;
            Ok(bytes)
        };
        Ok(to_target(Some(base))? <= to_target(head)?)
    }

    /// One mounter at a time: two commands finding a mount gone must not stack two overlays
    /// on one upper directory.
    fn mounts_lock(&self) -> Result<crate::lock::LockGuard> {
        let lock_path = self.meta.join("locks").join("mounts.lock");
        crate::lock::acquire(&lock_path, "mounts", true, self.options.lock_timeout)
    }

    /// Mount every overlay clone whose mount is gone (the plugin at start); the failures.
    pub fn remount_all(&self) -> Vec<Error> {
        let rows = match self.overlay_branches(None) {
            Ok(rows) => rows,
            Err(e) => return vec![e],
        };
        rows.iter()
            .filter_map(|(v, b)| self.live_dir(v, b).err())
            .collect()
    }

    /// `(volume, branch)` of every overlay clone (of one volume, if given).
    fn overlay_branches(&self, volume: Option<&str>) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT volume, branch FROM layouts WHERE method = 'overlay'
             AND (?1 IS NULL OR volume = ?1) ORDER BY volume, branch",
        )?;
        let rows = stmt.query_map([volume], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remove a branch's clone directories (its overlay unmounted first) and its live data.
    pub(crate) fn discard_branch_data(&self, volume: &str, branch: &str) -> Result<()> {
        self.discard_dir(&self.branch_dir(volume, branch))?;
        self.discard_dir(&self.overlay_dir(volume, branch))
    }

    /// Remove the bases no overlay clone uses (gc holds the store lock exclusively, so no base
    /// is being built); the bytes they held.
    pub(crate) fn gc_bases(&self) -> Result<u64> {
        let dir = self.bases_dir();
        let Ok(list) = std::fs::read_dir(&dir) else {
            return Ok(0);
        };
        let used: std::collections::HashSet<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT DISTINCT base FROM layouts WHERE method = 'overlay'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut freed = 0;
        for entry in list {
            let entry = entry.at("list", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if used.contains(&name) {
                continue;
            }
            let path = entry.path();
            freed += snapshot::usage::measure(&path).map_or(0, |u| u.allocated);
            self.discard_dir(&path)?;
        }
        Ok(freed)
    }

    /// The layout and disk use of every branch of `volume`.
    pub fn layouts(&self, volume: &str) -> Result<Vec<BranchLayout>> {
        self.branches(volume)?
            .into_iter()
            .map(|branch| {
                let layout = self.layout(volume, &branch)?;
                let live = self.branch_dir(volume, &branch);
                let (base, mounted, usage) = match &layout {
                    Layout::Overlay { base } => (
                        Some(base.to_hex()),
                        Some(overlay::is_mounted(&live)),
                        snapshot::usage::overlay(
                            &self.bases_dir().join(base.to_hex()).join("data"),
                            &self.overlay_dir(volume, &branch).join("upper"),
                        )?,
                    ),
                    _ => (None, None, snapshot::usage::measure(&live)?),
                };
                Ok(BranchLayout {
                    volume: volume.to_string(),
                    method: layout.method(),
                    branch,
                    base,
                    mounted,
                    usage,
                })
            })
            .collect()
    }
}

/// Record `layout` for a new branch in the transaction that creates its row.
pub(crate) fn record_layout(
    tx: &rusqlite::Transaction,
    volume: &str,
    branch: &str,
    layout: &Layout,
) -> Result<()> {
    tx.execute(
        "DELETE FROM layouts WHERE volume = ?1 AND branch = ?2",
        [volume, branch],
    )?;
    let base = match layout {
        Layout::Full => return Ok(()),
        Layout::Reflink => None,
        Layout::Overlay { base } => Some(base.to_hex()),
    };
    tx.execute(
        "INSERT INTO layouts(volume, branch, method, base) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![volume, branch, layout.method(), base],
    )?;
    Ok(())
}

/// The stat cache file of an overlay base, beside its `data` directory.
const BASE_CACHE: &str = "cache.db";
/// Where older versions kept it (imported when the base's cache is opened).
const BASE_LEGACY_CACHE: &str = "cache";

/// The stat cache of the overlay base in `base` (read only: bases are shared).
fn base_cache(base: &Path) -> StatCache {
    StatCache::open_read(&base.join(BASE_CACHE), &base.join(BASE_LEGACY_CACHE))
}

/// The stat caches of a rewrite of live data (see [`Repo::rewrite_live`]).
pub(crate) enum RewriteCaches {
    /// The live data is written over: its own cache vouches and receives.
    InPlace(StatCache),
    /// The live data was dropped back to an overlay base: the base's cache vouches, a fresh
    /// cache of the branch receives.
    OverBase { base: StatCache, own: StatCache },
}

impl RewriteCaches {
    pub(crate) fn caches(&self) -> Caches<'_> {
        match self {
            RewriteCaches::InPlace(c) => Caches::same(c),
            RewriteCaches::OverBase { base, own } => Caches {
                old: base,
                new: own,
            },
        }
    }
}
