//! Authentication: secrets from auth_file, the SCRAM-SHA-256 server side used
//! to authenticate clients, the SCRAM client used to log in to PostgreSQL with
//! stored keys, and md5 helpers. Everything here is sans-IO: the session code
//! in `client/` and `server/` moves the bytes.

pub mod secret;

pub use secret::{ScramSecret, Secret};
mod placeholder;
pub use placeholder::*;
