//! What a logged-in server says about itself: in hot standby or not,
//! default_transaction_read_only on or off. PostgreSQL 14 and later report
//! both at login (`in_hot_standby`, `default_transaction_read_only` are
//! GUC_REPORT); an older server is asked with one query.

use bytes::BytesMut;
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::AsyncWriteExt;

use super::{ServerConn, ServerError};

/// A server's role facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoleFacts {
    /// In recovery (a standby).
    pub(crate) hot_standby: bool,
    /// default_transaction_read_only is on.
    pub(crate) read_only: bool,
}

/// The query asked of a server older than PostgreSQL 14.
const ROLE_QUERY: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     pg_catalog.current_setting('default_transaction_read_only')";

const PRIMARY_LSN: &str = "SELECT (pg_catalog.pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text";
const REPLAY_LSN: &str = "SELECT (pg_catalog.pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::text";

fn lsn_of(row: &[Option<String>]) -> Result<u64, ServerError> {
    row.first()
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ServerError::Protocol(format!("unexpected WAL position: {row:?}")))
}

/// The facts from the ParameterStatus a server `reported` at login, if it
/// reported them (PostgreSQL 14+).
pub(crate) fn reported_role(reported: &[(String, String)]) -> Option<RoleFacts> {
    let get = |name: &str| {
        reported
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v == "on")
    };
    Some(RoleFacts {
        hot_standby: get("in_hot_standby")?,
        read_only: get("default_transaction_read_only").unwrap_or(false),
    })
}

impl ServerConn {
    /// The server's role facts: from what it `reported` at login, else
    /// asked with one query (the server must be idle).
    pub(crate) async fn role(
        &mut self,
        reported: &[(String, String)],
    ) -> Result<RoleFacts, ServerError> {
        if let Some(facts) = reported_role(reported) {
            return Ok(facts);
        }
        match self.query_row(ROLE_QUERY).await?.as_slice() {
            [Some(recovery), Some(read_only)] => Ok(RoleFacts {
                hot_standby: recovery == "t",
                read_only: read_only == "on",
            }),
            _ => Err(ServerError::Protocol("no answer to the role query".into())),
        }
    }

    /// Everything this server (a primary) has inserted into WAL, as a
    /// byte position: with synchronous_commit off a commit is acknowledged
    /// before its WAL is written out, so the write position
    /// (`pg_current_wal_lsn`) may not cover it yet; the insert position
    /// does (a standby gets it once the WAL writer flushes).
    pub(crate) async fn wal_insert_lsn(&mut self) -> Result<u64, ServerError> {
        lsn_of(&self.query_row(PRIMARY_LSN).await?)
    }

    /// What this server (a standby) has replayed, as a byte position.
    pub(crate) async fn wal_replay_lsn(&mut self) -> Result<u64, ServerError> {
        lsn_of(&self.query_row(REPLAY_LSN).await?)
    }

    /// Run `sql` (simple protocol; the server must be idle) and return the
    /// values of its first row as text (empty when it returned no row).
    pub(crate) async fn query_row(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Option<String>>, ServerError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(ServerError::Io)?;
        self.stream.write_all(&out).await.map_err(ServerError::Io)?;
        let mut first = None;
        let mut failure = None;
        loop {
            match self.read_message().await? {
                Message::DataRow(row) if first.is_none() => {
                    use fallible_iterator::FallibleIterator;
                    let body = row.buffer();
                    let mut values = Vec::new();
                    let mut ranges = row.ranges();
                    while let Some(r) = ranges.next().map_err(ServerError::Io)? {
                        values.push(r.map(|r| String::from_utf8_lossy(&body[r]).into_owned()));
                    }
                    first = Some(values);
                }
                Message::ErrorResponse(body) if failure.is_none() => {
                    failure = Some(ServerError::from_error_fields(body.fields()));
                }
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(first.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_from_what_postgresql_14_reports() {
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            reported_role(&p(&[
                ("in_hot_standby", "on"),
                ("default_transaction_read_only", "on")
            ])),
            Some(RoleFacts {
                hot_standby: true,
                read_only: true
            })
        );
        assert_eq!(
            reported_role(&p(&[("in_hot_standby", "off")])),
            Some(RoleFacts {
                hot_standby: false,
                read_only: false
            })
        );
        assert_eq!(reported_role(&p(&[("server_version", "13.1")])), None);
    }
}
