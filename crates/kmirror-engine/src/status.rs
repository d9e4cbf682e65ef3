//! What the replicators report about their partitions, for health checks and metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kmirror_core::TopicPartition;

/// The state of one source partition.
#[derive(Clone, Debug)]
pub struct PartitionReport {
    /// Source topic and partition.
    pub source: TopicPartition,
    /// One of [`crate::metrics::STATES`].
    pub state: &'static str,
    /// The state is one that needs attention (`failed`), or not copying nor caught up for longer
    /// than the stall bound: `/readyz` reports it.
    pub stuck: bool,
    /// How long the partition has not moved (seconds).
    pub stuck_for: u64,
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
    /// Partitions told to start again (their topic was recreated) whose records sent before
    /// are still in flight.
    resetting: Mutex<std::collections::HashSet<TopicPartition>>,
}

impl StatusBoard {
    /// Marks partitions as resetting (until [`Self::reset_done`]).
    pub fn resetting(&self, tps: impl Iterator<Item = TopicPartition>) {
        if let Ok(mut set) = self.resetting.lock() {
            set.extend(tps);
        }
    }

    /// A reset partition has nothing of before in flight any more.
    pub fn reset_done(&self, tp: &TopicPartition) {
        if let Ok(mut set) = self.resetting.lock() {
            set.remove(tp);
        }
    }

    /// Whether any partition of `topic` is still resetting.
    pub fn topic_resetting(&self, topic: &str) -> bool {
        self.resetting
            .lock()
            .is_ok_and(|set| set.iter().any(|tp| &*tp.topic == topic))
    }

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

/// Whether each cluster answered its last probe (and if not, why), by alias; and the
/// permissions each flow lacks.
#[derive(Default)]
pub struct Connectivity {
    clusters: Mutex<BTreeMap<String, Option<String>>>,
    permissions: Mutex<BTreeMap<String, Vec<String>>>,
    /// Scale-out: flows whose group has not given this replica its partitions yet.
    groups: Mutex<BTreeMap<String, String>>,
    /// Scale-out: what this replica does for each flow, for the `/readyz` body.
    roles: Mutex<BTreeMap<String, ReplicaRole>>,
}

/// Scale-out: what one replica does for one flow.
#[derive(Clone, Debug, Default)]
pub struct ReplicaRole {
    /// The flow's group.
    pub group: String,
    /// Source partitions it copies.
    pub owned: usize,
    /// Whether it runs the flow's singleton jobs.
    pub leading: bool,
    /// Exactly-once mode: the leader copies, the others stand by.
    pub standby_mode: bool,
}

impl Connectivity {
    /// Records a probe result: `Err` carries the readiness reason (a sentence naming the
    /// cluster).
    pub fn set(&self, alias: &str, outcome: Result<(), String>) {
        if let Ok(mut m) = self.clusters.lock() {
            m.insert(alias.to_owned(), outcome.err());
        }
    }

