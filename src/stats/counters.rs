//! The counter table: every statistic PgBouncer keeps per database,
//! defined once, with everything each reader needs: its SHOW STATS,
//! STATS_TOTALS and STATS_AVERAGES column names, how its average is
//! taken, its Prometheus metric, and its place in the log_stats line.
//! SHOW STATS and friends (`admin`), the metrics page (`exporter`) and
//! the log line ([`log_line`]) are all produced from [`COUNTERS`].

use super::{FIELDS, Totals};

/// How a counter's average (SHOW STATS avg_*) is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Average {
    /// Per second over the averaging window.
    Rate,
    /// Per unit of another counter (its index): a time per transaction,
    /// per query, per assignment.
    Per(usize),
}

/// What a counter's value is, for the metrics page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A count (or bytes): shown as it is.
    Count,
    /// Microseconds: shown in seconds (Prometheus' base unit).
    Micros,
}

/// One statistic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counter {
    /// SHOW STATS_TOTALS / STATS_AVERAGES column (PgBouncer's name).
    pub column: &'static str,
    /// SHOW STATS / SHOW TOTALS name of the total.
    pub total: &'static str,
    /// SHOW STATS / SHOW TOTALS name of the average.
    pub avg: &'static str,
    /// How the average is taken.
    pub average: Average,
    /// Metric name after `pgsluice_`.
    pub metric: &'static str,
    /// Metric help text.
    pub help: &'static str,
    /// What the value is.
    pub unit: Unit,
    /// Place in the log_stats line, and the words before and after the
    /// average there (PgBouncer's wording); None when the line omits it.
    pub log: Option<(u8, &'static str, &'static str)>,
}

/// Index of server_assignment_count.
pub(crate) const ASSIGNMENTS: usize = 0;
/// Index of xact_count.
pub(crate) const XACTS: usize = 1;
/// Index of query_count.
pub(crate) const QUERIES: usize = 2;
/// Index of xact_time.
pub(crate) const XACT_TIME: usize = 5;
/// Index of query_time.
pub(crate) const QUERY_TIME: usize = 6;
/// Index of wait_time.
pub(crate) const WAIT_TIME: usize = 7;

/// Every statistic, in PgBouncer's column order ([`Totals::to_array`]).
pub(crate) const COUNTERS: [Counter; FIELDS] = [
    Counter {
        column: "server_assignment_count",
        total: "total_server_assignment_count",
        avg: "avg_server_assignment_count",
        average: Average::Rate,
        metric: "server_assignments_total",
        help: "Times a server was assigned to a client (SHOW STATS total_server_assignment_count).",
        unit: Unit::Count,
        log: None,
    },
    Counter {
        column: "xact_count",
        total: "total_xact_count",
        avg: "avg_xact_count",
        average: Average::Rate,
        metric: "transactions_total",
        help: "Transactions pooled (total_xact_count).",
        unit: Unit::Count,
        log: Some((0, "", " xacts/s")),
    },
    Counter {
        column: "query_count",
        total: "total_query_count",
        avg: "avg_query_count",
        average: Average::Rate,
        metric: "queries_total",
        help: "Queries pooled (total_query_count).",
        unit: Unit::Count,
        log: Some((1, "", " queries/s")),
    },
    Counter {
        column: "bytes_received",
        total: "total_received",
        avg: "avg_recv",
        average: Average::Rate,
        metric: "received_bytes_total",
        help: "Bytes received from clients (total_received).",
        unit: Unit::Count,
        log: Some((5, "in ", " B/s")),
    },
    Counter {
        column: "bytes_sent",
        total: "total_sent",
        avg: "avg_sent",
        average: Average::Rate,
        metric: "sent_bytes_total",
        help: "Bytes sent to clients (total_sent).",
        unit: Unit::Count,
        log: Some((6, "out ", " B/s")),
    },
    Counter {
        column: "xact_time",
        total: "total_xact_time",
        avg: "avg_xact_time",
        average: Average::Per(XACTS),
        metric: "transaction_seconds_total",
        help: "Time spent in transactions with a server assigned (total_xact_time).",
        unit: Unit::Micros,
        log: Some((7, "xact ", " us")),
    },
    Counter {
        column: "query_time",
        total: "total_query_time",
        avg: "avg_query_time",
        average: Average::Per(QUERIES),
        metric: "query_seconds_total",
        help: "Time spent in queries with a server assigned (total_query_time).",
        unit: Unit::Micros,
        log: Some((8, "query ", " us")),
    },
    Counter {
        column: "wait_time",
        total: "total_wait_time",
        avg: "avg_wait_time",
        average: Average::Per(ASSIGNMENTS),
        metric: "client_wait_seconds_total",
        help: "Time clients waited for a server (total_wait_time).",
        unit: Unit::Micros,
        log: Some((9, "wait ", " us")),
    },
    Counter {
        column: "client_parse_count",
        total: "total_client_parse_count",
        avg: "avg_client_parse_count",
        average: Average::Rate,
        metric: "client_parses_total",
        help: "Parse messages of named statements from tracked clients (total_client_parse_count; max_prepared_statements).",
        unit: Unit::Count,
        log: Some((2, "", " client parses/s")),
    },
    Counter {
        column: "server_parse_count",
        total: "total_server_parse_count",
        avg: "avg_server_parse_count",
        average: Average::Rate,
        metric: "server_parses_total",
        help: "Parse messages of named statements sent to servers for tracked clients (total_server_parse_count).",
        unit: Unit::Count,
        log: Some((3, "", " server parses/s")),
    },
    Counter {
        column: "bind_count",
        total: "total_bind_count",
        avg: "avg_bind_count",
        average: Average::Rate,
        metric: "binds_total",
        help: "Bind messages of named statements from tracked clients (total_bind_count).",
        unit: Unit::Count,
        log: Some((4, "", " binds/s")),
    },
    Counter {
        column: "client_login_count",
        total: "total_client_login_count",
        avg: "avg_client_login_count",
        average: Average::Rate,
        metric: "client_logins_total",
        help: "Successful client logins (total_client_login_count).",
        unit: Unit::Count,
        log: None,
    },
];

