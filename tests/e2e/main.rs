//! End-to-end tests: two real clusters, the real kmirror binary, records compared one by one.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod checkpoints;
mod compression;
mod discovery;
mod heartbeats;
mod import;
mod java_interop;
mod mm2_handover;
mod offset_syncs;
mod offsets_cli;
mod operations;
mod packaging;
mod refused;
mod replication;
mod restart;
mod scale;
mod security;
mod topic_sync;
mod two_way;
mod validate;
