//! The client's startup parameters: which are tracked (and so re-applied
//! on every server the client uses), which are ignored, which are refused;
//! the `options` parameter (`-c name=value`, `--name=value`);
//! application_name_add_host; and the parameter set a client starts its
//! session with.
//!
//! As in PgBouncer, a parameter that is neither tracked nor listed in
//! ignore_startup_parameters is refused (08P01): passing it to one server
//! would not make it hold on the others the client meets in transaction
//! mode. extra_float_digits, which JDBC always sends, is tracked (see
//! `server::params::DRIVER_TRACKED`), so it needs no configuration.

use std::sync::OnceLock;

use crate::config::{Config, General};
use crate::protocol::{Replication, Startup, sqlstate};
use crate::server::params::{Params, datestyle_in_full, tracked_name};
use crate::transport::Stream;

use super::SessionEnd;

/// Check startup parameters: tracked ones are kept, ignored ones dropped,
/// anything else refused (as PgBouncer does). `stream` is the client's
/// socket, for application_name_add_host.
///
/// Precedence follows PostgreSQL: what `options` sets is applied first and
/// a parameter given on its own in the startup packet overrides it.
///
/// A replication connection (`replication`) gets a server of its own for
/// its whole life, so its `options` are not checked: they go to that
/// server as they are (as in PgBouncer; CREATE SUBSCRIPTION sends
/// `-c extra_float_digits=3` and others there).
pub(super) fn startup_params(
    startup: &Startup,
    cfg: &Config,
    stream: &Stream,
    replication: Replication,
) -> Result<Params, SessionEnd> {
    let g = &cfg.general;
    let mut wanted = Params::new();
    for (name, value) in startup.params() {
        if name == "options" && replication == Replication::None {
            parse_options(value, g, &mut wanted)?;
        }
    }
    for (name, value) in startup.params() {
        if matches!(name, "user" | "database" | "options" | "replication") {
            continue;
        }
        if let Some(canonical) = kept_name(g, name) {
            wanted.set(canonical, value);
        } else if !ignored(g, name) {
            return Err(SessionEnd::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("unsupported startup parameter: {name}"),
            ));
        }
    }
    if g.application_name_add_host {
        // PgBouncer's format: "<name> - <address>", "app" when the client
        // gave no name. Unlike PgBouncer (which then drops a name given in
        // `options`), the host is added to whichever name the client gave.
        let name = wanted.get("application_name").unwrap_or("app");
        let with_host = format!("{name} - {}", client_address(stream, g.listen_port));
        wanted.set("application_name", &with_host);
    }
    Ok(wanted)
}

/// The tracked name of a startup parameter the client's value is kept
/// for. A name pgsluice tracks beyond PgBouncer (extra_float_digits, which
/// PgBouncer refuses) is dropped when ignore_startup_parameters lists it,
/// as PgBouncer drops it: a configuration written for PgBouncer keeps its
/// meaning (the server's default applies).
fn kept_name<'a>(g: &'a General, name: &str) -> Option<&'a str> {
    let canonical = tracked_name(name, &g.track_extra_parameters)?;
    let beyond = crate::server::params::DRIVER_TRACKED.contains(&canonical)
        && !g
            .track_extra_parameters
            .iter()
            .any(|t| t.eq_ignore_ascii_case(canonical));
    (!(beyond && ignored(g, name))).then_some(canonical)
}

/// Whether ignore_startup_parameters lists `name`.
fn ignored(g: &General, name: &str) -> bool {
    g.ignore_startup_parameters
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
}

