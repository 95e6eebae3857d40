//! Crash points for the fault-injection tests. With the `failpoints` feature, a process whose
//! `DVOL_FAILPOINT` names a point kills itself with SIGKILL when it reaches that point (after
//! skipping `DVOL_FAILPOINT_SKIP` earlier hits), the same as an external `kill -9` at exactly
//! that step. Without the feature, `hit` compiles to nothing.
//!
//! Pause points ([`pause`]) stop dvol between a check and the use that follows it, so a race
//! test can change the live directory in exactly that window: a process whose
//! `DVOL_FAILPOINT_PAUSE` names the point (a comma-separated list may name several) creates the
//! file `DVOL_FAILPOINT_PAUSE_FILE` at each hit and waits until the test removes it (at most
//! 60 s), one thread at a time.
//!
//! Failing points ([`fails`]) make a call dvol depends on fail without killing dvol (a Docker
//! engine that refuses or never answers): `DVOL_FAILPOINT_FAIL=point:N,…` makes the first N
//! hits of each named point in this process fail.

/// Die here if `DVOL_FAILPOINT` names this point (only with the `failpoints` feature).
#[inline(always)]
pub fn hit(_name: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var("DVOL_FAILPOINT").is_ok_and(|p| p == _name) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static HITS: AtomicU64 = AtomicU64::new(0);
        let skip: u64 = std::env::var("DVOL_FAILPOINT_SKIP")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if HITS.fetch_add(1, Ordering::SeqCst) >= skip {
            // SIGKILL: no destructors, no flushing, exactly like kill -9.
            // SAFETY: getpid and kill take plain integers and touch no memory of ours.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}

/// Wait here while the test acts, if `DVOL_FAILPOINT_PAUSE` names this point (only with the
/// `failpoints` feature; otherwise nothing).
#[inline(always)]
pub fn pause(_name: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var("DVOL_FAILPOINT_PAUSE").is_ok_and(|p| p.split(',').any(|p| p == _name)) {
        if let Some(marker) = std::env::var_os("DVOL_FAILPOINT_PAUSE_FILE") {
            wait_for_test(std::path::Path::new(&marker), _name);
        }
    }
}

#[cfg(feature = "failpoints")]
fn wait_for_test(marker: &std::path::Path, name: &str) {
    use std::time::{Duration, Instant};
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if std::fs::write(marker, name).is_err() {
        return;
    }
    let start = Instant::now();
    while marker.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Whether this hit of `_name` must fail: `DVOL_FAILPOINT_FAIL` names it as `_name:N` and
/// fewer than N hits of it came before in this process (only with the `failpoints` feature;
/// otherwise never).
pub fn fails(_name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        use std::collections::HashMap;
        static HITS: std::sync::Mutex<Option<HashMap<String, u64>>> = std::sync::Mutex::new(None);
        let Some(times) = std::env::var("DVOL_FAILPOINT_FAIL").ok().and_then(|v| {
            v.split(',')
                .filter_map(|p| p.split_once(':'))
                .find(|(p, _)| *p == _name)
                .and_then(|(_, n)| n.parse::<u64>().ok())
        }) else {
            return false;
        };
        let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
        let count = hits
            .get_or_insert_with(HashMap::new)
            .entry(_name.to_string())
            .or_insert(0);
        *count += 1;
        *count <= times
    }
    #[cfg(not(feature = "failpoints"))]
    {
        false
    }
}

/// A numeric test knob read from the environment (e.g. `DVOL_TEST_PACK_SIZE`), so the
/// fault-injection tests can make packs and fetch checkpoints small enough to hit a failpoint
/// several times. Only with the `failpoints` feature; otherwise always `None`.
pub fn knob(_name: &str) -> Option<u64> {
    #[cfg(feature = "failpoints")]
    {
        std::env::var(_name).ok().and_then(|v| v.parse().ok())
    }
    #[cfg(not(feature = "failpoints"))]
    {
        None
    }
}
