//! What PgBouncer's TLS values (OpenSSL vocabulary) mean to rustls:
//! `*_tls_protocols`, `*_tls_ciphers`, `*_tls13_ciphers`,
//! `client_tls_ecdhcurve` and `client_tls_dheparams`. A value rustls cannot
//! honour is refused with the key and the value named. A list that names
//! something rustls lacks next to what it has (`all` names TLS 1.0 and 1.1)
//! keeps what it has and warns: that narrows what is offered, it never
//! weakens it.

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider, kx_group};

use super::tls::{KeyError, Keys};

/// The protocol versions, cipher suites and key exchange groups of one leg.
pub(super) fn provider(
    keys: &Keys<'_>,
    warnings: &mut Vec<(String, String)>,
) -> Result<(CryptoProvider, Vec<&'static SupportedProtocolVersion>), KeyError> {
    let versions = versions(keys, warnings)?;
    let mut provider = default_provider();
    provider.cipher_suites = suites(keys)?;
    if let Some(groups) = groups(keys)? {
        provider.kx_groups = groups;
    }
    dheparams(keys)?;
    Ok((provider, versions))
}

fn split(value: &str) -> impl Iterator<Item = &str> {
    value
        .split([',', ':', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `*_tls_protocols`: `secure` (TLS 1.2 and 1.3, the default), `all` and
/// `legacy` (every version; rustls has 1.2 and 1.3), `default`, or a list
/// of `tlsv1.0` .. `tlsv1.3`.
fn versions(
    keys: &Keys<'_>,
    warnings: &mut Vec<(String, String)>,
) -> Result<Vec<&'static SupportedProtocolVersion>, KeyError> {
    let key = keys.key("tls_protocols");
    let (mut v12, mut v13, mut old) = (false, false, Vec::new());
    for word in split(keys.protocols) {
        match word.to_ascii_lowercase().as_str() {
            "secure" | "default" => (v12, v13) = (true, true),
            "all" | "legacy" => {
                (v12, v13) = (true, true);
                old.push("tlsv1.0, tlsv1.1");
            }
            "tlsv1.2" => v12 = true,
            "tlsv1.3" => v13 = true,
            "tlsv1.0" => old.push("tlsv1.0"),
            "tlsv1.1" => old.push("tlsv1.1"),
            _ => {
                return Err((
                    key,
                    format!(
                        "unknown TLS protocol \"{word}\" (known: tlsv1.2, tlsv1.3, secure, all, legacy)"
                    ),
                ));
            }
        }
    }
    if !v12 && !v13 {
        return Err((
            key,
            format!(
                "\"{}\" leaves no protocol pgsluice can speak: rustls has TLS 1.2 and 1.3 only (TLS 1.0 and 1.1 are broken)",
                keys.protocols
            ),
        ));
    }
    if !old.is_empty() {
        warnings.push((
            key,
            format!(
                "{} not offered: rustls has TLS 1.2 and 1.3 only",
                old.join(", ")
            ),
        ));
    }
    let mut out = Vec::new();
    if v13 {
        out.push(&rustls::version::TLS13);
    }
    if v12 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// TLS 1.3 suites by their (IANA, OpenSSL) name.
fn tls13_suite(name: &str) -> Option<rustls::SupportedCipherSuite> {
    Some(match name.to_ascii_uppercase().as_str() {
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// TLS 1.2 suites by OpenSSL name or IANA name.
fn tls12_suite(name: &str) -> Option<rustls::SupportedCipherSuite> {
    Some(match name.to_ascii_uppercase().as_str() {
        "ECDHE-ECDSA-AES256-GCM-SHA384" | "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        }
        "ECDHE-ECDSA-AES128-GCM-SHA256" | "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        }
        "ECDHE-ECDSA-CHACHA20-POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "ECDHE-RSA-AES256-GCM-SHA384" | "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        }
        "ECDHE-RSA-AES128-GCM-SHA256" | "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        }
        "ECDHE-RSA-CHACHA20-POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// `*_tls_ciphers` (TLS 1.2 and below; OpenSSL names, or the shortcuts
/// `default`, `secure`, `fast`, `normal`, `all`, `HIGH`) and
/// `*_tls13_ciphers` (TLS 1.3; empty: the TLS 1.3 names found in
/// `*_tls_ciphers`, or else all).
fn suites(keys: &Keys<'_>) -> Result<Vec<rustls::SupportedCipherSuite>, KeyError> {
    let all = default_provider().cipher_suites;
    let is13 =
        |s: &rustls::SupportedCipherSuite| matches!(s, rustls::SupportedCipherSuite::Tls13(_));
    let mut tls12 = Vec::new();
    let mut tls13_in_ciphers = Vec::new();
    for word in split(keys.ciphers) {
        match word.to_ascii_lowercase().as_str() {
            "default" | "secure" | "fast" | "normal" | "all" | "high" => {
                tls12.extend(all.iter().filter(|s| !is13(s)).copied())
            }
            _ => match (tls12_suite(word), tls13_suite(word)) {
                (Some(s), _) => tls12.push(s),
                (_, Some(s)) => tls13_in_ciphers.push(s),
                _ => {
                    return Err((
                        keys.key("tls_ciphers"),
                        format!(
                            "cipher \"{word}\" is not one rustls has (it has the ECDHE AES-GCM and ChaCha20-Poly1305 suites; OpenSSL's operators such as '!' are not understood)"
                        ),
                    ));
                }
            },
        }
    }
    let mut tls13 = Vec::new();
    for word in split(keys.tls13_ciphers) {
        match tls13_suite(word) {
            Some(s) => tls13.push(s),
            None => {
                return Err((
                    keys.key("tls13_ciphers"),
                    format!(
                        "failed to set the TLSv1.3 cipher suites: \"{word}\" is not one rustls has (TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256)"
                    ),
                ));
            }
        }
    }
    if tls13.is_empty() {
        tls13 = tls13_in_ciphers;
    }
    if tls13.is_empty() {
        tls13.extend(all.iter().filter(|s| is13(s)).copied());
    }
    tls13.dedup();
    tls12.dedup();
    Ok(tls13.into_iter().chain(tls12).collect())
}

/// `client_tls_ecdhcurve`: `auto` (rustls's groups: X25519, P-256,
/// P-384) or a list of curve names.
fn groups(
    keys: &Keys<'_>,
) -> Result<Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>>, KeyError> {
    let mut out: Vec<&'static dyn rustls::crypto::SupportedKxGroup> = Vec::new();
    for word in split(keys.ecdhcurve) {
        match word.to_ascii_lowercase().as_str() {
            "auto" => return Ok(None),
            "x25519" => out.push(kx_group::X25519),
            "prime256v1" | "secp256r1" | "p-256" => out.push(kx_group::SECP256R1),
            "secp384r1" | "p-384" => out.push(kx_group::SECP384R1),
            _ => {
                return Err((
                    keys.key("tls_ecdhcurve"),
                    format!(
                        "curve \"{word}\" is not one rustls has (auto, X25519, prime256v1, secp384r1; TLS without (EC)DH key exchange does not exist in rustls)"
                    ),
                ));
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `client_tls_dheparams`: accepted for compatibility. rustls has no
/// finite-field DHE suites at all, so every value means what `none` means
/// to OpenSSL; only PgBouncer's three values are accepted.
fn dheparams(keys: &Keys<'_>) -> Result<(), KeyError> {
    match keys.dheparams.to_ascii_lowercase().as_str() {
        "auto" | "none" | "legacy" => Ok(()),
        other => Err((
            keys.key("tls_dheparams"),
            format!("unknown value \"{other}\" (auto, none, legacy)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(protocols: &'a str, ciphers: &'a str, tls13: &'a str) -> Keys<'a> {
        Keys {
            leg: "client",
            sslmode: "require",
            key_file: "",
            cert_file: "",
            ca_file: "",
            protocols,
            ciphers,
            tls13_ciphers: tls13,
            ecdhcurve: "auto",
            dheparams: "auto",
        }
    }

    #[test]
    fn protocols() {
        let mut w = Vec::new();
        let (_, v) = provider(&keys("secure", "default", ""), &mut w).unwrap();
        assert_eq!(v.len(), 2);
        assert!(w.is_empty());
        let (_, v) = provider(&keys("all", "default", ""), &mut w).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(w.len(), 1, "all names TLS 1.0/1.1: a warning");
        let (_, v) = provider(&keys("tlsv1.3", "default", ""), &mut w).unwrap();
        assert_eq!(v, vec![&rustls::version::TLS13]);
        let e = provider(&keys("tlsv1.0,tlsv1.1", "default", ""), &mut w).unwrap_err();
        assert_eq!(e.0, "client_tls_protocols");
        assert!(e.1.contains("tlsv1.0,tlsv1.1"), "{}", e.1);
        assert!(provider(&keys("sslv3", "default", ""), &mut w).is_err());
    }

    #[test]
    fn ciphers() {
        let mut w = Vec::new();
        let (p, _) = provider(
            &keys("secure", "default", "TLS_CHACHA20_POLY1305_SHA256"),
            &mut w,
        )
        .unwrap();
        let tls13: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)))
            .collect();
        assert_eq!(tls13.len(), 1);
        let (p, _) = provider(&keys("secure", "ECDHE-RSA-AES128-GCM-SHA256", ""), &mut w).unwrap();
        assert_eq!(
            p.cipher_suites.len(),
            4,
            "three TLS 1.3 suites and one TLS 1.2"
        );
        let e = provider(&keys("secure", "HIGH:!aNULL", ""), &mut w).unwrap_err();
        assert_eq!(e.0, "client_tls_ciphers");
        assert!(e.1.contains("!aNULL"));
        let e = provider(
            &keys("secure", "default", "TLS_AES_128_CCM_8_SHA256"),
            &mut w,
        )
        .unwrap_err();
        assert_eq!(e.0, "client_tls13_ciphers");
    }

    #[test]
    fn curves_and_dh() {
        let mut w = Vec::new();
        let mut k = keys("secure", "default", "");
        k.ecdhcurve = "prime256v1";
        let (p, _) = provider(&k, &mut w).unwrap();
        assert_eq!(p.kx_groups.len(), 1);
        k.ecdhcurve = "none";
        assert_eq!(provider(&k, &mut w).unwrap_err().0, "client_tls_ecdhcurve");
        k.ecdhcurve = "auto";
        k.dheparams = "legacy";
        assert!(provider(&k, &mut w).is_ok());
        k.dheparams = "/etc/dh.pem";
        assert_eq!(provider(&k, &mut w).unwrap_err().0, "client_tls_dheparams");
    }
}
