//! Errors of a server connection, keeping track of which side failed.

use crate::protocol::{SqlState, sqlstate};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use super::Endpoint;

/// What went wrong with a server connection.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TCP/Unix connect failed.
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        /// Where.
        addr: Endpoint,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting and logging in took longer than server_connect_timeout.
    #[error("timed out connecting to server {addr}")]
    Timeout {
        /// Where.
        addr: Endpoint,
    },
    /// PostgreSQL answered with an ErrorResponse.
    #[error("server error {code}: {message}")]
    Rejected {
        /// FATAL, ERROR, ...
        severity: String,
        /// SQLSTATE (XX000 when the server sent none or a malformed one).
        code: SqlState,
        /// Message text.
        message: String,
    },
    /// PostgreSQL asked for an authentication method or secret we cannot use.
    #[error("cannot log in to server: {0}")]
    Auth(String),
    /// PostgreSQL sent something unexpected.
    #[error("server protocol error: {0}")]
    Protocol(String),
    /// The server closed the connection.
    #[error("server closed the connection unexpectedly")]
    Closed,
    /// No host of the database's host list could be reached (each host's
    /// reason).
    #[error("no host could be reached: {0}")]
    Unreachable(String),
    /// No host of the database's host list has the role its
    /// target_session_attrs wants (each host's reason in `tried`).
    #[error("no server is {wanted} (target_session_attrs): {tried}")]
    NoHost {
        /// The target_session_attrs value.
        wanted: &'static str,
        /// What each host said or why it could not be reached.
        tried: String,
    },
    /// An I/O error on an established connection.
    #[error("server connection error: {0}")]
    Io(#[source] std::io::Error),
}

impl ServerError {
    /// Build a `Rejected` from the fields of an ErrorResponse.
    pub(crate) fn from_error_fields(mut fields: ErrorFields<'_>) -> ServerError {
        let (mut severity, mut code, mut message) =
            (String::new(), sqlstate::INTERNAL_ERROR, String::new());
        while let Ok(Some(f)) = fields.next() {
            let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
            match f.type_() {
                b'V' => severity = v,
                b'S' if severity.is_empty() => severity = v,
                b'C' => code = SqlState::parse(&v).unwrap_or(sqlstate::INTERNAL_ERROR),
                b'M' => message = v,
                _ => {}
            }
        }
        ServerError::Rejected {
            severity,
            code,
            message,
        }
    }

    /// SQLSTATE and message to send to a client that this error affects.
    pub(crate) fn client_error(&self) -> (SqlState, String) {
        match self {
            ServerError::Rejected { code, message, .. } => (*code, message.clone()),
            ServerError::Connect { .. }
            | ServerError::Timeout { .. }
            | ServerError::Closed
            | ServerError::NoHost { .. }
            | ServerError::Unreachable(_) => (sqlstate::CONNECTION_FAILURE, self.to_string()),
            ServerError::Auth(_) => (sqlstate::INVALID_AUTHORIZATION, self.to_string()),
            ServerError::Protocol(_) | ServerError::Io(_) => {
                (sqlstate::CONNECTION_FAILURE, self.to_string())
            }
        }
    }
}
