//! Core CLI: every command and every exact message of the original dvol, plus the additions.

mod assets;
mod groups;
mod layers;
mod messages;
mod ownership;
mod prune;
mod refs;
mod schedule;
mod snapshots;
mod statcache;
mod store;
mod thin;
