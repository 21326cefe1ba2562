//! README's configuration section stays true: every `[pgbouncer]` key is
//! either in the settings table with PgBouncer's default, or named as not
//! implemented yet; the same for `[databases]` and `[users]` keys.

use pgsluice::config::{
    DATABASE_KEYS_NOT_YET_IMPLEMENTED, General, NOT_YET_IMPLEMENTED, USER_KEYS_NOT_YET_IMPLEMENTED,
};

fn section<'a>(text: &'a str, start: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("README has no {start:?}"));
    let rest = &text[from + start.len()..];
    let end = rest.find("\n### ").or_else(|| rest.find("\n## "));
    &rest[..end.unwrap_or(rest.len())]
}

/// The names in backticks after "Not implemented yet" in `text` (none
/// when the section has no such list).
fn not_implemented(text: &str) -> Vec<String> {
    let Some(at) = text.find("Not implemented yet") else {
        return Vec::new();
    };
    let list = &text[at..];
    let list = &list[..list.find(".\n").unwrap_or(list.len())];
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn every_pgbouncer_key_is_documented_with_its_default() {
    let text = readme();
    let general = section(&text, "### `[pgbouncer]` settings");
    let missing = not_implemented(general);
    let rows: Vec<Vec<&str>> = general
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    for s in General::defaults().settings {
        let row = rows.iter().find(|r| r[1] == format!("`{}`", s.key));
        if NOT_YET_IMPLEMENTED.contains(&s.key) {
            assert!(
                row.is_none(),
                "{} is in the table but not implemented",
                s.key
            );
            assert!(
                missing.iter().any(|m| m == s.key),
                "{} missing from README's not-implemented list",
                s.key
            );
            continue;
        }
        assert!(
            !missing.iter().any(|m| m == s.key),
            "{} is implemented but listed as not",
            s.key
        );
        let row = row.unwrap_or_else(|| panic!("{} missing from README's table", s.key));
        let want = if s.default.is_empty() {
            "empty".to_string()
        } else {
            format!("`{}`", s.default)
        };
        assert_eq!(row[2], want, "default of {}", s.key);
    }
}

#[test]
fn database_and_user_keys_not_implemented_are_named() {
    let text = readme();
    let dbs = not_implemented(section(&text, "### `[databases]`"));
    let mut want: Vec<&str> = DATABASE_KEYS_NOT_YET_IMPLEMENTED.to_vec();
    want.sort();
    let mut got: Vec<&str> = dbs.iter().map(String::as_str).collect();
    got.sort();
    assert_eq!(got, want);
    let users = not_implemented(section(&text, "### `[users]`"));
    let mut want: Vec<&str> = USER_KEYS_NOT_YET_IMPLEMENTED.to_vec();
    want.sort();
    let mut got: Vec<&str> = users.iter().map(String::as_str).collect();
    got.sort();
    assert_eq!(got, want);
}
