//! `serve --stdio PATH` (the far side of ssh remotes) and `serve --listen ADDR --token-file
//! FILE PATH` (the HTTP(S) server).

use anyhow::bail;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct ServeArgs<'a> {
    pub stdio: bool,
    pub listen: Option<&'a str>,
    pub token_file: Option<&'a Path>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub path: &'a Path,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.stdio {
        if args.listen.is_some() {
            bail!("--stdio and --listen cannot be combined");
        }
        dvol::remote::ssh::serve_stdio(args.path)?;
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
    let token = dvol::remote::http::read_token(token_file)?;
    dvol::remote::http::serve(
        dvol::remote::http::ServeOptions {
            listen: listen.to_string(),
            token,
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
