//! The Rondo server: gRPC API, engine loops and PostgreSQL store, plus the operator CLI.
//!
//! Calls go one way: `api -> service -> {engine, store}`. The binary in `main.rs` only parses
//! arguments, installs tracing and calls into this library.

pub mod api;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod pgcluster;
pub mod server;
pub mod service;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::ServeConfig;
pub use server::{Listeners, ServeError, serve};
