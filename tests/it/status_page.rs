//! The live status page (`/status`, `/status.json` on metrics_listen_addr)
//! in headless Chromium: after traffic on two pools, held still (two
//! clients in a transaction holding both servers of one pool, a third
//! waiting, idle clients elsewhere), the page Chromium rendered shows the
//! figures SHOW POOLS gives before and after it was loaded, and histogram
//! counts equal SHOW STATS' totals; it has polled more than once (updated
//! without a reload). A screenshot is saved in the test's temp dir and, when
//! PGSLUICE_SCREENSHOT_DIR is set, there too.
//!
//! Chromium is Debian's `/usr/bin/chromium`; when it is missing the test
//! fails under CI=1 (scripts/test.sh) and is skipped with a note otherwise.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, fresh_dbs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::{Client, SimpleQueryMessage};

const ADMIN: &str = "status_admin";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The SHOW POOLS columns the page shows as plain counts.
const COUNTS: [&str; 6] = [
    "cl_active",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "sv_used",
    "sv_login",
];

/// Chromium, or None (with a note) when it is missing outside CI.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(CHROMIUM);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{CHROMIUM} not found and CI is set: install Debian's chromium package");
    }
    eprintln!("note: {CHROMIUM} not found, skipping this test (apt-get install chromium)");
    None
}

/// Run headless Chromium on `url` with a fresh profile in `dir`, letting
/// the page run for `budget_ms` of virtual time; its stdout.
async fn run_chromium(bin: &Path, dir: &Path, extra: &[String], url: &str) -> String {
    let profile = tempfile::Builder::new()
        .prefix("chromium-profile-")
        .tempdir_in(dir)
        .unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--virtual-time-budget=4000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium did not finish within 90 s")
        .expect("start chromium");
    assert!(
        out.status.success(),
        "chromium failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// `GET path` on the metrics listener: head and body.
async fn get(p: &TestPooler, path: &str) -> (String, String) {
    let addr = p.pooler().metrics_addr().expect("metrics endpoint");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.to_string(), body.to_string())
}

/// A console SHOW as rows of column -> value.
async fn show(c: &Client, sql: &str) -> Vec<HashMap<String, String>> {
    let mut cols = Vec::new();
    let mut rows = Vec::new();
    for m in c.simple_query(sql).await.unwrap() {
        match m {
            SimpleQueryMessage::RowDescription(d) => {
                cols = d.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => rows.push(
                cols.iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), r.get(i).unwrap_or("").to_string()))
                    .collect(),
            ),
            _ => {}
        }
    }
    rows
}

/// SHOW POOLS' counts per (database, user, role), the console's row apart.
type PoolCounts = Vec<((String, String, String), Vec<u64>)>;

async fn pool_counts(admin: &Client) -> PoolCounts {
    show(admin, "SHOW POOLS")
        .await
        .into_iter()
        .map(|r| {
            let key = (r["database"].clone(), r["user"].clone(), r["role"].clone());
            (key, COUNTS.iter().map(|c| r[*c].parse().unwrap()).collect())
        })
        .collect()
}

/// SHOW STATS totals summed over the databases, by column (the console's
/// own `pgbouncer` row apart: it counts the console's queries).
async fn stats_totals(admin: &Client) -> HashMap<String, u64> {
    let mut sum = HashMap::new();
    for row in show(admin, "SHOW STATS").await {
        if row["database"] == "pgbouncer" {
            continue;
        }
        for (k, v) in row {
            if let Ok(n) = v.parse::<u64>()
                && k.starts_with("total_")
            {
                *sum.entry(k).or_default() += n;
            }
        }
    }
    sum
}

/// The start tags and contents of every `<tag ...>...</tag>` of `dom`
/// (not nested in one another) whose start tag contains `marker`.
fn elements<'a>(dom: &'a str, tag: &str, marker: &str) -> Vec<(&'a str, &'a str)> {
    let (open, close) = (format!("<{tag} "), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        let from = &rest[i..];
        let head_end = from.find('>').expect("a closed start tag");
        let end = from.find(&close).expect("a closed element");
        let (head, inner) = (&from[..head_end], &from[head_end + 1..end]);
        if head.contains(marker) {
            out.push((head, inner));
        }
        rest = &from[end..];
    }
    out
}

/// An attribute's value in a start tag (entities decoded).
fn attr(head: &str, name: &str) -> Option<String> {
    let at = head.find(&format!(" {name}=\""))? + name.len() + 3;
    let value = &head[at..at + head[at..].find('"')?];
    Some(decode(value))
}

