//! The Grafana dashboard (deploy/grafana/pgsluice-dashboard.json) asks only
//! for metrics pgsluice serves: every PromQL expression of its panels and
//! variables is read, the series it selects are taken out (metric names
//! and the labels they are matched or grouped on), and each is looked up in
//! a real scrape of /metrics after traffic, a refused login, a
//! transaction and a query on a database that splits reads from writes.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::{PgCluster, PoolerBuilder, TestPooler, bounded_for, fresh_dbs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/pgsluice-dashboard.json"
);

/// Labels Prometheus adds at scrape time (absent from /metrics).
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Families whose samples exist only with a standby (not set up here):
/// they must still be declared (`# TYPE`).
const DECLARED_ONLY: [&str; 2] = ["pgsluice_host_lag_bytes", "pgsluice_host_lag_seconds"];

/// One series selector of an expression: a metric name and the labels the
/// expression matches it on (`{label=...}`) or groups its aggregation by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    metric: String,
    labels: Vec<String>,
}

/// PromQL words that are not metric names when not followed by `(`.
const KEYWORDS: [&str; 15] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
    "start",
];

/// Aggregation operators: `sum by (l) (x)` and `sum (x) by (l)` alike.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Words followed by a parenthesised list of label names.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The series selectors of a PromQL expression (Grafana's `$variables`
/// and `[$__rate_interval]` allowed), and the label names of its
/// `by (...)`/`without (...)`/`on (...)` lists. Errors on what it cannot
/// read (an unclosed string, brace or bracket).
fn selectors(expr: &str) -> Result<(Vec<Selector>, Vec<String>), String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<Selector> = Vec::new();
    let mut grouping = Vec::new();
    let mut i = 0;
    // Whether the last thing read was a metric name (a `{` then belongs to it).
    let mut after_metric = false;
    let skip_ws = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let ident_at = |mut i: usize| {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        (chars[start..i].iter().collect::<String>(), i)
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' && c != '`' { 2 } else { 1 };
                }
                if i >= chars.len() {
                    return Err(format!("unclosed string in {expr}"));
                }
                i += 1;
                after_metric = false;
            }
            '{' => {
                // Label names: identifiers before a matcher operator, the
                // values (strings, which may hold `}`) skipped.
                let mut j = i + 1;
                let mut labels = Vec::new();
                loop {
                    let Some(&ch) = chars.get(j) else {
                        return Err(format!("unclosed {{ in {expr}"));
                    };
                    if ch == '}' {
                        break;
                    } else if ch == '"' || ch == '\'' || ch == '`' {
                        j += 1;
                        while j < chars.len() && chars[j] != ch {
                            j += if chars[j] == '\\' && ch != '`' { 2 } else { 1 };
                        }
                        j += 1;
                    } else if is_ident_start(ch) {
                        let (name, end) = ident_at(j);
                        let k = skip_ws(end);
                        if k < chars.len() && matches!(chars[k], '=' | '!') {
                            labels.push(name);
                        } else {
                            return Err(format!("label {name} without a matcher in {expr}"));
                        }
                        j = end;
                    } else {
                        j += 1;
                    }
                }
                let close = j;
                match out.last_mut() {
                    Some(s) if after_metric => s.labels.extend(labels),
                    _ => return Err(format!("a selector without a metric name in {expr}")),
                }
                i = close + 1;
                after_metric = false;
            }
            '[' => {
                i = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or(format!("unclosed [ in {expr}"))?
                    + i
                    + 1;
                after_metric = false;
            }
            '$' => {
                // A Grafana variable: $name or ${name}.
                i += 1;
                if i < chars.len() && chars[i] == '{' {
                    i = chars[i..]
                        .iter()
                        .position(|&c| c == '}')
                        .ok_or(format!("unclosed ${{ in {expr}"))?
                        + i
                        + 1;
                } else {
                    i = ident_at(i).1;
                }
                after_metric = false;
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                // A number (or a duration after `offset`).
                while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
                after_metric = false;
            }
            c if is_ident_start(c) => {
                let (word, end) = ident_at(i);
                let next = skip_ws(end);
                let call = next < chars.len() && chars[next] == '(';
                if LABEL_LISTS.contains(&word.as_str()) {
                    if call {
                        let close = chars[next..]
                            .iter()
                            .position(|&c| c == ')')
                            .ok_or(format!("unclosed label list in {expr}"))?
                            + next;
                        let list: String = chars[next + 1..close].iter().collect();
                        grouping.extend(
                            list.split(',')
                                .map(|l| l.trim().to_string())
                                .filter(|l| !l.is_empty()),
                        );
                        i = close + 1;
                    } else {
                        i = end;
                    }
                    after_metric = false;
                } else if call
                    || KEYWORDS.contains(&word.as_str())
                    || AGGREGATIONS.contains(&word.as_str())
                {
                    i = end;
                    after_metric = false;
                } else {
                    out.push(Selector {
                        metric: word,
                        labels: Vec::new(),
                    });
                    i = end;
                    after_metric = true;
                }
            }
            _ => {
                i += 1;
                after_metric = false;
            }
        }
    }
    Ok((out, grouping))
}

