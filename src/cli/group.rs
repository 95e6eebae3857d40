//! `dvol group …`: groups of volumes committed, branched, reset and moved together.

use super::output::{escape, print_json, print_table, quote};
use super::Context;
use anyhow::bail;
use clap::Subcommand;
use dvol::docker::Quiesce;
use dvol::remote::group::GroupPulled;
use dvol::remote::transfer::PushStatus;
use dvol::repo::Member;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum GroupAction {
    /// Create a group of volumes (all on the same branch), or of the dvol volumes of a
    /// Compose project.
    Create {
        name: String,
        /// The member volumes.
        #[arg(required_unless_present = "compose_project")]
        volumes: Vec<String>,
        /// Take the members from the volumes of this Compose project (its volumes that are
        /// dvol volumes of this root; each member is named as in the Compose file).
        #[arg(long, value_name = "PROJECT", conflicts_with = "volumes")]
        compose_project: Option<String>,
    },
    /// List groups.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a group: its branch, head and members.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a group (its branches, tags and group commits); the member volumes stay.
    Rm { name: String },
    /// Commit every member at one instant: the containers using any member are paused
    /// (default) or stopped together while the members are scanned in parallel.
    Commit {
        name: String,
        #[arg(short, long)]
        message: Option<String>,
        /// Stop the containers (graceful, application-consistent) instead of pausing them.
        #[arg(long)]
        stop: bool,
    },
    /// Show the group commits of the group's current branch, newest first.
    Log {
        name: String,
        #[arg(long)]
        oneline: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the group's branches.
    Branch { name: String },
    /// Switch the group and every member to a branch, or create it at the group's HEAD
    /// with -b.
    Checkout {
        name: String,
        #[arg(short = 'b')]
        create: bool,
        #[arg(allow_hyphen_values = true)]
        branch: String,
    },
    /// Move the group's branch and every member to a group commit (needs --hard); the
    /// containers using the members are stopped and started again.
    Reset {
        name: String,
        #[arg(long)]
        hard: bool,
        /// HEAD, HEAD^, HEAD~N, a group branch or tag, a group commit id or prefix.
        #[arg(default_value = "HEAD")]
        commit: String,
    },
    /// List the group's tags, tag a group revision (default HEAD), or delete a tag.
    Tag {
        name: String,
        tag: Option<String>,
        #[arg(requires = "tag")]
        commit: Option<String>,
        #[arg(
            short = 'd',
            long = "delete",
            value_name = "TAG",
            conflicts_with = "tag"
        )]
        delete: Option<String>,
    },
    /// Add remote REMOTE at URL to every member (each member is stored on the remote under
    /// its member key).
    Remote {
        name: String,
        remote: String,
        url: String,
        /// Make the remote encrypted (DVOL_PASSPHRASE, DVOL_PASSPHRASE_FILE or --key-file).
        #[arg(long)]
        encrypt: bool,
    },
    /// Send a group branch (default: the current one) to a remote (default: origin): every
    /// member first, then the group ref, by compare-and-swap.
    Push {
        name: String,
        remote: Option<String>,
        branch: Option<String>,
        /// Overwrite the remote group and member branches even when not a fast-forward.
        #[arg(short, long)]
        force: bool,
    },
    /// Fetch the group's branch from a remote (default: origin) and fast-forward the group
    /// and every member (the app's containers are stopped and started again).
    Pull {
        name: String,
        remote: Option<String>,
        /// Keep setuid/setgid bits of files from the remote (dropped by default).
        #[arg(long)]
        keep_special_bits: bool,
    },
    /// Make a local group (and its member volumes) from a remote group.
    Clone {
        url: String,
        group: String,
        /// Local group name; the members are then named LOCALNAME-MEMBER.
        localname: Option<String>,
        /// Keep setuid/setgid bits of files from the remote (dropped by default).
        #[arg(long)]
        keep_special_bits: bool,
    },
}

pub fn run(ctx: &Context, action: GroupAction) -> anyhow::Result<ExitCode> {
    if let Some(name) = action.group() {
        // An interrupted group reset is finished before the group is read or changed.
        ctx.repo()?.recover_group(name, &ctx.guard(Quiesce::Stop))?;
    }
    match action {
        GroupAction::Create {
            name,
            volumes,
            compose_project,
        } => create(ctx, &name, volumes, compose_project.as_deref()),
        GroupAction::Ls { json } => ls(ctx, json),
        GroupAction::Show { name, json } => show(ctx, &name, json),
        GroupAction::Rm { name } => {
            ctx.repo()?.remove_group(&name)?;
            println!("Deleted group {}", quote(&name));
            Ok(ExitCode::SUCCESS)
        }
        GroupAction::Commit {
            name,
            message,
            stop,
        } => commit(ctx, &name, message.as_deref(), stop),
        GroupAction::Log {
            name,
            oneline,
            json,
        } => log(ctx, &name, oneline, json),
        GroupAction::Branch { name } => branch(ctx, &name),
        GroupAction::Checkout {
            name,
            create,
            branch,
        } => checkout(ctx, &name, &branch, create),
        GroupAction::Reset { name, hard, commit } => reset(ctx, &name, &commit, hard),
        GroupAction::Tag {
            name,
            tag,
            commit,
            delete,
        } => tags(
            ctx,
            &name,
            tag.as_deref(),
            commit.as_deref(),
            delete.as_deref(),
        ),
        GroupAction::Remote {
            name,
            remote,
            url,
            encrypt,
        } => remote_add(ctx, &name, &remote, &url, encrypt),
        GroupAction::Push {
            name,
            remote,
            branch,
            force,
        } => push(
            ctx,
            &name,
            remote.as_deref().unwrap_or("origin"),
            branch.as_deref(),
            force,
        ),
        GroupAction::Pull {
            name,
            remote,
            keep_special_bits,
        } => pull(
            ctx,
            &name,
            remote.as_deref().unwrap_or("origin"),
            keep_special_bits,
        ),
        GroupAction::Clone {
            url,
            group,
            localname,
            keep_special_bits,
        } => clone(ctx, &url, &group, localname.as_deref(), keep_special_bits),
    }
}

