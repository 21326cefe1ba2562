//! The few fields of an X.509 certificate pgsluice reads itself, with a
//! small DER walker: the signature algorithm (channel binding's hash), the
//! SubjectPublicKeyInfo (whether a key goes with a certificate; the key a
//! handshake signature is checked with when the certificate is not
//! checked), and the subject's common name (`auth_type = cert`).
//!
//! Why not webpki's parser for these: it accepts only X.509 v3, and v1
//! certificates are what `openssl ca` and `openssl x509 -req` make without
//! an extensions file (PgBouncer's own test certificates are v1); PgBouncer
//! (OpenSSL) takes them in every mode that does not check the chain. The
//! walker reads only what it is asked for and refuses anything it does not
//! understand; it never decides whether a certificate is to be trusted.

/// DER tags used here.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
/// id-at-commonName (2.5.4.3).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element: its tag, its contents, the whole element, and what
/// follows it.
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// The DER element at the start of `data`.
fn element(data: &[u8]) -> Option<Element<'_>> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| (l << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = data.len() - rest.len();
    Some((tag, &rest[..len], &data[..header + len], &rest[len..]))
}

/// The next element, which must have `tag`: (contents, whole, rest).
fn expect(data: &[u8], tag: u8) -> Option<(&[u8], &[u8], &[u8])> {
    match element(data)? {
        (t, contents, whole, rest) if t == tag => Some((contents, whole, rest)),
        _ => None,
    }
}

/// (tbsCertificate's contents, what follows it in the certificate).
fn tbs(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, _, _) = expect(cert, SEQUENCE)?;
    let (tbs, _, rest) = expect(body, SEQUENCE)?;
    Some((tbs, rest))
}

/// The signature algorithm's OID (its DER contents).
pub(crate) fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (_, rest) = tbs(cert)?;
    let (alg, _, _) = expect(rest, SEQUENCE)?;
    let (oid, _, _) = expect(alg, OID)?;
    Some(oid)
}

/// tbsCertificate's fields from the subject on: [version] serial
/// signature issuer validity, skipped.
fn from_subject(cert: &[u8]) -> Option<&[u8]> {
    let (mut fields, _) = tbs(cert)?;
    if fields.first() == Some(&VERSION) {
        fields = element(fields)?.3;
    }
    for _ in 0..4 {
        fields = element(fields)?.3;
    }
    Some(fields)
}

/// The SubjectPublicKeyInfo, as a whole DER element.
pub(crate) fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let subject_on = from_subject(cert)?;
    let (_, _, rest) = expect(subject_on, SEQUENCE)?;
    let (_, spki, _) = expect(rest, SEQUENCE)?;
    Some(spki)
}

/// A certificate's parts, for checking an X.509 v1 certificate's signature
/// and dates (see `config::tls_v1`).
pub(crate) struct Parts<'a> {
    /// No version field, or version 1: X.509 v1.
    pub v1: bool,
    /// tbsCertificate, the whole element: what the issuer signed.
    pub tbs: &'a [u8],
    /// signatureAlgorithm's contents (OID and parameters).
    pub signature_algorithm: &'a [u8],
    /// The signature's bits.
    pub signature: &'a [u8],
    /// The issuer Name, the whole element.
    pub issuer: &'a [u8],
    /// The subject Name, the whole element.
    pub subject: &'a [u8],
    /// notBefore and notAfter, seconds since the Unix epoch.
    pub valid: (i64, i64),
    /// The SubjectPublicKeyInfo, the whole element.
    pub spki: &'a [u8],
}

/// The parts of `cert`; None when it is not a certificate the walker reads.
pub(crate) fn parts(cert: &[u8]) -> Option<Parts<'_>> {
    let (body, _, _) = expect(cert, SEQUENCE)?;
    let (mut fields, tbs, rest) = expect(body, SEQUENCE)?;
    let (alg, _, rest) = expect(rest, SEQUENCE)?;
    let (bits, _, _) = expect(rest, 0x03)?;
    let (&unused, signature) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    let mut v1 = true;
    if fields.first() == Some(&VERSION) {
        let (version, _, rest) = expect(fields, VERSION)?;
        let (n, _, _) = expect(version, 0x02)?;
        v1 = n == [0];
        fields = rest;
    }
    let (_, _, _, fields) = element(fields)?; // serialNumber
    let (_, _, fields) = expect(fields, SEQUENCE)?; // signature
    let (_, issuer, fields) = expect(fields, SEQUENCE)?;
    let (validity, _, fields) = expect(fields, SEQUENCE)?;
    let (_, subject, fields) = expect(fields, SEQUENCE)?;
    let (_, spki, _) = expect(fields, SEQUENCE)?;
    let (tag, from, _, rest) = element(validity)?;
    let not_before = time(tag, from)?;
    let (tag, to, _, _) = element(rest)?;
    let not_after = time(tag, to)?;
    Some(Parts {
        v1,
        tbs,
        signature_algorithm: alg,
        signature,
        issuer,
        subject,
        valid: (not_before, not_after),
        spki,
    })
}

