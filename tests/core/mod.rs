//! Core CLI: every command and every exact message of the original dvol, plus the additions.

mod assets;
mod messages;
mod refs;
mod prune;
mod schedule;
mod ownership;
mod snapshots;
mod store;
