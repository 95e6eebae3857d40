//! Runs one command and measures it: wall time from spawn to reap, and peak resident memory
//! from `wait4`'s rusage. Linux folds the maxrss of every waited-for descendant into its
//! parent's, so for `sh -c "a | b"` this is the largest process of the tree (not the sum).

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Meas {
    pub secs: f64,
    pub maxrss_kib: u64,
}

/// Runs `cmd` to completion with stdout/stderr sent to files in `logdir`; fails on a non-zero
/// exit with the tail of stderr. Returns the measurement and stdout.
pub fn run(cmd: &mut Command, logdir: &Path) -> Result<(Meas, String)> {
    let out_path = logdir.join("last.stdout");
    let err_path = logdir.join("last.stderr");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?);
    // A pre_exec hook makes std fork+exec instead of posix_spawn (a CLONE_VM vfork): with
    // vfork, exec folds the *parent's* high-water RSS into the child's maxrss. After a real
    // fork the child's high-water mark starts at the bench's current (small) RSS.
    // SAFETY: the hook does nothing, so it is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are valid, exclusively borrowed out-parameters.
        let r = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4: {e}");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(child);
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let tail: String = stderr
            .chars()
            .rev()
            .take(2000)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        bail!("{cmd:?} failed (status {status}):\n{tail}");
    }
    Ok((
        Meas {
            secs,
            maxrss_kib: ru.ru_maxrss as u64,
        },
        stdout,
    ))
}

/// `sh -c SCRIPT`, for pipelines.
pub fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        f64::midpoint(xs[n / 2 - 1], xs[n / 2])
    }
}
