//! The SCRAM-SHA-256 client side: logs the pooler in to PostgreSQL.
//!
//! Hand-written rather than postgres-protocol's `ScramSha256` because that
//! client can only start from a cleartext password; the pooler often has only
//! the keys a client proved during its own SCRAM login (`ScramCredentials::Keys`,
//! the passthrough case), which is enough to compute a proof and check the
//! server's signature.
//!
//! Flow: [`ScramClient::client_first`] -> SASLInitialResponse;
//! AuthenticationSASLContinue data -> [`ScramClient::server_first`] ->
//! SASLResponse; AuthenticationSASLFinal data -> [`ScramClient::server_final`].

use std::fmt;
use std::mem;

use subtle::ConstantTimeEq;

use super::message::{self, ServerFinal};
use super::{ScramError, ScramKeys, b64, client_key, h, hi, hmac, saslprep, server_key, xor};

/// What the pooler logs in to PostgreSQL with.
#[derive(Clone)]
pub enum ScramCredentials {
    /// A cleartext password (from auth_file or the database's `password=`).
    Password(String),
    /// Keys a client proved to the pooler; valid when PostgreSQL holds the same verifier.
    Keys(ScramKeys),
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramCredentials::Password(_) => f.write_str("ScramCredentials::Password(<redacted>)"),
            ScramCredentials::Keys(_) => f.write_str("ScramCredentials::Keys(<redacted>)"),
        }
    }
}

/// Where the exchange is.
enum State {
    /// client-first-message not produced yet.
    Initial,
    /// client-first-message sent, waiting for server-first-message.
    SentFirst,
    /// client-final-message sent, waiting for server-final-message.
    SentFinal {
        /// The AuthMessage both sides sign.
        auth_message: String,
        /// ServerKey used to check the server's signature.
        server_key: [u8; 32],
    },
    /// Finished (successfully or not).
    Done,
}

/// Sans-IO SCRAM-SHA-256 client for one login to PostgreSQL.
pub struct ScramClient {
    /// Password or keys.
    credentials: ScramCredentials,
    /// Username attribute; empty as libpq sends it (PostgreSQL ignores it).
    user: String,
    /// Our nonce.
    nonce: String,
    /// The gs2 header we send: `n,,` without TLS, `y,,` over TLS to a
    /// server that offered no PLUS, `p=tls-server-end-point,,` with it.
    gs2_header: &'static str,
    /// Channel-binding data (the server certificate's hash) for `p`.
    binding: Vec<u8>,
    /// Exchange state.
    state: State,
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(credentials: ScramCredentials) -> Self {
        ScramClient {
            credentials,
            user: String::new(),
            nonce: super::nonce(),
            gs2_header: "n,,",
            binding: Vec::new(),
            state: State::Initial,
        }
    }

    /// An exchange over TLS. `binding`: the server certificate's
    /// `tls-server-end-point` data when the server offered
    /// SCRAM-SHA-256-PLUS (then the PLUS mechanism is used: [`Self::mechanism`]);
    /// None when it did not (the client says `y`: it could have bound).
    pub fn over_tls(credentials: ScramCredentials, binding: Option<Vec<u8>>) -> Self {
        let mut c = ScramClient::new(credentials);
        match binding {
            Some(b) => {
                c.gs2_header = "p=tls-server-end-point,,";
                c.binding = b;
            }
            None => c.gs2_header = "y,,",
        }
        c
    }

    /// The SASL mechanism this exchange uses.
    pub fn mechanism(&self) -> &'static str {
        if self.gs2_header.starts_with('p') {
            super::SCRAM_SHA_256_PLUS
        } else {
            super::SCRAM_SHA_256
        }
    }

    /// Like [`ScramClient::new`] with a fixed username and nonce (tests only).
    #[cfg(test)]
    pub(crate) fn with_nonce(credentials: ScramCredentials, user: &str, nonce: &str) -> Self {
        ScramClient {
            credentials,
            user: user.to_owned(),
            nonce: nonce.to_owned(),
            gs2_header: "n,,",
            binding: Vec::new(),
            state: State::Initial,
        }
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", self.user, self.nonce)
    }

    /// The client-first-message (`n,,n=,r=<nonce>`) for SASLInitialResponse.
    /// Calling it again restarts the exchange with the same nonce.
    pub fn client_first(&mut self) -> Vec<u8> {
        self.state = State::SentFirst;
        format!("{}{}", self.gs2_header, self.client_first_bare()).into_bytes()
    }

    /// Handles AuthenticationSASLContinue data (server-first-message) and
    /// returns the client-final-message for SASLResponse.
    ///
    /// With `Password` credentials the keys are derived from the server's salt
    /// and iteration count (any count >= 1 is accepted, like libpq); with
    /// `Keys` they are used directly. A server nonce that does not extend our
    /// nonce is rejected.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(mem::replace(&mut self.state, State::Done), State::SentFirst) {
            return Err(ScramError::OutOfOrder);
        }
        let server_first = message::text(data)?;
        let msg = message::server_first(data)?;
        if !msg.nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let (ck, sk) = match &self.credentials {
            ScramCredentials::Password(password) => {
                let normalized = saslprep::normalize(password);
                let salted = hi(&normalized, &msg.salt, msg.iterations);
                (client_key(&salted), server_key(&salted))
            }
            ScramCredentials::Keys(keys) => (keys.client_key, keys.server_key),
        };
        // c=: the gs2 header and, with `p`, the binding data ("n,," is "biws").
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.binding);
        let without_proof = format!("c={},r={}", b64(&cbind), msg.nonce);
        let auth_message = format!(
            "{},{server_first},{without_proof}",
            self.client_first_bare()
        );
        let signature = hmac(&h(&ck), &[auth_message.as_bytes()]);
        let proof = xor(&ck, &signature);
        self.state = State::SentFinal {
            auth_message,
            server_key: sk,
        };
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Verifies AuthenticationSASLFinal data: the server's signature (constant
    /// time). An `e=` server error becomes [`ScramError::Server`].
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), ScramError> {
        let State::SentFinal {
            auth_message,
            server_key,
        } = mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        match message::server_final(data)? {
            ServerFinal::Error(code) => {
                let code: String = code
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect();
                Err(ScramError::Server(code))
            }
            ServerFinal::Verifier(signature) => {
                let expected = hmac(&server_key, &[auth_message.as_bytes()]);
                if bool::from(expected.as_slice().ct_eq(&signature)) {
                    Ok(())
                } else {
                    Err(ScramError::InvalidServerSignature)
                }
            }
        }
    }
}
