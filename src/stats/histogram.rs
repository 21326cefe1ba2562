//! Latency histograms for the metrics endpoint (PgBouncer has none):
//! transaction time, query time and client wait time, per pool, with fixed
//! Prometheus-style buckets. Observed when a link publishes its figures
//! (`PoolStats::add`), never per message; sharded like the counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the buckets, in microseconds (`+Inf` is implied).
pub(crate) const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Buckets including `+Inf`.
const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Which histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Transaction time (first request to the final ReadyForQuery 'I').
    Transaction = 0,
    /// Query time (request to the ReadyForQuery that answers it).
    Query = 1,
    /// Time a client waited for a server.
    Wait = 2,
}

/// A histogram as the metrics page shows it: its metric name (after
/// `pgsluice_`), help, and the counters (`super::COUNTERS` indices) whose
/// totals are its `_sum` (microseconds) and `_count`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Def {
    /// Metric name after the prefix.
    pub metric: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Which histogram.
    pub which: Which,
    /// The counter of its sum, and the counter of its count.
    pub sum_count: (usize, usize),
}

/// Every histogram.
pub(crate) const HISTOGRAMS: [Def; 3] = [
    Def {
        metric: "transaction_duration_seconds",
        help: "Transaction time with a server assigned (a link's several transactions are observed at their mean).",
        which: Which::Transaction,
        sum_count: (super::counters::XACT_TIME, super::counters::XACTS),
    },
    Def {
        metric: "query_duration_seconds",
        help: "Query time (a transaction's several queries are observed at their mean).",
        which: Which::Query,
        sum_count: (super::counters::QUERY_TIME, super::counters::QUERIES),
    },
    Def {
        metric: "client_wait_seconds",
        help: "Time a client waited for a server, per assignment.",
        which: Which::Wait,
        sum_count: (super::counters::WAIT_TIME, super::counters::ASSIGNMENTS),
    },
];

/// The three histograms of one shard.
#[derive(Debug, Default)]
pub(super) struct Histograms([[AtomicU64; BUCKETS]; 3]);

impl Histograms {
    /// Count `n` observations of `us` microseconds.
    #[inline]
    pub(super) fn observe(&self, which: Which, us: u64, n: u64) {
        // A scan from the short end, not a binary search: most times are
        // in the first few buckets (callgrind: about 20 instructions less
        // per observation for sub-millisecond times).
        let i = BOUNDS_US
            .iter()
            .position(|&b| b >= us)
            .unwrap_or(BOUNDS_US.len());
        self.0[which as usize][i].fetch_add(n, Relaxed);
    }

    /// Add this shard's counts (per bucket, not cumulative) into `into`.
    pub(super) fn sum_into(&self, which: Which, into: &mut [u64; BUCKETS]) {
        for (a, b) in into.iter_mut().zip(&self.0[which as usize]) {
            *a += b.load(Relaxed);
        }
    }
}

/// Cumulative bucket counts (Prometheus `le` semantics), last = `+Inf`.
pub(crate) fn cumulative(counts: [u64; BUCKETS]) -> [u64; BUCKETS] {
    let mut out = counts;
    for i in 1..BUCKETS {
        out[i] += out[i - 1];
    }
    out
}

/// The number of buckets, `+Inf` included.
pub(crate) const fn buckets() -> usize {
    BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histograms::default();
        h.observe(Which::Query, 100, 1); // le 100 µs
        h.observe(Which::Query, 101, 2); // le 250 µs
        h.observe(Which::Query, 20_000_000, 1); // +Inf
        let mut c = [0; BUCKETS];
        h.sum_into(Which::Query, &mut c);
        assert_eq!((c[0], c[1], c[BUCKETS - 1]), (1, 2, 1));
        let cum = cumulative(c);
        assert_eq!((cum[0], cum[1], cum[BUCKETS - 1]), (1, 3, 4));
    }
}
