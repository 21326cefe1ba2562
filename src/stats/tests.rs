//! Unit tests for the statistics: a link's query/transaction accounting,
//! sharded pool counters, averages, and the per-period tick with its log
//! line.

use std::sync::Arc;
use std::thread::sleep;
use std::time::Duration;

use super::*;
use crate::runtime::clock::clock_ns;

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_single_statement_is_one_query_and_one_transaction() {
    let link = LinkStats::new(clock_ns(), 1500);
    // The first request's query was opened by the link itself.
    link.client_sent(30, 0, 0);
    sleep(2 * MS);
    link.server_sent(100);
    assert!(link.answered(true, false));
    let t = link.take();
    assert_eq!(
        (t.server_assignment_count, t.query_count, t.xact_count),
        (1, 1, 1)
    );
    assert_eq!(
        (t.bytes_received, t.bytes_sent, t.wait_time),
        (30, 100, 1500)
    );
    assert!(t.query_time >= 2000 && t.xact_time == t.query_time, "{t:?}");
    // Taken: nothing left, the assignment and wait counted once.
    assert_eq!(link.take(), Totals::default());
}

#[test]
fn a_transaction_block_is_one_transaction_of_several_queries() {
    let link = LinkStats::new(clock_ns(), 0);
    link.client_sent(10, 0, 0); // BEGIN
    assert!(!link.answered(false, false));
    sleep(MS); // idle in transaction: counts in xact_time only
    link.client_sent(10, 0, 0); // SELECT
    sleep(MS);
    assert!(!link.answered(false, false));
    link.client_sent(10, 0, 0); // COMMIT
    assert!(link.answered(true, false));
    let t = link.take();
    assert_eq!((t.query_count, t.xact_count, t.bytes_received), (3, 1, 30));
    assert!(t.xact_time >= 2000, "{t:?}");
    assert!(t.xact_time > t.query_time, "{t:?}");
    // A failed transaction ('E') goes on until the ROLLBACK's 'I'.
    link.client_sent(10, 0, 0); // BEGIN
    assert!(!link.answered(false, false));
    link.client_sent(10, 0, 0); // SELECT 1/0
    assert!(!link.answered(false, false));
    link.client_sent(10, 0, 0); // ROLLBACK
    assert!(link.answered(true, false));
    let t = link.take();
    assert_eq!(
        (t.query_count, t.xact_count, t.server_assignment_count),
        (3, 1, 0)
    );
}

#[test]
fn extended_protocol_counts_parses_binds_and_pipelined_batches() {
    let link = LinkStats::new(clock_ns(), 0);
    // Parse/Bind/Execute/Sync, then Bind/Execute sent before the answer
    // came: the next query starts with that answer.
    link.client_sent(60, 1, 1);
    link.client_sent(30, 0, 1);
    assert!(link.answered(true, true));
    link.client_sent(5, 0, 0); // its Sync
    assert!(link.answered(true, false));
    let t = link.take();
    assert_eq!((t.query_count, t.xact_count), (2, 2));
    assert_eq!(
        (t.client_parse_count, t.server_parse_count, t.bind_count),
        (1, 1, 2)
    );
}

#[test]
fn an_answer_without_an_open_query_is_not_counted() {
    let link = LinkStats::new(clock_ns(), 0);
    link.answered(true, false);
    assert!(!link.answered(true, false));
    let t = link.take();
    assert_eq!((t.query_count, t.xact_count), (1, 1));
}

#[test]
fn pool_counters_are_exact_across_threads() {
    let stats = Arc::new(PoolStats::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let stats = stats.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    stats.add(&Totals {
                        xact_count: 1,
                        query_count: 2,
                        bytes_sent: 10,
                        ..Totals::default()
                    });
                    stats.count_login();
                }
                stats.count_assignment(7);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let t = stats.totals();
    assert_eq!(
        (t.xact_count, t.query_count, t.bytes_sent),
        (4000, 8000, 40_000)
    );
    assert_eq!(t.client_login_count, 4000);
    assert_eq!((t.server_assignment_count, t.wait_time), (4, 28));
}

#[test]
fn averages_are_rates_and_times_per_event() {
    let older = Totals {
        xact_count: 10,
        xact_time: 1000,
        ..Totals::default()
    };
    let cur = Totals {
        server_assignment_count: 20,
        xact_count: 30,
        query_count: 40,
        bytes_received: 4000,
        bytes_sent: 8000,
        xact_time: 1000 + 20 * 150,
        query_time: 40 * 90,
        wait_time: 20 * 33,
        client_parse_count: 6,
        server_parse_count: 6,
        bind_count: 8,
        client_login_count: 2,
    };
    let a = cur.averages(&older, Duration::from_secs(2));
    assert_eq!(
        Totals::from_array(a),
        Totals {
            server_assignment_count: 10,
            xact_count: 10,
            query_count: 20,
            bytes_received: 2000,
            bytes_sent: 4000,
            xact_time: 150,
            query_time: 90,
            wait_time: 33,
            client_parse_count: 3,
            server_parse_count: 3,
            bind_count: 4,
            client_login_count: 1,
        }
    );
    // No events: zero times, not a division by zero.
    assert_eq!(cur.averages(&cur, Duration::from_secs(1)), [0; FIELDS]);
    assert_eq!(cur.averages(&older, Duration::ZERO), [0; FIELDS]);
}

#[test]
fn tick_aggregates_per_database() {
    let (a1, a2, b) = (PoolStats::new(), PoolStats::new(), PoolStats::new());
    let pools = [("a", &a1), ("a", &a2), ("b", &b)];
    let xacts = |n: u64, us: u64| Totals {
        server_assignment_count: n,
        xact_count: n,
        query_count: n,
        xact_time: n * us,
        query_time: n * us,
        bytes_received: 100 * n,
        ..Totals::default()
    };
    a1.add(&xacts(10, 50));
    let t1 = Instant::now();
    report::tick(pools, t1);
    // During the next 2 s period: 20 + 20 transactions on a, 4 on b.
    a1.add(&xacts(20, 100));
    a2.add(&xacts(20, 300));
    b.add(&xacts(4, 10));
    b.count_login();
    let rows = report::tick(pools, t1 + Duration::from_secs(2));
    assert_eq!(rows.len(), 2);
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!((a.database.as_str(), b.database.as_str()), ("a", "b"));
    assert_eq!((a["total_xact_count"], a["avg_xact_count"]), (50, 20));
    assert_eq!((a["total_xact_time"], a["avg_xact_time"]), (8500, 200));
    assert_eq!((a["avg_recv"], a.get("avg_recv")), (2000, Some(2000)));
    assert_eq!((b["total_client_login_count"], b["avg_xact_count"]), (1, 2));
    assert_eq!(
        b.get("xact_count"),
        None,
        "a STATS_TOTALS name, not SHOW STATS'"
    );
    assert_eq!(
        log_line(&a.avg),
        "stats: 20 xacts/s, 20 queries/s, 0 client parses/s, 0 server parses/s, \
         0 binds/s, in 2000 B/s, out 0 B/s, xact 200 us, query 200 us, wait 0 us"
    );
    let now = report::rows(pools);
    assert_eq!(now[0]["total_xact_count"], 50);
    let all = report::all(pools);
    assert_eq!(
        (all["total_xact_count"], all["total_client_login_count"]),
        (54, 1)
    );
}
