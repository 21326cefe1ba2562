//! pgsluice: a transaction-mode PostgreSQL connection pooler, a drop-in
//! replacement for PgBouncer.
//!
//! Data flows one way: listener -> client session -> pool checkout -> relay
//! between client and server -> pool checkin. See `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cancel;
pub mod client;
pub mod config;
pub mod context;
pub mod exporter;
#[cfg(test)]
mod layering;
pub mod notify;
pub mod pool;
pub mod protocol;
pub mod registry;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod transport;

pub use app::Pooler;
pub mod logging;