/// The `options` startup parameter, as PostgreSQL splits it: arguments
/// separated by whitespace, a backslash escaping the next character (libpq
/// escapes spaces in values that way). Only `-c name=value` (also
/// `-cname=value`) and `--name=value` are accepted; a `-` in a name means
/// `_`, as in PostgreSQL. Tracked names become the client's wanted values;
/// others are refused unless ignore_startup_parameters lists them or
/// `options` itself (PgBouncer's rule, kept for old configurations).
fn parse_options(options: &str, g: &General, wanted: &mut Params) -> Result<(), SessionEnd> {
    let mut rest = options;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if rest.is_empty() {
            return Ok(());
        }
        rest = if let Some(r) = rest.strip_prefix("-c") {
            r.trim_start_matches(|c: char| c.is_ascii_whitespace())
        } else if let Some(r) = rest.strip_prefix("--") {
            r
        } else {
            return Err(bad_options());
        };
        let (arg, r) = escaped_token(rest);
        rest = r;
        let Some((name, value)) = arg.split_once('=') else {
            return Err(bad_options());
        };
        let name = name.replace('-', "_");
        if let Some(canonical) = kept_name(g, &name) {
            wanted.set(canonical, value);
        } else if !ignored(g, &name) && !ignored(g, "options") {
            return Err(SessionEnd::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("unsupported startup parameter in options: {name}"),
            ));
        }
    }
}

fn bad_options() -> SessionEnd {
    SessionEnd::fatal(
        sqlstate::PROTOCOL_VIOLATION,
        "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed",
    )
}

/// One argument of `options` up to unescaped whitespace, unescaped; and
/// the rest of the string.
fn escaped_token(s: &str) -> (String, &str) {
    let mut arg = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => arg.push(escaped),
                None => break,
            },
            c if c.is_ascii_whitespace() => return (arg, &s[i..]),
            c => arg.push(c),
        }
    }
    (arg, "")
}

/// What the startup packet's `replication` parameter asks for (an
/// ordinary session without one); a bad value is refused with
/// PostgreSQL's error.
pub(super) fn replication(startup: &Startup) -> Result<Replication, SessionEnd> {
    match startup.param("replication") {
        None => Ok(Replication::None),
        Some(value) => {
            Replication::parse(value).map_err(|(code, message)| SessionEnd::fatal(code, message))
        }
    }
}

