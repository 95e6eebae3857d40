//! dvol: git-style version control for the data inside Docker volumes.
//!
//! The library owns everything; the `dvol` binary (`src/main.rs` + `src/cli/`) only parses
//! arguments and prints. Layers, bottom up:
//!
//! - [`store`]: content-addressed objects (blake3 ids, zstd, pack files, verify on read).
//! - [`live`]: the only access to live directories: handles opened beneath the live root,
//!   never following a symlink.
//! - [`overlay`]: overlayfs mounts of thin clones on file systems without shared extents.
//! - [`snapshot`]: turning a live directory into trees of objects and back (scan, stat cache,
//!   materialize, diff).
//! - [`lock`]: advisory file locks with a wait limit.
//! - [`remote_url`]: the syntax of remote URLs (path, `file://`, `ssh://`, `http(s)://`, `s3://`).
//! - [`repo`]: volumes, branches, commits, tags and config in SQLite.
//! - [`plugin`]: the Docker volume plugin protocol (`dvol plugin serve`).
//! - [`docker`]: the Docker engine client and the "with containers stopped" wrapper.
//! - [`progress`]: how long operations report progress without knowing about terminals.

//!
//! The public surface is these modules' `pub` items and the re-exports below; what only the
//! crate itself uses (failpoints, live-directory handles, locks, overlay mounts, the client
//! runtime, the remote server and S3 internals, SQL access) is `pub(crate)` or private.

pub mod cluster;
pub mod docker;
pub mod error;
mod failpoint;
mod live;
mod lock;
pub mod names;
mod overlay;
pub mod plugin;
pub mod progress;
pub mod remote;
mod remote_url;
pub mod repo;
mod runtime;
pub mod snapshot;
pub mod store;

// The curated list: what a caller needs first, without knowing the module layout.
pub use error::{Error, Result};
pub use overlay::unmount_under;
pub use plugin::PluginError;
pub use remote::RemoteError;
pub use remote_url::RemoteUrl;
pub use repo::{Options, Repo};
pub use store::ObjectId;
