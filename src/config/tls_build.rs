//! Building the rustls configurations of both legs from the `*_tls_*` keys:
//! reading the PEM files, the client certificate verifier of the client
//! leg, and the server certificate verifiers of PgBouncer's server modes
//! (none for `allow`/`prefer`/`require`, the chain only for `verify-ca`,
//! chain and host name for `verify-full`).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature_with_raw_key};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use super::settings::Values;
use super::tls::{ClientTls, KeyError, Keys, ServerTls, SslMode};
use super::tls_v1::{ClientVerifier, ServerVerifier, V1Check};

/// The CA bundle OpenSSL (and so PgBouncer) uses when no CA file is set,
/// as Debian installs it; `SSL_CERT_FILE` overrides it as for OpenSSL.
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// ALPN protocol of PostgreSQL's direct TLS (PostgreSQL 17).
pub const ALPN: &[u8] = b"postgresql";

fn certs(
    keys: &Keys<'_>,
    name: &str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let err = |e: String| {
        (
            keys.key(name),
            format!("cannot read certificates from \"{path}\": {e}"),
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

fn key(keys: &Keys<'_>, path: &str) -> Result<PrivateKeyDer<'static>, KeyError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        (
            keys.key("tls_key_file"),
            format!("cannot read a private key from \"{path}\": {e}"),
        )
    })
}

/// Our certificate chain with its key. rustls's own check that they go
/// together parses the certificate with webpki, which takes X.509 v3 only:
/// the check is made here on the SubjectPublicKeyInfo, so that v1
/// certificates (`openssl ca` without extensions) work as with PgBouncer.
fn certified(keys: &Keys<'_>, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, KeyError> {
    let chain = certs(keys, "tls_cert_file", keys.cert_file)?;
    let signing = provider
        .key_provider
        .load_private_key(key(keys, keys.key_file)?)
        .map_err(|e| tls_error(keys, "tls_key_file", e))?;
    let spki = crate::auth::x509::subject_public_key_info(&chain[0]).ok_or_else(|| {
        (
            keys.key("tls_cert_file"),
            format!("\"{}\" holds no readable X.509 certificate", keys.cert_file),
        )
    })?;
    if signing.public_key().is_some_and(|k| k.as_ref() != spki) {
        return Err((
            keys.key("tls_key_file"),
            format!(
                "the key in \"{}\" does not go with the certificate in \"{}\"",
                keys.key_file, keys.cert_file
            ),
        ));
    }
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// One certificate for every handshake, on either side.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for OneCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The CA file as a trust store for webpki, and its certificates for
/// [`V1Check`] (X.509 v1 leaves).
fn roots(
    keys: &Keys<'_>,
    path: &str,
    provider: &CryptoProvider,
) -> Result<(Arc<RootCertStore>, V1Check), KeyError> {
    let mut store = RootCertStore::empty();
    let all = certs(keys, "tls_ca_file", path)?;
    for c in all.iter().cloned() {
        store.add(c).map_err(|e| {
            (
                keys.key("tls_ca_file"),
                format!("unusable CA certificate in \"{path}\": {e}"),
            )
        })?;
    }
    let v1 = V1Check::new(all, provider.signature_verification_algorithms);
    Ok((Arc::new(store), v1))
}

fn tls_error(keys: &Keys<'_>, name: &str, e: Error) -> KeyError {
    (keys.key(name), e.to_string())
}

/// Build both legs from the loaded values. Errors name the key.
/// Each leg built, or why it cannot be (`Ok(None)`: disabled).
pub(super) struct Legs {
    pub client: Result<Option<Arc<ClientTls>>, KeyError>,
    pub server: Result<Option<Arc<ServerTls>>, KeyError>,
    /// The modes asked for.
    pub modes: (SslMode, SslMode),
}

/// Build both legs from the loaded values. Errors name the key.
pub(super) fn build(v: &Values, warnings: &mut Vec<(String, String)>) -> Legs {
    let client_keys = Keys::read(v, "client");
    let server_keys = Keys::read(v, "server");
    let settings = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        server_keys.sslmode,
        server_keys.key_file,
        server_keys.cert_file,
        server_keys.ca_file,
        server_keys.protocols,
        server_keys.ciphers,
        server_keys.tls13_ciphers
    );
    let modes = (
        SslMode::from_name(client_keys.sslmode),
        SslMode::from_name(server_keys.sslmode),
    );
    let client = match modes.0 {
        SslMode::Disable => Ok(None),
        mode => acceptor(&client_keys, mode, warnings).map(|c| Some(Arc::new(c))),
    };
    let server = match modes.1 {
        SslMode::Disable => Ok(None),
        mode => connector(&server_keys, mode, settings, warnings).map(|s| Some(Arc::new(s))),
    };
    Legs {
        client,
        server,
        modes,
    }
}

/// What becomes of a leg that cannot be built: at startup (`running` is
/// None) an error; at RELOAD or SET, as PgBouncer, the running leg stays
/// in force and the reason is told (a warning naming the key and the
/// value), unless TLS was off on that leg and the new mode requires it:
/// keeping it off would weaken what was asked, so the reload is refused.
pub(super) fn settle<T>(
    built: Result<Option<Arc<T>>, KeyError>,
    mode: SslMode,
    running: Option<Option<&Arc<T>>>,
    notes: &mut Vec<(String, String)>,
) -> Result<Option<Arc<T>>, KeyError> {
    match (built, running) {
        (Ok(leg), _) => Ok(leg),
        (Err(e), None) => Err(e),
        (Err((key, msg)), Some(Some(old))) => {
            notes.push((
                key,
                format!("{msg}; not applied: the running TLS settings stay in force"),
            ));
            Ok(Some(old.clone()))
        }
        (Err(e), Some(None)) if mode >= SslMode::Require => Err(e),
        (Err((key, msg)), Some(None)) => {
            notes.push((
                key,
                format!("{msg}; not applied: TLS stays off on this leg"),
            ));
            Ok(None)
        }
    }
}

/// The client leg's acceptor: our certificate and key (both required), and
/// client certificates: required and checked against the CA file for
/// `verify-ca`/`verify-full`; with a CA file in the other modes, asked for
/// and checked when the client offers one (for `auth_type = cert`).
pub(super) fn acceptor(
    keys: &Keys<'_>,
    mode: SslMode,
    warnings: &mut Vec<(String, String)>,
) -> Result<ClientTls, KeyError> {
    if keys.key_file.is_empty() || keys.cert_file.is_empty() {
        let missing = if keys.key_file.is_empty() {
            "tls_key_file"
        } else {
            "tls_cert_file"
        };
        return Err((
            keys.key("tls_sslmode"),
            format!(
                "\"{}\" needs {} and {}: {} is not set",
                keys.sslmode,
                keys.key("tls_key_file"),
                keys.key("tls_cert_file"),
                keys.key(missing)
            ),
        ));
    }
    let (provider, versions) = super::tls_values::provider(keys, warnings)?;
    let provider = Arc::new(provider);
    let certified = certified(keys, &provider)?;
    let end_point =
        crate::auth::scram::binding::end_point(&certified.cert[0]).ok_or_else(|| {
            (
                keys.key("tls_cert_file"),
                format!("\"{}\" holds no readable X.509 certificate", keys.cert_file),
            )
        })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| tls_error(keys, "tls_protocols", e))?;
    let builder = if keys.ca_file.is_empty() {
        if mode >= SslMode::VerifyCa {
            return Err((
                keys.key("tls_sslmode"),
                format!(
                    "\"{}\" needs {} to check client certificates against",
                    keys.sslmode,
                    keys.key("tls_ca_file")
                ),
            ));
        }
        builder.with_no_client_auth()
    } else {
        let (store, v1) = roots(keys, keys.ca_file, &provider)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(store, provider);
        let verifier = if mode >= SslMode::VerifyCa {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier
            .build()
            .map_err(|e| (keys.key("tls_ca_file"), e.to_string()))?;
        builder.with_client_cert_verifier(Arc::new(ClientVerifier {
            webpki: verifier,
            v1,
        }))
    };
    let mut config = builder.with_cert_resolver(Arc::new(OneCert(certified)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    // libpq never resumes a session (it sets SSL_OP_NO_TICKET): tickets
    // would cost every handshake two encryptions for nothing.
    config.send_tls13_tickets = 0;
    Ok(ClientTls {
        mode,
        config: Arc::new(config),
        end_point,
    })
}

/// The server leg's connector.
pub(super) fn connector(
    keys: &Keys<'_>,
    mode: SslMode,
    settings: String,
    warnings: &mut Vec<(String, String)>,
) -> Result<ServerTls, KeyError> {
    let (provider, versions) = super::tls_values::provider(keys, warnings)?;
    let provider = Arc::new(provider);
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| tls_error(keys, "tls_protocols", e))?;
    let verifier: Arc<dyn ServerCertVerifier> = if mode >= SslMode::VerifyCa {
        let file = if !keys.ca_file.is_empty() {
            keys.ca_file.to_string()
        } else {
            std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| SYSTEM_CA_FILE.into())
        };
        let (store, v1) = roots(keys, &file, &provider)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
            .build()
            .map_err(|e| (keys.key("tls_ca_file"), e.to_string()))?;
        Arc::new(ServerVerifier {
            webpki,
            v1,
            check_name: mode == SslMode::VerifyFull,
        })
    } else {
        Arc::new(AnyCertificate(provider.clone()))
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (keys.key_file.is_empty(), keys.cert_file.is_empty()) {
        (true, true) => builder.with_no_client_auth(),
        (false, false) => {
            builder.with_client_cert_resolver(Arc::new(OneCert(certified(keys, &provider)?)))
        }
        (key_unset, _) => {
            let (set, unset) = if key_unset {
                ("tls_cert_file", "tls_key_file")
            } else {
                ("tls_key_file", "tls_cert_file")
            };
            return Err((
                keys.key(unset),
                format!("{} is set but {} is not", keys.key(set), keys.key(unset)),
            ));
        }
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(ServerTls {
        mode,
        config: Arc::new(config),
        settings,
    })
}

/// A verifier that takes any certificate (see [`AnyCertificate`]).
pub(super) fn any_certificate(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyCertificate(provider))
}

/// `allow`, `prefer`, `require`: any certificate (PgBouncer and libpq do
/// not check it in these modes); the handshake's signatures are still
/// checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // With the certificate's key, read by `auth::x509` (v1 too).
        let spki = crate::auth::x509::subject_public_key_info(cert)
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
