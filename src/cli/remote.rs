//! `remote`, `push`, `pull`, `fetch`, `clone`.

use super::{progress, Context};
use anyhow::bail;
use clap::Subcommand;
use dvol::remote::ops::{self, Pulled, PushWhat};
use dvol::remote::transfer::PushStatus;
use dvol::store::ObjectId;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum RemoteAction {
    /// Add a remote: a path, file://, ssh://[user@]host[:port]/path, http(s)://… or s3://bucket/prefix.
    Add {
        name: String,
        url: String,
        /// The volume's name on the remote (default: the local name).
        #[arg(long, value_name = "NAME")]
        remote_volume: Option<String>,
    },
    /// Remove a remote and its remote-tracking branches.
    #[command(alias = "remove")]
    Rm { name: String },
}

fn short(id: &ObjectId) -> String {
    id.to_hex()[..12].to_string()
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn remote(
    ctx: &Context,
    verbose: bool,
    action: Option<RemoteAction>,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    match action {
        Some(RemoteAction::Add {
            name,
            url,
            remote_volume,
        }) => {
            let url = dvol::remote::normalize_url(&url)?;
            repo.add_remote(&volume, &name, &url, remote_volume.as_deref())?;
        }
        Some(RemoteAction::Rm { name }) => repo.remove_remote(&volume, &name)?,
        None => {
            for (name, url) in repo.remotes(&volume)? {
                if verbose {
                    println!("{name}\t{url} (fetch)");
                    println!("{name}\t{url} (push)");
                } else {
                    println!("{name}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(
    ctx: &Context,
    remote: Option<&str>,
    branch: Option<&str>,
    flags: ops::PushFlags,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let force = flags.force;
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let remote = remote.unwrap_or("origin");
    let current;
    let what = if all {
        if branch.is_some() {
            bail!("--all cannot be combined with a branch name");
        }
        PushWhat::All
    } else {
        current = match branch {
            Some(b) => b.to_string(),
            None => repo.current_branch(&volume)?,
        };
        PushWhat::Branch(&current)
    };
    let bar = progress::for_terminal(ctx.quiet);
    let (url, report) = ops::push(&repo, &volume, remote, what, flags, bar.as_ref())?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if flags.repair {
        eprintln!(
            "repair: {} objects had no good copy on {url} and were sent again",
            report.repaired
        );
    }
    let mut rejected = Vec::new();
    let mut pushed = Vec::new();
    if report
        .branches
        .iter()
        .any(|(_, s)| !matches!(s, PushStatus::UpToDate))
    {
        println!("To {url}");
    }
    for (branch, status) in &report.branches {
        match status {
            PushStatus::UpToDate => {}
            PushStatus::Pushed { old: None, .. } => {
                println!(" * [new branch]      {branch} -> {branch}");
                pushed.push(branch.clone());
            }
            PushStatus::Pushed { old: Some(o), new } => {
                let sep = if force { "..." } else { ".." };
                let plus = if force { "+" } else { " " };
                println!(
                    "{plus}  {}{sep}{}  {branch} -> {branch}",
                    short(o),
                    short(new)
                );
                pushed.push(branch.clone());
            }
            PushStatus::Rejected { reason, .. } => {
                eprintln!(" ! [rejected]        {branch} -> {branch} ({reason})");
                rejected.push((branch.clone(), reason.clone()));
            }
        }
    }
    if pushed.is_empty() && rejected.is_empty() {
        println!("Everything up-to-date");
    } else if !pushed.is_empty() || report.objects > 0 {
        println!(
            "Pushed {} to {remote}: {} objects, {} bytes sent ({})",
            pushed.join(", "),
            report.objects,
            report.bytes,
            human(report.bytes)
        );
    }
    if !rejected.is_empty() {
        let non_ff = rejected.iter().any(|(_, r)| r == "non-fast-forward");
        let names: Vec<&str> = rejected.iter().map(|(b, _)| b.as_str()).collect();
        if non_ff {
            bail!(
                "failed to push some refs to '{url}': {} rejected (non-fast-forward): the remote has commits that are not in your branch; run `dvol pull {remote}` first, or use `dvol push --force` to overwrite them",
                names.join(", ")
            );
        }
        bail!(
            "failed to push some refs to '{url}': {} rejected because the remote changed during the push; run `dvol fetch {remote}` and try again",
            names.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fetch(ctx: &Context, remote: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let remote = remote.unwrap_or("origin");
    let bar = progress::for_terminal(ctx.quiet);
    let fetched = ops::fetch(&mut repo, &volume, remote, bar.as_ref())?;
    print_fetch(remote, &fetched);
    Ok(ExitCode::SUCCESS)
}

fn print_fetch(remote: &str, fetched: &ops::Fetched) {
    if fetched.updates.is_empty() {
        return;
    }
    println!("From {}", fetched.url);
    for (branch, old, new) in &fetched.updates {
        match old {
            None => println!(" * [new branch]      {branch} -> {remote}/{branch}"),
            Some(o) => println!(
                "   {}..{}  {branch} -> {remote}/{branch}",
                short(o),
                short(new)
            ),
        }
    }
    println!(
        "Fetched {} objects, {} bytes received ({})",
        fetched.report.objects,
        fetched.report.bytes,
        human(fetched.report.bytes)
    );
}

pub fn pull(ctx: &Context, remote: Option<&str>, branch: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let remote = remote.unwrap_or("origin");
    let bar = progress::for_terminal(ctx.quiet);
    let (fetched, _branch, pulled) = ops::pull(&mut repo, &volume, remote, branch, bar.as_ref())?;
    print_fetch(remote, &fetched);
    match pulled {
        Pulled::UpToDate => println!("Already up to date."),
        Pulled::FastForward { old: Some(o), new } => {
            println!("Updating {}..{}", short(&o), short(&new));
            println!("Fast-forward");
        }
        Pulled::FastForward { old: None, new } => {
            println!("Fast-forward to {}", short(&new));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn clone(
    ctx: &Context,
    url: &str,
    volume: &str,
    local: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let bar = progress::for_terminal(ctx.quiet);
    let cloned = ops::clone(&mut repo, url, volume, local, bar.as_ref())?;
    println!("Cloned volume {} from {url}", cloned.volume);
    for b in &cloned.branches {
        println!("Created branch {}/{b}", cloned.volume);
    }
    println!(
        "Received {} objects, {} bytes ({})",
        cloned.report.objects,
        cloned.report.bytes,
        human(cloned.report.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// `dvol fsck --remote NAME`: verify a remote of the current volume.
pub fn fsck_remote(ctx: &Context, remote: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let (url, r) = ops::fsck_remote(&repo, &volume, remote)?;
    for p in &r.problems {
        println!("error: {p}");
    }
    println!(
        "checked {} records in {} packs and {} branches of {url}: {}",
        r.records,
        r.packs,
        r.branches,
        if r.problems.is_empty() {
            "no problems".to_string()
        } else {
            format!("{} problems", r.problems.len())
        }
    );
    Ok(if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
