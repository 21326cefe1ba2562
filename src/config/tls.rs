//! TLS on both legs, as PgBouncer's `client_tls_*` and `server_tls_*` keys
//! describe it: the modes ([`SslMode`]) and, built when the configuration
//! is loaded, the rustls configurations the transport uses ([`Tls`]).
//! Building at load time means a key, certificate or CA file that cannot be
//! used, or a value rustls cannot honour, fails the load (startup exits,
//! RELOAD and SET answer the error and keep the running configuration)
//! with the key and the value named; never a silent downgrade. What the
//! values mean to rustls is in `tls_values.rs`; building (file loading,
//! the certificate verifiers) in `tls_build.rs`.

use std::sync::Arc;

use super::settings::Values;

/// `client_tls_sslmode` / `server_tls_sslmode`, in PgBouncer's order (a
/// mode is stricter than the ones before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    /// Plain only.
    Disable,
    /// Client leg: TLS when the client asks. Server leg: as `prefer`.
    Allow,
    /// Client leg: as `allow`. Server leg: TLS asked first, plain when the
    /// server refuses; its certificate is not checked.
    Prefer,
    /// TLS or nothing; the peer's certificate is not checked.
    Require,
    /// TLS with a peer certificate signed by the CA file.
    VerifyCa,
    /// As `VerifyCa`; on the server leg the host name must match too.
    VerifyFull,
}

impl SslMode {
    /// The mode for PgBouncer's (already validated) name.
    pub fn from_name(name: &str) -> SslMode {
        match name {
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => SslMode::Disable,
        }
    }
}

/// The client leg: how pgsluice accepts TLS from clients.
#[derive(Debug)]
pub struct ClientTls {
    /// `client_tls_sslmode` (never `Disable`: then there is no `ClientTls`).
    pub mode: SslMode,
    /// The acceptor's configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// `tls-server-end-point` channel binding data for our certificate
    /// (RFC 5929: its hash), for SCRAM-SHA-256-PLUS.
    pub end_point: Vec<u8>,
}

/// The server leg: how pgsluice speaks TLS to PostgreSQL.
#[derive(Debug)]
pub struct ServerTls {
    /// `server_tls_sslmode` (never `Disable`).
    pub mode: SslMode,
    /// The connector's configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// Every `server_tls_*` value as loaded: when a RELOAD changes one,
    /// server connections made under the old values are closed as they
    /// come back (PgBouncer's "obsolete connection").
    pub settings: String,
}

/// Both legs; `None` where TLS is disabled.
#[derive(Clone, Default)]
pub struct Tls {
    /// Towards clients.
    pub client: Option<Arc<ClientTls>>,
    /// Towards servers.
    pub server: Option<Arc<ServerTls>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("client", &self.client.as_ref().map(|c| c.mode))
            .field("server", &self.server.as_ref().map(|s| s.mode))
            .finish()
    }
}

/// The `*_tls_*` keys of one leg, as written.
pub(super) struct Keys<'a> {
    pub leg: &'static str,
    pub sslmode: &'a str,
    pub key_file: &'a str,
    pub cert_file: &'a str,
    pub ca_file: &'a str,
    pub protocols: &'a str,
    pub ciphers: &'a str,
    pub tls13_ciphers: &'a str,
    pub ecdhcurve: &'a str,
    pub dheparams: &'a str,
}

impl<'a> Keys<'a> {
    pub(super) fn read(v: &'a Values, leg: &'static str) -> Keys<'a> {
        let k = |name: &str| v.str(&format!("{leg}_{name}"));
        let client = leg == "client";
        Keys {
            leg,
            sslmode: k("tls_sslmode"),
            key_file: k("tls_key_file"),
            cert_file: k("tls_cert_file"),
            ca_file: k("tls_ca_file"),
            protocols: k("tls_protocols"),
            ciphers: k("tls_ciphers"),
            tls13_ciphers: k("tls13_ciphers"),
            ecdhcurve: if client { k("tls_ecdhcurve") } else { "auto" },
            dheparams: if client { k("tls_dheparams") } else { "auto" },
        }
    }

    /// The full key name of `name` on this leg (`client_tls_ciphers`).
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}_{name}", self.leg)
    }
}

/// A problem with one key: its name and what is wrong.
pub(super) type KeyError = (String, String);