/// A Grafana variable query: `label_values(selector, label)` or PromQL.
fn variable_selectors(query: &str) -> Result<(Vec<Selector>, Vec<String>), String> {
    let q = query.trim();
    match q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(args) => {
            let (series, label) = args
                .rsplit_once(',')
                .ok_or(format!("label_values without a label: {q}"))?;
            let (sel, _) = selectors(series)?;
            Ok((sel, vec![label.trim().to_string()]))
        }
        None => selectors(q),
    }
}

/// Every PromQL text of the dashboard with where it is: panel targets'
/// `expr` (rows' nested panels too) and query variables.
fn expressions(dashboard: &serde_json::Value) -> Vec<(String, String, bool)> {
    fn panels(list: &serde_json::Value, out: &mut Vec<(String, String, bool)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title}: a target without expr"));
                out.push((format!("panel {title:?}"), expr.to_string(), false));
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?");
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}: no query"));
        out.push((format!("variable ${name}"), q.to_string(), true));
    }
    out
}

/// A scrape read into families: sample name -> label names seen on it,
/// and the names `# TYPE` declares (histograms with their suffixes).
struct Scrape {
    samples: BTreeMap<String, BTreeSet<String>>,
    declared: BTreeSet<String>,
}

impl Scrape {
    fn parse(page: &str) -> Scrape {
        let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut declared = BTreeSet::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                declared.insert(name.to_string());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        declared.insert(format!("{name}{suffix}"));
                    }
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, _value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let entry = samples.entry(name.to_string()).or_default();
            // Label values are quoted and may hold commas: take the names,
            // the text before each `="` that follows the start or `",`.
            let mut rest = labels.trim_end_matches('}');
            while let Some((key, after)) = rest.split_once("=\"") {
                entry.insert(key.trim_start_matches(',').to_string());
                let mut end = 0;
                let b = after.as_bytes();
                while end < b.len() && b[end] != b'"' {
                    end += if b[end] == b'\\' { 2 } else { 1 };
                }
                rest = &after[(end + 1).min(after.len())..];
            }
        }
        Scrape { samples, declared }
    }

    /// What is wrong with a selector against this scrape, if anything.
    fn check(&self, s: &Selector) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.declared.contains(&s.metric) {
            problems.push(format!("{} is not served", s.metric));
            return problems;
        }
        let Some(labels) = self.samples.get(&s.metric) else {
            if !DECLARED_ONLY.contains(&s.metric.as_str()) {
                problems.push(format!("{} has no sample", s.metric));
            }
            return problems;
        };
        for l in &s.labels {
            if !labels.contains(l) && !TARGET_LABELS.contains(&l.as_str()) {
                problems.push(format!("{} has no label {l}", s.metric));
            }
        }
        problems
    }
}

/// Check every expression of `dashboard` against `scrape`: the problems
/// found, and the metric names used.
fn check_dashboard(
    dashboard: &serde_json::Value,
    scrape: &Scrape,
) -> (Vec<String>, BTreeSet<String>) {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr, variable) in expressions(dashboard) {
        let parsed = if variable {
            variable_selectors(&expr)
        } else {
            selectors(&expr)
        };
        let (sels, grouping) = match parsed {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("{place}: {e}"));
                continue;
            }
        };
        if sels.is_empty() {
            problems.push(format!("{place}: no metric in {expr}"));
        }
        for s in &sels {
            used.insert(s.metric.clone());
            for p in scrape.check(s) {
                problems.push(format!("{place}: {p} ({expr})"));
            }
        }
        // A grouping label must be on one of the expression's metrics.
        for g in &grouping {
            let on_some = sels.iter().any(|s| {
                scrape.samples.get(&s.metric).is_some_and(|l| l.contains(g))
                    || DECLARED_ONLY.contains(&s.metric.as_str())
            });
            if g != "le" && !on_some && !TARGET_LABELS.contains(&g.as_str()) {
                problems.push(format!("{place}: no metric has the label {g} ({expr})"));
            }
        }
    }
    (problems, used)
}

