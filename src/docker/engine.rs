//! A small synchronous facade over bollard: which running containers use which dvol volume,
//! and stop / start / pause / unpause them. The CLI is synchronous, so the engine owns a
//! current-thread tokio runtime and blocks on each call.

use crate::{Error, Result};
use bollard::models::{ContainerSummaryStateEnum, MountPoint, MountPointTypeEnum};
use bollard::query_parameters::{
    ListContainersOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long we wait for a daemon to answer before treating Docker integration as off.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A container as dvol reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// The name as Docker shows it in `docker inspect`, with the leading slash: `/web`.
    pub name: String,
    pub paused: bool,
}

/// A connection to the Docker engine.
pub struct Engine {
    rt: tokio::runtime::Runtime,
    docker: Docker,
}

impl Engine {
    /// Connect to the daemon at `DOCKER_HOST` (default `/var/run/docker.sock`). `None` when no
    /// daemon answers: Docker integration is then off, as if `--disable-docker-integration`.
    pub fn connect() -> Option<Engine> {
        let rt = crate::runtime::client_runtime("the Docker engine client").ok()?;
        let docker = Docker::connect_with_defaults().ok()?;
        let docker = rt
            .block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await
            })
            .ok()?
            .ok()?;
        Some(Engine { rt, docker })
    }

    /// Running (or paused) containers that mount a volume of the dvol root `root`, by volume.
    pub fn usage(&self, root: &Path) -> Result<BTreeMap<String, Vec<Container>>> {
        let root = canonical(root);
        let list = self
            .rt
            .block_on(self.docker.list_containers(Some(ListContainersOptions {
                all: false,
                ..Default::default()
            })))
            .map_err(|e| Error::Docker(format!("listing containers: {e}")))?;
        let mut out: BTreeMap<String, Vec<Container>> = BTreeMap::new();
        let mut known: BTreeMap<String, Option<String>> = BTreeMap::new();
        for c in list {
            let (Some(id), Some(names)) = (c.id, c.names) else {
                continue;
            };
            let name = names.first().cloned().unwrap_or_else(|| id.clone());
            let paused = c.state == Some(ContainerSummaryStateEnum::PAUSED);
            let mut seen = Vec::new();
            for m in c.mounts.unwrap_or_default() {
                let volume = match dvol_volume_of(&m, &root) {
                    Some(v) => Some(v),
                    None => self.plugin_volume_of(&m, &root, &mut known),
                };
                if let Some(volume) = volume {
                    if seen.contains(&volume) {
                        continue;
                    }
                    seen.push(volume.clone());
                    out.entry(volume).or_default().push(Container {
                        id: id.clone(),
                        name: name.clone(),
                        paused,
                    });
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(out)
    }

    /// Docker does not report the mountpoint of plugin volumes in container mounts, so ask it
    /// for the volume's mountpoint (the plugin's `Get`) and check that it is this root's
    /// volume: the same path, or the same directory seen through a bind mount (the managed
    /// plugin's propagated mount). Results are cached per volume name in `known`.
    fn plugin_volume_of(
        &self,
        m: &MountPoint,
        root: &Path,
        known: &mut BTreeMap<String, Option<String>>,
    ) -> Option<String> {
        let name = m.name.as_deref()?;
        let driver = m.driver.as_deref().unwrap_or("");
        if m.typ != Some(MountPointTypeEnum::VOLUME) || driver.is_empty() || driver == "local" {
            return None;
        }
        if let Some(hit) = known.get(name) {
            return hit.clone();
        }
        let hit = self
            .volume_mountpoint(name)
            .filter(|mp| {
                let mp = Path::new(mp);
                is_volume_dir_of(mp, root, name)
                    || mp.file_name().is_some_and(|branch| {
                        self.managed_plugin_mounts().iter().any(|pm| {
                            let dir = pm.join(name).join("branches").join(branch);
                            is_volume_dir_of(&dir, root, name)
                        })
                    })
            })
            .map(|_| name.to_string());
        known.insert(name.to_string(), hit.clone());
        hit
    }

    /// The mountpoint Docker reports for a volume (the plugin's `Get`). Read untyped over the
    /// unix socket, since bollard's typed volume rejects the Status dvol's plugin reports.
    fn volume_mountpoint(&self, name: &str) -> Option<String> {
        let got = match super::inspect::mountpoint(name) {
            Some(raw) => raw,
            None => self
                .rt
                .block_on(self.docker.inspect_volume(name))
                .map(|v| v.mountpoint)
                .map_err(|e| e.to_string()),
        };
        got.map_err(|e| tracing::debug!("inspecting volume {name}: {e}"))
            .ok()
    }

    /// The host side of managed plugins' propagated mounts
    /// (`<DockerRootDir>/plugins/<id>/propagated-mount`): a managed plugin reports mountpoints
    /// as seen inside the plugin (`/var/lib/dvol/<volume>/branches/<branch>`); Docker binds
    /// them from here.
    fn managed_plugin_mounts(&self) -> Vec<PathBuf> {
        let Ok(info) = self.rt.block_on(self.docker.info()) else {
            return Vec::new();
        };
        let Some(dir) = info.docker_root_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(Path::new(&dir).join("plugins")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("propagated-mount"))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Running (or paused) containers that mount a volume with one of these names, by
    /// Docker's `volume=` filter alone (no volume inspection, so no plugin `Get`), sorted by
    /// name. Fails if the engine has not answered `within` (`None`: no limit).
    pub fn containers_with_volumes(
        &self,
        volumes: &[&str],
        within: Option<Duration>,
    ) -> Result<Vec<Container>> {
        let filters = std::collections::HashMap::from([(
            "volume".to_string(),
            volumes.iter().map(|v| (*v).to_string()).collect(),
        )]);
        let listing = self.docker.list_containers(Some(ListContainersOptions {
            all: false,
            filters: Some(filters),
            ..Default::default()
        }));
        let answer = self.rt.block_on(async {
            match within {
                Some(d) => tokio::time::timeout(d, listing)
                    .await
                    .map_err(|_| not_within(d)),
                None => Ok(listing.await),
            }
        });
        let list = answer
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| Error::Docker(format!("listing containers: {e}")))?;
        let mut out: Vec<Container> = list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_else(|| id.clone());
                let paused = c.state == Some(ContainerSummaryStateEnum::PAUSED);
                Some(Container { id, name, paused })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Running (or paused) containers using `volume` of the dvol root `root`, sorted by name.
    pub fn containers_using(&self, root: &Path, volume: &str) -> Result<Vec<Container>> {
        Ok(self.usage(root)?.remove(volume).unwrap_or_default())
    }

    /// The volumes of Compose project `project` (found by the label Compose puts on them):
    /// (volume name, name in the Compose file), sorted.
    pub fn compose_volumes(&self, project: &str) -> Result<Vec<(String, String)>> {
        let found = super::inspect::compose_volumes(project)
            .unwrap_or_else(|| Err("the engine is not on a unix socket (DOCKER_HOST)".to_string()));
        let mut out = found
            .map_err(|e| Error::Docker(format!("listing the volumes of project {project}: {e}")))?;
        out.sort();
        Ok(out)
    }

    /// Running (or paused) containers using any of `volumes`, each once, sorted by name.
    pub fn containers_using_any(&self, root: &Path, volumes: &[&str]) -> Result<Vec<Container>> {
        let mut usage = self.usage(root)?;
        let mut out: Vec<Container> = volumes
            .iter()
            .filter_map(|v| usage.remove(*v))
            .flatten()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    /// Apply `action` to every container concurrently (a group is frozen at one instant, not
    /// one container after the other); the result of each, in order.
    pub fn each(&self, action: Action, containers: &[Container]) -> Vec<Result<()>> {
        self.each_within(action, containers, None)
    }

    /// [`Engine::each`], returning by `within` (`None`: no limit): an action not done by then
    /// is reported as failed (Docker goes on with it).
    pub fn each_within(
        &self,
        action: Action,
        containers: &[Container],
        within: Option<Duration>,
    ) -> Vec<Result<()>> {
        let tasks: Vec<_> = containers
            .iter()
            .map(|c| {
                let (docker, c) = (self.docker.clone(), c.clone());
                self.rt.spawn(async move { action.run(&docker, &c).await })
            })
            .collect();
        self.rt.block_on(async {
            let end = within.map(|d| (tokio::time::Instant::now() + d, d));
            let mut out = Vec::with_capacity(tasks.len());
            for (t, c) in tasks.into_iter().zip(containers) {
                let done = match end {
                    Some((at, d)) => tokio::time::timeout_at(at, t).await.map_err(|_| d),
                    None => Ok(t.await),
                };
                out.push(match done {
                    Ok(r) => r.unwrap_or_else(|e| {
                        Err(Error::Docker(format!("{} task failed: {e}", action.verb())))
                    }),
                    Err(d) => Err(Error::Docker(format!(
                        "{} container {}: {}",
                        action.verb(),
                        c.name,
                        not_within(d)
                    ))),
                });
            }
            out
        })
    }

    /// Graceful stop: the container's stop signal, then SIGKILL after its stop timeout
    /// (`docker run --stop-timeout`, default 10 s).
    pub fn stop(&self, c: &Container) -> Result<()> {
        self.rt.block_on(Action::Stop.run(&self.docker, c))
    }

    pub fn start(&self, c: &Container) -> Result<()> {
        self.rt.block_on(Action::Start.run(&self.docker, c))
    }

    pub fn pause(&self, c: &Container) -> Result<()> {
        self.rt.block_on(Action::Pause.run(&self.docker, c))
    }

    pub fn unpause(&self, c: &Container) -> Result<()> {
        self.rt.block_on(Action::Unpause.run(&self.docker, c))
    }

    /// The state of container `id`; `None` only when the engine says it is gone (404). Any
    /// other failure is an error: a container the engine did not describe may still be held.
    pub fn state(&self, id: &str) -> Result<Option<State>> {
        use bollard::models::ContainerStateStatusEnum as S;
        let found = self.rt.block_on(self.docker.inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        ));
        let c = match found {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(Error::Docker(format!("inspecting container {id}: {e}"))),
        };
        Ok(Some(match c.state.and_then(|s| s.status) {
            Some(S::PAUSED) => State::Paused,
            Some(S::RUNNING | S::RESTARTING) => State::Running,
            Some(S::CREATED | S::EXITED) => State::Stopped,
            _ => State::Other,
        }))
    }
}

/// Whether the engine answered "no such container".
fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What [`Engine::state`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    /// Created or exited: `docker start` brings it back.
    Stopped,
    /// Being removed, dead.
    Other,
}

/// What dvol does to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Graceful stop: the container's stop signal, then SIGKILL after its stop timeout.
    Stop,
    /// Stop, with SIGKILL after this many seconds whatever the container's own stop timeout
    /// (a cluster host that lost a lease must stop writing now).
    StopWithin(u32),
    Start,
    Pause,
    Unpause,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Stop | Action::StopWithin(_) => "stopping",
            Action::Start => "starting",
            Action::Pause => "pausing",
            Action::Unpause => "unpausing",
        }
    }

    async fn run(self, docker: &Docker, c: &Container) -> Result<()> {
        let id = c.id.as_str();
        let r = match self {
            Action::Stop => {
                docker
                    .stop_container(id, None::<StopContainerOptions>)
                    .await
            }
            Action::StopWithin(secs) => {
                let opts = StopContainerOptions {
                    t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
                    ..Default::default()
                };
                docker.stop_container(id, Some(opts)).await
            }
            Action::Start => {
                docker
                    .start_container(id, None::<StartContainerOptions>)
                    .await
            }
            Action::Pause => docker.pause_container(id).await,
            Action::Unpause => docker.unpause_container(id).await,
        };
        r.map_err(|e| Error::Docker(format!("{} container {}: {e}", self.verb(), c.name)))
    }
}

