//! The volume driver itself, independent of HTTP: each method is one `VolumeDriver.*` call,
//! blocking (it opens the repository), returning a typed error whose text Docker shows.

use super::PluginError;
use crate::cluster::{self, Cluster};
use crate::names;
use crate::repo::{CloneMethod, Repo};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The `Opts` key of `docker volume create -o from=VOLUME[@REF]`.
pub const OPT_FROM: &str = "from";
/// The `Opts` key of `-o from=GROUP[@REF] -o member=KEY`: the new volume starts at member
/// KEY's commit in the group commit REF of group GROUP.
pub const OPT_MEMBER: &str = "member";

/// Where a new volume starts (the `from` and `member` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// `from=VOLUME[@REF]`.
    Volume {
        volume: &'a str,
        at: Option<&'a str>,
    },
    /// `from=GROUP[@REF] member=KEY`.
    Group {
        group: &'a str,
        at: Option<&'a str>,
        member: &'a str,
    },
}

/// The `Opts` key of `docker volume create -o from=… -o clone=auto|full|reflink|overlay`.
pub const OPT_CLONE: &str = "clone";

/// What a `VolumeDriver.Create` asks for, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateRequest<'a> {
    /// `from=VOLUME[@REF]` or `from=GROUP[@REF] member=KEY`: where the volume starts.
    pub from: Option<Source<'a>>,
    pub clone: CloneMethod,
}

/// One volume as `Get` and `List` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeView {
    pub name: String,
    pub mountpoint: PathBuf,
    pub branch: String,
}

/// Driver state: the dvol root and the mounts Docker asked for (mount id -> volume).
pub struct Driver {
    root: PathBuf,
    mounts: Mutex<HashMap<String, String>>,
    /// Serializes this process's plain Creates. Without it, 50 Creates at once (50 containers
    /// starting) all race for SQLite's write lock and the losers back off in SQLite's busy
    /// handler (sleeps of up to 100 ms): the slowest Create took ~0.9 s instead of ~0.1 s.
    creates: Mutex<()>,
    /// Held open for the driver's life: SQLite checkpoints and deletes the WAL whenever its
    /// last connection closes, and the next open rebuilds it under an exclusive lock, so
    /// without a standing connection every call paid for that (and 50 at once contended).
    _keeper: Mutex<Repo>,
    /// How every repository this driver opens is configured.
    options: crate::repo::Options,
    /// Cluster mode: volumes registered in etcd, mounted only under their lease.
    cluster: Option<Arc<Cluster>>,
}

impl Driver {
    /// A driver for the dvol root `root` (made absolute, so mountpoints compare with what
    /// the CLI computes).
    pub fn new(root: &Path, options: crate::repo::Options) -> Result<Driver> {
        std::fs::create_dir_all(root).map_err(|source| Error::Io {
            context: "create",
            path: root.to_path_buf(),
            source,
        })?;
        let root = crate::docker::canonical(root);
        let keeper = Repo::open_with(&root, options.clone())?;
        // After a host or plugin restart the overlay clones' mounts are gone: make them again
        // before Docker restarts the containers that use them.
        for e in keeper.remount_all() {
            tracing::warn!("{e}");
        }
        // Then (their mounts back) let go the containers a killed dvol left paused or stopped,
        // before the sessions of a cluster resume; from now on every 30 s, and what this
        // plugin cannot let go is retried in the background until it is back.
        crate::docker::retry::start(&root);
        Ok(Driver {
            _keeper: Mutex::new(keeper),
            options,
            root,
            mounts: Mutex::new(HashMap::new()),
            creates: Mutex::new(()),
            cluster: None,
        })
    }