/// The client's address as PgBouncer writes it for
/// application_name_add_host: `1.2.3.4:5678`, `[::1]:5678`; for a Unix
/// socket `unix(<pid>@<hostname>):<port>` when the peer's pid is known,
/// else `unix:<port>` (the port of the socket's name, `.s.PGSQL.<port>`).
fn client_address(stream: &Stream, listen_port: u16) -> String {
    if let Some(unix) = stream.unix_peer() {
        let port = unix
            .local_path
            .as_deref()
            .and_then(|p| {
                p.file_name()?
                    .to_str()?
                    .strip_prefix(".s.PGSQL.")?
                    .parse()
                    .ok()
            })
            .unwrap_or(listen_port);
        return match unix.pid {
            Some(pid) => format!("unix({pid}@{}):{port}", hostname()),
            None => format!("unix:{port}"),
        };
    }
    // SocketAddr prints IPv6 in brackets, as PgBouncer does.
    stream
        .tcp_peer_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

/// This machine's name (read once).
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

/// The client's wanted tracked parameters: the server defaults from the
/// pool's login answers, overridden by what the client asked for. A
/// tracked name missing from the login answers is one PostgreSQL does not
/// report (extra_float_digits, for one); it is kept as unreported. A
/// partial DateStyle (JDBC sends `ISO`) is completed from the server's
/// default, as PostgreSQL does for a startup value.
pub(super) fn client_params(
    welcome: &[(String, String)],
    wanted: &Params,
    extra: &[String],
) -> Params {
    // Tracked parameters: PgBouncer's five, track_extra_parameters, and
    // what the client asked for.
    let asked = wanted.iter().count();
    let mut params = Params::with_capacity(5 + extra.len() + asked, asked);
    for (name, value) in welcome {
        if tracked_name(name, extra).is_some() {
            params.set(name, value);
        }
    }
    for (name, value) in wanted.iter() {
        if let Some((_, default)) = welcome.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            let full = name
                .eq_ignore_ascii_case("DateStyle")
                .then(|| datestyle_in_full(value, default))
                .flatten();
            params.set(name, full.as_deref().unwrap_or(value));
        } else {
            params.set_unreported(name, value);
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general(ignore: &[&str]) -> General {
        let mut g = General::defaults();
        g.ignore_startup_parameters = ignore.iter().map(|s| s.to_string()).collect();
        g
    }

    fn parse(options: &str, ignore: &[&str]) -> Result<Vec<(String, String)>, String> {
        let mut p = Params::new();
        parse_options(options, &general(ignore), &mut p).map_err(|e| e.to_string())?;
        Ok(p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_forms() {
        assert_eq!(
            parse(
                " -c timezone=Asia/Tokyo  --application-name=a\\ b\\\\c -cDateStyle=ISO ",
                &[]
            ),
            Ok(pairs(&[
                ("TimeZone", "Asia/Tokyo"),
                ("application_name", "a b\\c"),
                ("DateStyle", "ISO"),
            ]))
        );
        assert_eq!(parse("   ", &[]), Ok(vec![]));
        assert_eq!(
            parse("-c extra_float_digits=3", &[]),
            Ok(pairs(&[("extra_float_digits", "3")]))
        );
    }

    #[test]
    fn options_refusals_and_ignores() {
        let e = parse("-c work_mem=64MB", &[]).unwrap_err();
        assert!(e.contains("in options: work_mem"), "{e}");
        assert_eq!(parse("-c work_mem=64MB", &["work_mem"]), Ok(vec![]));
        assert_eq!(
            parse("-c work_mem=64MB -c TimeZone=UTC", &["options"]),
            Ok(pairs(&[("TimeZone", "UTC")]))
        );
        for bad in ["-d 5", "-c", "-c timezone", "--x"] {
            let e = parse(bad, &["options"]).unwrap_err();
            assert!(
                e.contains("only '-c config=val' and '--config=val' are allowed"),
                "{bad}: {e}"
            );
        }
    }

    /// extra_float_digits (tracked by pgsluice, refused by PgBouncer) is
    /// dropped when ignore_startup_parameters lists it, as PgBouncer drops
    /// it; tracking it by name in track_extra_parameters keeps it.
    #[test]
    fn an_ignored_driver_parameter_is_dropped_as_pgbouncer_does() {
        assert_eq!(
            parse(
                "-c extra_float_digits=2 -c TimeZone=UTC",
                &["extra_float_digits"]
            ),
            Ok(pairs(&[("TimeZone", "UTC")]))
        );
        let mut g = general(&["extra_float_digits"]);
        g.track_extra_parameters = vec!["extra_float_digits".into()];
        let mut p = Params::new();
        parse_options("-c extra_float_digits=2", &g, &mut p).unwrap();
        assert_eq!(p.get("extra_float_digits"), Some("2"));
        // Always-tracked names are kept whatever the list says.
        assert_eq!(
            parse("-c TimeZone=UTC", &["timezone"]),
            Ok(pairs(&[("TimeZone", "UTC")]))
        );
    }

    #[test]
    fn unreported_names_are_kept_apart() {
        let welcome = vec![
            ("TimeZone".to_string(), "UTC".to_string()),
            ("server_version".to_string(), "17".to_string()),
        ];
        let mut wanted = Params::new();
        wanted.set("TimeZone", "Asia/Tokyo");
        wanted.set("extra_float_digits", "3");
        let p = client_params(&welcome, &wanted, &[]);
        assert_eq!(p.get("TimeZone"), Some("Asia/Tokyo"));
        assert_eq!(p.get("server_version"), None);
        let mut server = Params::new();
        server.set("TimeZone", "Asia/Tokyo");
        assert_eq!(
            p.sync_query(&server).as_deref(),
            Some("SET \"extra_float_digits\" = '3';")
        );
    }
}
