//! The pure logic of kmirror: everything that can be decided without I/O.
//!
//! # Layout
//! - [`types`]: domain newtypes (`ClusterAlias`, `TopicPartition`, `Offset`).
//! - [`config`]: the configuration as written (Strimzi `KafkaMirrorMaker2` shape) and its
//!   validation into typed settings, with one [`config::Problem`] per mistake.
//! - [`policy`]: MM2's replication policies (topic renaming, internal topics, cycles).
//! - [`filter`]: MM2's topic and group include/exclude lists.
//! - [`progress`]: replication progress records in MM2's Connect offsets format, and Kafka's
//!   murmur2 partitioner.
//! - [`topic_config`]: which source topic configs are copied and what the periodic sync
//!   changes (MM2's property filter), and partition growth.
//! - [`acl`]: which source ACLs are copied and how (MM2's ACL sync).
//! - [`permissions`]: what kmirror's principal must be allowed on each cluster, and what the
//!   brokers say it lacks.
//! - [`plan`]: what the next sync would do, as text or JSON.
//! - [`window`]: windowed min/max/avg/rate statistics with MM2's semantics.
//! - [`properties`], [`import`]: reading MM2's dedicated-mode properties and converting them.
//! - [`mm2`]: MM2's OffsetSync, Checkpoint and Heartbeat records, byte for byte.
//! - [`offset_sync`]: when to emit an offset sync (MM2's rules).
//! - [`translate`]: exact offset translation from the runs of copied records.
//! - [`checkpoint`]: when to emit a checkpoint and when to commit a group on the target.
//! - [`provenance`]: the origin header that keeps two opposite flows from copying records back.
//! - [`tracker`]: per-partition bookkeeping of produced and acknowledged records, which decides
//!   what may be recorded as done.

pub mod acl;
pub mod checkpoint;
pub mod config;
pub mod filter;
pub mod import;
pub mod mm2;
pub mod offset_sync;
pub mod permissions;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod properties;
pub mod provenance;
pub mod topic_config;
pub mod tracker;
pub mod translate;
pub mod types;
pub mod window;

pub use types::{ClusterAlias, Offset, StartFrom, TopicPartition};