fn decode(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The text of the element of `html` whose start tag has `marker`, tags
/// inside removed.
fn text_at(html: &str, marker: &str) -> String {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in\n{html}"));
    let from = &html[at..];
    let start = from.find('>').unwrap() + 1;
    // The element ends at the first closing tag of a cell, bold text or a
    // division (the page nests no such element in another).
    let body = &from[start..];
    let end = ["</td>", "</b>", "</div>"]
        .iter()
        .filter_map(|c| body.find(c))
        .min()
        .unwrap();
    let mut text = String::new();
    let mut in_tag = false;
    for c in body[..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    decode(text.trim())
}

#[tokio::test]
async fn status_page_in_chromium_shows_show_pools_figures() {
    let Some(chromium) = chromium() else { return };
    bounded_for(Duration::from_secs(240), async {
        let pg = PgCluster::shared();
        let [busy_db, calm_db] = fresh_dbs(["status_busy", "status_calm"]).await;
        let p = PoolerBuilder::new()
            .trust(ADMIN)
            .set("admin_users", ADMIN)
            .set("metrics_listen_addr", "127.0.0.1:0")
            // Idle servers stay `idle`, not `used`, while the test runs.
            .set("server_check_delay", "600")
            .pg_database(pg, &busy_db, "pool_size=2")
            .pg_database(pg, &calm_db, "pool_size=3")
            .start()
            .await;

        // Traffic: queries of different lengths, transactions of several
        // queries, from a few clients at once.
        let mut work = Vec::new();
        for (i, db) in [&busy_db, &busy_db, &busy_db, &calm_db, &calm_db]
            .into_iter()
            .enumerate()
        {
            let c = p.connect(db, "postgres", "").await;
            work.push(tokio::spawn(async move {
                for n in 0..15 {
                    c.simple_query(&format!("SELECT pg_sleep({})", (n % 5) as f64 / 500.0))
                        .await
                        .unwrap();
                    if (n + i) % 3 == 0 {
                        c.batch_execute("BEGIN; SELECT 1; SELECT 2; COMMIT")
                            .await
                            .unwrap();
                    }
                }
                c
            }));
        }
        let mut idle = Vec::new();
        for w in work {
            idle.push(w.await.unwrap());
        }

        // Held still: both servers of busy_db in a transaction, a third
        // client waiting for one of them; calm_db's clients idle.
        let holders = [
            p.connect(&busy_db, "postgres", "").await,
            p.connect(&busy_db, "postgres", "").await,
        ];
        for h in &holders {
            h.simple_query("BEGIN").await.unwrap();
            h.simple_query("SELECT 1").await.unwrap();
        }
        let waiter = p.connect(&busy_db, "postgres", "").await;
        let waiting =
            tokio::spawn(async move { waiter.simple_query("SELECT 3").await.map(|_| ()) });
        let admin = p.connect("pgbouncer", ADMIN, "").await;
        // Links are counted just after their last answer: wait until the
        // figures stop moving and the third client is queued.
        let mut last = None;
        let mut settled = false;
        for _ in 0..100 {
            let now = (pool_counts(&admin).await, stats_totals(&admin).await);
            let waits = now.0.iter().any(|(k, v)| k.0 == busy_db && v[1] == 1);
            if waits && last.as_ref() == Some(&now) {
                settled = true;
                break;
            }
            last = Some(now);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(settled, "the pools never settled: {last:?}");
        let (pools_before, stats_before) = last.unwrap();

        // The JSON itself, as a client other than the page reads it.
        let (head, body) = get(&p, "/status.json").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).expect(&body);
        let json_pools = json["pools"].as_array().unwrap();
        let (head, _) = get(&p, "/status").await;
        assert!(head.contains("Content-Type: text/html"), "{head}");

        let dir = tempfile::Builder::new()
            .prefix("pgsluice-status-page-")
            .tempdir()
            .unwrap();
        let url = format!(
            "http://{}/status",
            p.pooler().metrics_addr().expect("metrics endpoint")
        );
        let dom = run_chromium(&chromium, dir.path(), &["--dump-dom".into()], &url).await;
        let shot = dir.path().join("status.png");
        let shot_arg = format!("--screenshot={}", shot.display());
        let window = "--window-size=1280,1500".to_string();
        run_chromium(&chromium, dir.path(), &[shot_arg, window], &url).await;

        let pools_after = pool_counts(&admin).await;
        let stats_after = stats_totals(&admin).await;
        assert_eq!(
            pools_before, pools_after,
            "SHOW POOLS moved during the test"
        );
        assert_eq!(
            stats_before, stats_after,
            "SHOW STATS moved during the test"
        );

        // The page polled and drew more than once, without errors.
        let (body_head, _) = elements(&dom, "body", "data-updates")[0];
        let updates: u32 = attr(body_head, "data-updates").unwrap().parse().unwrap();
        assert!(updates >= 2, "the page polled {updates} times:\n{dom}");
        assert_eq!(attr(body_head, "data-state").as_deref(), Some("ok"));

        // Pools: the page's rows are SHOW POOLS' rows (the console's
        // `pgbouncer` row is the page's console count).
        let rows = elements(&dom, "tr", "class=\"pool\"");
        let mut shown = Vec::new();
        for (head, inner) in &rows {
            let key = (
                attr(head, "data-database").unwrap(),
                attr(head, "data-user").unwrap(),
                attr(head, "data-role").unwrap(),
            );
            let counts: Vec<u64> = COUNTS
                .iter()
                .map(|c| {
                    text_at(inner, &format!("data-col=\"{c}\""))
                        .parse()
                        .unwrap()
                })
                .collect();
            assert_eq!(text_at(inner, "data-col=\"pool_mode\""), "transaction");
            shown.push((key, counts));
        }
        let console = pools_after
            .iter()
            .find(|(k, _)| k.0 == "pgbouncer")
            .map(|(_, v)| v[0])
            .unwrap();
        let expected: PoolCounts = pools_after
            .iter()
            .filter(|(k, _)| k.0 != "pgbouncer")
            .cloned()
            .collect();
        assert_eq!(shown, expected, "page rows vs SHOW POOLS");
        assert_eq!(json_pools.len(), expected.len());
        let busy = expected.iter().find(|(k, _)| k.0 == busy_db).unwrap();
        // cl_active 2 holders + 3 idle, 1 waiting, both servers active.
        assert_eq!(busy.1, vec![5, 1, 2, 0, 0, 0], "{busy:?}");
        assert_eq!(text_at(&dom, "id=\"console_clients\""), console.to_string());
        assert_eq!(console, 1);
        assert_eq!(text_at(&dom, "id=\"sum_waiting\""), "1");

        // Hosts: the cluster's one host, a primary, up.
        let hosts = elements(&dom, "tr", "class=\"host\"");
        let host = format!("127.0.0.1:{}", pg.port());
        let (_, inner) = hosts
            .iter()
            .find(|(h, _)| attr(h, "data-host").as_deref() == Some(&host))
            .unwrap_or_else(|| panic!("no host {host} in {hosts:?}"));
        assert_eq!(text_at(inner, "data-col=\"role\""), "primary");
        assert_eq!(text_at(inner, "data-col=\"state\""), "up");
        assert_eq!(text_at(inner, "data-col=\"lag_bytes\""), "–");

        // Histograms (all pools, since start): their counts are SHOW
        // STATS' totals, and the bars add up to them.
        for (name, total) in [
            ("transaction_duration_seconds", "total_xact_count"),
            ("query_duration_seconds", "total_query_count"),
            ("client_wait_seconds", "total_server_assignment_count"),
        ] {
            let marker = format!("data-histogram=\"{name}\"");
            let (_, figure) = elements(&dom, "figure", &marker)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("no chart {name}"));
            let count: u64 = text_at(figure, "data-stat=\"count\"").parse().unwrap();
            assert_eq!(count, stats_after[total], "{name} vs {total}");
            let bars = elements(figure, "rect", "class=\"bar\"");
            assert_eq!(bars.len(), 17, "{name}: one bar per bucket");
            let drawn: u64 = bars
                .iter()
                .map(|(h, _)| attr(h, "data-count").unwrap().parse::<u64>().unwrap())
                .sum();
            assert_eq!(drawn, count, "{name}: bars vs count");
        }
        assert!(stats_after["total_query_count"] >= 75);

        // The screenshot: a PNG of a drawn page.
        let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert!(
            png.len() > 20_000,
            "a near-empty screenshot: {} bytes",
            png.len()
        );
        if let Some(to) = std::env::var_os("PGSLUICE_SCREENSHOT_DIR") {
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(&shot, Path::new(&to).join("status.png")).unwrap();
        }

        for h in &holders {
            h.simple_query("COMMIT").await.unwrap();
        }
        waiting.await.unwrap().unwrap();
        drop(idle);
        p.shutdown().await;
    })
    .await
}
