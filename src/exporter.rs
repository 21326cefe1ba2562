//! The Prometheus endpoint (`metrics_listen_addr`, a pgsluice extension):
//! `GET /metrics` answers the text format with figures computed at scrape
//! time (`collect.rs`); nothing on the relay's hot path records anything
//! for it. The same listener answers the health probes `/healthz` and
//! `/readyz` (`health.rs`).
//!
//! Why a tiny HTTP/1 responder here instead of metrics-exporter-prometheus'
//! listener: that listener (its `http-listener` feature) brings hyper,
//! hyper-util with HTTP/2 and its own recorder state, while every figure
//! here already lives in the pools and their statistics and is read when
//! scraped. The crate's recorder also keeps counters as `u64`, and the
//! `_seconds_total` counters are fractional. A scrape is one request on a
//! short connection; the responder reads the request head (at most 8 KiB,
//! within 10 s), answers and closes.

mod collect;
mod health;
mod hosts;
mod status;
pub(crate) mod text;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

pub(crate) use collect::render;

use crate::context::Context;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve scrapes until the task is aborted (at shutdown).
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &ctx).await {
                        debug!(%peer, "metrics request: {e}");
                    }
                });
            }
            Err(e) => {
                debug!("metrics accept failed: {e}");
                crate::runtime::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Read one request and answer it.
async fn answer(mut stream: TcpStream, ctx: &Context) -> std::io::Result<()> {
    let head = match crate::runtime::timer::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let (status, body) = match request_line(&head) {
        ("GET" | "HEAD", "/readyz") => health::readyz(ctx).await,
        _ => respond(&head, ctx),
    };
    let (method, _) = request_line(&head);
    let content_type = match (status, request_line(&head).1) {
        (200, "/metrics") => text::CONTENT_TYPE,
        (200, "/status") => status::HTML_TYPE,
        (200, "/status.json") => status::JSON_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

/// Bytes up to the end of the request head (or what came before EOF or
/// the size limit).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Method and path (without a query string) of the request line.
fn request_line(head: &str) -> (&str, &str) {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let method = words.next().unwrap_or("");
    let target = words.next().unwrap_or("");
    (method, target.split('?').next().unwrap_or(""))
}

/// Status and body for a request head.
fn respond(head: &str, ctx: &Context) -> (u16, String) {
    match request_line(head) {
        ("GET" | "HEAD", "/metrics") => (200, render(ctx)),
        ("GET" | "HEAD", "/healthz") => health::healthz(),
        ("GET" | "HEAD", "/status") => status::page(),
        ("GET" | "HEAD", "/status.json") => status::json(ctx),
        ("GET" | "HEAD", _) => (
            404,
            "not found; metrics are at /metrics, health at /healthz and /readyz, status at /status\n".into(),
        ),
        ("", _) => (400, "bad request\n".into()),
        _ => (405, "only GET and HEAD\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::request_line;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_line("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            ("GET", "/metrics")
        );
        assert_eq!(request_line("HEAD / HTTP/1.0\r\n\r\n"), ("HEAD", "/"));
        assert_eq!(request_line(""), ("", ""));
    }
}
