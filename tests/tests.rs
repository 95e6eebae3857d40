//! The one end-to-end test binary: every module drives the real `dvol` executable.

mod cluster;
mod core;
mod docker;
mod guarantees;
mod remote;
mod support;
