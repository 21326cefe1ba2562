//! Parsing console commands: `WORD [arg] [;]`, case-insensitive, `SELECT x`
//! read as `SHOW x`, and `SET key = value` / `SET key TO value`.

use crate::context::ShutdownMode;

/// A control command (changes state; admin_users only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// PAUSE [db]
    Pause(Option<String>),
    /// RESUME [db]
    Resume(Option<String>),
    /// SUSPEND
    Suspend,
    /// DISABLE db
    Disable(String),
    /// ENABLE db
    Enable(String),
    /// RECONNECT [db]
    Reconnect(Option<String>),
    /// KILL [db]
    Kill(Option<String>),
    /// KILL_CLIENT id
    KillClient(String),
    /// SHUTDOWN, with WAIT_FOR_SERVERS / WAIT_FOR_CLIENTS
    Shutdown(ShutdownMode),
    /// TAKEOVER (pgsluice): a new process started with `-R` takes the
    /// listening sockets over; this one stops accepting at once and exits
    /// when its last client has left.
    Takeover,
    /// WAIT_CLOSE [db]
    WaitClose(Option<String>),
    /// RELOAD
    Reload,
    /// SWITCHOVER db TO host (a pgsluice command)
    Switchover {
        /// The database.
        database: String,
        /// The standby to promote: `host` or `host:port`.
        to: String,
    },
    /// UNFENCE db host (a pgsluice command)
    Unfence {
        /// The database.
        database: String,
        /// The host: `host` or `host:port`.
        host: String,
    },
    /// SET key = value
    Set {
        /// Setting name (lowercase).
        key: String,
        /// Value as written (quotes removed).
        value: String,
    },
}

/// A console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An empty query.
    Empty,
    /// SHOW name (lowercase).
    Show(String),
    /// A control command.
    Control(Control),
}

impl Control {
    /// The CommandComplete tag of the command.
    pub fn tag(&self) -> &'static str {
        match self {
            Control::Pause(_) => "PAUSE",
            Control::Resume(_) => "RESUME",
            Control::Suspend => "SUSPEND",
            Control::Disable(_) => "DISABLE",
            Control::Enable(_) => "ENABLE",
            Control::Reconnect(_) => "RECONNECT",
            Control::Kill(_) => "KILL",
            Control::KillClient(_) => "KILL_CLIENT",
            Control::Shutdown(_) => "SHUTDOWN",
            Control::Takeover => "TAKEOVER",
            Control::WaitClose(_) => "WAIT_CLOSE",
            Control::Reload => "RELOAD",
            Control::Switchover { .. } => "SWITCHOVER",
            Control::Unfence { .. } => "UNFENCE",
            Control::Set { .. } => "SET",
        }
    }
}

/// Why a command was not understood (the message for the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

/// Parse one query string.
pub fn parse(query: &str) -> Result<Command, SyntaxError> {
    let bad = || SyntaxError(format!("invalid command '{query}', use SHOW HELP;"));
    let text = query.trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    let (word, rest) = split_word(text);
    let word = word.to_ascii_lowercase();
    if word == "set" {
        return parse_set(rest).ok_or_else(bad);
    }
    let args: Vec<&str> = rest.split_whitespace().collect();
    match (word.as_str(), args.as_slice()) {
        ("switchover", [db, to, host]) if to.eq_ignore_ascii_case("to") => {
            return Ok(Command::Control(Control::Switchover {
                database: unquote(db),
                to: unquote(host),
            }));
        }
        ("unfence", [db, host]) => {
            return Ok(Command::Control(Control::Unfence {
                database: unquote(db),
                host: unquote(host),
            }));
        }
        ("switchover" | "unfence", _) => return Err(bad()),
        _ => {}
    }
    if args.len() > 1 {
        return Err(bad());
    }
    let arg = args.first().map(|a| unquote(a));
    let need = |a: Option<String>| a.ok_or_else(bad);
    let none = |a: &Option<String>| if a.is_some() { Err(bad()) } else { Ok(()) };
    let control = match word.as_str() {
        "show" | "select" => {
            return Ok(Command::Show(need(arg)?.to_ascii_lowercase()));
        }
        "pause" => Control::Pause(arg),
        "resume" => Control::Resume(arg),
        "suspend" => none(&arg).map(|()| Control::Suspend)?,
        "disable" => Control::Disable(need(arg)?),
        "enable" => Control::Enable(need(arg)?),
        "reconnect" => Control::Reconnect(arg),
        "kill" => Control::Kill(arg),
        // The id is checked when run (PgBouncer's error for a bad one).
        "kill_client" => Control::KillClient(need(arg)?),
        "shutdown" => Control::Shutdown(match arg.map(|a| a.to_ascii_lowercase()).as_deref() {
            None => ShutdownMode::Immediate,
            Some("wait_for_servers") => ShutdownMode::WaitForServers,
            Some("wait_for_clients") => ShutdownMode::WaitForClients,
            Some(_) => return Err(bad()),
        }),
        "wait_close" => Control::WaitClose(arg),
        "takeover" => none(&arg).map(|()| Control::Takeover)?,
        "reload" => none(&arg).map(|()| Control::Reload)?,
        _ => return Err(bad()),
    };
    Ok(Command::Control(control))
}

