//! The pgbouncer.ini lexer: turns file text into a flat list of section
//! headers and `key = value` pairs, each tagged with its file and line, and
//! follows `%include` directives in place.
//!
//! Why not serde/serde_ini: serde_ini deserializes a whole file into a struct
//! or map, so it cannot (1) report the line of each key, which every
//! configuration error must name, (2) keep duplicate keys in order so that
//! the later one wins as in PgBouncer, (3) follow `%include` in place, or
//! (4) keep section state flowing across an include. Its typed
//! deserialization also could not report every bad field at once. This small
//! hand-written line lexer does exactly what PgBouncer's parser (libusual
//! `cfparser`) does and no more; typing happens in `settings.rs`.
//!
//! Rules (matching PgBouncer): leading whitespace is skipped; lines starting
//! with `;` or `#` are comments (those characters are not special later in a
//! line); `[name]` starts a section; `key = value` with the value trimmed;
//! a key may be quoted with `'...'` or `"..."` (`""` inside double quotes is
//! one quote); `%include FILE` reads FILE in place, a relative FILE being
//! taken relative to the current working directory, as PgBouncer documents.
//! Includes nest at most [`MAX_INCLUDE_DEPTH`] deep and loops are errors.
//! This module does not know any section or key names.

use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// Includes may nest this deep (PgBouncer's limit).
pub(crate) const MAX_INCLUDE_DEPTH: usize = 10;

/// One meaningful line of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The file the line is in (the included file for included lines).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What the line says.
    pub kind: EntryKind,
}

/// The two kinds of meaningful line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// `[name]`: the name, trimmed, case kept.
    Section(String),
    /// `key = value`: key unquoted, value trimmed.
    Pair {
        /// The key, case kept.
        key: String,
        /// The value, surrounding whitespace removed.
        value: String,
    },
}

/// Lexes `text` as if it were the contents of `file`, following includes.
/// Problems are appended to `errors`; lexing goes on after each one so that
/// every problem is reported.
pub(crate) fn lex(text: &str, file: &Path, errors: &mut Vec<ConfigError>) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![identity(file)];
    lex_into(text, file, 0, &mut stack, &mut out, errors);
    out
}

/// A path's identity for include-loop detection.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn lex_into(
    text: &str,
    file: &Path,
    depth: usize,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<Entry>,
    errors: &mut Vec<ConfigError>,
) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let s = raw.trim();
        if s.is_empty() || s.starts_with('#') || s.starts_with(';') {
            continue;
        }
        let err = |key: &str, msg: String| ConfigError::new(file, line, key, msg);
        if let Some(rest) = s.strip_prefix("%include")
            && (rest.is_empty() || rest.starts_with([' ', '\t']))
        {
            include(rest.trim(), file, line, depth, stack, out, errors);
            continue;
        }
        if let Some(rest) = s.strip_prefix('[') {
            match rest.split_once(']') {
                Some((name, tail)) if tail_is_blank(tail) => out.push(Entry {
                    file: file.to_path_buf(),
                    line,
                    kind: EntryKind::Section(name.trim().to_string()),
                }),
                Some((name, _)) => errors.push(err(
                    name.trim(),
                    "syntax error: unexpected text after section header".into(),
                )),
                None => errors.push(err("", "syntax error: missing ']'".into())),
            }
            continue;
        }
        match split_pair(s) {
            Ok((key, value)) => out.push(Entry {
                file: file.to_path_buf(),
                line,
                kind: EntryKind::Pair { key, value },
            }),
            Err(msg) => errors.push(err(first_word(s), msg)),
        }
    }
}

/// After `]` only whitespace or a comment may follow.
fn tail_is_blank(tail: &str) -> bool {
    let t = tail.trim_start();
    t.is_empty() || t.starts_with('#') || t.starts_with(';')
}

fn first_word(s: &str) -> &str {
    s.split(|c: char| c.is_whitespace() || c == '=')
        .next()
        .unwrap_or("")
}

/// Handles one `%include` line.
fn include(
    target: &str,
    file: &Path,
    line: usize,
    depth: usize,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<Entry>,
    errors: &mut Vec<ConfigError>,
) {
    let err = |msg: String| ConfigError::new(file, line, "%include", msg);
    if target.is_empty() {
        errors.push(err("missing file name".into()));
        return;
    }
    if depth + 1 > MAX_INCLUDE_DEPTH {
        errors.push(err(format!(
            "include nesting deeper than {MAX_INCLUDE_DEPTH} levels at {target}"
        )));
        return;
    }
    // Relative to the current working directory, as PgBouncer does.
    let path = PathBuf::from(target);
    let id = identity(&path);
    if stack.contains(&id) {
        errors.push(err(format!("include loop: {target} is already being read")));
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            stack.push(id);
            lex_into(&text, &path, depth + 1, stack, out, errors);
            stack.pop();
        }
        Err(e) => errors.push(err(format!("could not read {target}: {e}"))),
    }
}

