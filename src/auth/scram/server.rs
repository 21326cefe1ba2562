//! The SCRAM-SHA-256 server side: authenticates a client against a stored
//! verifier (PostgreSQL has no Rust server-side implementation to reuse).
//!
//! Flow: SASLInitialResponse data -> [`ScramServer::client_first`] ->
//! AuthenticationSASLContinue; SASLResponse data -> [`ScramServer::client_final`]
//! -> AuthenticationSASLFinal. Any error ends the exchange.

use std::mem;

use subtle::ConstantTimeEq;

use super::message;
use super::{ScramError, ScramKeys, b64, h, hmac, xor};
use crate::auth::ScramSecret;

/// Where the exchange is.
enum State {
    /// Waiting for client-first-message.
    Initial,
    /// server-first-message sent, waiting for client-final-message.
    SentFirst {
        /// gs2 header the client used; echoed back in `c=`.
        gs2_header: String,
        /// client-first-message-bare.
        client_first_bare: String,
        /// server-first-message as sent.
        server_first: String,
        /// Combined client + server nonce.
        nonce: String,
    },
    /// Finished (successfully or not).
    Done,
}

/// Sans-IO SCRAM-SHA-256 server for one login attempt.
pub struct ScramServer {
    /// The user's verifier.
    secret: ScramSecret,
    /// Fixed server nonce part for tests; random otherwise.
    nonce_suffix: Option<String>,
    /// Over TLS: `tls-server-end-point` data of our certificate (then
    /// SCRAM-SHA-256-PLUS is offered); None over plaintext.
    binding: Option<Vec<u8>>,
    /// The mechanism the client chose is the PLUS one.
    plus: bool,
    /// Exchange state.
    state: State,
}

impl ScramServer {
    /// Starts an exchange against `secret`, the user's verifier. For a Plain
    /// secret the caller builds one with [`ScramSecret::from_password`] and a
    /// random 16-byte salt, 4096 iterations (see `auth::scram_secret_for`).
    pub fn new(secret: ScramSecret) -> Self {
        ScramServer {
            secret,
            nonce_suffix: None,
            binding: None,
            plus: false,
            state: State::Initial,
        }
    }

    /// An exchange over TLS: `binding` is the connection's
    /// `tls-server-end-point` data; `plus` says the client chose
    /// SCRAM-SHA-256-PLUS.
    pub fn with_binding(secret: ScramSecret, binding: Vec<u8>, plus: bool) -> Self {
        ScramServer {
            binding: Some(binding),
            plus,
            ..ScramServer::new(secret)
        }
    }

    /// Like [`ScramServer::new`] with a fixed server nonce part (tests only).
    #[cfg(test)]
    pub(crate) fn with_nonce(secret: ScramSecret, nonce_suffix: &str) -> Self {
        ScramServer {
            secret,
            nonce_suffix: Some(nonce_suffix.to_owned()),
            binding: None,
            plus: false,
            state: State::Initial,
        }
    }

    /// Handles SASLInitialResponse data (the client-first-message; the caller
    /// has checked the mechanism name) and returns the server-first-message
    /// for AuthenticationSASLContinue.
    ///
    /// Channel binding as PostgreSQL checks it: `p=tls-server-end-point`
    /// only with the PLUS mechanism over TLS, the PLUS mechanism only with
    /// `p`, and `y` refused over TLS (PLUS was offered: a client saying it
    /// was not has been downgraded). The username attribute is ignored, as PostgreSQL does: the user comes
    /// from the startup packet.
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Initial) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Done;
        let msg = message::client_first(data)?;
        self.check_flag(msg.flag)?;
        let suffix = self.nonce_suffix.take().unwrap_or_else(super::nonce);
        let nonce = format!("{}{}", msg.nonce, suffix);
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64(&self.secret.salt),
            self.secret.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::SentFirst {
            gs2_header: msg.gs2_header.to_owned(),
            client_first_bare: msg.bare.to_owned(),
            server_first,
            nonce,
        };
        Ok(reply)
    }

    fn check_flag(&self, flag: message::Gs2Flag<'_>) -> Result<(), ScramError> {
        use message::Gs2Flag;
        match (flag, self.plus) {
            (Gs2Flag::Binding(kind), true) if kind == super::TLS_SERVER_END_POINT => Ok(()),
            (Gs2Flag::Binding(_), true) => Err(ScramError::ChannelBinding(
                "unsupported SCRAM channel-binding type",
            )),
            (Gs2Flag::Binding(_), false) => Err(ScramError::ChannelBinding(
                "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.",
            )),
            (_, true) => Err(ScramError::ChannelBinding(
                "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.",
            )),
            (Gs2Flag::ClientOnly, false) if self.binding.is_some() => {
                Err(ScramError::ChannelBinding(
                    "SCRAM channel binding negotiation error: the client supports SCRAM channel binding but thinks the server does not; this server does support channel binding.",
                ))
            }
            (Gs2Flag::No | Gs2Flag::ClientOnly, false) => Ok(()),
        }
    }

    /// Handles SASLResponse data (the client-final-message). On success
    /// returns the server-final-message for AuthenticationSASLFinal and the
    /// keys the client proved: `client_key` recovered as ClientProof XOR
    /// ClientSignature, `server_key` from the verifier.
    ///
    /// Checks the channel-binding echo and the nonce, and compares the proof
    /// in constant time. [`ScramError::InvalidProof`] means a wrong password.
    pub fn client_final(&mut self, data: &[u8]) -> Result<(Vec<u8>, ScramKeys), ScramError> {
        let State::SentFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let msg = message::client_final(data)?;
        let mut expected = gs2_header.into_bytes();
        if self.plus {
            expected.extend_from_slice(self.binding.as_deref().unwrap_or_default());
        }
        if msg.channel_binding != expected {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if msg.nonce != nonce {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = format!("{client_first_bare},{server_first},{}", msg.without_proof);
        let client_signature = hmac(&self.secret.stored_key, &[auth_message.as_bytes()]);
        let client_key = xor(&msg.proof, &client_signature);
        if !bool::from(h(&client_key).ct_eq(&self.secret.stored_key)) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(&self.secret.server_key, &[auth_message.as_bytes()]);
        let reply = format!("v={}", b64(&server_signature)).into_bytes();
        let keys = ScramKeys {
            client_key,
            server_key: self.secret.server_key,
        };
        Ok((reply, keys))
    }
}
