//! Issue 5: the guarantees, as tests that reproduce the figures in docs/guarantees.md.

#[cfg(feature = "failpoints")]
mod crash;
mod decoders;
mod disk_full;
mod plugin_input;
mod plugin_load;
