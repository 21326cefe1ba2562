//! `tls-server-end-point` channel binding data (RFC 5929 section 4.1), as
//! PostgreSQL computes it: the hash of the server's certificate, with the
//! hash function of the certificate's signature algorithm, SHA-256 when
//! that is MD5 or SHA-1 or anything else with a SHA-256 digest.
//! The signature algorithm is read by `auth::x509`.

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
    let alg = crate::auth::x509::signature_algorithm(cert)?;
    Some(if SHA384.contains(&alg) {
        Sha384::digest(cert).to_vec()
    } else if SHA512.contains(&alg) {
        Sha512::digest(cert).to_vec()
    } else {
        Sha256::digest(cert).to_vec()
    })
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
