//! The command line: clap definitions and dispatch to one small function per verb. Parsing
//! and printing live here; all work is done by the library. Errors become `Error: <message>`
//! on stderr with exit code 1.

mod assets;
mod changes;
mod group;
mod history;
mod maintenance;
mod output;
mod plugin;
mod progress;
mod prune;
mod remote;
mod serve;
mod volume;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Git-style version control for the data inside Docker volumes.
#[derive(Parser, Debug)]
#[command(name = "dvol", version, about, propagate_version = true)]
pub struct Cli {
    /// Root directory holding volumes and the store.
    #[arg(short = 'p', long = "path", env = "DVOL_ROOT", default_value = dvol::repo::DEFAULT_ROOT, global = true)]
    pub root: PathBuf,
    /// Do not talk to the Docker engine (no container stop/start, no CONTAINERS column).
    #[arg(long, global = true)]
    pub disable_docker_integration: bool,
    /// Act on this volume instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub volume: Option<String>,
    /// No progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Key file of an encrypted remote (else DVOL_PASSPHRASE or DVOL_PASSPHRASE_FILE).
    #[arg(long, env = "DVOL_KEY_FILE", global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Seconds to wait for a volume another dvol command has locked.
    #[arg(
        long,
        env = "DVOL_LOCK_TIMEOUT",
        global = true,
        value_name = "SECS",
        default_value_t = 60
    )]
    pub lock_timeout: u64,
    /// How new branches and volumes get their live data: `reflink` (share extents: XFS with
    /// reflink, btrfs), `overlay` (an overlayfs over a base shared per commit: ext4, needs
    /// root), `full` (a whole copy), `auto` (the first of these that works here).
    #[arg(long, env = "DVOL_CLONE_METHOD", global = true, value_name = "METHOD",
          default_value = "auto", value_parser = clap::builder::PossibleValuesParser::new(dvol::repo::CloneMethod::NAMES))]
    pub clone_method: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a volume with a master branch and make it current.
    Init {
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// List volumes, their current branch and the containers using them.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a volume the current one.
    Switch {
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Snapshot the live data of the current branch.
    Commit {
        /// Commit message.
        #[arg(short, long)]
        message: Option<String>,
        /// Freeze containers instead of stopping them (crash-consistent, faster).
        #[arg(long)]
        pause: bool,
    },
    /// Show the history of the current branch, newest first.
    Log {
        #[arg(long)]
        oneline: bool,
        #[arg(long)]
        json: bool,
    },
    /// List branches, create one at HEAD, or delete one with -d.
    Branch {
        /// Create this branch at the current HEAD (without switching).
        name: Option<String>,
        /// Delete this branch (it must not be current).
        #[arg(
            short = 'd',
            long = "delete",
            value_name = "BRANCH",
            conflicts_with = "name"
        )]
        delete: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Switch to a branch, or create one from HEAD with -b.
    Checkout {
        /// Create the branch from the current branch's HEAD, then switch to it.
        #[arg(short = 'b')]
        create: bool,
        #[arg(allow_hyphen_values = true)]
        branch: String,
    },
    /// Move the current branch to a commit and make the live data match it (needs --hard).
    Reset {
        /// Confirm that uncommitted live data is discarded.
        #[arg(long)]
        hard: bool,
        /// HEAD, HEAD^, HEAD~N, a branch, a tag, a commit id or a unique prefix.
        #[arg(default_value = "HEAD")]
        commit: String,
    },
    /// Delete a volume and all its branches and history.
    Rm {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        name: String,
    },
    /// Get or set user.name / user.email, or list them with -l.
    Config {
        #[arg(short = 'l', long = "list")]
        list: bool,
        key: Option<String>,
        value: Option<String>,
    },
    /// Show added, modified and deleted paths of the live data against HEAD.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Show changes between HEAD (or REF) and the live data, or between two revisions.
    Diff {
        /// Show sizes and a summary.
        #[arg(long)]
        stat: bool,
        from: Option<String>,
        to: Option<String>,
    },
    /// List tags, tag a revision (default HEAD), or delete a tag with -d.
    Tag {
        name: Option<String>,
        #[arg(requires = "name")]
        commit: Option<String>,
        #[arg(
            short = 'd',
            long = "delete",
            value_name = "TAG",
            conflicts_with = "name"
        )]
        delete: Option<String>,
    },
    /// Reclaim storage that no branch or tag reaches.
    Gc,
    /// Expire the snapshots of old commits (history is kept); then `dvol gc` frees their data.
    Prune(prune::PruneArgs),
    /// Re-hash every stored object and check every commit's tree (or, with --remote, every
    /// record and branch of a remote).
    Fsck {
        /// Verify this remote of the current volume instead of the local store.
        #[arg(long, value_name = "NAME")]
        remote: Option<String>,
    },
    /// Print the live directory of a volume's current branch.
    Path { volume: Option<String> },
    /// Show how each branch's live data is stored (full copy, reflink or overlay clone) and
    /// how much disk it uses and shares.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// List remotes (-v with URLs), or add / remove one.
    Remote {
        #[arg(short = 'v', long = "verbose")]
        verbose: bool,
        #[command(subcommand)]
        action: Option<remote::RemoteAction>,
    },
    /// Send a branch (default: the current one) to a remote (default: origin).
    Push {
        remote: Option<String>,
        branch: Option<String>,
        /// Overwrite the remote branch even when it is not an ancestor.
        #[arg(short, long)]
        force: bool,
        /// Push every branch.
        #[arg(long)]
        all: bool,
        /// Read back the remote's copies of everything the branches reach and upload good
        /// copies of any that are missing or corrupt.
        #[arg(long)]
        repair: bool,
    },
    /// Fetch a remote branch and fast-forward the local one and its live data.
    Pull {
        remote: Option<String>,
        branch: Option<String>,
        /// Keep setuid/setgid bits of files from the remote (dropped by default).
        #[arg(long)]
        keep_special_bits: bool,
    },
    /// Download a remote's branches into remote-tracking refs.
    Fetch { remote: Option<String> },
    /// Make a local volume from a remote one and make it current.
    Clone {
        url: String,
        volume: String,
        localname: Option<String>,
        /// Keep setuid/setgid bits of files from the remote (dropped by default).
        #[arg(long)]
        keep_special_bits: bool,
    },
    /// Serve a remote store: over stdin/stdout (for ssh) or HTTP(S) with a bearer token.
    Serve {
        /// Answer the framed protocol on stdin/stdout (the far side of ssh:// remotes).
        #[arg(long)]
        stdio: bool,
        /// Serve HTTP(S) on this address (needs --token-file).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Bearer tokens: one bare token (admin on every volume), or lines of
        /// `TOKEN SCOPE PATTERN` (scope read-only, read-write or admin; pattern e.g. prod-*).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// With --stdio: limit this connection (e.g. an ssh forced command) to a scope:
        /// read-only, read-write or admin (the default).
        #[arg(long, value_name = "SCOPE", requires = "stdio")]
        scope: Option<String>,
        /// With --stdio: limit this connection to volumes matching a pattern (default *).
        #[arg(long, value_name = "PATTERN", requires = "stdio")]
        volumes: Option<String>,
        #[arg(long, value_name = "PEM")]
        tls_cert: Option<PathBuf>,
        #[arg(long, value_name = "PEM")]
        tls_key: Option<PathBuf>,
        /// Directory holding the remote store.
        path: PathBuf,
    },
    /// Groups of volumes committed, branched, reset and moved together (one app).
    Group {
        #[command(subcommand)]
        action: group::GroupAction,
    },
    /// The Docker volume plugin.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Serve Docker's volume plugin protocol on a unix socket (foreground).
    Serve {
        /// The socket; Docker names the driver after its file name.
        #[arg(long, default_value = dvol::plugin::DEFAULT_SOCKET)]
        socket: PathBuf,
        #[command(flatten)]
        cluster: plugin::ClusterArgs,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    init_logging();
    // `dvol generate-assets DIR`: a packaging step, kept out of the clap definitions so that
    // no help text, man page or completion offers it.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, cmd, dir] = args.as_slice() {
        if cmd == assets::COMMAND {
            return finish(assets::generate(std::path::Path::new(dir)));
        }
    }
    finish(run(Cli::parse()))
}

