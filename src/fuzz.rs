//! Entry points for the coverage-guided fuzz targets (`fuzz/`, cargo fuzz
//! with libFuzzer), one per parser of outside input. Built only with the
//! `fuzzing` feature; each takes the fuzzer's bytes as a client, a server
//! or a configuration file would hand them to pgsluice, and panics only
//! where pgsluice would have a bug.

/// The startup family (SSLRequest, GSSENCRequest, CancelRequest,
/// StartupMessage), then login-phase messages, in reads of varying size.
pub fn startup(data: &[u8]) {
    crate::client::fuzz::startup_and_login(data);
}

/// Client messages after login (simple and extended protocol, COPY
/// data, function calls) as the relay scans them.
pub fn client_messages(data: &[u8]) {
    crate::client::fuzz::client_stream(data);
}

/// Server messages as the relay scans them.
pub fn server_messages(data: &[u8]) {
    crate::client::fuzz::server_stream(data);
}

/// The server side of SCRAM-SHA-256 (pgsluice checking a client):
/// client-first-message, then client-final-message, split at the first
/// 0xFF byte.
pub fn scram_server(data: &[u8]) {
    let (first, last) = split(data);
    let secret = crate::auth::ScramSecret::throwaway("fuzz");
    let mut server = crate::auth::scram::ScramServer::new(secret);
    if server.client_first(first).is_ok() {
        let _ = server.client_final(last);
    }
}

/// The client side of SCRAM-SHA-256 (pgsluice logging in to PostgreSQL):
/// server-first-message, then server-final-message.
pub fn scram_client(data: &[u8]) {
    let (first, last) = split(data);
    let creds = crate::auth::scram::ScramCredentials::Password("fuzz".into());
    let mut client = crate::auth::scram::ScramClient::new(creds);
    let _ = client.client_first();
    if client.server_first(first).is_ok() {
        let _ = client.server_final(last);
    }
}

/// pgbouncer.ini text through the real loader.
pub fn config_ini(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        crate::config::fuzz::ini(text);
    }
}

/// auth_file text.
pub fn auth_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        crate::config::fuzz::auth_file(text);
    }
}

/// auth_hba_file (and auth_ident_file) text.
pub fn hba_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        crate::config::fuzz::hba(text);
    }
}

/// An admin console command.
pub fn admin_command(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::admin::parse(text);
    }
}

/// The read/write splitter's SQL classifier and hint comments.
pub fn sql_classifier(data: &[u8]) {
    let _ = crate::routing::classify::hint(data);
    if let Ok(sql) = std::str::from_utf8(data) {
        let writing = ["my_writer".to_string(), "app.audit".to_string()];
        std::hint::black_box(crate::routing::classify::classify(sql, &writing));
    }
}

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
