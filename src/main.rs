//! The `dvol` binary: boots logging, runs the CLI, prints errors as one line.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