    /// Clusters and why each is not usable (`None`: up).
    pub fn snapshot(&self) -> BTreeMap<String, Option<String>> {
        self.clusters.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Replaces the permissions `flow` lacks (one sentence each).
    pub fn set_missing_permissions(&self, flow: &str, missing: Vec<String>) {
        if let Ok(mut m) = self.permissions.lock() {
            if missing.is_empty() {
                m.remove(flow);
            } else {
                m.insert(flow.to_owned(), missing);
            }
        }
    }

    /// Scale-out: `Some(reason)` while a flow waits for its group's first assignment.
    pub fn set_group_waiting(&self, flow: &str, waiting: Option<String>) {
        if let Ok(mut m) = self.groups.lock() {
            match waiting {
                Some(reason) => m.insert(flow.to_owned(), reason),
                None => m.remove(flow),
            };
        }
    }

    /// Scale-out: changes what this replica does for `flow` (a line of the `/readyz` body).
    pub fn update_role(&self, flow: &str, change: impl FnOnce(&mut ReplicaRole)) {
        if let Ok(mut m) = self.roles.lock() {
            change(m.entry(flow.to_owned()).or_default());
        }
    }

    /// One line per scale-out flow: what this replica does for it.
    pub fn roles(&self) -> Vec<String> {
        let Ok(m) = self.roles.lock() else {
            return Vec::new();
        };
        m.iter()
            .map(|(flow, r)| {
                let copies = if r.standby_mode && !r.leading {
                    "stands by (exactly-once: the leader copies)".to_owned()
                } else {
                    format!("copies {} partitions", r.owned)
                };
                let jobs = if r.leading {
                    "; runs the singleton jobs (heartbeats, topic config and ACL sync)"
                } else {
                    ""
                };
                format!("flow {flow}: {copies}{jobs} (scale-out group {})", r.group)
            })
            .collect()
    }

    fn groups_waiting(&self) -> Vec<String> {
        self.groups
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn missing_permissions(&self) -> Vec<String> {
        self.permissions
            .lock()
            .map(|m| m.values().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

impl StatusBoard {
    /// Ready when every cluster answered its last probe, no permission is missing and no
    /// assigned partition is stuck (failed, or neither copying nor caught up for longer than
    /// the stall bound); otherwise the reasons.
    pub fn readiness(
        &self,
        clusters: &Connectivity,
        expected_clusters: usize,
    ) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        let conn = clusters.snapshot();
        if conn.len() < expected_clusters {
            reasons.push("not connected to every cluster yet".to_owned());
        }
        reasons.extend(conn.into_values().flatten());
        reasons.extend(clusters.missing_permissions());
        reasons.extend(clusters.groups_waiting());
        for p in self.snapshot() {
            if p.stuck {
                let why = p.error.as_deref().unwrap_or("");
                reasons.push(
                    format!(
                        "partition {} is {} for {}s at offset {}: {why}",
                        p.source, p.state, p.stuck_for, p.next_offset
                    )
                    .trim_end_matches([' ', ':'])
                    .to_owned(),
                );
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// A partition's target topic and its translation map, shared by reference.
pub type PublishedMap = (
    std::sync::Arc<str>,
    std::sync::Arc<kmirror_core::translate::OffsetMap>,
);

/// The translation maps of every replicated partition, published by the replicator when they
/// changed (at most once per flush), read by the checkpoint emitter. Each map is held once;
/// readers share it by reference.
#[derive(Default)]
pub struct MapBoard {
    maps: Mutex<BTreeMap<TopicPartition, PublishedMap>>,
}

impl MapBoard {
    /// Publishes a partition's target topic and map.
    pub fn set(
        &self,
        source: &TopicPartition,
        target_topic: &std::sync::Arc<str>,
        map: &kmirror_core::translate::OffsetMap,
    ) {
        let entry = (
            std::sync::Arc::clone(target_topic),
            std::sync::Arc::new(map.clone()),
        );
        if let Ok(mut m) = self.maps.lock() {
            m.insert(source.clone(), entry);
        }
    }

    /// A partition's map, if published.
    pub fn get(&self, source: &TopicPartition) -> Option<kmirror_core::translate::OffsetMap> {
        self.maps
            .lock()
            .ok()
            .and_then(|m| m.get(source).map(|(_, map)| map.as_ref().clone()))
    }

    /// The source offset after the last record of `source` known copied, if any.
    pub fn copied_end(&self, source: &TopicPartition) -> Option<i64> {
        self.maps
            .lock()
            .ok()
            .and_then(|m| m.get(source).and_then(|(_, map)| map.copied_end()))
            .map(|(upstream, _)| upstream)
    }

    /// Forgets a partition's map (its topic was recreated).
    pub fn remove(&self, source: &TopicPartition) {
        if let Ok(mut m) = self.maps.lock() {
            m.remove(source);
        }
    }

    /// Every map, shared with the board.
    pub fn snapshot(&self) -> BTreeMap<TopicPartition, PublishedMap> {
        self.maps.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
