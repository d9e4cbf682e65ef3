//! What the replicators report about their partitions, for health checks and metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kmirror_core::TopicPartition;

/// The state of one source partition.
#[derive(Clone, Debug)]
pub struct PartitionReport {
    /// Source topic and partition.
    pub source: TopicPartition,
    /// `running`, `draining`, `retrying` or `failed`.
    pub state: &'static str,
    /// Next source offset whose predecessors are all on the target.
    pub next_offset: i64,
    /// Records waiting for the target's acknowledgement.
    pub in_flight: u64,
    /// Records copied since the partition was assigned.
    pub copied: u64,
    /// Why the partition stopped, if it did.
    pub error: Option<String>,
}

/// Latest reports of every partition, updated once per flush interval.
#[derive(Default)]
pub struct StatusBoard {
    partitions: Mutex<BTreeMap<TopicPartition, PartitionReport>>,
}

impl StatusBoard {
    /// Replaces the reports of the given partitions.
    pub fn update(&self, reports: impl Iterator<Item = PartitionReport>) {
        if let Ok(mut map) = self.partitions.lock() {
            for r in reports {
                map.insert(r.source.clone(), r);
            }
        }
    }

    /// Forgets a released partition.
    pub fn remove(&self, tp: &TopicPartition) {
        if let Ok(mut map) = self.partitions.lock() {
            map.remove(tp);
        }
    }

    /// A copy of every report.
    pub fn snapshot(&self) -> Vec<PartitionReport> {
        self.partitions
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}