/// Print an error as one line and pick the exit code.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("Error: {}", output::escape(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(&cli)?;
    // The plugin lets them go itself when it starts (`plugin::Driver::new`).
    if matches!(cli.command, Command::Plugin { .. }) {
        return dispatch(&ctx, cli.command);
    }
    ctx.warn_recover_held();
    let result = dispatch(&ctx, cli.command);
    // Again after the command: the rewrite it finished may have settled the volumes of an
    // interrupted one whose containers had to stay held until now.
    ctx.warn_recover_held();
    result
}

fn dispatch(ctx: &Context, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init { name } => volume::init(ctx, &name),
        Command::List { json } => volume::list(ctx, json),
        Command::Switch { name } => volume::switch(ctx, &name),
        Command::Rm { force, name } => volume::rm(ctx, &name, force),
        Command::Path { volume } => volume::path(ctx, volume.as_deref()),
        Command::Info { json } => volume::info(ctx, json),
        Command::Commit { message, pause } => history::commit(ctx, message.as_deref(), pause),
        Command::Log { oneline, json } => history::log(ctx, oneline, json),
        Command::Branch { name, delete, json } => {
            history::branch(ctx, name.as_deref(), delete.as_deref(), json)
        }
        Command::Checkout { create, branch } => history::checkout(ctx, &branch, create),
        Command::Reset { hard, commit } => history::reset(ctx, &commit, hard),
        Command::Status { json } => history::status(ctx, json),
        Command::Diff { stat, from, to } => {
            history::diff(ctx, from.as_deref(), to.as_deref(), stat)
        }
        Command::Tag {
            name,
            commit,
            delete,
        } => history::tag(ctx, name.as_deref(), commit.as_deref(), delete.as_deref()),
        Command::Config { list, key, value } => {
            maintenance::config(ctx, list, key.as_deref(), value.as_deref())
        }
        Command::Gc => maintenance::gc(ctx),
        Command::Prune(args) => prune::prune(ctx, &args),
        Command::Fsck { remote: None } => maintenance::fsck(ctx),
        Command::Fsck { remote: Some(r) } => remote::fsck_remote(ctx, &r),
        Command::Remote { verbose, action } => remote::remote(ctx, verbose, action),
        Command::Push {
            remote,
            branch,
            force,
            all,
            repair,
        } => remote::push(
            ctx,
            remote.as_deref(),
            branch.as_deref(),
            ops_push_flags(force, repair),
            all,
        ),
        Command::Pull {
            remote,
            branch,
            keep_special_bits,
        } => remote::pull(ctx, remote.as_deref(), branch.as_deref(), keep_special_bits),
        Command::Fetch { remote } => remote::fetch(ctx, remote.as_deref()),
        Command::Clone {
            url,
            volume,
            localname,
            keep_special_bits,
        } => remote::clone(ctx, &url, &volume, localname.as_deref(), keep_special_bits),
        Command::Serve {
            stdio,
            listen,
            token_file,
            scope,
            volumes,
            tls_cert,
            tls_key,
            path,
        } => serve::serve(serve::ServeArgs {
            stdio,
            listen: listen.as_deref(),
            token_file: token_file.as_deref(),
            scope: scope.as_deref(),
            volumes: volumes.as_deref(),
            tls_cert,
            tls_key,
            path: &path,
        }),
        Command::Group { action } => group::run(ctx, action),
        Command::Plugin {
            command: PluginCommand::Serve { socket, cluster },
        } => plugin::serve(ctx, &socket, &cluster),
    }
}

