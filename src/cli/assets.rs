//! `dvol generate-assets DIR` (a packaging step, recognised before clap parsing so that no
//! help, man page or completion offers it): writes the man pages (clap_mangen, one per command and
//! subcommand) and the bash, zsh and fish completions (clap_complete) generated from the clap
//! definitions, for packaging (packaging/build-deb.sh). It lives in the binary because the clap
//! definitions do; it must not do anything but write those files under DIR.

use super::Cli;
use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;
use std::process::ExitCode;

/// The command word.
pub const COMMAND: &str = "generate-assets";

/// Write `DIR/man/*.1` and `DIR/completions/{dvol.bash,_dvol,dvol.fish}`.
pub fn generate(dir: &Path) -> anyhow::Result<ExitCode> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("write man pages to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "dvol", &completions)
            .with_context(|| format!("write {shell} completions to {}", completions.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
