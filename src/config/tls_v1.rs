//! Certificate checks for X.509 v1 end-entity certificates, which webpki
//! (rustls's verifier) refuses outright and OpenSSL, hence PgBouncer,
//! accepts: `openssl ca` and `openssl x509 -req` without an extensions
//! file make them, and so do PgBouncer's own test certificates.
//!
//! Only the simplest chain is accepted: a v1 certificate signed directly
//! by a certificate of the CA file (matched on the issuer's name, then
//! checked with that certificate's key through the provider's signature
//! algorithms, the same code webpki uses), within its validity period, and
//! for `verify-full` naming the host in its common name (a v1 certificate
//! has no subjectAltName). Anything else about a v1 certificate is
//! refused; v3 certificates go to webpki unchanged.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature_with_raw_key};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;

use crate::auth::x509;

/// The CA file's certificates and the provider's signature algorithms.
#[derive(Debug)]
pub(super) struct V1Check {
    roots: Vec<CertificateDer<'static>>,
    algs: WebPkiSupportedAlgorithms,
}

fn bad(e: CertificateError) -> Error {
    Error::InvalidCertificate(e)
}

/// Whether `cert` is X.509 v1.
fn is_v1(cert: &[u8]) -> bool {
    x509::parts(cert).is_some_and(|p| p.v1)
}

impl V1Check {
    pub(super) fn new(
        roots: Vec<CertificateDer<'static>>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Self {
        V1Check { roots, algs }
    }

    /// Check a v1 `leaf`: signed by a CA certificate, valid `now`, and
    /// (`host`) naming the host.
    fn verify(
        &self,
        leaf: &[u8],
        now: UnixTime,
        host: Option<&ServerName<'_>>,
    ) -> Result<(), Error> {
        let p = x509::parts(leaf).ok_or(bad(CertificateError::BadEncoding))?;
        let now = now.as_secs() as i64;
        if now < p.valid.0 {
            return Err(bad(CertificateError::NotValidYet));
        }
        if now > p.valid.1 {
            return Err(bad(CertificateError::Expired));
        }
        let signed = self
            .roots
            .iter()
            .filter_map(|r| x509::parts(r))
            .filter(|r| r.subject == p.issuer)
            .any(|r| self.signed_by(&p, r.spki));
        if !signed {
            return Err(bad(CertificateError::UnknownIssuer));
        }
        if let Some(host) = host {
            let cn = x509::subject_common_name(leaf).unwrap_or_default();
            let matches = match host {
                ServerName::DnsName(d) => cn.eq_ignore_ascii_case(d.as_ref()),
                ServerName::IpAddress(ip) => cn == std::net::IpAddr::from(*ip).to_string(),
                _ => false,
            };
            if !matches {
                return Err(bad(CertificateError::NotValidForName));
            }
        }
        Ok(())
    }

    /// Whether the key of `spki` signed `leaf`'s tbsCertificate, with an
    /// algorithm whose identifiers match the certificate's and the key's.
    fn signed_by(&self, leaf: &x509::Parts<'_>, spki: &[u8]) -> bool {
        let Some((key_alg, key)) = x509::spki_parts(spki) else {
            return false;
        };
        self.algs.all.iter().any(|a| {
            a.signature_alg_id().as_ref() == leaf.signature_algorithm
                && a.public_key_alg_id().as_ref() == key_alg
                && a.verify_signature(key, leaf.tbs, leaf.signature).is_ok()
        })
    }

    /// A TLS 1.3 handshake signature, with the key of a v1 certificate.
    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = x509::subject_public_key_info(cert).ok_or(bad(CertificateError::BadEncoding))?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.algs,
        )
    }
}

/// The server leg's `verify-ca` / `verify-full` verifier: webpki for v3
/// certificates (the host name ignored for `verify-ca`), [`V1Check`] for v1.
#[derive(Debug)]
pub(super) struct ServerVerifier {
    pub webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pub v1: V1Check,
    /// verify-full: the host name must match.
    pub check_name: bool,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if is_v1(end_entity) {
            let host = self.check_name.then_some(server_name);
            return self
                .v1
                .verify(end_entity, now, host)
                .map(|()| ServerCertVerified::assertion());
        }
        let r = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match r {
            // webpki checks the chain before the name: a name error means
            // the chain was good, which is all verify-ca asks.
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if is_v1(cert) {
            return self.v1.tls13(message, cert, dss);
        }
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The client leg's verifier of client certificates: webpki's for v3,
/// [`V1Check`] for v1.
#[derive(Debug)]
pub(super) struct ClientVerifier {
    pub webpki: Arc<dyn ClientCertVerifier>,
    pub v1: V1Check,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if is_v1(end_entity) {
            return self
                .v1
                .verify(end_entity, now, None)
                .map(|()| ClientCertVerified::assertion());
        }
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if is_v1(cert) {
            return self.v1.tls13(message, cert, dss);
        }
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
