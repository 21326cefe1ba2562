//! A throwaway OpenLDAP server (Debian's slapd, installed by
//! scripts/test.sh) for the LDAP authentication tests: its own config and
//! data in a temp dir, an ephemeral port on 127.0.0.1, the base
//! `dc=example,dc=net` with people under `ou=people`, killed on drop.
//! With a certificate it also speaks TLS: StartTLS on its plain port and
//! ldaps on a second one.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BASE: &str = "dc=example,dc=net";
pub const PEOPLE: &str = "ou=people,dc=example,dc=net";
const ROOT_DN: &str = "cn=Manager,dc=example,dc=net";
const ROOT_PW: &str = "rootsecret";

pub struct Slapd {
    _dir: tempfile::TempDir,
    pub port: u16,
    /// The ldaps port (0 without TLS).
    pub ldaps_port: u16,
    child: Child,
}

impl Slapd {
    /// Start slapd with `users` (uid, password) under ou=people.
    pub async fn start(users: &[(&str, &str)]) -> Slapd {
        Self::start_with_tls(users, None).await
    }

    /// As [`start`](Self::start), with TLS when `tls` is set: this
    /// certificate (and CA file) for StartTLS and ldaps.
    pub async fn start_with_tls(
        users: &[(&str, &str)],
        tls: Option<(&super::tls::Issued, &Path)>,
    ) -> Slapd {
        let slapd = ["/usr/sbin/slapd", "/usr/local/libexec/slapd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("slapd not found: scripts/test.sh installs Debian's slapd");
        let schema = Path::new("/etc/ldap/schema");
        assert!(
            schema.is_dir(),
            "no LDAP schema dir at {}",
            schema.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("pgsluice-ldap-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let conf = dir.path().join("slapd.conf");
        let s = schema.display();
        let tls_lines = match tls {
            Some((issued, ca)) => format!(
                "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                ca.display(),
                issued.cert.display(),
                issued.key.display()
            ),
            None => String::new(),
        };
        std::fs::write(
            &conf,
            format!(
                "include {s}/core.schema\ninclude {s}/cosine.schema\n\
                 include {s}/nis.schema\ninclude {s}/inetorgperson.schema\n\
                 pidfile {pid}\n{tls_lines}\
                 access to * by * read by anonymous auth\n\
                 database ldif\ndirectory {data}\n\
                 suffix \"{BASE}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\n",
                pid = dir.path().join("slapd.pid").display(),
                data = data.display(),
            ),
        )
        .unwrap();
        let port = super::pg::free_port();
        let ldaps_port = if tls.is_some() {
            super::pg::free_port()
        } else {
            0
        };
        let mut urls = format!("ldap://127.0.0.1:{port}/");
        if tls.is_some() {
            urls.push_str(&format!(" ldaps://127.0.0.1:{ldaps_port}/"));
        }
        let child = Command::new(slapd)
            .args(["-f", conf.to_str().unwrap(), "-h", &urls, "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start slapd");
        let mut me = Slapd {
            _dir: dir,
            port,
            ldaps_port,
            child,
        };
        me.wait_ready().await;
        me.add(users);
        me
    }

    async fn wait_ready(&mut self) {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("slapd exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("slapd did not listen on {}", self.port);
    }

    fn add(&self, users: &[(&str, &str)]) {
        let mut ldif = format!(
            "dn: {BASE}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n\
             dc: example\no: Example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n"
        );
        for (uid, pw) in users {
            ldif.push_str(&format!(
                "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
                 sn: {uid}\ncn: {uid}\nuserPassword: {pw}\n\n"
            ));
        }
        let path = self._dir.path().join("data.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapadd")
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.port)])
            .args(["-D", ROOT_DN, "-w", ROOT_PW, "-f", path.to_str().unwrap()])
            .output()
            .expect("ldapadd (ldap-utils; scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "ldapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
