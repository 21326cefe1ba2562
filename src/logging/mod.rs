//! Log setup: stderr (unless quiet) and the configured logfile, at a level
//! from -v/-q and the `verbose` setting (RUST_LOG overrides both), as text
//! or, with `log_format = json` (a pgsluice extension), one JSON object a
//! line for log shippers (tracing-subscriber's JSON formatter: `timestamp`,
//! `level`, `target`, `fields` with the message and the event's fields such
//! as `client`, `peer`, `user`, `database`).

pub(crate) mod text;

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};

/// How the lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable text (the default).
    Text,
    /// One JSON object a line.
    Json,
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// One output: text or JSON, filtered at `level` (RUST_LOG overrides).
fn layer<W>(format: Format, ansi: bool, writer: W, level: &str) -> BoxedLayer
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("pgsluice={level}")));
    match format {
        Format::Text => fmt::layer()
            .with_ansi(ansi)
            .event_format(text::Text { ansi })
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        Format::Json => fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    }
}

/// Install the global subscriber. `verbosity`: 0 = info, 1 = debug, 2+ = trace.
pub fn init(
    verbosity: u32,
    quiet: bool,
    logfile: Option<&Path>,
    format: Format,
) -> std::io::Result<()> {
    let level = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut layers: Vec<BoxedLayer> = Vec::new();
    if !quiet {
        // Colours only on a terminal: journald and log files get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        layers.push(layer(format, ansi, std::io::stderr, level));
    }
    if let Some(path) = logfile {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot open logfile {}: {e}", path.display()),
                )
            })?;
        layers.push(layer(format, false, Mutex::new(f), level));
    }
    tracing_subscriber::registry().with(layers).init();
    Ok(())
}
