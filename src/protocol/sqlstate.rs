//! SQLSTATE codes the pooler reports itself (PostgreSQL's Appendix A).

/// 08P01 protocol_violation.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// 08006 connection_failure.
pub const CONNECTION_FAILURE: &str = "08006";
/// 08000 connection_exception.
pub const CONNECTION_EXCEPTION: &str = "08000";
/// 28P01 invalid_password.
pub const INVALID_PASSWORD: &str = "28P01";
/// 28000 invalid_authorization_specification.
pub const INVALID_AUTHORIZATION: &str = "28000";
/// 3D000 invalid_catalog_name (unknown database).
pub const INVALID_CATALOG_NAME: &str = "3D000";
/// 53300 too_many_connections.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// 57P01 admin_shutdown.
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// 0A000 feature_not_supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// 57014 query_canceled (used for wait timeouts).
pub const QUERY_CANCELED: &str = "57014";
/// 08004 sqlserver_rejected_establishment_of_sqlconnection.
pub const REJECTED_CONNECTION: &str = "08004";
/// XX000 internal_error.
pub const INTERNAL_ERROR: &str = "XX000";
/// 25P03 idle_in_transaction_session_timeout: PostgreSQL's own code for a
/// session closed for idling in a transaction (idle_transaction_timeout).
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
/// 57P05 idle_session_timeout: PostgreSQL's own code for a session closed
/// for idling outside a transaction (client_idle_timeout).
pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
/// 25000 invalid_transaction_state, for a transaction block in statement
/// pooling mode: the statement itself is fine (so not 0A000
/// feature_not_supported, nor a syntax or protocol error); what is refused
/// is the transaction state it left the server in, and class 25 is where
/// clients and people look for that.
pub const INVALID_TRANSACTION_STATE: &str = "25000";
/// 57P03 cannot_connect_now (a database disabled with DISABLE).
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// 42704 undefined_object (KILL_CLIENT of an unknown client).
pub const UNDEFINED_OBJECT: &str = "42704";
/// F0000 config_file_error (RELOAD of an invalid file).
pub const CONFIG_FILE_ERROR: &str = "F0000";
/// 55P02 cant_change_runtime_param (SET refused).
pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
/// 55000 object_not_in_prerequisite_state (RESUME when not paused).
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
/// 42601 syntax_error.
pub const SYNTAX_ERROR: &str = "42601";
