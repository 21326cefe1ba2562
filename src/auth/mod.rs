//! Authentication: secrets from auth_file, the SCRAM-SHA-256 server side used
//! to authenticate clients, the SCRAM client used to log in to PostgreSQL with
//! stored keys, and md5 helpers. Everything here is sans-IO: the session code
//! in `client/` and `server/` moves the bytes.

pub(crate) mod md5;
pub mod mkauth;
pub(crate) mod password;
pub(crate) mod scram;
pub(crate) mod secret;
pub(crate) mod x509;

pub(crate) use md5::{md5_response, md5_secret, verify_md5_response};
pub(crate) use password::verify_password;
pub use scram::{
    SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramClient, ScramCredentials, ScramError, ScramKeys,
    ScramServer,
};
pub use secret::{ScramSecret, Secret};

/// The SCRAM verifier to authenticate a client against: a Scram secret as
/// is; a Plain secret turned into one with a fresh random 16-byte salt and
/// 4096 iterations (as PostgreSQL would store it); `None` for an Md5 secret,
/// which cannot do SCRAM.
pub fn scram_secret_for(secret: &Secret) -> Option<ScramSecret> {
    match secret {
        Secret::Scram(scram) => Some(scram.clone()),
        Secret::Plain(password) => {
            let mut salt = [0u8; scram::DEFAULT_SALT_LEN];
            scram::random_bytes(&mut salt);
            Some(ScramSecret::from_password(
                password,
                &salt,
                scram::DEFAULT_ITERATIONS,
            ))
        }
        Secret::Md5(_) => None,
    }
}
