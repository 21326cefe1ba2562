//! The client's startup parameters: which are tracked (and so re-applied
//! on every server the client uses), which are ignored, which are refused;
//! and the parameter set a client starts its session with.

use crate::config::Config;
use crate::protocol::{Startup, sqlstate};
use crate::server::params::{Params, tracked_name};

use super::ClientError;

/// Check startup parameters: tracked ones are kept, ignored ones dropped,
/// anything else refused (as PgBouncer does).
pub(super) fn startup_params(startup: &Startup, cfg: &Config) -> Result<Params, ClientError> {
    let g = &cfg.general;
    let mut wanted = Params::new();
    for (name, value) in &startup.params {
        // An empty `options` (some drivers always send it) asks for nothing.
        if name == "user" || name == "database" || (name == "options" && value.trim().is_empty()) {
            continue;
        }
        if let Some(canonical) = tracked_name(name, &g.track_extra_parameters) {
            wanted.set(canonical, value);
        } else if !g
            .ignore_startup_parameters
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
        {
            return Err(ClientError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("unsupported startup parameter: {name}"),
            ));
        }
    }
    Ok(wanted)
}

/// The client's wanted tracked parameters: the server defaults from the
/// pool's login answers, overridden by what the client asked for.
pub(super) fn client_params(
    welcome: &[(String, String)],
    wanted: &Params,
    extra: &[String],
) -> Params {
    let mut params = Params::new();
    for (name, value) in welcome {
        if tracked_name(name, extra).is_some() {
            params.set(name, value);
        }
    }
    for (name, value) in wanted.iter() {
        params.set(name, value);
    }
    params
}
