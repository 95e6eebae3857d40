//! Core CLI: every command and every exact message of the original dvol, plus the additions.

mod messages;
mod ownership;
mod snapshots;
mod store;