    /// A driver in cluster mode (see `crate::cluster`).
    pub fn new_clustered(
        root: &Path,
        options: crate::repo::Options,
        cluster: cluster::ClusterOptions,
    ) -> Result<Driver> {
        let mut d = Driver::new(root, options.clone())?;
        let c = Arc::new(Cluster::new(&d.root, options, cluster)?);
        // Mounts of volumes a previous run of the plugin held (their containers still run).
        d.mounts.get_mut().expect("mounts lock").extend(c.resume()?);
        d.cluster = Some(c);
        Ok(d)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn repo(&self) -> Result<Repo> {
        Repo::open_with(&self.root, self.options.clone())
    }

    /// `VolumeDriver.Create`: a new dvol volume with a `master` branch; with `from`, its
    /// master starts at a branch or commit of another volume (shared storage). Creating a
    /// volume that exists without options succeeds (Docker and Compose re-create freely).
    pub fn create(&self, name: &str, opts: &BTreeMap<String, String>) -> Result<()> {
        if let Some(c) = &self.cluster {
            let (interval, from) = check_create_clustered(name, opts)?;
            return match from {
                None => c.create(name, interval),
                Some((source, at)) => c.create_from(name, interval, source, at),
            };
        }
        let req = check_create(name, opts)?;
        let mut repo = self.repo()?;
        repo.set_clone_method(req.clone);
        match req.from {
            None => {
                // Docker re-creates freely: an existing volume needs no write at all.
                if repo.volume_exists(name)? {
                    return Ok(());
                }
                let _one_at_a_time = self.creates.lock().unwrap_or_else(|e| e.into_inner());
                match repo.create_volume(name) {
                    Err(Error::VolumeExists(_)) => Ok(()),
                    other => other,
                }
            }
            // Not serialized: materializing the source's data may take long.
            Some(Source::Volume { volume, at }) => {
                // The source's containers are paused for the moment of a reflink clone.
                repo.set_source_freeze(Box::new(crate::docker::SourceFreeze::new(&self.root)));
                repo.create_volume_from(name, volume, at)
            }
            Some(Source::Group { group, at, member }) => {
                repo.create_volume_from_group(name, group, at, member)
            }
        }
    }

    /// `VolumeDriver.Remove`: deliberately keeps the volume and its history. Docker forgets
    /// the volume; dvol does not (`dvol rm` is the only way to delete dvol data), so
    /// `docker volume rm` / `prune` / `compose down -v` never destroy history.
    pub fn remove(&self, name: &str) -> Result<()> {
        names::validate("volume", name)?;
        tracing::info!(
            volume = name,
            "Remove: kept (only `dvol rm` deletes dvol volumes)"
        );
        Ok(())
    }

    /// `VolumeDriver.Mount`: the live directory of the volume's current branch, looked up at
    /// every call, so a container started after `dvol checkout` gets the new branch.
    pub fn mount(&self, name: &str, id: &str) -> Result<PathBuf> {
        if let Some(c) = &self.cluster {
            names::validate("volume", name)?;
            if c.knows(name)? {
                c.mount(name, id)?;
            }
        }
        let v = self.view(name)?;
        crate::live::Dir::create_root(&v.mountpoint)?;
        // A thin clone whose overlay is gone is mounted again before Docker binds it.
        self.repo()?.live_dir(name, &v.branch)?;
        self.mounts
            .lock()
            .expect("mounts lock")
            .insert(id.to_string(), name.to_string());
        Ok(v.mountpoint)
    }

    /// `VolumeDriver.Unmount`: forget the mount (nothing is mounted by dvol itself); in
    /// cluster mode the last one publishes the volume.
    pub fn unmount(&self, name: &str, id: &str) -> Result<()> {
        names::validate("volume", name)?;
        self.mounts.lock().expect("mounts lock").remove(id);
        match &self.cluster {
            Some(c) => c.unmount(name, id),
            None => Ok(()),
        }
    }

    /// Number of live mounts of a volume (for `Get`'s Status).
    pub fn mount_count(&self, name: &str) -> usize {
        self.mounts
            .lock()
            .expect("mounts lock")
            .values()
            .filter(|v| v.as_str() == name)
            .count()
    }

    /// `VolumeDriver.Get` / `Path`: the volume and the live directory of its current branch.
    pub fn view(&self, name: &str) -> Result<VolumeView> {
        names::validate("volume", name)?;
        let repo = self.repo()?;
        let known = repo.volume_exists(name)?
            || match &self.cluster {
                Some(c) => c.knows(name)?,
                None => false,
            };
        if !known {
            return Err(PluginError::NoSuchVolume(name.to_string()).into());
        }
        let branch = repo.current_branch(name)?;
        Ok(VolumeView {
            name: name.to_string(),
            mountpoint: repo.branch_dir(name, &branch),
            branch,
        })
    }

    /// `VolumeDriver.Get`: the volume with its dvol status for `docker volume inspect`'s
    /// `Status`: from SQLite only (no live-data scan, no object reads), so it stays cheap.
    pub fn get(&self, name: &str) -> Result<(VolumeView, serde_json::Value)> {
        let view = self.view(name)?;
        let s = self.repo()?.summary(name)?;
        let mut status = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            status.insert(k.to_string(), v);
        };
        put("Branch", s.branch.into());
        put("Branches", s.branches.into());
        put("Commits", s.commits.into());
        if let Some(head) = s.head {
            put("Head", head.into());
        }
        if let Some(m) = s.message {
            put("HeadMessage", m.into());
        }
        if let Some(d) = s.date {
            put("HeadDate", d.into());
        }
        if s.expired > 0 {
            put("ExpiredCommits", s.expired.into());
        }
        put("Mounts", self.mount_count(name).into());
        if let Some(c) = &self.cluster {
            // Docker's Get must not fail because etcd is out of reach.
            let holder = c.holder(name).unwrap_or_else(|e| {
                tracing::warn!(volume = name, "holder unknown: {e}");
                Some("?".into())
            });
            put("Holder", holder.unwrap_or_default().into());
        }
        Ok((view, status.into()))
    }

