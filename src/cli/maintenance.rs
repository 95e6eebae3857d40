//! `config`, `gc`, `fsck`.

use super::output::escape;
use super::Context;
use anyhow::bail;
use std::process::ExitCode;

pub fn config(
    ctx: &Context,
    list: bool,
    key: Option<&str>,
    value: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    match (list, key, value) {
        (true, _, _) | (false, None, _) => {
            for (k, v) in repo.config_list()? {
                println!("{k}={}", escape(&v));
            }
        }
        (false, Some(key), Some(value)) => repo.config_set(key, value)?,
        (false, Some(key), None) => {
            let effective = repo.config_list()?;
            repo.config_get(key)?; // validates the key
            match effective.into_iter().find(|(k, _)| k == key) {
                Some((_, v)) => println!("{}", escape(&v)),
                None => bail!("{key} is not set"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn gc(ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let r = repo.gc()?;
    println!(
        "removed {} objects and {} commits, rewrote {} packs, reclaimed {} bytes",
        r.objects_removed, r.commits_removed, r.packs_rewritten, r.bytes_reclaimed
    );
    if r.group_commits_removed > 0 {
        println!(
            "removed {} group commits no group ref reaches",
            r.group_commits_removed
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn fsck(ctx: &Context) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let r = repo.fsck()?;
    let checked = format!(
        "checked {} objects in {} packs and {} commits",
        r.objects, r.packs, r.commits
    );
    Ok(report_problems(&r.problems, &checked))
}

/// Print each problem (escaped: it may hold names a peer chose), then `checked: verdict`;
/// fails when there is any problem. Shared by `fsck` and `fsck --remote`.
pub(super) fn report_problems(problems: &[String], checked: &str) -> ExitCode {
    for p in problems {
        println!("error: {}", escape(p));
    }
    let verdict = if problems.is_empty() {
        "no problems".to_string()
    } else {
        format!("{} problems", problems.len())
    };
    println!("{checked}: {verdict}");
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
