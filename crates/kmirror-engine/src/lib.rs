//! kmirror's runtime: Kafka clients, certificate checks, topic sync and the replication data
//! plane.
//!
//! # Layout
//! - [`load`]: reading a config file with environment overrides.
//! - [`security`]: reading and checking certificates, keys and passwords.
//! - [`client`]: librdkafka client configs per cluster and role, and the client context.
//! - [`topics`]: discovering source topics and creating or growing them on the target.
//! - [`target_sync`]: topic config and ACL sync, and the plan of what the next sync does.
//! - [`offsets`]: the failover report and commit of `kmirror offsets`.
//! - [`failback`]: what going back to the old primary copies and what is at risk
//!   (`kmirror failback plan`).
//! - [`permissions`]: which permissions kmirror's principal lacks, named and reported.
//! - [`progress_store`]: reading stored replication progress.
//! - [`replicator`]: the per-flow data plane (consumer → producer, per-partition pipelines).
//! - [`lanes`]: the replication producers, with batches that fit each target topic.
//! - [`tail`]: copies a crash left on the target beyond the stored progress, found at start.
//! - [`transactions`]: exactly-once mode (records and progress in one target transaction).
//! - [`ownership`]: scale-out: which replica copies which partition and runs the singleton
//!   jobs, decided by a consumer group on the target.
//! - [`flow`]: one mirror end to end, wiring the parts above: start-up checks and cluster
//!   probes (`flow/health.rs`), the topic sync loop, what the replicator copies
//!   (`flow/assign.rs`), the target codecs (`flow/codecs.rs`), replicator supervision.
//! - [`metrics`]: every exported metric, registered in one place.
//! - [`checkpoint`]: checkpoints and consumer-group offset sync.
//! - [`heartbeat`]: MM2's heartbeat records.
//! - [`http`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`status`]: partition states shared with health checks.
//! - [`error`]: errors classified by who can fix them.

pub mod checkpoint;
pub mod client;
pub mod codec;
mod commit_watch;
/// See [`kmirror_admin::limit_malloc_arenas`] (the binary calls it first thing).
pub use kmirror_admin::limit_malloc_arenas;
pub mod error;
pub mod failback;
pub mod flow;
pub mod heartbeat;
pub mod http;
pub mod lanes;
pub mod load;
pub mod metrics;
pub mod offsets;
pub mod ownership;
pub mod permissions;
pub mod polled;
pub mod progress_store;
pub mod replicator;
pub mod security;
pub mod status;
pub mod tail;
pub mod target_sync;
pub mod topics;
pub mod transactions;

pub use error::{Error, Result};

/// The period of a ticker that a `select!` guard keeps from firing (a disabled sync).
pub(crate) const NEVER: std::time::Duration = std::time::Duration::from_secs(86_400);

/// A ticker whose first tick is one `period` from now; a late tick delays the next ones
/// instead of bunching them.
pub(crate) fn every(period: std::time::Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Wall-clock time in epoch milliseconds (Kafka timestamps).
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
