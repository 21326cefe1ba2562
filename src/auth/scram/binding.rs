//! `tls-server-end-point` channel binding data (RFC 5929 section 4.1), as
//! PostgreSQL computes it: the hash of the server's certificate, with the
//! hash function of the certificate's signature algorithm, SHA-256 when
//! that is MD5 or SHA-1 or anything else with a SHA-256 digest.
//!
//! Reading the signature algorithm needs three DER headers; a small walker
//! here is less code than an X.509 crate and reads only what it must (the
//! certificate has already been parsed by rustls's verifier or is our own).

use sha2::{Digest, Sha256, Sha384, Sha512};

/// sha384WithRSAEncryption, ecdsa-with-SHA384 (DER contents of the OIDs).
const SHA384: [&[u8]; 2] = [
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
];
/// sha512WithRSAEncryption, ecdsa-with-SHA512.
const SHA512: [&[u8]; 2] = [
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
];

/// The binding data for the DER certificate `cert`; None when it is not a
/// certificate this walker can read.
pub(crate) fn end_point(cert: &[u8]) -> Option<Vec<u8>> {
    let alg = signature_algorithm(cert)?;
    Some(if SHA384.contains(&alg) {
        Sha384::digest(cert).to_vec()
    } else if SHA512.contains(&alg) {
        Sha512::digest(cert).to_vec()
    } else {
        Sha256::digest(cert).to_vec()
    })
}

/// One DER element at the start of `data`: (tag, contents, rest).
fn element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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
    Some((tag, &rest[..len], &rest[len..]))
}

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm
/// SEQUENCE { algorithm OID, .. }, signature }: the OID's contents.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (SEQUENCE, body, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, _tbs, rest) = element(body)? else {
        return None;
    };
    let (SEQUENCE, alg, _) = element(rest)? else {
        return None;
    };
    let (OID, oid, _) = element(alg)? else {
        return None;
    };
    Some(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's outer shape with a given signature OID.
    fn cert(oid: &[u8]) -> Vec<u8> {
        let mut alg = vec![0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        let mut alg_seq = vec![0x30, alg.len() as u8];
        alg_seq.extend(alg);
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x02];
        let mut body = tbs.to_vec();
        body.extend(alg_seq);
        body.extend([0x03, 0x01, 0x00]);
        let mut out = vec![0x30, 0x81, body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn hash_follows_the_signature_algorithm() {
        let sha256_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
        let c = cert(&sha256_rsa);
        assert_eq!(end_point(&c).unwrap(), Sha256::digest(&c).to_vec());
        let c = cert(SHA384[1]);
        assert_eq!(end_point(&c).unwrap().len(), 48);
        let c = cert(SHA512[0]);
        assert_eq!(end_point(&c).unwrap().len(), 64);
        assert_eq!(end_point(&[0x30, 0x05, 0x01]), None, "truncated");
        assert_eq!(end_point(b""), None);
    }
}
