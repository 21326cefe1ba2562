//! Control commands (PAUSE, RESUME, RELOAD, KILL, ...), admin_users only.
//! The console has checked the permission before calling [`run`].
//!
//! Placeholder on the `admin-console` branch: the pool control itself is
//! built on another branch, which replaces this file's body on merge.

use std::sync::Arc;

use bytes::BytesMut;

use super::AdminError;
use super::parse::Control;
use crate::context::Context;
use crate::protocol::sqlstate;

/// Run a control command, writing its answer (CommandComplete with
/// `cmd.tag()`, notices) into `out`.
pub async fn run(
    _ctx: &Arc<Context>,
    cmd: &Control,
    _out: &mut BytesMut,
) -> Result<(), AdminError> {
    Err(AdminError::new(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("{} is not implemented yet", cmd.tag()),
    ))
}
