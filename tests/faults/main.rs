//! Fault tests: clusters fail, stall and refuse, and nothing is lost, reordered or left hanging.
//! They run on Apache Kafka (dedicated clusters, since they break them) and on librdkafka's
//! mock cluster.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod exactly_once;
mod gaps;
mod kill;
mod mock;
mod outages;
mod prometheus;
mod recreate;
mod scale_out;
mod shutdown;
