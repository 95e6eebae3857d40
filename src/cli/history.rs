//! `commit`, `log`, `branch`, `checkout`, `reset`, `status`, `diff`, `tag`.

use super::changes::{diff_line, status_line, warn_skipped, JsonScratch, Out, Summary};
use super::output::{escape, print_json, quote};
use super::{progress, Context};
use anyhow::bail;
use dvol::docker::Quiesce;
use std::process::ExitCode;

pub fn commit(ctx: &Context, message: Option<&str>, pause: bool) -> anyhow::Result<ExitCode> {
    let Some(message) = message.filter(|m| !m.trim().is_empty()) else {
        bail!("You must provide a commit message");
    };
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    dvol::cluster::check_may_move(&repo, &volume)?;
    let how = if pause { Quiesce::Pause } else { Quiesce::Stop };
    let bar = progress::for_terminal(ctx.quiet);
    let result = repo.commit(&volume, message, bar.as_ref(), &ctx.guard(how))?;
    for s in &result.skipped {
        eprintln!("warning: {}", escape(s));
    }
    println!("{}", result.id);
    Ok(ExitCode::SUCCESS)
}

pub fn log(ctx: &Context, oneline: bool, json: bool) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let branch = repo.current_branch(&volume)?;
    let entries = repo.log(&volume, &branch)?;
    if json {
        print_json(&entries)?;
    } else if oneline {
        for e in &entries {
            let first = e.message.lines().next().unwrap_or("");
            println!("{} {}{}", &e.id[..12], expired_mark(e), escape(first));
        }
    } else {
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                println!();
            }
            let mark = if e.expired { " (expired)" } else { "" };
            println!("commit {}{mark}", e.id);
            println!("Author: {}", escape(&e.author));
            println!("Date: {}", e.date);
            println!();
            for line in e.message.lines() {
                println!("    {}", escape(line));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `(expired) ` for a commit whose snapshot prune expired, else nothing.
fn expired_mark(e: &dvol::repo::LogEntry) -> &'static str {
    if e.expired {
        "(expired) "
    } else {
        ""
    }
}

pub fn branch(
    ctx: &Context,
    create: Option<&str>,
    delete: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    if let Some(name) = delete {
        repo.delete_branch(&volume, name)?;
        println!("Deleted branch {}", quote(name));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(name) = create {
        if ctx.docker {
            // The source's containers are paused for the moment of a reflink clone.
            repo.set_source_freeze(Box::new(dvol::docker::SourceFreeze::new(&ctx.root)));
        }
        repo.create_branch(&volume, name, None)?;
        return Ok(ExitCode::SUCCESS);
    }
    let current = repo.current_branch(&volume)?;
    let branches = repo.branches(&volume)?;
    if json {
        let rows: Vec<_> = branches
            .iter()
            .map(|b| {
                let head = repo
                    .branch_head(&volume, b)
                    .ok()
                    .flatten()
                    .map(|h| h.to_hex());
                serde_json::json!({
                    "name": b, "current": *b == current, "head": head,
                    "reads_as_revision": dvol::names::revision_like(b),
                })
            })
            .collect();
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    for b in branches {
        let mark = if b == current { "* " } else { "  " };
        match dvol::names::revision_like(&b) {
            None => println!("{mark}{}", quote(&b)),
            // Made before such names were refused: it works, but a revision wins over it.
            Some(why) => println!(
                "{mark}{} (reads as a revision: {why}; rename it with checkout -b)",
                quote(&b)
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn checkout(ctx: &Context, branch: &str, create: bool) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    dvol::cluster::check_may_move(&repo, &volume)?;
    let guard = ctx.guard(Quiesce::Stop);
    if create {
        repo.checkout_new(&volume, branch, &guard)?;
    } else {
        repo.checkout(&volume, branch, &guard)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reset(ctx: &Context, spec: &str, hard: bool) -> anyhow::Result<ExitCode> {
    if !hard {
        bail!("Please specify --hard to confirm you intend to lose data (to save your state, commit and branch, then come back to reset)");
    }
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    dvol::cluster::check_may_move(&repo, &volume)?;
    let id = repo.reset_hard(&volume, spec, &ctx.guard(Quiesce::Stop))?;
    println!("HEAD is now at {}", &id.to_hex()[..12]);
    Ok(ExitCode::SUCCESS)
}

pub fn status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let branch = repo.current_branch(&volume)?;
    if json {
        let mut scratch = JsonScratch::new()?;
        let skipped = repo.status(&volume, &branch, &mut |c| scratch.add(&c))?;
        scratch.print(&volume, &branch, &skipped)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Out::new();
    out.line(&format!(
        "On volume {}, branch {}",
        quote(&volume),
        quote(&branch)
    ))?;
    let mut changed = false;
    let skipped = repo.status(&volume, &branch, &mut |c| {
        changed = true;
        out.line(&status_line(&c))
    })?;
    if !changed {
        out.line("nothing to commit, live data clean")?;
    }
    warn_skipped(&mut out, &skipped)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn diff(
    ctx: &Context,
    from: Option<&str>,
    to: Option<&str>,
    stat: bool,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let mut out = Out::new();
    let mut summary = Summary::default();
    repo.diff_refs(&volume, from, to, &mut |c| {
        summary.add(&c);
        out.line(&diff_line(&c, stat))
    })?;
    if stat {
        out.line(&summary.line())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn tag(
    ctx: &Context,
    name: Option<&str>,
    spec: Option<&str>,
    delete: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    if let Some(name) = delete {
        repo.delete_tag(&volume, name)?;
        println!("Deleted tag {}", quote(name));
    } else if let Some(name) = name {
        let id = repo.create_tag(&volume, name, spec)?;
        println!("{id}");
    } else {
        for (name, _) in repo.tags(&volume)? {
            println!("{}", quote(&name));
        }
    }
    Ok(ExitCode::SUCCESS)
}
