//! The plugin layer's typed errors: what Docker (or anything on the plugin socket) sent that
//! dvol refuses, and why the plugin could not start. Each variant's text is what Docker shows
//! the user in its `Err` field; callers and tests match on the variant. Must not wrap errors
//! of the layers below (they stay [`crate::Error`] variants of their own).

use std::path::PathBuf;

/// A refused plugin request or a failed plugin start.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The request body is not what the protocol allows (not JSON, too large, too slow, an
    /// over-long ID).
    #[error("bad request body: {0}")]
    BadBody(String),
    /// A `Create` option dvol does not know.
    #[error("unknown option {key:?} for a {kind} (known: {known})")]
    UnknownOption {
        key: String,
        kind: &'static str,
        known: &'static str,
    },
    /// A `Create` option whose value is malformed.
    #[error("{option}: {reason}")]
    BadOption { option: String, reason: String },
    /// A volume name Docker asked about that is not a dvol volume.
    #[error("dvol volume {0} does not exist")]
    NoSuchVolume(String),
    /// The plugin socket path is taken.
    #[error("{path} {reason}")]
    SocketTaken { path: PathBuf, reason: &'static str },
    /// A request's task panicked or was cancelled, or the driver could not start.
    #[error("plugin {what} failed: {detail}")]
    Task { what: &'static str, detail: String },
}
