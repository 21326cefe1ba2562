//! pgsluice: a transaction-mode PostgreSQL connection pooler, a drop-in
//! replacement for PgBouncer.
//!
//! Data flows one way: listener -> client session -> pool checkout -> relay
//! between client and server -> pool checkin. See `docs/ARCHITECTURE.md`.
// Denied, not forbidden: `transport::sys` allows it for one measured
// hot-path gain (reads into a buffer's uninitialized bytes), nothing else.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub mod admin;
pub mod app;
pub mod auth;
pub(crate) mod cancel;
pub(crate) mod client;
pub mod config;
pub mod context;
pub mod daemon;
pub(crate) mod exporter;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod layering;
pub mod notify;
pub mod pool;
pub(crate) mod protocol;
pub mod registry;
pub(crate) mod routing;
pub mod runtime;
pub(crate) mod server;
pub mod stats;
pub mod topology;
pub mod transport;

pub use app::Pooler;
pub mod logging;
