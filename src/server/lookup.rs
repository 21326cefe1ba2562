//! auth_query on a server connection: the one query the pooler runs for a
//! client that has not logged in yet, to learn its secret. Sent as
//! PgBouncer sends it, with the extended protocol and the user name as the
//! query's one text parameter (so no quoting), and answered by at most one
//! row of two columns: the role name and its secret (NULL when the role
//! may not log in with a password, e.g. past `VALID UNTIL`).

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::message::{backend, frontend};
use tokio::io::AsyncWriteExt;

use std::sync::Arc;

use super::{ServerConn, ServerError};
use crate::protocol::sqlstate;

/// What auth_query said of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// No row: no such user (or one that may not log in).
    NoUser,
    /// A row: the user's secret as stored (None: NULL, no usable password).
    User(Option<String>),
}

/// Why auth_query gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    /// PostgreSQL answered the query with an error (logged with its text).
    #[error("auth_query failed: {0}")]
    Query(String),
    /// The answer was not one row of two columns.
    #[error("auth_query {0}")]
    Shape(String),
    /// No server could be had for it (the auth pool's checkout failed):
    /// the error a client of that pool would get.
    #[error("auth_query: no server: {1}")]
    Checkout(crate::protocol::SqlState, String),
    /// The prepared statement could not be used (see `ServerConn::lookup`).
    #[error("auth_query: prepared statement could not be used")]
    Stale,
    /// The connection failed.
    #[error("auth_query: {0}")]
    Server(#[from] ServerError),
}

/// The name auth_query is prepared under on an auth pool's servers.
const STATEMENT: &str = "pgsluice_auth_query";

impl ServerConn {
    /// Run `query` with `user` as `$1`. The server must be idle and is idle
    /// again when this returns Ok or `Query`/`Shape` (read up to
    /// ReadyForQuery); after `Server` it is broken.
    ///
    /// The query is prepared once per connection (PostgreSQL parses and
    /// plans it once, not at every login) and then only bound and run.
    /// If the statement is gone (a client of the same pool ran DISCARD ALL
    /// or DEALLOCATE ALL, a server reset did) or its plan cannot be used
    /// any more, it is prepared again and the lookup run once more.
    pub(crate) async fn lookup(
        &mut self,
        query: &Arc<str>,
        user: &str,
    ) -> Result<Found, LookupError> {
        let prepared = self.lookup_prepared.as_deref() == Some(&**query);
        match self.lookup_once(query, user, prepared).await {
            Err(LookupError::Stale) if prepared => {
                self.lookup_prepared = None;
                self.lookup_once(query, user, false).await
            }
            Err(LookupError::Stale) => Err(LookupError::Query(
                "prepared statement vanished while it was prepared".into(),
            )),
            other => other,
        }
    }

    async fn lookup_once(
        &mut self,
        query: &Arc<str>,
        user: &str,
        prepared: bool,
    ) -> Result<Found, LookupError> {
        let mut out = BytesMut::with_capacity(query.len() + user.len() + 96);
        let io = |e: std::io::Error| LookupError::Server(ServerError::Io(e));
        if !prepared {
            if self.lookup_prepared.take().is_some() {
                frontend::close(b'S', STATEMENT, &mut out).map_err(io)?;
            }
            frontend::parse(STATEMENT, query, std::iter::empty(), &mut out).map_err(io)?;
        }
        frontend::bind(
            "",
            STATEMENT,
            std::iter::once(0i16),
            std::iter::once(user),
            |u, buf| {
                buf.extend_from_slice(u.as_bytes());
                Ok::<_, Box<dyn std::error::Error + Sync + Send>>(IsNull::No)
            },
            std::iter::once(0i16),
            &mut out,
        )
        .map_err(|e| match e {
            frontend::BindError::Conversion(e) => io(std::io::Error::other(e.to_string())),
            frontend::BindError::Serialization(e) => io(e),
        })?;
        frontend::describe(b'P', "", &mut out).map_err(io)?;
        frontend::execute("", 0, &mut out).map_err(io)?;
        frontend::sync(&mut out);
        self.stream.write_all(&out).await.map_err(ServerError::Io)?;
        let mut answer = Answer::default();
        loop {
            match self.read_message().await? {
                backend::Message::ReadyForQuery(_) => return answer.finish(),
                backend::Message::ParseComplete => {
                    self.lookup_prepared = Some(query.clone());
                }
                backend::Message::RowDescription(d) => {
                    let n = d.fields().count().map_err(ServerError::Io)?;
                    answer.columns(n);
                }
                backend::Message::DataRow(row) => answer.row(&row)?,
                backend::Message::ErrorResponse(body) if answer.failed.is_none() => {
                    let e = ServerError::from_error_fields(body.fields());
                    answer.failed = Some(match e {
                        // The statement is gone (26000), or its cached plan
                        // cannot give the new result type (0A000).
                        ServerError::Rejected { code, .. }
                            if prepared
                                && (code == sqlstate::INVALID_SQL_STATEMENT_NAME
                                    || code == sqlstate::FEATURE_NOT_SUPPORTED) =>
                        {
                            answer.stale = true;
                            String::new()
                        }
                        ServerError::Rejected { message, .. } => message,
                        other => other.to_string(),
                    });
                }
                backend::Message::ParameterStatus(p) => {
                    let name = p.name().map_err(ServerError::Io)?;
                    let value = p.value().map_err(ServerError::Io)?;
                    self.params.set(name, value);
                    self.synced = None;
                }
                _ => {}
            }
        }
    }
}

/// The answer read so far.
#[derive(Default)]
struct Answer {
    rows: Vec<Option<String>>,
    failed: Option<String>,
    shape: Option<String>,
    /// The prepared statement could not be used: prepare it again.
    stale: bool,
}

impl Answer {
    fn columns(&mut self, n: usize) {
        if n != 2 && self.shape.is_none() {
            self.shape = Some(format!("returned {n} columns, expected 2"));
        }
    }

    fn row(&mut self, row: &backend::DataRowBody) -> Result<(), LookupError> {
        let mut ranges = row.ranges();
        let mut cols = Vec::with_capacity(2);
        while let Some(r) = ranges.next().map_err(ServerError::Io)? {
            cols.push(r.map(|r| String::from_utf8_lossy(&row.buffer()[r]).into_owned()));
        }
        match cols.as_slice() {
            [None, _] => {
                self.shape.get_or_insert("returned a NULL user name".into());
            }
            [Some(_), secret] => self.rows.push(secret.clone()),
            other => {
                let n = other.len();
                self.shape
                    .get_or_insert(format!("returned {n} columns, expected 2"));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Found, LookupError> {
        if self.stale {
            return Err(LookupError::Stale);
        }
        if let Some(e) = self.failed {
            return Err(LookupError::Query(e));
        }
        if let Some(e) = self.shape {
            return Err(LookupError::Shape(e));
        }
        match self.rows.len() {
            0 => Ok(Found::NoUser),
            1 => Ok(Found::User(self.rows.into_iter().next().flatten())),
            n => Err(LookupError::Shape(format!(
                "returned {n} rows, expected one"
            ))),
        }
    }
}
