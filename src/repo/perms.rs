//! Ownership of the root's own directories: the root, `ROOT/.dvol`, each `ROOT/<volume>` and
//! its `branches/` are private to the owner (0700), so no other local user can reach live data
//! (and run a set-id program in it). A branch directory, the volume's mount root, keeps the
//! volume's own mode. Existing roots are tightened on open; an x-only mode for others (0701,
//! 0711: what Docker's user-namespace remapping needs) is a deliberate choice and kept.
//! Does not touch anything inside a branch directory.

use crate::error::IoContext;
use crate::Result;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories this module owns.
pub const PRIVATE_MODE: u32 = 0o700;

/// Create `dir` (and missing parents) and make it private.
pub fn create_private(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).at("create", dir)?;
    make_private(dir)
}

/// Make an existing directory private when it grants more than traversal to others.
pub fn make_private(dir: &Path) -> Result<()> {
    let md = std::fs::symlink_metadata(dir).at("stat", dir)?;
    let mode = md.mode() & 0o7777;
    // Only the owner (or root) may chmod; a root owned by another user is left as it is.
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    let owner = md.uid() == unsafe { libc::geteuid() };
    if md.is_dir() && owner && mode & 0o066 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_MODE))
            .at("chmod", dir)?;
    }
    Ok(())
}

/// Make the root, `.dvol` (always 0700), and every volume directory and its `branches/`
/// private.
pub fn secure_root(root: &Path) -> Result<()> {
    make_private(root)?;
    // Nothing below `.dvol` is mounted: always exactly 0700.
    let meta = root.join(".dvol");
    std::fs::set_permissions(&meta, std::fs::Permissions::from_mode(PRIVATE_MODE))
        .at("chmod", &meta)?;
    for entry in std::fs::read_dir(root).at("list", root)? {
        let entry = entry.at("list", root)?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") || !entry.path().is_dir() {
            continue;
        }
        make_private(&entry.path())?;
        let branches = entry.path().join("branches");
        if branches.is_dir() {
            make_private(&branches)?;
        }
    }
    Ok(())
}

/// Make `ROOT/<volume>` and its `branches/` private (created when missing).
pub fn secure_volume_dir(dir: &Path) -> Result<()> {
    create_private(dir)?;
    create_private(&dir.join("branches"))
}
