//! `init`, `list`, `switch`, `rm`, `path`, `info`.

use super::output::{human, print_json, print_table, quote};
use super::Context;
use anyhow::bail;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

pub fn init(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    repo.init_volume(name)?;
    let name = quote(name);
    println!("Created volume {name}");
    println!("Created branch {name}/master");
    Ok(ExitCode::SUCCESS)
}

pub fn list(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volumes = repo.list_volumes()?;
    let mut usage = match ctx.engine().map(|e| e.usage(&ctx.root)) {
        Some(Ok(u)) => u,
        Some(Err(e)) => {
            eprintln!("warning: {e}");
            Default::default()
        }
        None => Default::default(),
    };
    // Cluster hosts: who holds each cluster volume ("-": nobody; local volumes: empty) and
    // how many cluster head moves the local copy is behind.
    let cluster = dvol::cluster::status(&repo).unwrap_or_else(|e| {
        eprintln!("warning: cluster holders unknown: {e}");
        None
    });
    let of = |name: &str| cluster.as_ref().and_then(|c| c.get(name));
    let holder = |name: &str| -> Option<String> {
        of(name).map(|s| s.holder.clone().unwrap_or_else(|| "-".into()))
    };
    if json {
        let rows: Vec<_> = volumes
            .iter()
            .map(|v| {
                let containers: Vec<String> = usage
                    .get(&v.name)
                    .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
                    .unwrap_or_default();
                serde_json::json!({
                    "name": v.name, "branch": v.branch, "current": v.current,
                    "containers": containers, "holder": holder(&v.name),
                    "lag": of(&v.name).map(|s| s.lag),
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<(String, Vec<String>)> = volumes
        .into_iter()
        .map(|v| {
            let prefix = if v.current { "* " } else { "  " };
            let containers = usage
                .remove(&v.name)
                .map(|cs| dvol::docker::names(&cs))
                .unwrap_or_default();
            let held = holder(&v.name).unwrap_or_default();
            let lag = of(&v.name).map(|s| s.lag.to_string()).unwrap_or_default();
            let mut cells = vec![v.name.as_str(), v.branch.as_str(), containers.as_str()];
            if cluster.is_some() {
                cells.push(held.as_str());
                cells.push(lag.as_str());
            }
            let cells = cells.iter().map(|c| quote(c).into_owned()).collect();
            (prefix.to_string(), cells)
        })
        .collect();
    if cluster.is_some() {
        print_table(&["VOLUME", "BRANCH", "CONTAINERS", "HOLDER", "LAG"], &rows);
    } else {
        print_table(&["VOLUME", "BRANCH", "CONTAINERS"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn switch(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    ctx.repo()?.switch_volume(name)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rm(ctx: &Context, name: &str, force: bool) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    dvol::names::validate("volume", name)?;
    if !repo.volume_exists(name)? {
        bail!("Volume '{name}' does not exist, cannot remove it");
    }
    let using = match ctx.engine() {
        Some(engine) => engine.containers_using(&ctx.root, name)?,
        None => Vec::new(),
    };
    if !using.is_empty() && !force {
        return Err(dvol::Error::VolumeInUse {
            volume: name.to_string(),
            containers: dvol::docker::names(&using),
        }
        .into());
    }
    if !force && !confirm(name)? {
        bail!("not removing volume '{name}'");
    }
    if let Some(engine) = ctx.engine().filter(|_| !using.is_empty()) {
        println!(
            "Stopping containers using volume '{name}': {} (they are left stopped, not removed; \
             they cannot start again until a volume named {name} exists)",
            dvol::docker::names(&using)
        );
        dvol::docker::stop_all(engine, &using)?;
    }
    println!("Deleting volume '{name}'");
    repo.remove_volume(name)?;
    Ok(ExitCode::SUCCESS)
}

/// Ask on the terminal; refuse when there is none.
fn confirm(name: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to delete volume '{name}' without confirmation (no terminal): use dvol rm -f {name}");
    }
    eprint!(
        "This will delete volume '{name}', all its branches and its history. Are you sure? [y/N] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub fn path(ctx: &Context, volume: Option<&str>) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = repo.resolve_volume(volume.or(ctx.volume.as_deref()))?;
    let branch = repo.current_branch(&volume)?;
    // A thin clone whose overlay is gone is mounted again before anyone writes there.
    let dir = repo.live_dir(&volume, &branch)?;
    println!("{}", quote(&dir.to_string_lossy()));
    Ok(ExitCode::SUCCESS)
}

/// `dvol info`: per branch of the volume, how its live data is stored and its disk use.
pub fn info(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let rows = repo.layouts(&volume)?;
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "volume": r.volume, "branch": r.branch, "method": r.method,
                    "base": r.base, "mounted": r.mounted,
                    "files": r.usage.files, "bytes": r.usage.bytes,
                    "allocated": r.usage.allocated, "shared": r.usage.shared,
                    "private": r.usage.private(),
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let current = repo.current_branch(&volume)?;
    let rows: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|r| {
            let prefix = if r.branch == current { "* " } else { "  " };
            let method = match (&r.base, r.mounted) {
                (Some(b), Some(false)) => format!("{} of {} (not mounted)", r.method, &b[..12]),
                (Some(b), _) => format!("{} of {}", r.method, &b[..12]),
                _ => r.method.to_string(),
            };
            let cells = vec![
                quote(&r.branch).into_owned(),
                method,
                human(r.usage.bytes),
                human(r.usage.shared),
                human(r.usage.private()),
            ];
            (prefix.to_string(), cells)
        })
        .collect();
    print_table(&["BRANCH", "METHOD", "SIZE", "SHARED", "OWN DISK"], &rows);
    Ok(ExitCode::SUCCESS)
}