/// `GET /metrics`.
async fn scrape(p: &TestPooler) -> String {
    let addr = p.pooler().metrics_addr().expect("metrics endpoint");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[test]
fn the_expression_reader_finds_metrics_and_labels() {
    let (s, g) = selectors(
        "histogram_quantile(0.99, sum by (le) (rate(pgsluice_query_duration_seconds_bucket\
         {instance=~\"$instance\", database=~\"a,b}\"}[$__rate_interval])))",
    )
    .unwrap();
    assert_eq!(
        s,
        vec![Selector {
            metric: "pgsluice_query_duration_seconds_bucket".into(),
            labels: vec!["instance".into(), "database".into()],
        }]
    );
    assert_eq!(g, vec!["le".to_string()]);
    let (s, g) = selectors(
        "sum(rate(a_total[5m] offset 1h)) / on (database) group_left sum without (user) (b) > 0.5 and bool c",
    )
    .unwrap();
    let names: Vec<&str> = s.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(names, ["a_total", "b", "c"]);
    assert_eq!(g, ["database", "user"]);
    let (s, g) =
        variable_selectors("label_values(pgsluice_clients{instance=~\"$i\"}, database)").unwrap();
    assert_eq!(
        (s[0].metric.as_str(), s[0].labels.clone()),
        ("pgsluice_clients", vec!["instance".to_string()])
    );
    assert_eq!(g, ["database"]);
    assert!(selectors("sum(x{a=\"b})").is_err());
    assert!(selectors("{job=\"x\"}").is_err());

    // The check reports what a scrape lacks.
    let scrape = Scrape::parse(
        "# TYPE m_total counter\nm_total{database=\"d,\\\"e\",user=\"u\"} 1\n\
         # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\n# TYPE pgsluice_host_lag_bytes gauge\n",
    );
    let dash = serde_json::json!({"panels": [{"title": "t", "targets": [
        {"expr": "sum by (database) (rate(m_total{user=\"x\", instance=\"i\"}[1m]))"},
        {"expr": "histogram_quantile(0.5, sum by (le) (rate(h_bucket[1m])))"},
        {"expr": "pgsluice_host_lag_bytes"},
        {"expr": "h_count + missing_total{database=\"d\"} + m_total{state=\"s\"}"},
        {"expr": "sum by (reason) (m_total)"},
    ]}]});
    let (problems, used) = check_dashboard(&dash, &scrape);
    assert_eq!(
        problems
            .iter()
            .map(|p| p.split(" (").next().unwrap())
            .collect::<Vec<_>>(),
        [
            "panel \"t\": h_count has no sample",
            "panel \"t\": missing_total is not served",
            "panel \"t\": m_total has no label state",
            "panel \"t\": no metric has the label reason",
        ],
        "{problems:#?}"
    );
    assert_eq!(used.len(), 5, "{used:?}");
}

#[tokio::test]
async fn every_dashboard_metric_is_served() {
    bounded_for(Duration::from_secs(120), async {
        let text = std::fs::read_to_string(DASHBOARD).expect("the dashboard file");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        let [db] = fresh_dbs(["grafana"]).await;
        let pg = PgCluster::shared();
        let p = PoolerBuilder::new()
            .set("metrics_listen_addr", "127.0.0.1:0")
            .set("auth_type", "md5")
            .set("host_check_period", "0.2")
            .auth_user("dash_user", "right")
            .pg_database(pg, &db, "user=postgres pool_size=2")
            // Read/write splitting (with no standby: reads go to the
            // primary) for the routing and rotation families.
            .database(
                "dash_split",
                &format!(
                    "host=127.0.0.1 port={} dbname={db} user=postgres read_write_split=1",
                    pg.port()
                ),
            )
            .start()
            .await;
        // A refused login (login failures, client errors), queries and a
        // transaction (counters and histograms).
        assert!(p.try_connect(&db, "dash_user", "wrong").await.is_err());
        let c = p.connect(&db, "dash_user", "right").await;
        for _ in 0..5 {
            assert_eq!(support::value(&c, "SELECT 1").await, "1");
        }
        c.batch_execute("BEGIN; SELECT pg_sleep(0.01); COMMIT")
            .await
            .unwrap();
        let split = p.connect("dash_split", "dash_user", "right").await;
        assert_eq!(support::value(&split, "SELECT 2").await, "2");
        let page = support::poll(50, Duration::from_millis(100), || async {
            let page = scrape(&p).await;
            let counted = |prefix: &str| {
                page.lines()
                    .any(|l| l.starts_with(prefix) && !l.ends_with(" 0"))
            };
            (counted("pgsluice_transactions_total{")
                && counted("pgsluice_routed_transactions_total{")
                && page.contains("\npgsluice_read_rotation_standbys{"))
            .then_some(page)
        })
        .await
        .expect("no transaction counted, or no routing figures");
        let scrape = Scrape::parse(&page);
        let (problems, used) = check_dashboard(&dashboard, &scrape);
        assert!(problems.is_empty(), "{problems:#?}");
        // The dashboard covers every area the brief names.
        for m in [
            "pgsluice_clients",
            "pgsluice_servers",
            "pgsluice_pool_size",
            "pgsluice_transactions_total",
            "pgsluice_queries_total",
            "pgsluice_query_duration_seconds_bucket",
            "pgsluice_transaction_duration_seconds_bucket",
            "pgsluice_client_wait_seconds_bucket",
            "pgsluice_host_up",
            "pgsluice_host_primary",
            "pgsluice_host_lag_bytes",
        ] {
            assert!(used.contains(m), "the dashboard does not use {m}");
        }
        // Families declared only are empty here, not misspelt.
        for m in DECLARED_ONLY {
            assert!(
                scrape.declared.contains(m) && !scrape.samples.contains_key(m),
                "{m}"
            );
        }
        drop((c, split));
        p.shutdown().await;
    })
    .await
}
