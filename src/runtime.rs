//! The one way the synchronous library drives its async clients (bollard for the Docker
//! engine, reqwest for `http(s)://` remotes, object_store for S3): each client owns a
//! current-thread tokio runtime made here and enters it with `block_on`. Servers (the plugin,
//! `dvol serve`) build their own multi-threaded runtimes in the CLI or server entry point.
//! Must not be entered from inside another runtime.

use crate::{Error, Result};

/// A current-thread runtime with I/O and timers for the client named by `what`.
pub(crate) fn client_runtime(what: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "start the async runtime of",
            path: what.into(),
            source,
        })
}
