//! Configuration in PgBouncer's `pgbouncer.ini` format (placeholder for the
//! config helper's work; the types below are the agreed interface).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::Secret;

/// pool_mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

/// auth_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    Any,
    Trust,
    Plain,
    Md5,
    ScramSha256,
    Cert,
    Hba,
    Pam,
}