/// The first whitespace-separated word and what follows it.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(|c: char| c.is_whitespace()) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `"name"` -> `name` (with `""` meaning `"`); anything else as is.
fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => s.to_string(),
    }
}

/// `key = value`, `key TO value`; value a word or a '...' string.
fn parse_set(rest: &str) -> Option<Command> {
    let (key, value) = match rest.find('=') {
        Some(i) => (rest[..i].trim(), rest[i + 1..].trim()),
        None => {
            let (key, after) = split_word(rest);
            let (to, value) = split_word(after);
            if !to.eq_ignore_ascii_case("to") {
                return None;
            }
            (key, value.trim())
        }
    };
    if key.is_empty() || key.contains(char::is_whitespace) || value.is_empty() {
        return None;
    }
    let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None if value.contains(char::is_whitespace) => return None,
        None => unquote(value),
    };
    Some(Command::Control(Control::Set {
        key: unquote(key).to_ascii_lowercase(),
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_is_case_insensitive_with_optional_semicolon() {
        for q in [
            "SHOW POOLS",
            "show pools;",
            "  Show Pools ;  ",
            "select pools",
        ] {
            assert_eq!(parse(q), Ok(Command::Show("pools".into())), "{q}");
        }
        assert_eq!(parse(" ; "), Ok(Command::Empty));
        assert!(parse("SHOW").is_err());
        assert!(parse("SHOW a b").is_err());
        assert!(parse("frobnicate").is_err());
    }

    #[test]
    fn every_control_command_is_recognised() {
        use Control::*;
        let cases = [
            ("PAUSE", Pause(None)),
            ("pause db1;", Pause(Some("db1".into()))),
            ("RESUME", Resume(None)),
            ("resume \"Db\"", Resume(Some("Db".into()))),
            ("SUSPEND", Suspend),
            ("DISABLE d", Disable("d".into())),
            ("ENABLE d", Enable("d".into())),
            ("RECONNECT", Reconnect(None)),
            ("KILL d", Kill(Some("d".into()))),
            ("KILL_CLIENT 42", KillClient("42".into())),
            ("SHUTDOWN", Shutdown(ShutdownMode::Immediate)),
            (
                "shutdown wait_for_servers",
                Shutdown(ShutdownMode::WaitForServers),
            ),
            (
                "SHUTDOWN WAIT_FOR_CLIENTS;",
                Shutdown(ShutdownMode::WaitForClients),
            ),
            ("WAIT_CLOSE", WaitClose(None)),
            ("RELOAD;", Reload),
            (
                "SWITCHOVER app TO 10.0.0.2:5433",
                Switchover {
                    database: "app".into(),
                    to: "10.0.0.2:5433".into(),
                },
            ),
            (
                "switchover \"App\" to db2;",
                Switchover {
                    database: "App".into(),
                    to: "db2".into(),
                },
            ),
            (
                "UNFENCE app db1",
                Unfence {
                    database: "app".into(),
                    host: "db1".into(),
                },
            ),
        ];
        for (q, want) in cases {
            assert_eq!(parse(q), Ok(Command::Control(want)), "{q}");
        }
        for bad in [
            "DISABLE",
            "KILL_CLIENT",
            "SHUTDOWN later",
            "RELOAD now",
            "SWITCHOVER app db2",
            "UNFENCE app",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_forms() {
        let set = |k: &str, v: &str| {
            Ok(Command::Control(Control::Set {
                key: k.into(),
                value: v.into(),
            }))
        };
        assert_eq!(
            parse("SET default_pool_size = 7"),
            set("default_pool_size", "7")
        );
        assert_eq!(parse("set Verbose to 2;"), set("verbose", "2"));
        assert_eq!(
            parse("SET server_reset_query = 'DISCARD ALL'"),
            set("server_reset_query", "DISCARD ALL")
        );
        assert!(parse("SET x").is_err());
        assert!(parse("SET x = a b").is_err());
    }
}
