//! PLACEHOLDER signatures of the auth helper's API; replaced on merge.
#![allow(missing_docs, unused_variables)]
use super::{ScramSecret, Secret};

pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
#[derive(Clone)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}
pub struct ScramServer;
impl ScramServer {
    pub fn new(secret: ScramSecret) -> Self {
        unimplemented!()
    }
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        unimplemented!()
    }
    pub fn client_final(&mut self, data: &[u8]) -> Result<(Vec<u8>, ScramKeys), ScramError> {
        unimplemented!()
    }
}
pub enum ScramCredentials {
    Password(String),
    Keys(ScramKeys),
}
pub struct ScramClient;
impl ScramClient {
    pub fn new(credentials: ScramCredentials) -> Self {
        unimplemented!()
    }
    pub fn client_first(&mut self) -> Vec<u8> {
        unimplemented!()
    }
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        unimplemented!()
    }
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), ScramError> {
        unimplemented!()
    }
}
#[derive(Debug, thiserror::Error)]
#[error("scram")]
pub struct ScramError;
pub fn md5_secret(user: &str, password: &str) -> String {
    unimplemented!()
}
pub fn md5_response(md5_secret: &str, salt: [u8; 4]) -> String {
    unimplemented!()
}
pub fn verify_md5_response(secret: &Secret, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    unimplemented!()
}
pub fn verify_password(secret: &Secret, user: &str, password: &str) -> bool {
    unimplemented!()
}
pub fn scram_secret_for(secret: &Secret) -> Option<ScramSecret> {
    unimplemented!()
}
impl Secret {
    pub fn parse(s: &str) -> Secret {
        unimplemented!()
    }
}
impl ScramSecret {
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        unimplemented!()
    }
}
