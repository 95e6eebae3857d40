//! `init`, `list`, `switch`, `rm`, `path`.

use super::output::{print_json, print_table};
use super::Context;
use anyhow::bail;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

pub fn init(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    repo.init_volume(name)?;
    println!("Created volume {name}");
    println!("Created branch {name}/master");
    Ok(ExitCode::SUCCESS)
}

pub fn list(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volumes = repo.list_volumes()?;
    if json {
        print_json(&volumes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<(String, Vec<String>)> = volumes
        .into_iter()
        .map(|v| {
            let prefix = if v.current { "* " } else { "  " };
            (prefix.to_string(), vec![v.name, v.branch, String::new()])
        })
        .collect();
    print_table(&["VOLUME", "BRANCH", "CONTAINERS"], &rows);
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
    if !force && !confirm(name)? {
        bail!("not removing volume '{name}'");
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
    println!("{}", repo.branch_dir(&volume, &branch).display());
    Ok(ExitCode::SUCCESS)
}
