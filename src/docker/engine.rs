//! A small synchronous facade over bollard: which running containers use which dvol volume,
//! and stop / start / pause / unpause / inspect them. The CLI is synchronous, so the engine owns
//! a current-thread tokio runtime and blocks on each call. Every call on a container answers
//! within a bound ([`CALL_LIMIT`]; a stop, its container's stop timeout more): a hung engine
//! fails the call with an error naming the container, it never hangs dvol. It never decides
//! which containers to hold or when to let them go (that is `docker::hold` and
//! `docker::release`).

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

/// How long a pause, unpause, start or inspection of a container may take before dvol gives
/// up on it (a stop: this more than the container's stop timeout).
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

/// [`CALL_LIMIT`], or what the fault-injection tests set (`DVOL_TEST_DOCKER_LIMIT_MS`).
pub fn call_limit() -> Duration {
    crate::failpoint::knob("DVOL_TEST_DOCKER_LIMIT_MS").map_or(CALL_LIMIT, Duration::from_millis)
}

/// The stop timeout Docker uses for a container that sets none (`docker run --stop-timeout`).
const DEFAULT_STOP_TIMEOUT: u64 = 10;

/// Most exec sessions of one container looked at before a pause.
const MAX_EXECS_INSPECTED: usize = 16;

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
        let limit = call_limit();
        let listing = self.docker.list_containers(Some(ListContainersOptions {
            all: false,
            ..Default::default()
        }));
        let list = match self
            .rt
            .block_on(async { tokio::time::timeout(limit, listing).await })
        {
            Err(_) => return Err(no_answer("listing", "containers", limit)),
            Ok(answer) => answer.map_err(|e| Error::Docker(format!("listing containers: {e}")))?,
        };
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
        let Some(d) = within else {
            let tasks = self.spawn_each(action, containers);
            return self.rt.block_on(async {
                let mut out = Vec::with_capacity(tasks.len());
                for t in tasks {
                    out.push(joined(action, t.await));
                }
                out
            });
        };
        self.each_bounded(action, containers, d)
            .into_iter()
            .zip(containers)
            .map(|(r, c)| {
                r.unwrap_or_else(|| {
                    Err(no_answer(
                        action.verb(),
                        &format!("container {}", c.name),
                        d,
                    ))
                })
            })
            .collect()
    }

    /// [`Engine::each`], returning by `within`: `None` for an action not done by then (Docker
    /// goes on with it, and so does its call, within its own bound).
    pub fn each_bounded(
        &self,
        action: Action,
        containers: &[Container],
        within: Duration,
    ) -> Vec<Option<Result<()>>> {
        let tasks = self.spawn_each(action, containers);
        self.rt.block_on(async {
            let at = tokio::time::Instant::now() + within;
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(
                    tokio::time::timeout_at(at, t)
                        .await
                        .ok()
                        .map(|r| joined(action, r)),
                );
            }
            out
        })
    }

    /// One task per container doing `action` on it.
    fn spawn_each(
        &self,
        action: Action,
        containers: &[Container],
    ) -> Vec<tokio::task::JoinHandle<Result<()>>> {
        containers
            .iter()
            .map(|c| {
                let (docker, c) = (self.docker.clone(), c.clone());
                self.rt.spawn(async move { action.run(&docker, &c).await })
            })
            .collect()
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

    /// The state of container `id` and the pid of its main process; `None` only when the
    /// engine says it is gone (404). Any other failure (no answer within [`call_limit`]
    /// included) is an error: a container the engine did not describe may still be held.
    pub fn status(&self, id: &str) -> Result<Option<Status>> {
        self.status_within(id, call_limit())
    }

    /// [`Engine::status`] answered within `limit`.
    pub fn status_within(&self, id: &str, limit: Duration) -> Result<Option<Status>> {
        use bollard::models::ContainerStateStatusEnum as S;
        let Some(c) = self.rt.block_on(inspect(&self.docker, id, limit))? else {
            return Ok(None);
        };
        let state = c.state.unwrap_or_default();
        Ok(Some(Status {
            state: match state.status {
                Some(S::PAUSED) => State::Paused,
                Some(S::RUNNING | S::RESTARTING) => State::Running,
                Some(S::CREATED | S::EXITED) => State::Stopped,
                _ => State::Other,
            },
            pid: state
                .pid
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
            execs: c.exec_ids.is_some_and(|e| !e.is_empty()),
        }))
    }

    /// The state alone of [`Engine::status`].
    pub fn state(&self, id: &str) -> Result<Option<State>> {
        Ok(self.status(id)?.map(|s| s.state))
    }

    /// Whether a `docker exec` session of container `id` is being started (created, or
    /// running without a process yet): a pause now could freeze its process half-started,
    /// and Docker's unpause would then wait on it. Gone containers have none.
    pub fn exec_starting(&self, id: &str) -> Result<bool> {
        self.rt.block_on(async {
            let Some(c) = inspect(&self.docker, id, call_limit()).await? else {
                return Ok(false);
            };
            let limit = call_limit();
            for exec in c
                .exec_ids
                .unwrap_or_default()
                .iter()
                .take(MAX_EXECS_INSPECTED)
            {
                let answer = tokio::time::timeout(limit, self.docker.inspect_exec(exec)).await;
                let e = match answer {
                    Err(_) => {
                        return Err(no_answer(
                            "inspecting an exec of",
                            &format!("container {id}"),
                            limit,
                        ))
                    }
                    Ok(Err(e)) if is_not_found(&e) => continue,
                    Ok(Err(e)) => {
                        return Err(Error::Docker(format!(
                            "inspecting an exec of container {id}: {e}"
                        )))
                    }
                    Ok(Ok(e)) => e,
                };
                if e.pid.unwrap_or(0) == 0 && e.exit_code.is_none() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}

/// What the engine says of container `id` within `limit`; `None` when it is gone.
async fn inspect(
    docker: &Docker,
    id: &str,
    limit: Duration,
) -> Result<Option<bollard::models::ContainerInspectResponse>> {
    let call = docker.inspect_container(
        id,
        None::<bollard::query_parameters::InspectContainerOptions>,
    );
    match tokio::time::timeout(limit, call).await {
        Err(_) => Err(no_answer("inspecting", &format!("container {id}"), limit)),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(e)) => Err(Error::Docker(format!("inspecting container {id}: {e}"))),
        Ok(Ok(c)) => Ok(Some(c)),
    }
}

/// The error of a call on `what` the engine did not answer within `limit`.
fn no_answer(doing: &str, what: &str, limit: Duration) -> Error {
    Error::Docker(format!("{doing} {what}: {}", not_within(limit)))
}

/// What [`Engine::status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// The container's main process on this host (none when it is not running).
    pub pid: Option<u32>,
    /// Whether it has `docker exec` sessions (running, being started, or just ended).
    pub execs: bool,
}

/// The result of a finished action task.
fn joined(
    action: Action,
    r: std::result::Result<Result<()>, tokio::task::JoinError>,
) -> Result<()> {
    r.unwrap_or_else(|e| Err(Error::Docker(format!("{} task failed: {e}", action.verb()))))
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

/// The state part of [`Status`].
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

    /// The name of this action's failing points (`docker.unpause`, and `docker.unpause.hang`
    /// for a call that never answers).
    fn point(self) -> &'static str {
        match self {
            Action::Stop | Action::StopWithin(_) => "docker.stop",
            Action::Start => "docker.start",
            Action::Pause => "docker.pause",
            Action::Unpause => "docker.unpause",
        }
    }

    /// Do it to `c`, answered within [`call_limit`] (a stop: within the container's stop
    /// timeout more). Unpausing a container that is not paused is not an error.
    async fn run(self, docker: &Docker, c: &Container) -> Result<()> {
        let limit = match self {
            Action::Stop => call_limit() + Duration::from_secs(stop_timeout(docker, c).await?),
            Action::StopWithin(secs) => call_limit() + Duration::from_secs(secs.into()),
            _ => call_limit(),
        };
        let failed =
            |e: String| Error::Docker(format!("{} container {}: {e}", self.verb(), c.name));
        if crate::failpoint::fails(self.point()) {
            return Err(failed("refused (failing point)".into()));
        }
        let answer = tokio::time::timeout(limit, async {
            if crate::failpoint::fails(&format!("{}.hang", self.point())) {
                std::future::pending::<()>().await;
            }
            self.call(docker, &c.id).await
        })
        .await;
        match answer {
            Err(_) => Err(failed(not_within(limit))),
            Ok(Err(e)) if self == Action::Unpause && is_not_paused(&e) => Ok(()),
            Ok(r) => r.map_err(|e| failed(e.to_string())),
        }
    }

    /// The engine call itself, unbounded.
    async fn call(
        self,
        docker: &Docker,
        id: &str,
    ) -> std::result::Result<(), bollard::errors::Error> {
        match self {
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
        }
    }
}

/// The stop timeout of container `c` in seconds (Docker's default when it sets none).
async fn stop_timeout(docker: &Docker, c: &Container) -> Result<u64> {
    let found = inspect(docker, &c.id, call_limit()).await?;
    Ok(found
        .and_then(|i| i.config)
        .and_then(|config| config.stop_timeout)
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(DEFAULT_STOP_TIMEOUT))
}

/// Whether the engine answered that the container is not paused (unpausing it again).
fn is_not_paused(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 409 | 500, message }
            if message.contains("is not paused")
    )
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
    format!(
        "the Docker engine gave no answer within {} ms",
        d.as_millis()
    )
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
