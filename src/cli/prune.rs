//! `prune`: retention rules for a volume's snapshots, locally or on a remote.

use super::output::print_json;
use super::Context;
use dvol::repo::prune::{Decision, Policy, PruneReport};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Keep the N newest commits.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest commit of each of the last N days that have commits.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest commit of each of the last N ISO weeks that have commits.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest commit of each of the last N months that have commits.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: u32,
    /// Show what would be expired; change nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Prune the volume on this remote instead, then delete the remote packs nothing reaches.
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// With --remote: delete an unreachable pack only after it was first seen unreachable this
    /// many seconds ago by an earlier prune (protects pushes still running).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        requires = "remote"
    )]
    grace: u64,
    /// Print every commit with the reasons it is kept, and the counts, as JSON.
    #[arg(long)]
    json: bool,
}

impl PruneArgs {
    fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

pub fn prune(ctx: &Context, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    if let Some(remote) = &args.remote {
        let r = dvol::remote::prune::prune_remote(
            &repo,
            &volume,
            remote,
            &args.policy(),
            &dvol::remote::prune::GcOptions {
                dry_run: args.dry_run,
                grace_secs: args.grace,
            },
            &super::remote::connect_options(),
        )?;
        if args.json {
            print_json(&r)?;
        } else {
            print_report(&r.prune);
            println!(
                "remote gc: deleted {} packs ({} bytes), rewrote {} packs, {} unreachable packs waiting for their grace period",
                r.gc.packs_deleted, r.gc.bytes_deleted, r.gc.packs_rewritten, r.gc.packs_waiting
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = repo.prune(&volume, &args.policy(), args.dry_run)?;
    if args.json {
        print_json(&r)?;
    } else {
        print_report(&r);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &PruneReport) {
    for d in &r.commits {
        println!("{}", line(d));
    }
    if r.dry_run {
        println!(
            "would expire {} commits (dry run: nothing changed)",
            r.expired
        );
    } else {
        println!(
            "expired {} commits; run dvol gc to free their data",
            r.expired
        );
    }
}

fn line(d: &Decision) -> String {
    let what = if d.already_expired {
        "expired"
    } else if d.keep.is_empty() {
        "expire "
    } else {
        "keep   "
    };
    let first = d.message.lines().next().unwrap_or("");
    let why = if d.keep.is_empty() || d.already_expired {
        String::new()
    } else {
        format!("  ({})", d.keep.join(", "))
    };
    format!("{what} {}  {}  {first}{why}", &d.id[..12], d.date)
}
