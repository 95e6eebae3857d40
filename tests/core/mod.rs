//! Core CLI: every command and every exact message of the original dvol, plus the additions.

mod assets;
mod messages;
mod refs;
mod snapshots;
mod store;
