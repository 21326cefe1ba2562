//! Authenticating a client: the message exchanges for auth_type trust,
//! any, plain, md5 and scram-sha-256 (SCRAM-SHA-256-PLUS over TLS), and
//! the certificate check of auth_type cert, against the secret
//! `auth_source` finds (auth_file or auth_query). The checks themselves (constant time)
//! live in `crate::auth`; no password or secret is ever logged.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::SessionEnd;
use super::auth_method::{self, Exchange};
use super::auth_source::{Source, Target};
use super::login::read_more;
use crate::auth::{self, ScramKeys, ScramSecret, ScramServer, Secret};
use crate::config::Config;
use crate::context::Context;
use crate::protocol::backend;
use crate::protocol::frontend::{
    FrontendMessage, SaslInitialResponse, parse_password, read_message,
};
use crate::protocol::{MAX_STARTUP_PACKET, ProtocolError, sqlstate};
use crate::transport::Stream;

/// What a login proved.
#[derive(Default)]
pub(super) struct Proven {
    /// The SCRAM keys the client proved, when it logged in with SCRAM.
    pub scram_keys: Option<ScramKeys>,
    /// For a user auth_query found: the password a plain login proved, or
    /// the md5 or plain secret found, for server logins of a pool that has
    /// no other.
    pub looked_up: Option<Secret>,
}

/// What the client proved.
enum Proof {
    /// Who it is, by a method with no password (trust, cert, peer): it
    /// stands if the user is known, else fails with this error.
    Identity(fn(&str) -> SessionEnd),
    /// A cleartext password, to check against the secret.
    Password(String),
    /// md5(md5(password || user) || salt), to check against the secret.
    Md5([u8; 4], Vec<u8>),
    /// SCRAM, checked against the (always fresh) secret by the exchange:
    /// the keys proved, and the server's final message.
    Scram(ScramKeys, Vec<u8>),
}

/// Authenticate `user`, logging in to `database` (`target`), as the config
/// says (auth_type, or auth_hba_file's rule), with the secret from
/// auth_file or auth_query (`Source`); `physical`: a physical replication
/// connection (auth_hba_file's `replication` lines).
pub(super) async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    (ctx, cfg): (&Context, &Config),
    (user, database, physical): (&str, &str, bool),
    target: Target<'_>,
) -> Result<Proven, SessionEnd> {
    let Some(exchange) = auth_method::choose(stream, cfg, (database, physical), user)? else {
        return Ok(Proven::default());
    };
    if let Exchange::Ldap(_) | Exchange::Pam = exchange {
        // The directory or PAM decides; auth_file and auth_query are not
        // asked. The password proven logs the user's servers in.
        let Proof::Password(pw) = plain(stream, buf).await? else {
            unreachable!("plain gives a password")
        };
        match exchange {
            Exchange::Ldap(options) => {
                super::ldap::check(options, cfg.ldap_tls.as_ref(), user, &pw).await?
            }
            _ => {
                let rhost = stream.tcp_peer_addr().map(|a| a.ip().to_string());
                super::pam::check(user, &pw, rhost).await?
            }
        }
        return Ok(Proven {
            scram_keys: None,
            looked_up: Some(Secret::Plain(pw)),
        });
    }
    // A SCRAM exchange sends the secret's salt first: it never runs with a
    // reused secret (a proof made with an old salt cannot be checked
    // against a new secret). Under md5 a reused md5 secret runs md5.
    let reuse = !matches!(exchange, Exchange::Scram);
    let mut source = Source::find(ctx, cfg, user, target, reuse)?;
    let start = source.start().await?;
    let proof = match (exchange, &start.secret) {
        (Exchange::Trust, _) => Proof::Identity(trust_failed),
        (Exchange::Plain, _) => plain(stream, buf).await?,
        (Exchange::Md5, Some(Secret::Scram(s))) => {
            scram(stream, buf, user, Some(s.clone())).await?
        }
        (Exchange::Md5, _) => md5(stream, buf).await?,
        (Exchange::Scram, secret) => {
            let verifier = secret.as_ref().and_then(auth::scram_secret_for);
            scram(stream, buf, user, verifier).await?
        }
        (Exchange::Cert(map), _) => {
            auth_method::cert(stream, user, map)?;
            Proof::Identity(cert_failed)
        }
        (Exchange::Peer(map), _) => {
            auth_method::peer(stream, user, map).await?;
            Proof::Identity(peer_failed)
        }
        (Exchange::Ldap(_) | Exchange::Pam, _) => unreachable!("handled above"),
    };
    let mut proven = Proven::default();
    let mut secret = start.secret;
    // A reused secret that does not check out is looked up once more:
    // a changed password works at once, a dropped role is refused.
    let mut again = !start.fresh;
    loop {
        match check(&proof, secret.as_ref(), start.found, user) {
            Ok(()) => break,
            Err(_) if again => {
                again = false;
                secret = source.again().await?;
            }
            Err(e) => return Err(e),
        }
    }
    match proof {
        Proof::Scram(keys, server_final) => {
            let mut out = BytesMut::new();
            backend::authentication_sasl_final(&mut out, &server_final);
            stream.write_all(&out).await?;
            proven.scram_keys = Some(keys);
        }
        // The password proved is the role's own: the servers of a
        // looked-up user log in with it, whatever the secret's kind.
        Proof::Password(pw) => proven.looked_up = Some(Secret::Plain(pw)),
        Proof::Identity(_) | Proof::Md5(..) => {}
    }
    match (&source, secret) {
        (Source::Lookup(_), Some(s @ (Secret::Md5(_) | Secret::Plain(_)))) => {
            proven.looked_up.get_or_insert(s);
        }
        (Source::Lookup(_), _) => {}
        // Only a looked-up user's servers need what the login proved.
        _ => proven.looked_up = None,
    }
    Ok(proven)
}