/// What every verb needs: the root, the chosen volume, output settings.
pub struct Context {
    pub root: PathBuf,
    pub volume: Option<String>,
    pub quiet: bool,
    pub docker: bool,
    pub key_file: Option<PathBuf>,
    pub lock_timeout: std::time::Duration,
    pub clone_method: dvol::repo::CloneMethod,
    engine: std::cell::OnceCell<Option<dvol::docker::Engine>>,
}

impl Context {
    fn new(cli: &Cli) -> anyhow::Result<Context> {
        Ok(Context {
            root: cli.root.clone(),
            volume: cli.volume.clone(),
            quiet: cli.quiet,
            docker: !cli.disable_docker_integration,
            key_file: cli.key_file.clone(),
            lock_timeout: std::time::Duration::from_secs(cli.lock_timeout),
            clone_method: dvol::repo::CloneMethod::parse(&cli.clone_method)?,
            engine: std::cell::OnceCell::new(),
        })
    }

    /// Open the repository at the root.
    pub fn repo(&self) -> anyhow::Result<dvol::repo::Repo> {
        Ok(dvol::repo::Repo::open_with(
            &self.root,
            self.repo_options(),
        )?)
    }

    /// How the library opens the repository, from the flags (and their environment fallbacks).
    pub fn repo_options(&self) -> dvol::repo::Options {
        dvol::repo::Options {
            lock_timeout: self.lock_timeout,
            clone_method: self.clone_method,
        }
    }

