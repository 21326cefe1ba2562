//! How a TLS connection to an LDAP server checks the server's certificate.
//! PostgreSQL and PgBouncer leave this to libldap, which reads it from
//! `ldap.conf`; pgsluice reads the same settings, so that a host set up for
//! them behaves the same here:
//! - the file: `$LDAPCONF` if set, else `/etc/ldap/ldap.conf` (none at all
//!   with `LDAPNOINIT` set); keys `TLS_REQCERT`, `TLS_CACERT`,
//!   `TLS_CACERTDIR`, case-insensitive, `#` comments;
//! - then the environment: `LDAPTLS_REQCERT`, `LDAPTLS_CACERT`,
//!   `LDAPTLS_CACERTDIR` override the file, as in libldap.
//!
//! `TLS_REQCERT` `never` and `allow` take any certificate (the handshake's
//! signatures are still checked); `try`, `demand` (the default) and `hard`
//! check the chain against the CA certificates (`TLS_CACERT`, the PEM
//! files of `TLS_CACERTDIR`, else the system bundle) and the host name.
//! User files (`~/.ldaprc`, `./ldaprc`) and client certificates
//! (`TLS_CERT`/`TLS_KEY`) are not read.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// The system file libldap reads when `LDAPCONF` is not set.
const SYSTEM_LDAP_CONF: &str = "/etc/ldap/ldap.conf";

/// `TLS_REQCERT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqCert {
    /// `never`, `allow`: any certificate.
    Never,
    /// `try`, `demand`, `hard`: the chain and the host name are checked.
    Demand,
}

/// The settings read from ldap.conf and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapTls {
    pub reqcert: ReqCert,
    pub ca_file: Option<String>,
    pub ca_dir: Option<String>,
}

impl LdapTls {
    /// Read the settings as libldap does (see the module docs).
    pub fn from_environment() -> Result<LdapTls, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut tls = LdapTls {
            reqcert: ReqCert::Demand,
            ca_file: None,
            ca_dir: None,
        };
        if env("LDAPNOINIT").is_none() {
            let (path, must_exist) = match env("LDAPCONF") {
                Some(p) => (p, true),
                None => (SYSTEM_LDAP_CONF.to_string(), false),
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => tls.apply_file(&text).map_err(|e| format!("{path}: {e}"))?,
                Err(e) if must_exist || e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("cannot read {path}: {e}"));
                }
                Err(_) => {}
            }
        }
        for (var, key) in [
            ("LDAPTLS_REQCERT", "TLS_REQCERT"),
            ("LDAPTLS_CACERT", "TLS_CACERT"),
            ("LDAPTLS_CACERTDIR", "TLS_CACERTDIR"),
        ] {
            if let Some(v) = env(var) {
                tls.set(key, &v).map_err(|e| format!("{var}: {e}"))?;
            }
        }
        Ok(tls)
    }

    /// Apply the lines of an ldap.conf file (other keys are libldap's and
    /// not about TLS certificates: ignored).
    fn apply_file(&mut self, text: &str) -> Result<(), String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(k, v)| (k, v.trim()));
            self.set(&key.to_ascii_uppercase(), value)
                .map_err(|e| format!("line {}: {e}", n + 1))?;
        }
        Ok(())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "TLS_REQCERT" => {
                self.reqcert = match value.to_ascii_lowercase().as_str() {
                    "never" | "allow" => ReqCert::Never,
                    "try" | "demand" | "hard" => ReqCert::Demand,
                    _ => return Err(format!("invalid TLS_REQCERT value \"{value}\"")),
                }
            }
            "TLS_CACERT" => self.ca_file = Some(value.to_string()),
            "TLS_CACERTDIR" => self.ca_dir = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }

    /// The rustls configuration of a connection to an LDAP server.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.reqcert {
            ReqCert::Never => super::tls_build::any_certificate(provider.clone()),
            ReqCert::Demand => {
                let store = Arc::new(self.roots()?);
                WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// The CA certificates: TLS_CACERT and TLS_CACERTDIR's PEM files, else
    /// the system bundle (`SSL_CERT_FILE` overrides it, as for OpenSSL).
    fn roots(&self) -> Result<RootCertStore, String> {
        let mut files = Vec::new();
        files.extend(self.ca_file.clone());
        if let Some(dir) = &self.ca_dir {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot read TLS_CACERTDIR {dir}: {e}"))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    files.push(path.to_string_lossy().into_owned());
                }
            }
        }
        if files.is_empty() {
            files.push(
                std::env::var("SSL_CERT_FILE")
                    .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into()),
            );
        }
        let mut store = RootCertStore::empty();
        for file in &files {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("cannot read CA certificates from {file}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cannot read CA certificates from {file}: {e}"))?;
            // A directory may hold other files (hash links, CRLs): only
            // certificates count.
            for cert in certs {
                let _ = store.add(cert);
            }
        }
        if store.is_empty() {
            return Err(format!("no CA certificate in {}", files.join(", ")));
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_and_values() {
        let mut t = LdapTls {
            reqcert: ReqCert::Demand,
            ca_file: None,
            ca_dir: None,
        };
        t.apply_file("# comment\n\nURI ldap://x\ntls_reqcert   never\nTLS_CACERT /a/b.pem\n")
            .unwrap();
        assert_eq!(t.reqcert, ReqCert::Never);
        assert_eq!(t.ca_file.as_deref(), Some("/a/b.pem"));
        t.apply_file("TLS_REQCERT hard\n").unwrap();
        assert_eq!(t.reqcert, ReqCert::Demand);
        let e = t.apply_file("\nTLS_REQCERT sometimes\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn any_certificate_config_builds() {
        let t = LdapTls {
            reqcert: ReqCert::Never,
            ca_file: None,
            ca_dir: None,
        };
        assert!(t.client_config().is_ok());
        let t = LdapTls {
            reqcert: ReqCert::Demand,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ca_dir: None,
        };
        assert!(
            t.client_config()
                .unwrap_err()
                .contains("/nonexistent/ca.pem")
        );
    }
}
