//! Errors of a server connection, keeping track of which side failed.

use crate::protocol::{SqlState, sqlstate};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use super::Endpoint;

/// What one host of a database's host list said, or why it was passed
/// over, when no host would do.
#[derive(Debug)]
pub struct Tried {
    /// The host.
    pub addr: Endpoint,
    /// Its place in the host list (0 = first).
    pub place: usize,
    /// What it said.
    pub why: String,
}

impl Tried {
    /// `addr`, at `place` in the list, and why it would not do.
    pub fn new(addr: &Endpoint, place: usize, why: impl Into<String>) -> Tried {
        Tried {
            addr: addr.clone(),
            place,
            why: why.into(),
        }
    }
}

/// Every host tried, in the order tried; displays as `addr: why; ...`.
#[derive(Debug)]
pub struct TriedHosts(pub Vec<Tried>);

impl std::fmt::Display for TriedHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, t) in self.0.iter().enumerate() {
            let sep = if k == 0 { "" } else { "; " };
            write!(f, "{sep}{}: {}", t.addr, t.why)?;
        }
        Ok(())
    }
}

impl TriedHosts {
    /// As a client is told it: each host by its place in the list
    /// (`host 1: ...`), not its address.
    pub fn by_place(&self) -> String {
        let each: Vec<String> = self
            .0
            .iter()
            .map(|t| format!("host {}: {}", t.place + 1, t.why))
            .collect();
        each.join("; ")
    }
}

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
    Unreachable(TriedHosts),
    /// No host of the database's host list has the role its
    /// target_session_attrs wants (each host's reason in `tried`).
    #[error("no server is {wanted} (target_session_attrs): {tried}")]
    NoHost {
        /// The target_session_attrs value.
        wanted: &'static str,
        /// What each host said or why it could not be reached.
        tried: TriedHosts,
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

    /// The server refused the login for now (57P03: starting up, shutting
    /// down, in recovery without hot standby): it will take logins again
    /// soon, so the attempt is retried rather than failed and remembered.
    pub(crate) fn cannot_connect_now(&self) -> bool {
        matches!(self, ServerError::Rejected { code, .. }
            if *code == crate::protocol::sqlstate::CANNOT_CONNECT_NOW)
    }

    /// The server could not be reached or went away during the login
    /// (connect refused or timed out, TLS handshake failed, every host of
    /// a host list down, closed before logging in), as opposed to a
    /// server that answered and refused: a client waiting for a server
    /// waits on and tries again (as PgBouncer's waiting clients do).
    pub(crate) fn unreachable(&self) -> bool {
        matches!(
            self,
            ServerError::Connect { .. }
                | ServerError::Timeout { .. }
                | ServerError::Unreachable(_)
                | ServerError::Closed
                | ServerError::Io(_)
        )
    }

    /// SQLSTATE and message to send to a client that this error affects.
    pub(crate) fn client_error(&self) -> (SqlState, String) {
        match self {
            ServerError::Rejected { code, message, .. } => (*code, message.clone()),
            // Clients are not told where the servers are (as PgBouncer;
            // the log line names them): a host of a list by its place.
            ServerError::Connect { source, .. } => (
                sqlstate::CONNECTION_FAILURE,
                format!("could not connect to server: {source}"),
            ),
            ServerError::Timeout { .. } => (
                sqlstate::CONNECTION_FAILURE,
                "timed out connecting to server".to_string(),
            ),
            ServerError::Unreachable(tried) => (
                sqlstate::CONNECTION_FAILURE,
                format!("no host could be reached: {}", tried.by_place()),
            ),
            ServerError::NoHost { wanted, tried } => (
                sqlstate::CONNECTION_FAILURE,
                format!(
                    "no server is {wanted} (target_session_attrs): {}",
                    tried.by_place()
                ),
            ),
            ServerError::Closed => (sqlstate::CONNECTION_FAILURE, self.to_string()),
            ServerError::Auth(_) => (sqlstate::INVALID_AUTHORIZATION, self.to_string()),
            ServerError::Protocol(_) | ServerError::Io(_) => {
                (sqlstate::CONNECTION_FAILURE, self.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: "10.1.2.3".into(),
            port,
        }
    }

    #[test]
    fn clients_are_not_told_where_the_servers_are() {
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let errors = [
            ServerError::Connect {
                addr: host(5432),
                source: refused(),
            },
            ServerError::Timeout { addr: host(5432) },
            ServerError::Unreachable(TriedHosts(vec![
                Tried::new(&host(5432), 1, "connection refused"),
                Tried::new(&host(5433), 0, "primary"),
            ])),
            ServerError::NoHost {
                wanted: "standby",
                tried: TriedHosts(vec![Tried::new(&host(5432), 0, "primary")]),
            },
        ];
        for e in &errors {
            // The log line names the server...
            assert!(e.to_string().contains("10.1.2.3:5432"), "{e}");
            // ...what the client is told does not.
            let (code, message) = e.client_error();
            assert_eq!(code, sqlstate::CONNECTION_FAILURE);
            assert!(!message.contains("10.1.2.3"), "{message}");
        }
        assert_eq!(
            errors[2].client_error().1,
            "no host could be reached: host 2: connection refused; host 1: primary"
        );
        assert_eq!(
            errors[3].client_error().1,
            "no server is standby (target_session_attrs): host 1: primary"
        );
    }
}
