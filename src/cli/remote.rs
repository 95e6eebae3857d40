//! `remote`, `push`, `pull`, `fetch`, `clone`.

use super::output::{escape, human, quote};
use super::{progress, Context};
use anyhow::bail;
use clap::Subcommand;
use dvol::docker::Quiesce;

use dvol::remote::crypt::Secret;
use dvol::remote::ops::{self, Pulled, PushWhat, RemoteOptions};
use dvol::remote::transfer::{PushStatus, RejectReason};
use dvol::remote::ConnectOptions;
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
        /// Encrypt everything on the remote with a key protected by DVOL_PASSPHRASE,
        /// DVOL_PASSPHRASE_FILE or a key file (--key-file / DVOL_KEY_FILE).
        #[arg(long)]
        encrypt: bool,
    },
    /// Remove a remote and its remote-tracking branches.
    #[command(alias = "remove")]
    Rm { name: String },
}

fn short(id: &ObjectId) -> String {
    id.to_hex()[..12].to_string()
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
            encrypt,
        }) => {
            let secret = encrypt_secret(ctx, encrypt)?;
            ops::add_remote(
                &repo,
                &volume,
                &name,
                &url,
                remote_volume.as_deref(),
                secret.as_ref(),
                &connect_options(),
            )?;
        }
        Some(RemoteAction::Rm { name }) => repo.remove_remote(&volume, &name)?,
        None => {
            for (name, url) in repo.remotes(&volume)? {
                let (name, url) = (quote(&name), quote(&url));
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
    let opts = options(ctx, false)?;
    let (url, report) = ops::push(
        &repo,
        &volume,
        remote,
        what,
        flags,
        &opts,
        bar.as_ref(),
        Vec::new(),
    )?;
    for w in &report.warnings {
        eprintln!("warning: {}", escape(w));
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
        println!("To {}", quote(&url));
    }
    for (name, status) in &report.branches {
        let branch = quote(name);
        match status {
            PushStatus::UpToDate => {}
            PushStatus::Pushed { old: None, .. } => {
                println!(" * [new branch]      {branch} -> {branch}");
                pushed.push(branch.to_string());
            }
            PushStatus::Pushed { old: Some(o), new } => {
                let sep = if force { "..." } else { ".." };
                let plus = if force { "+" } else { " " };
                println!(
                    "{plus}  {}{sep}{}  {branch} -> {branch}",
                    short(o),
                    short(new)
                );
                pushed.push(branch.to_string());
            }
            PushStatus::Rejected { reason, .. } => {
                eprintln!(" ! [rejected]        {branch} -> {branch} ({reason})");
                rejected.push((branch.to_string(), *reason));
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
        let non_ff = rejected
            .iter()
            .any(|(_, r)| *r == RejectReason::NonFastForward);
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
    let fetched = ops::fetch(
        &mut repo,
        &volume,
        remote,
        &options(ctx, false)?,
        bar.as_ref(),
    )?;
    print_fetch(remote, &fetched);
    Ok(ExitCode::SUCCESS)
}

fn print_fetch(remote: &str, fetched: &ops::Fetched) {
    if fetched.updates.is_empty() {
        return;
    }
    println!("From {}", quote(&fetched.url));
    let remote = quote(remote);
    for (branch, old, new) in &fetched.updates {
        let branch = quote(branch);
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

pub fn pull(
    ctx: &Context,
    remote: Option<&str>,
    branch: Option<&str>,
    keep_special_bits: bool,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    dvol::cluster::check_may_move(&repo, &volume)?;
    let remote = remote.unwrap_or("origin");
    let bar = progress::for_terminal(ctx.quiet);
    let guard = ctx.guard(Quiesce::Stop);
    let opts = options(ctx, keep_special_bits)?;
    let (fetched, _branch, pulled) = ops::pull(
        &mut repo,
        &volume,
        remote,
        branch,
        &opts,
        bar.as_ref(),
        &guard,
    )?;
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
    keep_special_bits: bool,
) -> anyhow::Result<ExitCode> {
    let mut repo = ctx.repo()?;
    let bar = progress::for_terminal(ctx.quiet);
    let guard = ctx.guard(Quiesce::Stop);
    let opts = options(ctx, keep_special_bits)?;
    let cloned = ops::clone(&mut repo, url, volume, local, &opts, bar.as_ref(), &guard)?;
    let name = quote(&cloned.volume);
    println!("Cloned volume {name} from {}", quote(url));
    for b in &cloned.branches {
        println!("Created branch {name}/{}", quote(b));
    }
    println!(
        "Received {} objects, {} bytes ({})",
        cloned.report.objects,
        cloned.report.bytes,
        human(cloned.report.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

/// The secret of an encrypted remote, from `--key-file` / DVOL_KEY_FILE, DVOL_PASSPHRASE or
/// DVOL_PASSPHRASE_FILE (in that order); None when none is set.
/// The secret `remote add --encrypt` needs (None without `--encrypt`).
pub(super) fn encrypt_secret(ctx: &Context, encrypt: bool) -> anyhow::Result<Option<Secret>> {
    if !encrypt {
        return Ok(None);
    }
    Ok(Some(secret(ctx)?.ok_or_else(|| {
        anyhow::anyhow!(
            "--encrypt needs a passphrase or key file: set DVOL_PASSPHRASE or DVOL_PASSPHRASE_FILE, or give --key-file FILE (DVOL_KEY_FILE)"
        )
    })?))
}

fn secret(ctx: &Context) -> anyhow::Result<Option<Secret>> {
    use anyhow::Context as _;
    use zeroize::Zeroizing;
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map(Zeroizing::new)
            .with_context(|| format!("cannot read the {what} {}", path.display()))
    };
    if let Some(path) = &ctx.key_file {
        return Ok(Some(Secret::KeyFile(read(path, "key file")?)));
    }
    if let Some(p) = std::env::var_os("DVOL_PASSPHRASE").filter(|p| !p.is_empty()) {
        use std::os::unix::ffi::OsStringExt;
        return Ok(Some(Secret::Passphrase(Zeroizing::new(p.into_vec()))));
    }
    if let Some(path) = std::env::var_os("DVOL_PASSPHRASE_FILE").filter(|p| !p.is_empty()) {
        let mut p = read(std::path::Path::new(&path), "passphrase file")?;
        while p.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            p.pop();
        }
        if p.is_empty() {
            bail!("the passphrase file {} is empty", path.to_string_lossy());
        }
        return Ok(Some(Secret::Passphrase(p)));
    }
    Ok(None)
}

pub(super) fn options(ctx: &Context, keep_special_bits: bool) -> anyhow::Result<RemoteOptions> {
    Ok(RemoteOptions {
        secret: secret(ctx)?,
        keep_special_bits,
        connect: connect_options(),
    })
}

/// How to reach remotes, from the environment: `DVOL_SSH_COMMAND`, `DVOL_REMOTE_DVOL`,
/// `DVOL_TOKEN`, `DVOL_TLS_CA` and the `AWS_*` variables of the S3 client.
pub fn connect_options() -> ConnectOptions {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    ConnectOptions {
        ssh_command: var("DVOL_SSH_COMMAND"),
        remote_dvol: var("DVOL_REMOTE_DVOL"),
        token: var("DVOL_TOKEN"),
        tls_ca: var("DVOL_TLS_CA").map(std::path::PathBuf::from),
        s3_config: std::env::vars()
            .filter(|(name, _)| name.starts_with("AWS_"))
            .collect(),
        s3_retry_timeout: None,
    }
}

/// `dvol fsck --remote NAME`: verify a remote of the current volume.
pub fn fsck_remote(ctx: &Context, remote: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo()?;
    let volume = ctx.volume(&repo)?;
    let opts = options(ctx, false)?;
    let (url, r) = ops::fsck_remote(&repo, &volume, remote, &opts)?;
    let checked = format!(
        "checked {} records in {} packs and {} branches of {}",
        r.records,
        r.packs,
        r.branches,
        quote(&url)
    );
    Ok(super::maintenance::report_problems(&r.problems, &checked))
}
