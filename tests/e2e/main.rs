//! End-to-end tests: two real clusters, the real kmirror binary, records compared one by one.

#[path = "../support/mod.rs"]
mod support;

mod replication;
mod discovery;
mod restart;