/// The log_stats line of a database's averages (`avg`, in [`COUNTERS`]
/// order), in PgBouncer's wording.
pub(crate) fn log_line(avg: &[u64; FIELDS]) -> String {
    let mut parts: Vec<(u8, String)> = COUNTERS
        .iter()
        .zip(avg)
        .filter_map(|(c, v)| c.log.map(|(at, pre, post)| (at, format!("{pre}{v}{post}"))))
        .collect();
    parts.sort_by_key(|p| p.0);
    let parts: Vec<String> = parts.into_iter().map(|p| p.1).collect();
    format!("stats: {}", parts.join(", "))
}

impl Totals {
    /// PgBouncer's averages from `older` (taken `window` ago) to `self`,
    /// each as [`COUNTERS`] says: per second, or per unit of another
    /// counter.
    pub fn averages(&self, older: &Totals, window: std::time::Duration) -> [u64; FIELDS] {
        let (cur, old) = (self.to_array(), older.to_array());
        let d: [u64; FIELDS] = std::array::from_fn(|i| cur[i].saturating_sub(old[i]));
        let us = window.as_micros();
        if us == 0 {
            return [0; FIELDS];
        }
        std::array::from_fn(|i| match COUNTERS[i].average {
            Average::Rate => u64::try_from(u128::from(d[i]) * 1_000_000 / us).unwrap_or(u64::MAX),
            Average::Per(of) => d[i].checked_div(d[of]).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_indices_name_their_counters() {
        let named = [
            (ASSIGNMENTS, "server_assignment_count"),
            (XACTS, "xact_count"),
            (QUERIES, "query_count"),
            (XACT_TIME, "xact_time"),
            (QUERY_TIME, "query_time"),
            (WAIT_TIME, "wait_time"),
        ];
        for (i, column) in named {
            assert_eq!(COUNTERS[i].column, column);
        }
    }

    #[test]
    fn every_field_of_totals_is_in_its_column() {
        // One field set at a time: its value lands under its own column.
        let cases: [(Totals, &str); FIELDS] = [
            (
                Totals {
                    server_assignment_count: 1,
                    ..Totals::default()
                },
                "server_assignment_count",
            ),
            (
                Totals {
                    xact_count: 1,
                    ..Totals::default()
                },
                "xact_count",
            ),
            (
                Totals {
                    query_count: 1,
                    ..Totals::default()
                },
                "query_count",
            ),
            (
                Totals {
                    bytes_received: 1,
                    ..Totals::default()
                },
                "bytes_received",
            ),
            (
                Totals {
                    bytes_sent: 1,
                    ..Totals::default()
                },
                "bytes_sent",
            ),
            (
                Totals {
                    xact_time: 1,
                    ..Totals::default()
                },
                "xact_time",
            ),
            (
                Totals {
                    query_time: 1,
                    ..Totals::default()
                },
                "query_time",
            ),
            (
                Totals {
                    wait_time: 1,
                    ..Totals::default()
                },
                "wait_time",
            ),
            (
                Totals {
                    client_parse_count: 1,
                    ..Totals::default()
                },
                "client_parse_count",
            ),
            (
                Totals {
                    server_parse_count: 1,
                    ..Totals::default()
                },
                "server_parse_count",
            ),
            (
                Totals {
                    bind_count: 1,
                    ..Totals::default()
                },
                "bind_count",
            ),
            (
                Totals {
                    client_login_count: 1,
                    ..Totals::default()
                },
                "client_login_count",
            ),
        ];
        for (t, column) in cases {
            let a = t.to_array();
            let i = crate::stats::index_of(column).unwrap();
            assert_eq!((a[i], a.iter().sum::<u64>()), (1, 1), "{column}");
            assert_eq!(Totals::from_array(a), t);
        }
    }

    #[test]
    fn log_line_in_pgbouncer_wording() {
        let avg: [u64; FIELDS] = std::array::from_fn(|i| i as u64 + 1);
        assert_eq!(
            log_line(&avg),
            "stats: 2 xacts/s, 3 queries/s, 9 client parses/s, 10 server parses/s, \
             11 binds/s, in 4 B/s, out 5 B/s, xact 6 us, query 7 us, wait 8 us"
        );
    }
}