/// Whether `proof` holds against `secret` (a known user's; None: no
/// password may be used).
fn check(
    proof: &Proof,
    secret: Option<&Secret>,
    found: bool,
    user: &str,
) -> Result<(), SessionEnd> {
    let ok = match (proof, secret) {
        (Proof::Identity(_), _) => found,
        (Proof::Password(pw), Some(s)) => auth::verify_password(s, user, pw),
        (Proof::Md5(salt, answer), Some(s)) => auth::verify_md5_response(s, user, *salt, answer),
        (Proof::Scram(..), _) => true,
        (_, None) => false,
    };
    match (ok, proof) {
        (true, _) => Ok(()),
        (false, Proof::Identity(failed)) => Err(failed(user)),
        (false, _) => Err(auth_failed(user)),
    }
}

fn cert_failed(user: &str) -> SessionEnd {
    auth_method::refused(
        user,
        "certificate",
        "unknown user",
        auth_method::CERT_FAILED,
    )
}

fn peer_failed(user: &str) -> SessionEnd {
    auth_method::refused(user, "peer", "unknown user", auth_method::PEER_FAILED)
}

fn auth_failed(user: &str) -> SessionEnd {
    SessionEnd::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// A failed SCRAM exchange, in PgBouncer's words.
fn sasl_failed(user: &str) -> SessionEnd {
    tracing::debug!(%user, "SCRAM authentication failed");
    SessionEnd::fatal(sqlstate::INVALID_PASSWORD, "SASL authentication failed")
}

/// auth_type trust for a user that does not exist, in PgBouncer's words.
fn trust_failed(user: &str) -> SessionEnd {
    tracing::debug!(%user, "trust authentication of an unknown user");
    SessionEnd::fatal(
        sqlstate::INVALID_AUTHORIZATION,
        "\"trust\" authentication failed",
    )
}

/// auth_type plain: the cleartext password.
async fn plain(stream: &mut Stream, buf: &mut BytesMut) -> Result<Proof, SessionEnd> {
    let mut out = BytesMut::new();
    backend::authentication_cleartext(&mut out);
    stream.write_all(&out).await?;
    let password = parse_password(read_password(stream, buf).await?)?;
    Ok(Proof::Password(password))
}

/// Read the client's next 'p' message body.
async fn read_password(stream: &mut Stream, buf: &mut BytesMut) -> Result<Bytes, SessionEnd> {
    loop {
        match read_message(buf, MAX_STARTUP_PACKET as u32)? {
            Some(FrontendMessage::Password(body)) => return Ok(body),
            Some(FrontendMessage::Terminate) => {
                return Err(SessionEnd::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Some(_) => {
                return Err(SessionEnd::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "expected a password response",
                ));
            }
            None => read_more(stream, buf).await?,
        }
    }
}

async fn md5(stream: &mut Stream, buf: &mut BytesMut) -> Result<Proof, SessionEnd> {
    let salt: [u8; 4] = rand::random();
    let mut out = BytesMut::new();
    backend::authentication_md5(&mut out, salt);
    stream.write_all(&out).await?;
    let answer = read_password(stream, buf).await?;
    let answer = answer.strip_suffix(b"\0").ok_or(ProtocolError::Malformed {
        what: "PasswordMessage",
    })?;
    Ok(Proof::Md5(salt, answer.to_vec()))
}

/// SCRAM-SHA-256, up to the server's final message (sent once the proof
/// is confirmed). An unknown user (or an md5 secret, which cannot do
/// SCRAM) goes through the same exchange with a throwaway verifier, made
/// without key derivation as a stored one is read and with a salt stable
/// per name, and fails at the end, so that user names can be probed
/// neither by answer, nor by salt, nor by time.
async fn scram(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: Option<ScramSecret>,
) -> Result<Proof, SessionEnd> {
    let known = verifier.is_some();
    let verifier = verifier.unwrap_or_else(|| ScramSecret::throwaway(user));
    // Over TLS, SCRAM-SHA-256-PLUS is offered first, as PostgreSQL does.
    let binding = match stream {
        Stream::Tls(s) if !s.channel_binding().is_empty() => Some(s.channel_binding().to_vec()),
        _ => None,
    };
    let mut out = BytesMut::new();
    if binding.is_some() {
        backend::authentication_sasl(&mut out, &[auth::SCRAM_SHA_256_PLUS, auth::SCRAM_SHA_256]);
    } else {
        backend::authentication_sasl(&mut out, &[auth::SCRAM_SHA_256]);
    }
    stream.write_all(&out).await?;

    let initial = SaslInitialResponse::parse(read_password(stream, buf).await?)?;
    let plus = initial.mechanism == auth::SCRAM_SHA_256_PLUS && binding.is_some();
    if initial.mechanism != auth::SCRAM_SHA_256 && !plus {
        return Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let mut server = match binding {
        Some(b) => ScramServer::with_binding(verifier, b, plus),
        None => ScramServer::new(verifier),
    };
    let server_first = server
        .client_first(&initial.data)
        .map_err(|e| SessionEnd::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
    out.clear();
    backend::authentication_sasl_continue(&mut out, &server_first);
    stream.write_all(&out).await?;

    let client_final = read_password(stream, buf).await?;
    match server.client_final(&client_final) {
        Ok((server_final, keys)) if known => Ok(Proof::Scram(keys, server_final)),
        Err(auth::ScramError::ChannelBindingMismatch) => Err(SessionEnd::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "SCRAM channel binding check failed",
        )),
        _ => Err(sasl_failed(user)),
    }
}
