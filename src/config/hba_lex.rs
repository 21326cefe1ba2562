//! The tokens of auth_hba_file, auth_ident_file and the `@file` lists they
//! name, as PgBouncer reads them: words (anything up to white space, a
//! comma, a quote or `#`), double-quoted strings (`""` is a quote inside
//! one; a quoted word is never a keyword), commas, and `#` comments to the
//! end of the line.

/// One token of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// An unquoted word: a keyword, a name, an address, `map=...`.
    Word(String),
    /// A double-quoted string: always a name.
    Quoted(String),
    /// `,` between the names of a list.
    Comma,
}

impl Token {
    /// Whether this is the unquoted keyword `kw`.
    pub(super) fn is(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w == kw)
    }

    /// The name this token stands for (a word or a quoted string).
    pub(super) fn name(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Quoted(w) => Some(w),
            Token::Comma => None,
        }
    }
}

/// The tokens of one line, or why the line cannot be read.
pub(super) fn tokens(line: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '#' => break,
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            s.push('"');
                        }
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
                out.push(Token::Quoted(s));
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ',' | '"' | '#') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(Token::Word(s));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Token {
        Token::Word(s.into())
    }

    #[test]
    fn words_strings_commas_and_comments() {
        let t = tokens("host\ttmp1,all  \"a , b\",\"q1\"\"q2\" 10.0.0.0/8 md5 # x").unwrap();
        assert_eq!(
            t,
            [
                w("host"),
                w("tmp1"),
                Token::Comma,
                w("all"),
                Token::Quoted("a , b".into()),
                Token::Comma,
                Token::Quoted("q1\"q2".into()),
                w("10.0.0.0/8"),
                w("md5"),
            ]
        );
        assert!(tokens("   # only a comment").unwrap().is_empty());
        assert!(tokens("local \"open").is_err());
        assert!(!Token::Quoted("all".into()).is("all"));
        assert!(w("all").is("all"));
    }
}
