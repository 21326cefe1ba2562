//! A test certificate authority made at test time (rcgen): CA and leaf
//! certificates as PEM files, valid, expired or not yet valid; and a
//! TLS client (tokio-rustls) for raw protocol tests (direct TLS,
//! garbage, requests inside TLS).

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A CA whose files live in a temp dir of its own.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM), for `*_tls_ca_file` and `sslrootcert`.
    pub ca_file: PathBuf,
}

/// A key and certificate signed by a [`TestCa`].
#[derive(Clone)]
pub struct Issued {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// When a certificate is valid.
#[derive(Clone, Copy)]
pub enum Validity {
    /// From yesterday for a month.
    Now,
    /// Ended yesterday.
    Expired,
    /// Starts tomorrow.
    NotYet,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("pgsluice-ca-")
            .tempdir()
            .unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();
        TestCa {
            dir,
            issuer: Issuer::new(params, key),
            ca_file,
        }
    }

    /// A certificate for `cn` with these subject alternative names (DNS
    /// names or IP addresses), valid now.
    pub fn issue(&self, cn: &str, sans: &[&str]) -> Issued {
        self.issue_with(cn, sans, Validity::Now)
    }

    /// A certificate for `cn`, valid as `validity` says.
    pub fn issue_with(&self, cn: &str, sans: &[&str], validity: Validity) -> Issued {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let day = time_day();
        let now = rcgen::date_time_ymd(1970, 1, 1) + day * days_since_epoch();
        (params.not_before, params.not_after) = match validity {
            Validity::Now => (now - day, now + day * 30),
            Validity::Expired => (now - day * 30, now - day),
            Validity::NotYet => (now + day, now + day * 30),
        };
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let n = super::unique("leaf");
        let issued = Issued {
            cert: self.dir.path().join(format!("{n}.crt")),
            key: self.dir.path().join(format!("{n}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        // libpq refuses a client key others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&issued.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        issued
    }
}

/// A CA and a pooler certificate for `localhost` and 127.0.0.1, shared by
/// the tests of this process that only need clients to reach pgsluice over
/// TLS.
pub fn shared() -> &'static (TestCa, Issued) {
    static SHARED: std::sync::OnceLock<(TestCa, Issued)> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let ca = TestCa::new("pgsluice shared test CA");
        let cert = ca.issue("localhost", &["localhost", "127.0.0.1"]);
        (ca, cert)
    })
}

/// `builder` with client TLS required, serving [`shared`]'s certificate.
pub fn require_client_tls(builder: super::PoolerBuilder) -> super::PoolerBuilder {
    let (_, cert) = shared();
    builder
        .set("client_tls_sslmode", "require")
        .set("client_tls_key_file", &cert.key.display().to_string())
        .set("client_tls_cert_file", &cert.cert.display().to_string())
}

impl TestCa {
    /// An X.509 v1 certificate for `cn` (no extensions, so no
    /// subjectAltName), made by `openssl x509 -req` as many users make
    /// theirs; valid for 30 days.
    pub fn issue_v1(&self, cn: &str) -> Issued {
        let n = super::unique("v1");
        let (key, csr, cert) = (
            self.dir.path().join(format!("{n}.key")),
            self.dir.path().join(format!("{n}.csr")),
            self.dir.path().join(format!("{n}.crt")),
        );
        let openssl = super::tool("openssl").expect("openssl is installed by scripts/test.sh");
        let run = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new(&openssl)
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let subj = format!("/CN={cn}");
        run(&[
            "req".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:prime256v1".as_ref(),
            "-nodes".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
            "-subj".as_ref(),
            subj.as_ref(),
        ]);
        let (ca_key, serial) = (
            self.dir.path().join("ca.key"),
            self.dir.path().join("ca.srl"),
        );
        run(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            self.ca_file.as_os_str(),
            "-CAkey".as_ref(),
            ca_key.as_os_str(),
            "-CAserial".as_ref(),
            serial.as_os_str(),
            "-CAcreateserial".as_ref(),
            "-days".as_ref(),
            "30".as_ref(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Issued { cert, key }
    }
}

fn time_day() -> std::time::Duration {
    std::time::Duration::from_secs(86_400)
}

fn days_since_epoch() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (secs / 86_400) as u32
}

/// TLS from the client side over `tcp` (already past any SSLRequest),
/// trusting `ca`, for `host`, offering `alpn`: a stream the `wire` helpers
/// speak the protocol over.
pub async fn client_handshake(
    tcp: tokio::net::TcpStream,
    ca: &std::path::Path,
    host: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name = ServerName::try_from(host.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// Connect to `addr`, ask for TLS with an SSLRequest and, on 'S', do the
/// handshake.
pub async fn ssl_request_handshake(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&super::wire::ssl_request()).await.unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[0], b'S', "TLS offered");
    client_handshake(tcp, ca, "localhost", &[]).await.unwrap()
}
