//! The test bed of kmirror's end-to-end tests and benchmarks (never part of the binary).
//!
//! # Layout
//! - [`kafka`]: Apache Kafka clusters (KRaft) and MirrorMaker 2 from the Maven Central jars that
//!   `scripts/kafka.sh` resolves, on random loopback ports, under a watchdog that never lets
//!   them outlive the process that started them; Java helpers.
//! - [`certs`]: certificate authorities and leaf certificates generated with rcgen.
//! - Small client helpers shared by both (this module).
//!
//! Test infrastructure panics on anything unexpected: a failure here is a failed test or
//! benchmark, with the reason in the message.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::net::TcpListener;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

pub mod certs;
pub mod kafka;

/// A client config for `bootstrap` (plaintext).
pub fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// An admin client for a cluster.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client(bootstrap).create().unwrap()
}

/// Runs an admin future to completion on a throwaway runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `n` distinct free ports on the loopback interface: all are bound at once before any is
/// released, so that two of them cannot be the same (as two [`free_port`] calls in a row can
/// be, which once gave a broker's PLAINTEXT and SSL listeners one port).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A short string unique to this process and moment, for names.
pub fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}{:x}", std::process::id(), nanos)
}
