//! Progress reporting behind a trait, so the library never depends on a terminal. The CLI
//! supplies an indicatif-backed implementation; everything else uses [`NoProgress`].

/// Receives progress of a long operation. All methods have no-op defaults.
pub trait Progress: Send + Sync {
    /// A new phase starts; `total` is in the phase's unit (bytes or items) when known.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `n` more units were done.
    fn advance(&self, _n: u64) {}
    /// The phase ended.
    fn finish(&self) {}
}

/// Progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {}
