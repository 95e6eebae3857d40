//! Crash points for the fault-injection tests. With the `failpoints` feature, a process whose
//! `DVOL_FAILPOINT` names a point kills itself with SIGKILL when it reaches that point (after
//! skipping `DVOL_FAILPOINT_SKIP` earlier hits), the same as an external `kill -9` at exactly
//! that step. Without the feature, `hit` compiles to nothing.

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
