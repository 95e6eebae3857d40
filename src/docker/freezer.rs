//! Thawing a container's freezer cgroup directly, the last resort when Docker's `unpause`
//! does not answer (it can wait behind a `docker exec` whose process was started while the
//! container was frozen, and so is frozen half-started itself).
//!
//! The cgroup is found from the container's main process (`/proc/PID/cgroup`): the cgroup v1
//! `freezer` hierarchy (`freezer.state` ← `THAWED`) when the host has one, else the cgroup v2
//! directory (`cgroup.freeze` ← `0`). The path must name the container's id, so a pid that
//! now belongs to another process is never touched. Docker does not see a direct thaw (it
//! still reports the container paused, and its runtime then refuses to unpause a container
//! that is not frozen), so the caller may freeze it again for a moment ([`Freezer::freeze`])
//! to have Docker unpause it and agree. It never decides whether a container is held.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How long a freeze may take to settle (v1's `FREEZING` to `FROZEN`).
const FREEZE_SETTLE: Duration = Duration::from_secs(2);

/// The freezer of one container's cgroup.
pub struct Freezer {
    file: PathBuf,
    /// The value of `file` that thaws (`THAWED` or `0`); the other freezes.
    thawed: &'static str,
}

impl Freezer {
    /// The freezer of container `id` whose main process is `pid`.
    pub fn of(id: &str, pid: u32) -> Result<Freezer, String> {
        let proc_file = format!("/proc/{pid}/cgroup");
        let listing =
            std::fs::read_to_string(&proc_file).map_err(|e| format!("{proc_file}: {e}"))?;
        let (file, thawed) = freeze_file(Path::new(CGROUP_ROOT), &listing)
            .ok_or_else(|| format!("no freezer cgroup in {proc_file}"))?;
        if !file.to_string_lossy().contains(id) {
            return Err(format!(
                "{} does not belong to container {id} (process {pid} is another's)",
                file.display()
            ));
        }
        Ok(Freezer { file, thawed })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Thaw the cgroup.
    pub fn thaw(&self) -> Result<(), String> {
        self.write(self.thawed)
    }

    /// Freeze the cgroup and wait (a bounded time) until it is frozen.
    pub fn freeze(&self) -> Result<(), String> {
        let frozen = if self.thawed == "0" { "1" } else { "FROZEN" };
        self.write(frozen)?;
        let until = Instant::now() + FREEZE_SETTLE;
        loop {
            let now = std::fs::read_to_string(&self.file).unwrap_or_default();
            if now.trim() == frozen || self.thawed == "0" {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!(
                    "{} still reads {}",
                    self.file.display(),
                    now.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn write(&self, value: &str) -> Result<(), String> {
        std::fs::write(&self.file, value).map_err(|e| format!("{}: {e}", self.file.display()))
    }
}

/// The file that freezes the cgroup a `/proc/PID/cgroup` `listing` names, below `root`, and
/// the value that thaws it: v1's `freezer` hierarchy first, else the v2 unified one.
fn freeze_file(root: &Path, listing: &str) -> Option<(PathBuf, &'static str)> {
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            fields.next()?;
            Some((fields.next()?, fields.next()?))
        })
        .collect();
    let inside = |path: &str| path.trim_start_matches('/').to_string();
    let v1 = entries
        .iter()
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "freezer"));
    if let Some((_, path)) = v1 {
        let dir = root.join("freezer").join(inside(path));
        return Some((dir.join("freezer.state"), "THAWED"));
    }
    let (_, path) = entries
        .iter()
        .find(|(controllers, _)| controllers.is_empty())?;
    let unified = if root.join("unified").is_dir() {
        root.join("unified")
    } else {
        root.to_path_buf()
    };
    Some((unified.join(inside(path)).join("cgroup.freeze"), "0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_freezer_before_the_unified_hierarchy() {
        let root = Path::new("/nonexistent-cgroup-root");
        let v1 = "12:pids:/docker/abc\n6:freezer:/docker/abc\n0::/docker/abc\n";
        assert_eq!(
            freeze_file(root, v1),
            Some((root.join("freezer/docker/abc/freezer.state"), "THAWED"))
        );
        let v2 = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            freeze_file(root, v2),
            Some((
                root.join("system.slice/docker-abc.scope/cgroup.freeze"),
                "0"
            ))
        );
        assert_eq!(freeze_file(root, "3:cpu:/x\n"), None);
    }

    #[test]
    fn the_unified_hierarchy_of_a_hybrid_host_is_under_unified() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("unified")).unwrap();
        let (file, _) = freeze_file(root.path(), "0::/docker/abc\n").unwrap();
        assert_eq!(file, root.path().join("unified/docker/abc/cgroup.freeze"));
    }

    #[test]
    fn a_process_of_another_cgroup_is_not_touched() {
        let me = std::process::id();
        let Err(err) = Freezer::of("0123456789abcdef-not-a-container", me) else {
            panic!("this test's own cgroup taken for a container's");
        };
        assert!(
            err.contains("does not belong") || err.contains("no freezer"),
            "{err}"
        );
    }
}