    /// `VolumeDriver.List`: every dvol volume under the root, including those made by
    /// `dvol init`.
    pub fn list(&self) -> Result<Vec<VolumeView>> {
        if let Some(c) = &self.cluster {
            return c.list()?.into_iter().map(|v| self.view(&v.name)).collect();
        }
        let repo = self.repo()?;
        Ok(repo
            .list_volumes()?
            .into_iter()
            .map(|v| VolumeView {
                mountpoint: repo.branch_dir(&v.name, &v.branch),
                name: v.name,
                branch: v.branch,
            })
            .collect())
    }
}

/// `from=VOLUME[@REF]` of a cluster volume: the source and the revision.
pub type FromVolume<'a> = (&'a str, Option<&'a str>);

/// Check a cluster `VolumeDriver.Create` request: the name, `sync-interval` and
/// `from=VOLUME[@REF]` (another cluster volume), the only options. The interval and the source.
pub fn check_create_clustered<'a>(
    name: &str,
    opts: &'a BTreeMap<String, String>,
) -> Result<(Option<std::time::Duration>, Option<FromVolume<'a>>)> {
    names::validate("volume", name)?;
    if let Some(key) = opts
        .keys()
        .find(|k| ![cluster::OPT_SYNC_INTERVAL, OPT_FROM].contains(&k.as_str()))
    {
        return Err(PluginError::UnknownOption {
            key: key.clone(),
            kind: "cluster dvol volume",
            known: "sync-interval=DURATION, from=VOLUME[@REF]",
        }
        .into());
    }
    let interval = opts
        .get(cluster::OPT_SYNC_INTERVAL)
        .map(|s| cluster::parse_interval(s))
        .transpose()?;
    let from = match check_from(opts)? {
        Some(Source::Volume { volume, at }) => Some((volume, at)),
        _ => None,
    };
    Ok((interval, from))
}

/// Check a `VolumeDriver.Create` request without touching the repository: the name, the
/// option keys, the syntax of `from=VOLUME[@REF]` (or `from=GROUP[@REF]` with
/// `member=KEY`) and the `clone=` method.
pub fn check_create<'a>(
    name: &str,
    opts: &'a BTreeMap<String, String>,
) -> Result<CreateRequest<'a>> {
    names::validate("volume", name)?;
    if let Some(key) = opts
        .keys()
        .find(|k| ![OPT_FROM, OPT_MEMBER, OPT_CLONE].contains(&k.as_str()))
    {
        return Err(PluginError::UnknownOption {
            key: key.clone(),
            kind: "dvol volume",
            known: "from=VOLUME[@REF], or from=GROUP[@REF] with member=MEMBER; \
                    clone=auto|full|reflink|overlay",
        }
        .into());
    }
    let clone = match opts.get(OPT_CLONE) {
        Some(m) => CloneMethod::parse(m)?,
        None => CloneMethod::Auto,
    };
    Ok(CreateRequest {
        from: check_from(opts)?,
        clone,
    })
}

/// Where `from=VOLUME[@REF]` or `from=GROUP[@REF] member=KEY` says the volume starts.
fn check_from(opts: &BTreeMap<String, String>) -> Result<Option<Source<'_>>> {
    let member = opts.get(OPT_MEMBER).map(String::as_str);
    let Some(from) = opts.get(OPT_FROM) else {
        if member.is_some() {
            return Err(PluginError::BadOption {
                option: "member=MEMBER".into(),
                reason: "needs from=GROUP[@REF]".into(),
            }
            .into());
        }
        return Ok(None);
    };
    let (source, at) = match from.split_once('@') {
        Some((s, r)) => (s, Some(r)),
        None => (from.as_str(), None),
    };
    if at == Some("") {
        return Err(PluginError::BadOption {
            option: format!("from={from}"),
            reason: "give a branch, tag or commit after @".into(),
        }
        .into());
    }
    Ok(Some(match member {
        None => {
            names::validate("volume", source)?;
            Source::Volume { volume: source, at }
        }
        Some(member) => {
            names::validate("group", source)?;
            names::validate("volume", member)?;
            Source::Group {
                group: source,
                at,
                member,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn create_options_are_refused_by_kind() {
        let err = check_create("v", &opts(&[("size", "1G")])).unwrap_err();
        assert!(
            matches!(&err, Error::Plugin(PluginError::UnknownOption { key, .. }) if key == "size"),
            "{err}"
        );
        let err = check_create("v", &opts(&[("from", "src@")])).unwrap_err();
        assert!(
            matches!(err, Error::Plugin(PluginError::BadOption { .. })),
            "{err}"
        );
        let err = check_create("v", &opts(&[("member", "db")])).unwrap_err();
        assert!(
            matches!(err, Error::Plugin(PluginError::BadOption { .. })),
            "{err}"
        );
        let from = opts(&[("from", "src@HEAD^")]);
        let ok = check_create("v", &from).unwrap();
        assert_eq!(
            ok.from,
            Some(Source::Volume {
                volume: "src",
                at: Some("HEAD^")
            })
        );
    }
}
