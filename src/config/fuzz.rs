//! Fuzz entry points for the configuration files (see `crate::fuzz`):
//! pgbouncer.ini, auth_file, auth_hba_file and auth_ident_file text.
//!
//! Text naming other files (`%include`, `*_file` keys, `@file` in an hba
//! line) is skipped: the loaders read those from disk, and a fuzzer must
//! not make them read /dev/zero.

use std::path::Path;

fn names_files(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("include") || t.contains("file") || t.contains('@') || t.contains("ca_")
}

/// pgbouncer.ini: every section, key and value through the real loader.
pub(crate) fn ini(text: &str) {
    if names_files(text) {
        return;
    }
    let _ = super::loader::load_str(text, Path::new("fuzz.ini"));
}

/// auth_file (userlist.txt).
pub(crate) fn auth_file(text: &str) {
    let _ = super::userlist::parse_userlist(text, Path::new("userlist.txt"));
}

/// auth_hba_file, with auth_ident_file maps made from the same text.
pub(crate) fn hba(text: &str) {
    let at_file = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .any(|t| t.starts_with('@'));
    if at_file {
        return;
    }
    let maps = super::ident::IdentMaps::parse(text, Path::new("ident.conf")).unwrap_or_default();
    let _ = super::hba::Hba::parse(text, Path::new("hba.conf"), &maps);
}
