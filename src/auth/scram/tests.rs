//! Exchange-level tests: the RFC 7677 vector on both sides, round trips
//! (password, then the passthrough with proven keys), interop with
//! postgres-protocol's client, and tampering.

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::*;
use crate::auth::{ScramSecret, Secret, scram_secret_for};

const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn pencil() -> ScramSecret {
    ScramSecret::from_password("pencil", &b64_decode(SALT_B64).unwrap(), 4096)
}

fn password(p: &str) -> ScramCredentials {
    ScramCredentials::Password(p.to_owned())
}

/// Runs a whole exchange; returns the keys the server saw proven.
fn login(client: &mut ScramClient, server: &mut ScramServer) -> Result<ScramKeys, ScramError> {
    let first = server.client_first(&client.client_first())?;
    let (last, keys) = server.client_final(&client.server_first(&first)?)?;
    client.server_final(&last)?;
    Ok(keys)
}

#[test]
fn rfc7677_server() {
    let mut server = ScramServer::with_nonce(pencil(), SERVER_NONCE);
    assert_eq!(
        server.client_first(CLIENT_FIRST.as_bytes()).unwrap(),
        SERVER_FIRST.as_bytes()
    );
    let (last, keys) = server.client_final(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(last, SERVER_FINAL.as_bytes());
    assert_eq!(h(&keys.client_key), pencil().stored_key);
}

#[test]
fn rfc7677_client() {
    let mut client = ScramClient::with_nonce(password("pencil"), "user", CLIENT_NONCE);
    assert_eq!(client.client_first(), CLIENT_FIRST.as_bytes());
    assert_eq!(
        client.server_first(SERVER_FIRST.as_bytes()).unwrap(),
        CLIENT_FINAL.as_bytes()
    );
    client.server_final(SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn round_trip_password_then_keys_passthrough() {
    let secret = ScramSecret::from_password("s3cret", b"0123456789abcdef", 4096);
    let mut client = ScramClient::new(password("s3cret"));
    let keys = login(&mut client, &mut ScramServer::new(secret.clone())).unwrap();
    // The pooler logs in to PostgreSQL (same verifier) with the proven keys.
    let mut upstream = ScramClient::new(ScramCredentials::Keys(keys.clone()));
    let again = login(&mut upstream, &mut ScramServer::new(secret)).unwrap();
    assert_eq!(again.client_key, keys.client_key);
    // A server with another verifier for the same password (other salt) refuses them.
    let other = ScramSecret::from_password("s3cret", b"another salt", 4096);
    let mut upstream = ScramClient::new(ScramCredentials::Keys(keys));
    assert!(matches!(
        login(&mut upstream, &mut ScramServer::new(other)),
        Err(ScramError::InvalidProof)
    ));
}

#[test]
fn plain_secret_and_random_nonces() {
    let secret = scram_secret_for(&Secret::Plain("pw".into())).unwrap();
    assert_eq!((secret.iterations, secret.salt.len()), (4096, 16));
    assert!(scram_secret_for(&Secret::parse("md5bc4f5ecbd1a9e8d3e2a0c4f1a7b3e9d1")).is_none());
    let mut client = ScramClient::new(password("pw"));
    let first = String::from_utf8(client.client_first()).unwrap();
    let nonce = first.strip_prefix("n,,n=,r=").unwrap();
    assert!(nonce.len() >= 24 && !nonce.contains(','));
    let mut server = ScramServer::new(secret);
    let server_first = String::from_utf8(server.client_first(first.as_bytes()).unwrap()).unwrap();
    assert!(server_first.len() > nonce.len() + 2 + 24);
}

#[test]
fn wrong_password_fails() {
    let mut client = ScramClient::new(password("pencil2"));
    assert!(matches!(
        login(&mut client, &mut ScramServer::new(pencil())),
        Err(ScramError::InvalidProof)
    ));
}

#[test]
fn postgres_protocol_client_logs_in() {
    for binding in [ChannelBinding::unrequested(), ChannelBinding::unsupported()] {
        let mut client = ScramSha256::new(b"pencil", binding);
        let mut server = ScramServer::new(pencil());
        let first = server.client_first(client.message()).unwrap();
        client.update(&first).unwrap();
        let (last, _) = server.client_final(client.message()).unwrap();
        client.finish(&last).unwrap();
    }
}

#[test]
fn tampered_client_final_fails() {
    let fail = |msg: &str| {
        let mut server = ScramServer::with_nonce(pencil(), SERVER_NONCE);
        server.client_first(CLIENT_FIRST.as_bytes()).unwrap();
        server.client_final(msg.as_bytes()).unwrap_err()
    };
    let nonce = CLIENT_FINAL.replace("k0,p=", "k1,p=");
    assert!(matches!(fail(&nonce), ScramError::NonceMismatch));
    let proof = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    assert!(matches!(fail(&proof), ScramError::InvalidProof));
    let binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
    assert!(matches!(fail(&binding), ScramError::ChannelBindingMismatch));
    assert!(matches!(fail("c=biws"), ScramError::Malformed(_)));
}

#[test]
fn tampered_server_messages_fail() {
    let mut client = ScramClient::with_nonce(password("pencil"), "user", CLIENT_NONCE);
    client.client_first();
    let other = SERVER_FIRST.replace("r=rOpr", "r=xOpr");
    assert!(matches!(
        client.server_first(other.as_bytes()),
        Err(ScramError::NonceMismatch)
    ));

    let mut client = ScramClient::with_nonce(password("pencil"), "user", CLIENT_NONCE);
    client.client_first();
    client.server_first(SERVER_FIRST.as_bytes()).unwrap();
    let forged = SERVER_FINAL.replace("v=6rri", "v=7rri");
    assert!(matches!(
        client.server_final(forged.as_bytes()),
        Err(ScramError::InvalidServerSignature)
    ));

    let mut client = ScramClient::with_nonce(password("pencil"), "user", CLIENT_NONCE);
    client.client_first();
    client.server_first(SERVER_FIRST.as_bytes()).unwrap();
    let err = client.server_final(b"e=invalid-proof").unwrap_err();
    assert_eq!(
        err.to_string(),
        "server reported scram error: invalid-proof"
    );
}

#[test]
fn out_of_order_calls_fail() {
    let mut server = ScramServer::new(pencil());
    assert!(matches!(
        server.client_final(CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    ));
    let mut client = ScramClient::new(password("pencil"));
    assert!(matches!(
        client.server_first(SERVER_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder)
    ));
    assert!(matches!(
        client.server_final(SERVER_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    ));
    // A failed first message ends the exchange.
    let mut server = ScramServer::new(pencil());
    assert!(
        server
            .client_first(b"p=tls-server-end-point,,n=,r=abc")
            .is_err()
    );
    assert!(matches!(
        server.client_first(CLIENT_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder)
    ));
}

#[test]
fn debug_output_has_no_secrets() {
    let keys = ScramKeys {
        client_key: [7; 32],
        server_key: [9; 32],
    };
    assert_eq!(format!("{keys:?}"), "ScramKeys(<redacted>)");
    let creds = format!("{:?}", ScramCredentials::Password("hunter2".into()));
    assert!(!creds.contains("hunter2"));
    assert!(!format!("{:?}", pencil()).contains(SALT_B64));
}

/// SCRAM-SHA-256-PLUS with `tls-server-end-point`: both of our sides agree,
/// and postgres-protocol's client (what tokio-postgres sends) is accepted.
#[test]
fn channel_binding_round_trip_and_interop() {
    let secret = ScramSecret::from_password("s3cret", b"0123456789abcdef", 4096);
    let binding = vec![7u8; 32];
    let mut client = ScramClient::over_tls(password("s3cret"), Some(binding.clone()));
    assert_eq!(client.mechanism(), SCRAM_SHA_256_PLUS);
    let mut server = ScramServer::with_binding(secret.clone(), binding.clone(), true);
    login(&mut client, &mut server).unwrap();

    let mut pp = ScramSha256::new(
        b"s3cret",
        ChannelBinding::tls_server_end_point(binding.clone()),
    );
    let mut server = ScramServer::with_binding(secret.clone(), binding.clone(), true);
    let first = server.client_first(pp.message()).unwrap();
    pp.update(&first).unwrap();
    let (last, _) = server.client_final(pp.message()).unwrap();
    pp.finish(&last).unwrap();
}

#[test]
fn channel_binding_refusals() {
    let secret = ScramSecret::from_password("s3cret", b"0123456789abcdef", 4096);
    // Another certificate's data: the check fails.
    let mut client = ScramClient::over_tls(password("s3cret"), Some(vec![1u8; 32]));
    let mut server = ScramServer::with_binding(secret.clone(), vec![2u8; 32], true);
    assert!(matches!(
        login(&mut client, &mut server),
        Err(ScramError::ChannelBindingMismatch)
    ));
    // `y` over TLS, where PLUS was offered: a downgrade.
    let mut client = ScramClient::over_tls(password("s3cret"), None);
    let mut server = ScramServer::with_binding(secret.clone(), vec![2u8; 32], false);
    assert!(matches!(
        server.client_first(&client.client_first()),
        Err(ScramError::ChannelBinding(m)) if m.contains("negotiation error")
    ));
    // The PLUS mechanism without binding data, and binding data with the
    // plain mechanism.
    let mut server = ScramServer::with_binding(secret.clone(), vec![2u8; 32], true);
    assert!(server.client_first(b"n,,n=,r=abc").is_err());
    let mut server = ScramServer::new(secret.clone());
    assert!(matches!(
        server.client_first(b"p=tls-server-end-point,,n=,r=abc"),
        Err(ScramError::ChannelBinding(m)) if m.contains("without channel binding")
    ));
    // A binding type PostgreSQL does not have.
    let mut server = ScramServer::with_binding(secret, vec![2u8; 32], true);
    assert!(server.client_first(b"p=tls-unique,,n=,r=abc").is_err());
    // `n` over TLS (a client without binding support) is fine.
    let mut client = ScramClient::new(password("s3cret"));
    let secret = ScramSecret::from_password("s3cret", b"0123456789abcdef", 4096);
    let mut server = ScramServer::with_binding(secret, vec![2u8; 32], false);
    login(&mut client, &mut server).unwrap();
}
