//! Issue 5: the guarantees, as tests that reproduce the figures in docs/guarantees.md.

mod access;
mod concurrency;
#[cfg(feature = "failpoints")]
mod crash;
mod decoders;
mod disk_full;
mod hostile_remote;
mod plugin_activation;
mod plugin_input;
mod plugin_load;
#[cfg(feature = "failpoints")]
mod races;
#[cfg(feature = "failpoints")]
mod remote_crash;
mod remote_decoders;
mod remote_load;
mod server_limits;
