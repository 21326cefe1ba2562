//! Threads and time: the shards (one single-threaded tokio runtime per
//! core), the timer runtime that the shards' few timed waits use, the
//! janitor's 1 Hz ticker, and the cheap monotonic clock. The foundation
//! layer: it imports nothing else of the crate.

pub(crate) mod clock;
pub(crate) mod ids;
pub mod shard;
pub(crate) mod ticker;
pub mod timer;

pub use shard::Shards;