/// A SubjectPublicKeyInfo's algorithm (contents) and key bits.
pub(crate) fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, _, _) = expect(spki, SEQUENCE)?;
    let (alg, _, rest) = expect(body, SEQUENCE)?;
    let (bits, _, _) = expect(rest, 0x03)?;
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then_some((alg, key))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as seconds since the Unix epoch.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The subject's common name (the last one, as OpenSSL's lookups find it
/// first from the end), when it is a string.
pub(crate) fn subject_common_name(cert: &[u8]) -> Option<String> {
    let (mut rdns, _, _) = expect(from_subject(cert)?, SEQUENCE)?;
    let mut found = None;
    while !rdns.is_empty() {
        let (mut set, _, rest) = expect(rdns, SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (attr, _, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, _, value) = expect(attr, OID)?;
            if oid == COMMON_NAME {
                let (tag, text, _, _) = element(value)?;
                found = match tag {
                    // UTF8String, PrintableString, IA5String.
                    0x0c | 0x13 | 0x16 => Some(std::str::from_utf8(text).ok()?.to_string()),
                    // T61String: Latin-1 in practice.
                    0x14 => Some(text.iter().map(|&b| b as char).collect()),
                    _ => None,
                };
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.extend([0x82, (contents.len() >> 8) as u8, contents.len() as u8]);
        }
        out.extend_from_slice(contents);
        out
    }

    fn name(cn: &str) -> Vec<u8> {
        let o = der(
            SEQUENCE,
            &[der(OID, &[0x55, 0x04, 0x0a]), der(0x0c, b"Org")].concat(),
        );
        let c = der(
            SEQUENCE,
            &[der(OID, COMMON_NAME), der(0x13, cn.as_bytes())].concat(),
        );
        der(SEQUENCE, &[der(SET, &o), der(SET, &c)].concat())
    }

    /// A certificate's shape: v1 (no version field) or v3.
    fn cert(v3: bool, sig_oid: &[u8]) -> Vec<u8> {
        let alg = der(SEQUENCE, &der(OID, sig_oid));
        let spki = der(
            SEQUENCE,
            &[der(SEQUENCE, &der(OID, &[1, 2])), der(0x03, &[0, 9, 9])].concat(),
        );
        let mut tbs = Vec::new();
        if v3 {
            tbs.extend(der(VERSION, &der(0x02, &[2])));
        }
        tbs.extend(der(0x02, &[1]));
        tbs.extend(&alg);
        tbs.extend(name("Issuer CA"));
        tbs.extend(der(
            SEQUENCE,
            &[der(0x17, b"260101000000Z"), der(0x17, b"270101000000Z")].concat(),
        ));
        tbs.extend(name("bouncer"));
        tbs.extend(&spki);
        der(
            SEQUENCE,
            &[der(SEQUENCE, &tbs), alg, der(0x03, &[0, 1])].concat(),
        )
    }

    #[test]
    fn fields_of_v1_and_v3_certificates() {
        for v3 in [false, true] {
            let c = cert(v3, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
            assert_eq!(subject_common_name(&c).as_deref(), Some("bouncer"));
            let spki = subject_public_key_info(&c).unwrap();
            assert_eq!(spki[0], SEQUENCE);
            assert_eq!(spki.len(), 2 + 6 + 5);
            assert_eq!(signature_algorithm(&c).unwrap()[0], 0x2a);
        }
    }

    #[test]
    fn parts_and_dates() {
        for v3 in [false, true] {
            let c = cert(v3, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
            let p = parts(&c).unwrap();
            assert_eq!(p.v1, !v3);
            assert_eq!(
                p.valid,
                (1_767_225_600, 1_798_761_600),
                "2026-01-01 and 2027-01-01"
            );
            assert_eq!(p.signature, [1]);
            assert_eq!(p.issuer, &name("Issuer CA")[..]);
            let (alg, key) = spki_parts(p.spki).unwrap();
            assert_eq!(alg, der(OID, &[1, 2]));
            assert_eq!(key, [9, 9]);
        }
        assert_eq!(time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x17, b"701301000000Z"), None, "month 13");
        assert_eq!(time(0x17, b"700101000000+"), None);
    }

    #[test]
    fn truncated_or_foreign_input_is_none() {
        let c = cert(true, &[1]);
        for n in [0, 1, 5, c.len() / 2, c.len() - 1] {
            assert_eq!(subject_common_name(&c[..n]), None, "{n}");
            assert_eq!(subject_public_key_info(&c[..n]), None);
        }
        assert_eq!(signature_algorithm(b"\x04\x02hi"), None);
    }
}