    /// The Docker engine, when integration is on and a daemon answers (connected once).
    pub fn engine(&self) -> Option<&dvol::docker::Engine> {
        if !self.docker {
            return None;
        }
        self.engine
            .get_or_init(dvol::docker::Engine::connect)
            .as_ref()
    }

    /// [`Context::recover_held`], its error a warning.
    fn warn_recover_held(&self) {
        if let Err(e) = self.recover_held() {
            eprintln!(
                "warning: {}",
                output::escape(&format!(
                    "containers held by an interrupted dvol command: {e:#}"
                ))
            );
        }
    }

    /// Let go the containers a killed dvol command left paused or stopped (its journal record,
    /// `docker::held`), unless a rewrite of their volumes is still pending: the command that
    /// finishes it lets them go. Costs one directory read when nothing is waiting.
    fn recover_held(&self) -> anyhow::Result<()> {
        if !self.docker || !dvol::docker::held::anything_to_recover(&self.root) {
            return Ok(());
        }
        let Some(engine) = self.engine() else {
            return Ok(());
        };
        let repo = self.repo()?;
        let settled = dvol::docker::held::settled_in(&repo);
        let recovered = dvol::docker::release::recover(engine, &self.root, &settled)?;
        let names = recovered.let_go;
        if !names.is_empty() && !self.quiet {
            eprintln!(
                "{}",
                output::escape(&format!(
                    "Let go containers {} held by an interrupted dvol command",
                    names.join(",")
                ))
            );
        }
        // What is not back stays in its record (dropped here, it is dead again): the next
        // command tries again.
        let errors: Vec<String> = recovered
            .failed
            .iter()
            .map(|f| dvol::docker::release::describe(&f.errors))
            .collect();
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("; "));
        }
        Ok(())
    }

    /// The container policy the library runs every live-data rewrite through: the
    /// containers using the volume are stopped (or paused) around it.
    pub fn guard(&self, how: dvol::docker::Quiesce) -> dvol::docker::ContainerGuard<'_> {
        dvol::docker::ContainerGuard {
            engine: self.engine(),
            root: &self.root,
            how,
        }
    }

    /// The volume a command acts on (`--volume` or the current one).
    pub fn volume(&self, repo: &dvol::repo::Repo) -> anyhow::Result<String> {
        Ok(repo.resolve_volume(self.volume.as_deref())?)
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DVOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in log files and journald (the plugin's log), only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The push flags as the library takes them.
fn ops_push_flags(force: bool, repair: bool) -> dvol::remote::ops::PushFlags {
    dvol::remote::ops::PushFlags { force, repair }
}
