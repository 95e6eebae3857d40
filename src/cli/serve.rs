//! `serve --stdio [--scope S --volumes P] PATH` (the far side of ssh remotes) and `serve --listen ADDR --token-file
//! FILE PATH` (the HTTP(S) server).

use anyhow::bail;
use dvol::remote::scope::{Grant, Scope};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct ServeArgs<'a> {
    pub stdio: bool,
    pub listen: Option<&'a str>,
    pub token_file: Option<&'a Path>,
    pub scope: Option<&'a str>,
    pub volumes: Option<&'a str>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub path: &'a Path,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.stdio {
        if args.listen.is_some() {
            bail!("--stdio and --listen cannot be combined");
        }
        let grant = stdio_grant(args.scope, args.volumes)?;
        dvol::remote::ssh::serve_stdio(args.path, &grant)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(listen) = args.listen else {
        bail!("give --stdio, or --listen ADDR --token-file FILE");
    };
    let Some(token_file) = args.token_file else {
        bail!("--listen needs --token-file FILE (every request must carry its bearer token)");
    };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tokens = dvol::remote::scope::Tokens::read(token_file)?;
    dvol::remote::http::serve(
        dvol::remote::http::ServeOptions {
            listen: listen.to_string(),
            tokens,
            store: args.path.to_path_buf(),
            tls,
        },
        |addr| {
            println!("Listening on {scheme}://{addr}");
            let _ = std::io::stdout().flush();
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The grant of `serve --stdio`: admin on every volume unless `--scope`/`--volumes` narrow it.
fn stdio_grant(scope: Option<&str>, volumes: Option<&str>) -> anyhow::Result<Grant> {
    let mut grant = Grant::full("ssh access");
    if let Some(s) = scope {
        grant.scope = Scope::parse(s).ok_or_else(|| {
            anyhow::anyhow!("unknown --scope {s:?} (use read-only, read-write or admin)")
        })?;
    }
    if let Some(p) = volumes {
        dvol::names::validate_pattern(p)?;
        grant.pattern = p.to_string();
    }
    Ok(grant)
}