/// The dvol volume a container mount refers to, if any:
/// - its source (the mountpoint our plugin returned) lies under `ROOT/<volume>/branches/`
///   (the socket plugin, whatever name it is registered under, and bind mounts of live data);
/// - or it is a volume of a dvol-named driver (`dvol`, `dvol:latest`, `me/dvol:1`) whose
///   source is inside a managed plugin's propagated mount.
fn dvol_volume_of(m: &MountPoint, root: &Path) -> Option<String> {
    let source = m.source.as_deref().unwrap_or("");
    if let Ok(rest) = Path::new(source).strip_prefix(root) {
        let mut parts = rest.components();
        let volume = parts.next()?.as_os_str().to_str()?.to_string();
        if parts.next()?.as_os_str() == "branches"
            && crate::names::validate("volume", &volume).is_ok()
        {
            return Some(volume);
        }
        return None;
    }
    let driver = m.driver.as_deref().unwrap_or("");
    let base = driver.rsplit('/').next().unwrap_or(driver);
    if base.starts_with("dvol") && source.contains("/propagated-mount/") {
        return m.name.clone();
    }
    None
}

/// Is `mountpoint` (`…/<volume>/branches/<branch>`) a branch directory of `root/<volume>`?
fn is_volume_dir_of(mountpoint: &Path, root: &Path, volume: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(vdir) = mountpoint.parent().and_then(Path::parent) else {
        return false;
    };
    if mountpoint.parent().and_then(Path::file_name) != Some("branches".as_ref())
        || vdir.file_name() != Some(volume.as_ref())
    {
        return false;
    }
    if vdir == root.join(volume) {
        return true;
    }
    match (
        std::fs::metadata(vdir),
        std::fs::metadata(root.join(volume)),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Why an engine call that did not answer in time failed.
fn not_within(d: Duration) -> String {
    format!("no answer within {} ms", d.as_millis())
}

/// `path` made absolute and free of symlinks where possible, so it compares with the
/// mountpoints the plugin returned.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(name: &str, driver: &str, source: &str) -> MountPoint {
        MountPoint {
            name: Some(name.into()),
            driver: Some(driver.into()),
            source: Some(source.into()),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_404_means_the_container_is_gone() {
        let answer = |status_code| bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: "x".into(),
        };
        assert!(is_not_found(&answer(404)));
        assert!(!is_not_found(&answer(500)));
        assert!(!is_not_found(&bollard::errors::Error::RequestTimeoutError));
    }

    #[test]
    fn matches_mounts_of_this_root() {
        let root = Path::new("/var/lib/dvol");
        let m = mount("db", "dvoltest-1", "/var/lib/dvol/db/branches/master");
        assert_eq!(dvol_volume_of(&m, root).as_deref(), Some("db"));
        let other = mount("db", "local", "/var/lib/docker/volumes/db/_data");
        assert_eq!(dvol_volume_of(&other, root), None);
        let managed = mount(
            "db",
            "dvol:latest",
            "/var/lib/docker/plugins/abc/propagated-mount/db/branches/master",
        );
        assert_eq!(dvol_volume_of(&managed, root).as_deref(), Some("db"));
        let meta = mount("x", "dvol", "/var/lib/dvol/.dvol/packs");
        assert_eq!(dvol_volume_of(&meta, root), None);
    }
}