impl GroupAction {
    /// The existing group the action reads or changes.
    fn group(&self) -> Option<&str> {
        match self {
            GroupAction::Create { .. } | GroupAction::Ls { .. } | GroupAction::Clone { .. } => None,
            GroupAction::Show { name, .. }
            | GroupAction::Rm { name }
            | GroupAction::Commit { name, .. }
            | GroupAction::Log { name, .. }
            | GroupAction::Branch { name }
            | GroupAction::Checkout { name, .. }
            | GroupAction::Reset { name, .. }
            | GroupAction::Tag { name, .. }
            | GroupAction::Remote { name, .. }
            | GroupAction::Push { name, .. }
            | GroupAction::Pull { name, .. } => Some(name),
        }
    }
}

fn create(
    ctx: &Context,
    name: &str,
    volumes: Vec<String>,
    project: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let members: Vec<Member> = match project {
        None => volumes
            .into_iter()
            .map(|v| Member {
                key: v.clone(),
                volume: v,
            })
            .collect(),
        Some(p) => {
            let Some(engine) = ctx.engine() else {
                bail!("--compose-project needs the Docker engine (no daemon answered, or --disable-docker-integration)");
            };
            let mut members = Vec::new();
            for (volume, key) in engine.compose_volumes(p)? {
                if repo.volume_exists(&volume)? {
                    members.push(Member { key, volume });
                }
            }
            if members.is_empty() {
                bail!(
                    "Compose project {} has no dvol volumes in {}",
                    quote(p),
                    ctx.root.display()
                );
            }
            members
        }
    };
    repo.create_group(name, &members)?;
    let list: Vec<String> = members
        .iter()
        .map(|m| quote(&m.volume).into_owned())
        .collect();
    println!("Created group {} of {}", quote(name), list.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn ls(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let groups = ctx.repo()?.groups()?;
    if json {
        print_json(&groups)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<(String, Vec<String>)> = groups
        .iter()
        .map(|g| {
            let members: Vec<String> = g
                .members
                .iter()
                .map(|m| quote(&m.volume).into_owned())
                .collect();
            (
                "  ".to_string(),
                vec![
                    quote(&g.name).into_owned(),
                    quote(&g.branch).into_owned(),
                    members.join(","),
                ],
            )
        })
        .collect();
    print_table(&["GROUP", "BRANCH", "VOLUMES"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Context, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let g = ctx.repo()?.group(name)?;
    if json {
        print_json(&g)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("group {}", quote(&g.name));
    println!("branch {}", quote(&g.branch));
    println!(
        "head {}",
        g.head.as_deref().unwrap_or("(no group commit yet)")
    );
    for m in &g.members {
        if m.key == m.volume {
            println!("member {}", quote(&m.volume));
        } else {
            println!("member {} (volume {})", quote(&m.key), quote(&m.volume));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn commit(
    ctx: &Context,
    name: &str,
    message: Option<&str>,
    stop: bool,
) -> anyhow::Result<ExitCode> {
    let Some(message) = message.filter(|m| !m.trim().is_empty()) else {
        bail!("You must provide a commit message");
    };
    let how = if stop { Quiesce::Stop } else { Quiesce::Pause };
    let result = ctx.repo()?.commit_group(name, message, &ctx.guard(how))?;
    for (key, member) in &result.members {
        for s in &member.skipped {
            eprintln!("warning: {}: {}", quote(key), escape(s));
        }
    }
    println!("{}", result.id);
    Ok(ExitCode::SUCCESS)
}

fn log(ctx: &Context, name: &str, oneline: bool, json: bool) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let branch = repo.group(name)?.branch;
    let entries = repo.group_log(name, &branch)?;
    if json {
        print_json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (i, e) in entries.iter().enumerate() {
        if oneline {
            let first = e.message.lines().next().unwrap_or("");
            println!("{} {}", &e.id[..12], escape(first));
            continue;
        }
        if i > 0 {
            println!();
        }
        println!("group commit {}", e.id);
        for (key, commit) in &e.members {
            println!("Member: {} {commit}", quote(key));
        }
        println!("Author: {}", escape(&e.author));
        println!("Date: {}", e.date);
        println!();
        for line in e.message.lines() {
            println!("    {}", escape(line));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn branch(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let current = repo.group(name)?.branch;
    for b in repo.group_branches(name)? {
        let mark = if b == current { "* " } else { "  " };
        println!("{mark}{}", quote(&b));
    }
    Ok(ExitCode::SUCCESS)
}

fn checkout(ctx: &Context, name: &str, branch: &str, create: bool) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let guard = ctx.guard(Quiesce::Stop);
    if create {
        repo.checkout_group_new(name, branch, &guard)?;
    } else {
        repo.checkout_group(name, branch, &guard)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn reset(ctx: &Context, name: &str, spec: &str, hard: bool) -> anyhow::Result<ExitCode> {
    if !hard {
        bail!("Please specify --hard to confirm you intend to lose the live data of every member");
    }
    let id = ctx
        .repo()?
        .reset_group_hard(name, spec, &ctx.guard(Quiesce::Stop))?;
    println!("Group HEAD is now at {}", &id.to_hex()[..12]);
    Ok(ExitCode::SUCCESS)
}

fn tags(
    ctx: &Context,
    name: &str,
    tag: Option<&str>,
    spec: Option<&str>,
    delete: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    if let Some(t) = delete {
        repo.delete_group_tag(name, t)?;
        println!("Deleted tag {}", quote(t));
    } else if let Some(t) = tag {
        println!("{}", repo.create_group_tag(name, t, spec)?);
    } else {
        repo.group(name)?;
        for (t, _) in repo.group_tags(name)? {
            println!("{}", quote(&t));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remote_add(
    ctx: &Context,
    name: &str,
    remote: &str,
    url: &str,
    encrypt: bool,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let secret = super::remote::encrypt_secret(ctx, encrypt)?;
    for m in repo.group(name)?.members {
        dvol::remote::ops::add_remote(
            &repo,
            &m.volume,
            remote,
            url,
            Some(&m.key),
            secret.as_ref(),
            &super::remote::connect_options(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn push(
    ctx: &Context,
    name: &str,
    remote: &str,
    branch: Option<&str>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let bar = super::progress::for_terminal(ctx.quiet);
    let opts = super::remote::options(ctx, false)?;
    let pushed =
        dvol::remote::group::push_group(&repo, name, remote, branch, force, &opts, bar.as_ref())?;
    println!("To {}", quote(&pushed.url));
    for (key, report) in &pushed.members {
        println!(
            "  member {}: {} objects, {} bytes",
            quote(key),
            report.objects,
            report.bytes
        );
    }
    match pushed.status {
        PushStatus::UpToDate => println!("  group {}: up to date", quote(name)),
        PushStatus::Pushed { old, new } => println!(
            "  group {}: {} -> {}",
            quote(name),
            old.map_or_else(|| "(new)".to_string(), |o| o.to_hex()[..12].to_string()),
            &new.to_hex()[..12]
        ),
        PushStatus::Rejected { reason, .. } => {
            eprintln!("  ! [rejected] group {} ({reason})", quote(name));
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pull(
    ctx: &Context,
    name: &str,
    remote: &str,
    keep_special_bits: bool,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let bar = super::progress::for_terminal(ctx.quiet);
    let opts = super::remote::options(ctx, keep_special_bits)?;
    let guard = ctx.guard(Quiesce::Stop);
    match dvol::remote::group::pull_group(&mut repo, name, remote, &opts, bar.as_ref(), &guard)? {
        GroupPulled::UpToDate => println!("Already up to date."),
        GroupPulled::FastForward { old, new } => println!(
            "Fast-forward group {} {}..{}",
            quote(name),
            old.map_or_else(|| "(none)".to_string(), |o| o.to_hex()[..12].to_string()),
            &new.to_hex()[..12]
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn clone(
    ctx: &Context,
    url: &str,
    group: &str,
    local: Option<&str>,
    keep_special_bits: bool,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let bar = super::progress::for_terminal(ctx.quiet);
    let opts = super::remote::options(ctx, keep_special_bits)?;
    let guard = ctx.guard(Quiesce::Stop);
    let cloned = dvol::remote::group::clone_group(
        &mut repo,
        url,
        group,
        local,
        &opts,
        bar.as_ref(),
        &guard,
    )?;
    println!(
        "Cloned group {} ({}) at {}",
        quote(&cloned.group),
        quote(&cloned.branch),
        &cloned.head.to_hex()[..12]
    );
    for m in &cloned.members {
        println!("  member {} as volume {}", quote(&m.key), quote(&m.volume));
    }
    for (branch, head) in &cloned.branches {
        println!("  branch {} at {}", quote(branch), &head.to_hex()[..12]);
    }
    println!(
        "{} {} bytes",
        if cloned.resumed {
            "Resumed an interrupted clone: downloaded"
        } else {
            "Downloaded"
        },
        cloned.bytes
    );
    Ok(ExitCode::SUCCESS)
}