/// Splits `key = value`, unquoting a quoted key.
fn split_pair(s: &str) -> Result<(String, String), String> {
    let (key, rest) = match s.chars().next() {
        Some(q @ ('\'' | '"')) => unquote_key(&s[1..], q)?,
        _ => {
            let end = s
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(s.len());
            (s[..end].to_string(), &s[end..])
        }
    };
    if key.is_empty() {
        return Err("syntax error: empty key".into());
    }
    let rest = rest.trim_start();
    let Some(value) = rest.strip_prefix('=') else {
        return Err("syntax error: expected 'key = value'".into());
    };
    Ok((key, value.trim().to_string()))
}

/// Reads a quoted key up to its closing quote `q`; inside double quotes a
/// doubled quote stands for one. Returns the key and the text after it.
fn unquote_key(s: &str, q: char) -> Result<(String, &str), String> {
    let mut key = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != q {
            key.push(c);
            continue;
        }
        if q == '"' && matches!(chars.peek(), Some((_, '"'))) {
            chars.next();
            key.push('"');
            continue;
        }
        return Ok((key, &s[i + 1..]));
    }
    Err("syntax error: unterminated quoted key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[Entry]) -> Vec<(usize, String, String)> {
        entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Pair { key, value } => Some((e.line, key.clone(), value.clone())),
                EntryKind::Section(_) => None,
            })
            .collect()
    }

    #[test]
    fn sections_pairs_comments_and_whitespace() {
        let text = "\u{feff}; comment\n# another\n  [pgbouncer]  ; note\n\
                    listen_port=6433\n\tpool_mode =  transaction  \r\n\n\
                    [databases]\n\"my db\"\"x\" = host=a\n'q db' = \nfoo# = bar ; not a comment\n";
        let mut errors = vec![];
        let e = lex(text, Path::new("t.ini"), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(e[0].kind, EntryKind::Section("pgbouncer".into()));
        assert_eq!(e[0].line, 3);
        assert_eq!(
            pairs(&e),
            vec![
                (4, "listen_port".into(), "6433".into()),
                (5, "pool_mode".into(), "transaction".into()),
                (8, "my db\"x".into(), "host=a".into()),
                (9, "q db".into(), "".into()),
                (10, "foo#".into(), "bar ; not a comment".into()),
            ]
        );
    }

    #[test]
    fn syntax_errors_are_all_reported_with_lines() {
        let text = "[pgbouncer\nno equals here\n= value\n[x] junk\n'open = 1\nok = 1\n";
        let mut errors = vec![];
        let e = lex(text, Path::new("t.ini"), &mut errors);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1, 2, 3, 4, 5]);
        assert_eq!(errors[1].key, "no");
        assert_eq!(pairs(&e), vec![(6, "ok".into(), "1".into())]);
    }

    #[test]
    fn include_reads_in_place_and_reports_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inc = dir.path().join("inc.ini");
        std::fs::write(&inc, "b = 2\n[users]\n").expect("write");
        let text = format!(
            "a = 1\n%include {}\nc = 3\n%include /nonexistent/x.ini\n%include\n",
            inc.display()
        );
        let mut errors = vec![];
        let e = lex(&text, &dir.path().join("main.ini"), &mut errors);
        let keys: Vec<String> = pairs(&e).into_iter().map(|p| p.1).collect();
        assert_eq!(keys, vec!["a", "b", "c"]);
        assert_eq!(e[1].file, inc);
        assert_eq!(e[1].line, 1);
        assert!(matches!(&e[2].kind, EntryKind::Section(s) if s == "users"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].key.as_str()), (4, "%include"));
        assert!(errors[1].message.contains("missing file name"));
    }

    #[test]
    fn include_loops_and_depth_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.ini");
        let b = dir.path().join("b.ini");
        std::fs::write(&a, format!("%include {}\n", b.display())).expect("write");
        std::fs::write(&b, format!("x = 1\n%include {}\n", a.display())).expect("write");
        let mut errors = vec![];
        let text = std::fs::read_to_string(&a).expect("read");
        let e = lex(&text, &a, &mut errors);
        assert_eq!(pairs(&e).len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("include loop"));
        assert_eq!(errors[0].file, b);

        // A chain of 12 files: the 11th level of nesting is refused.
        for i in 0..12 {
            let next = dir.path().join(format!("c{}.ini", i + 1));
            let body = format!("k{i} = {i}\n%include {}\n", next.display());
            std::fs::write(dir.path().join(format!("c{i}.ini")), body).expect("write");
        }
        let mut errors = vec![];
        let first = dir.path().join("c0.ini");
        let text = std::fs::read_to_string(&first).expect("read");
        let e = lex(&text, &first, &mut errors);
        assert_eq!(pairs(&e).len(), 11);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("deeper than 10"));
    }
}
