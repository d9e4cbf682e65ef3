//! Every metric kmirror exports: names, labels and registration in one place.
//!
//! Two families:
//! - MM2's names as the Prometheus JMX exporter renders them (MM2-COMPAT §7), so existing
//!   Strimzi dashboards keep working: `kafka_connect_mirror_mirrorsourceconnector_*` with labels
//!   `source, target, topic, partition`, and the checkpoint connector's latency with `group`.
//! - kmirror's own, prefixed `kmirror_`: lag, recovery point, latency histogram, partition
//!   state, errors, topic changes, certificate expiry and librdkafka statistics.
//!
//! Label values are cluster aliases, topic names, partition numbers, group ids and small fixed
//! sets (states, error kinds): never offsets or record contents.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Metric names.
pub mod names {
    /// MM2 source-connector prefix.
    pub const MM2_SOURCE: &str = "kafka_connect_mirror_mirrorsourceconnector";
    /// MM2 checkpoint-connector prefix.
    pub const MM2_CHECKPOINT: &str = "kafka_connect_mirror_mirrorcheckpointconnector";
    /// Records the target has not acknowledged yet, per partition (source high watermark minus
    /// progress).
    pub const LAG_RECORDS: &str = "kmirror_replication_lag_records";
    /// Recovery point per partition: seconds since the newest record on the target was written
    /// to the source, while the partition has a lag (0 when caught up). Everything written to
    /// the source after that moment would be lost if the source vanished now.
    pub const LAG_SECONDS: &str = "kmirror_replication_lag_seconds";
    /// Age of the oldest record not yet on the target, per flow: the highest lag in seconds.
    pub const RPO_SECONDS: &str = "kmirror_recovery_point_objective_seconds";
    /// Source timestamp to target acknowledgement.
    pub const LATENCY: &str = "kmirror_replication_latency_seconds";
    /// Exactly-once mode: how long each commit took, from waiting for the transaction's
    /// records to the commit's answer (its count is the number of commits).
    pub const TRANSACTION_COMMIT: &str = "kmirror_transaction_commit_seconds";
    /// 1 for the partition's current state.
    pub const PARTITION_STATE: &str = "kmirror_partition_state";
    /// Records acknowledged by the target.
    pub const RECORDS: &str = "kmirror_records_replicated_total";
    /// Errors by kind.
    pub const ERRORS: &str = "kmirror_errors_total";
    /// Topics created on the target.
    pub const TOPICS_CREATED: &str = "kmirror_topics_created_total";
    /// Partitions added to target topics.
    pub const PARTITIONS_CREATED: &str = "kmirror_partitions_created_total";
    /// Topic configuration entries changed on the target.
    pub const CONFIGS_CHANGED: &str = "kmirror_topic_configs_changed_total";
    /// Topic configuration entries the target refused.
    pub const CONFIGS_REJECTED: &str = "kmirror_topic_configs_rejected_total";
    /// ACL bindings created on the target.
    pub const ACLS_CREATED: &str = "kmirror_acls_created_total";
    /// Records not copied because they came from the target cluster (their origin header).
    pub const RECORDS_NOT_COPIED: &str = "kmirror_records_from_target_skipped_total";
    /// Heartbeat records emitted.
    pub const HEARTBEATS: &str = "kmirror_heartbeats_emitted_total";
    /// Checkpoint records emitted.
    pub const CHECKPOINTS: &str = "kmirror_checkpoints_emitted_total";
    /// Seconds since the last checkpoint of a group.
    pub const CHECKPOINT_AGE: &str = "kmirror_checkpoint_age_seconds";
    /// Client certificate expiry, Unix seconds.
    pub const CERT_EXPIRY: &str = "kmirror_client_certificate_expiry_timestamp_seconds";
    /// librdkafka: average broker round-trip time.
    pub const BROKER_RTT: &str = "kmirror_broker_rtt_seconds";
    /// librdkafka: messages in the client's queues.
    pub const CLIENT_QUEUE: &str = "kmirror_client_queue_messages";
    /// Whether a cluster answered the last health probe.
    pub const CLUSTER_UP: &str = "kmirror_cluster_up";
    /// 1 for each permission kmirror's principal lacks (KIP-430 authorized operations).
    pub const MISSING_PERMISSION: &str = "kmirror_missing_permission";
    /// Checkpoints whose translation rounded back (the oldest part of a bounded offset map).
    pub const TRANSLATION_DEGRADED: &str = "kmirror_translation_degraded_total";
    /// Group offset sync left a group partition alone, by reason (`active`, `foreign_commit`).
    pub const GROUP_SYNC_SKIPPED: &str = "kmirror_group_sync_skipped_total";
    /// Records the source deleted (retention, DeleteRecords) before kmirror copied them.
    pub const SOURCE_RECORDS_DELETED: &str = "kmirror_source_records_deleted_total";
    /// Replicated topics found deleted and created again, by side (`source`, `target`).
    pub const TOPICS_RECREATED: &str = "kmirror_topics_recreated_total";
    /// Records found on the target at assignment beyond the stored progress (acknowledged
    /// before a crash, progress not yet stored), and therefore not copied again.
    pub const FOUND_ON_TARGET: &str = "kmirror_records_found_on_target_total";
    /// Scale-out: source partitions this replica owns (by the flow's consumer group).
    pub const OWNED_PARTITIONS: &str = "kmirror_owned_partitions";
    /// Scale-out: 1 while this replica runs the flow's singleton jobs (heartbeats, topic
    /// config and ACL sync).
    pub const SINGLETON_OWNER: &str = "kmirror_singleton_jobs_owner";
    /// Scale-out: partitions handed to another replica, by outcome (`stored`: final progress
    /// stored first; `timed_out`: records were still in flight, and may be copied twice).
    pub const HANDOVERS: &str = "kmirror_partition_handovers_total";

    /// Every `kmirror_` family.
    pub const ALL_OWN: &[&str] = &[
        LAG_RECORDS,
        LAG_SECONDS,
        RPO_SECONDS,
        LATENCY,
        PARTITION_STATE,
        RECORDS,
        ERRORS,
        TOPICS_CREATED,
        PARTITIONS_CREATED,
        CONFIGS_CHANGED,
        CONFIGS_REJECTED,
        ACLS_CREATED,
        HEARTBEATS,
        CHECKPOINTS,
        CHECKPOINT_AGE,
        CERT_EXPIRY,
        BROKER_RTT,
        CLIENT_QUEUE,
        CLUSTER_UP,
        MISSING_PERMISSION,
        TRANSLATION_DEGRADED,
        GROUP_SYNC_SKIPPED,
        SOURCE_RECORDS_DELETED,
        TOPICS_RECREATED,
        FOUND_ON_TARGET,
        OWNED_PARTITIONS,
        SINGLETON_OWNER,
        HANDOVERS,
    ];
}

/// The attribute suffixes of MM2's per-partition source metrics.
pub const MM2_SOURCE_ATTRIBUTES: &[&str] = &[
    "record_count",
    "record_rate",
    "byte_count",
    "byte_rate",
    "record_age_ms",
    "record_age_ms_min",
    "record_age_ms_max",
    "record_age_ms_avg",
    "replication_latency_ms",
    "replication_latency_ms_min",
    "replication_latency_ms_max",
    "replication_latency_ms_avg",
];

/// Label names.
pub mod labels {
    /// Source alias.
    pub const SOURCE: &str = "source";
    /// Target alias.
    pub const TARGET: &str = "target";
    /// Topic (the remote topic for MM2 metrics, as MM2 does).
    pub const TOPIC: &str = "topic";
    /// Partition number.
    pub const PARTITION: &str = "partition";
    /// Consumer group.
    pub const GROUP: &str = "group";
    /// Partition state.
    pub const STATE: &str = "state";
    /// Error kind.
    pub const KIND: &str = "kind";
    /// Cluster alias.
    pub const CLUSTER: &str = "cluster";
    /// Client role.
    pub const CLIENT: &str = "client";
    /// Broker id.
    pub const BROKER: &str = "broker";
    /// Topic config key.
    pub const KEY: &str = "key";
    /// An ACL resource, e.g. `TOPIC orders`.
    pub const RESOURCE: &str = "resource";
    /// An ACL operation, e.g. `READ`.
    pub const OPERATION: &str = "operation";
}

use labels::{
    BROKER, CLIENT, CLUSTER, GROUP, KEY, KIND, OPERATION, PARTITION, RESOURCE, SOURCE, STATE,
    TARGET, TOPIC,
};

/// Partition states reported by [`names::PARTITION_STATE`].
///
/// - `copying`: behind the source and moving;
/// - `caught_up`: everything the source has is on the target;
/// - `waiting_for_target`: records sent, no acknowledgement for longer than `--stall-after`;
/// - `stalled`: behind the source, nothing fetched or copied for longer than `--stall-after`;
/// - `retrying`: stopped by a retriable error, restarting from its progress;
/// - `failed`: stopped by an error that needs the operator (the log names it);
/// - `draining`: released, waiting for its records in flight;
/// - `resetting`: its topic was recreated, waiting for records sent to the old one.
pub const STATES: &[&str] = &[
    "copying",
    "caught_up",
    "waiting_for_target",
    "stalled",
    "retrying",
    "failed",
    "draining",
    "resetting",
];

/// The registry and every family.
pub struct Metrics {
    registry: Registry,
    /// MM2 source metrics by attribute (index as in [`MM2_SOURCE_ATTRIBUTES`]).
    pub mm2_source: Vec<GaugeVec>,
    /// MM2 checkpoint latency: value, min, max, avg.
    pub mm2_checkpoint: Vec<GaugeVec>,
    /// See [`names::LAG_RECORDS`].
    pub lag_records: GaugeVec,
    /// See [`names::LAG_SECONDS`].
    pub lag_seconds: GaugeVec,
    /// See [`names::RPO_SECONDS`].
    pub rpo_seconds: GaugeVec,
    /// See [`names::LATENCY`].
    pub latency: HistogramVec,
    /// See [`names::TRANSACTION_COMMIT`].
    pub transaction_commit: HistogramVec,
    /// See [`names::PARTITION_STATE`].
    pub partition_state: GaugeVec,
    /// See [`names::RECORDS`].
    pub records: IntCounterVec,
    /// See [`names::ERRORS`].
    pub errors: IntCounterVec,
    /// See [`names::TOPICS_CREATED`].
    pub topics_created: IntCounterVec,
    /// See [`names::PARTITIONS_CREATED`].
    pub partitions_created: IntCounterVec,
    /// See [`names::CONFIGS_CHANGED`].
    pub configs_changed: IntCounterVec,
    /// See [`names::CONFIGS_REJECTED`].
    pub configs_rejected: IntCounterVec,
    /// See [`names::ACLS_CREATED`].
    pub acls_created: IntCounterVec,
    /// See [`names::RECORDS_NOT_COPIED`].
    pub records_from_target: IntCounterVec,
    /// See [`names::HEARTBEATS`].
    pub heartbeats: IntCounterVec,
    /// See [`names::CHECKPOINTS`].
    pub checkpoints: IntCounterVec,
    /// See [`names::CHECKPOINT_AGE`].
    pub checkpoint_age: GaugeVec,
    /// See [`names::CERT_EXPIRY`].
    pub cert_expiry: GaugeVec,
    /// See [`names::BROKER_RTT`].
    pub broker_rtt: GaugeVec,
    /// See [`names::CLIENT_QUEUE`].
    pub client_queue: GaugeVec,
    /// See [`names::CLUSTER_UP`].
    pub cluster_up: GaugeVec,
    /// See [`names::MISSING_PERMISSION`].
    pub missing_permission: GaugeVec,
    /// See [`names::TRANSLATION_DEGRADED`].
    pub translation_degraded: IntCounterVec,
    /// See [`names::GROUP_SYNC_SKIPPED`].
    pub group_sync_skipped: IntCounterVec,
    /// See [`names::SOURCE_RECORDS_DELETED`].
    pub source_records_deleted: IntCounterVec,
    /// See [`names::TOPICS_RECREATED`].
    pub topics_recreated: IntCounterVec,
    /// See [`names::FOUND_ON_TARGET`].
    pub found_on_target: IntCounterVec,
    /// See [`names::OWNED_PARTITIONS`].
    pub owned_partitions: GaugeVec,
    /// See [`names::SINGLETON_OWNER`].
    pub singleton_owner: GaugeVec,
    /// See [`names::HANDOVERS`].
    pub handovers: IntCounterVec,
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

impl Metrics {
    /// Registers every family. The names are constants, so registration cannot fail at run
    /// time; a unit test builds the registry.
    #[allow(clippy::missing_panics_doc)]
    pub fn new() -> Self {
        let r = Registry::new();
        let part = [SOURCE, TARGET, TOPIC, PARTITION];
        let mm2_source = MM2_SOURCE_ATTRIBUTES
            .iter()
            .map(|a| {
                gauge(
                    &r,
                    &format!("{}_{a}", names::MM2_SOURCE),
                    &format!("MirrorMaker 2 compatible: {a}"),
                    &part,
                )
            })
            .collect();
        let cp = [SOURCE, TARGET, GROUP, TOPIC, PARTITION];
        let mm2_checkpoint = ["", "_min", "_max", "_avg"]
            .iter()
            .map(|s| {
                gauge(
                    &r,
                    &format!("{}_checkpoint_latency_ms{s}", names::MM2_CHECKPOINT),
                    "MirrorMaker 2 compatible: checkpoint latency",
                    &cp,
                )
            })
            .collect();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                names::LATENCY,
                "Time from the record's source timestamp to the target's acknowledgement",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0,
            ]),
            &[SOURCE, TARGET],
        )
        .unwrap_or_else(|e| panic!("histogram: {e}"));
        r.register(Box::new(latency.clone()))
            .unwrap_or_else(|e| panic!("histogram: {e}"));
        let transaction_commit = HistogramVec::new(
            HistogramOpts::new(
                names::TRANSACTION_COMMIT,
                "Exactly-once mode: time to commit a transaction (waiting for its records, writing progress, committing)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &[SOURCE, TARGET],
        )
        .unwrap_or_else(|e| panic!("histogram: {e}"));
        r.register(Box::new(transaction_commit.clone()))
            .unwrap_or_else(|e| panic!("histogram: {e}"));
        let flow = [SOURCE, TARGET];
        Self {
            mm2_source,
            mm2_checkpoint,
            lag_records: gauge(&r, names::LAG_RECORDS, "Records on the source not yet acknowledged by the target", &part),
            lag_seconds: gauge(&r, names::LAG_SECONDS, "Seconds since the newest replicated record was written, while behind (0 when caught up)", &part),
            rpo_seconds: gauge(&r, names::RPO_SECONDS, "Seconds of source data that would be lost if the source vanished now (highest partition lag in seconds)", &flow),
            latency,
            transaction_commit,
            partition_state: gauge(&r, names::PARTITION_STATE, "1 for the partition's current state", &[SOURCE, TARGET, TOPIC, PARTITION, STATE]),
            records: counter(&r, names::RECORDS, "Records acknowledged by the target", &part),
            errors: counter(&r, names::ERRORS, "Errors by kind", &[SOURCE, TARGET, KIND]),
            topics_created: counter(&r, names::TOPICS_CREATED, "Topics created on the target", &flow),
            partitions_created: counter(&r, names::PARTITIONS_CREATED, "Partitions added to target topics", &flow),
            configs_changed: counter(&r, names::CONFIGS_CHANGED, "Topic configuration entries changed on the target", &flow),
            configs_rejected: counter(&r, names::CONFIGS_REJECTED, "Topic configuration entries the target refused (retried every sync interval)", &[SOURCE, TARGET, TOPIC, KEY]),
            acls_created: counter(&r, names::ACLS_CREATED, "ACL bindings created on the target", &flow),
            records_from_target: counter(&r, names::RECORDS_NOT_COPIED, "Source records not copied because their origin header names the target cluster (they came from there)", &flow),
            heartbeats: counter(&r, names::HEARTBEATS, "Heartbeat records emitted", &flow),
            checkpoints: counter(&r, names::CHECKPOINTS, "Checkpoint records emitted", &flow),
            checkpoint_age: gauge(&r, names::CHECKPOINT_AGE, "Seconds since the group's last checkpoint", &[SOURCE, TARGET, GROUP]),
            cert_expiry: gauge(&r, names::CERT_EXPIRY, "Client certificate notAfter, Unix seconds", &[CLUSTER]),
            broker_rtt: gauge(&r, names::BROKER_RTT, "Average broker round-trip time (librdkafka statistics)", &[CLUSTER, CLIENT, BROKER]),
            client_queue: gauge(&r, names::CLIENT_QUEUE, "Messages in the client's queues (librdkafka statistics)", &[CLUSTER, CLIENT]),
            cluster_up: gauge(&r, names::CLUSTER_UP, "1 if the cluster answered the last health probe", &[CLUSTER]),
            missing_permission: gauge(&r, names::MISSING_PERMISSION, "1 for each permission kmirror's principal lacks", &[CLUSTER, RESOURCE, OPERATION]),
            translation_degraded: counter(&r, names::TRANSLATION_DEGRADED, "Checkpoints whose translation rounded back to an earlier target offset (re-read, never skip)", &flow),
            source_records_deleted: counter(&r, names::SOURCE_RECORDS_DELETED, "Records the source deleted (retention, DeleteRecords) before kmirror copied them", &part),
            group_sync_skipped: counter(&r, names::GROUP_SYNC_SKIPPED, "Group partitions that offset sync left alone: active on the target, or committed there by someone else", &[SOURCE, TARGET, KIND]),
            topics_recreated: counter(&r, names::TOPICS_RECREATED, "Replicated topics found deleted and created again (copied again from the source's beginning), by side", &[SOURCE, TARGET, TOPIC, KIND]),
            found_on_target: counter(&r, names::FOUND_ON_TARGET, "Records found already on the target when a partition was assigned (copied before a crash, progress not yet stored) and not copied again", &flow),
            owned_partitions: gauge(&r, names::OWNED_PARTITIONS, "Scale-out: source partitions this replica owns", &flow),
            singleton_owner: gauge(&r, names::SINGLETON_OWNER, "Scale-out: 1 while this replica runs the flow's heartbeats and topic config and ACL sync", &flow),
            handovers: counter(&r, names::HANDOVERS, "Scale-out: partitions handed to another replica, by outcome (stored: final progress stored first; timed_out: records may be copied twice)", &[SOURCE, TARGET, "outcome"]),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Creates a flow's topic-sync counters at 0, so that "nothing changed" is a series (a
    /// dashboard shows 0, and `increase()` sees the first change) rather than no data.
    pub fn flow_started(&self, source: &str, target: &str) {
        for counter in [
            &self.topics_created,
            &self.partitions_created,
            &self.configs_changed,
            &self.acls_created,
        ] {
            counter.with_label_values(&[source, target]);
        }
    }

    /// Counts an error of `kind` for a flow.
    pub fn error(&self, source: &str, target: &str, kind: &str) {
        self.errors.with_label_values(&[source, target, kind]).inc();
    }

    /// Records librdkafka statistics of one client.
    pub fn client_statistics(&self, cluster: &str, client: &str, stats: &rdkafka::Statistics) {
        #[allow(clippy::cast_precision_loss)]
        self.client_queue
            .with_label_values(&[cluster, client])
            .set(stats.msg_cnt as f64);
        for broker in stats.brokers.values() {
            if broker.nodeid < 0 {
                continue; // bootstrap placeholders
            }
            if let Some(rtt) = &broker.rtt {
                #[allow(clippy::cast_precision_loss)]
                let secs = rtt.avg as f64 / 1e6;
                self.broker_rtt
                    .with_label_values(&[cluster, client, &broker.nodeid.to_string()])
                    .set(secs);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_and_renders_mm2_names() {
        let m = Metrics::new();
        m.mm2_source[0]
            .with_label_values(&["a", "b", "t", "0"])
            .set(1.0);
        m.lag_records
            .with_label_values(&["a", "b", "t", "0"])
            .set(0.0);
        let text = m.render();
        assert!(text.contains("kafka_connect_mirror_mirrorsourceconnector_record_count{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} 1"), "{text}");
        assert!(text.contains("kmirror_replication_lag_records"));
    }
}

/// What happened to one partition since the last publication. Filled on the hot path with
/// plain arithmetic; turned into metrics once per flush interval.
#[derive(Clone, Debug, Default)]
pub struct PartitionDelta {
    /// Records acknowledged.
    pub acked: u64,
    /// Records not copied because they came from the target cluster.
    pub from_target: u64,
    /// Value bytes fetched.
    pub bytes: u64,
    /// Record age at fetch time (ms): count, sum, min, max, last.
    pub age: Summary,
    /// Source timestamp to acknowledgement (ms).
    pub latency: Summary,
}

/// Count, sum, min, max and last of a series of values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// How many.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Most recent.
    pub last: f64,
}

impl Summary {
    /// Adds a value.
    #[inline]
    pub fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
        self.last = v;
    }
}

/// The metric series of one replicated partition, resolved once when it is assigned.
pub struct PartitionMetrics {
    mm2_labels: [String; 4],
    own_labels: [String; 4],
    mm2: Vec<prometheus::Gauge>,
    lag_records: prometheus::Gauge,
    lag_seconds: prometheus::Gauge,
    records: prometheus::IntCounter,
    /// The state series of the current state (the others are not exported), and its index in
    /// [`STATES`].
    state: Option<(usize, prometheus::Gauge)>,
    /// The family of [`names::PARTITION_STATE`].
    state_family: prometheus::GaugeVec,
    age: kmirror_core::window::Window,
    latency: kmirror_core::window::Window,
    rate: kmirror_core::window::Window,
    bytes: kmirror_core::window::Window,
    record_count: u64,
    byte_count: u64,
    /// When the partition last copied or fetched anything (ms).
    active_at: u64,
    /// The lag, lag seconds and state last published.
    published: Option<(Option<i64>, u64, usize)>,
    /// Nothing happened for longer than the windows hold: every gauge holds its final value
    /// until something happens again.
    settled: bool,
}

/// After this long without activity, the windowed gauges (two 30 s samples) no longer change.
const SETTLES_AFTER_MS: u64 = 2 * 30_000 + 1_000;

impl PartitionMetrics {
    /// Series for `source_topic`-`partition` copied to `remote_topic`.
    pub fn new(
        m: &Metrics,
        source: &str,
        target: &str,
        source_topic: &str,
        remote_topic: &str,
        partition: i32,
    ) -> Self {
        let p = partition.to_string();
        let mm2_labels = [
            source.to_owned(),
            target.to_owned(),
            remote_topic.to_owned(),
            p.clone(),
        ];
        let own_labels = [
            source.to_owned(),
            target.to_owned(),
            source_topic.to_owned(),
            p,
        ];
        let mm2_refs: Vec<&str> = mm2_labels.iter().map(String::as_str).collect();
        let own: Vec<&str> = own_labels.iter().map(String::as_str).collect();
        Self {
            mm2: m
                .mm2_source
                .iter()
                .map(|g| g.with_label_values(&mm2_refs))
                .collect(),
            lag_records: m.lag_records.with_label_values(&own),
            lag_seconds: m.lag_seconds.with_label_values(&own),
            records: m.records.with_label_values(&own),
            state: None,
            state_family: m.partition_state.clone(),
            mm2_labels,
            own_labels,
            age: kmirror_core::window::Window::default(),
            latency: kmirror_core::window::Window::default(),
            rate: kmirror_core::window::Window::default(),
            bytes: kmirror_core::window::Window::default(),
            record_count: 0,
            byte_count: 0,
            active_at: 0,
            published: None,
            settled: false,
        }
    }

    /// Publishes what happened since the last call, the lag and the state.
    #[allow(clippy::cast_precision_loss)]
    pub fn publish(
        &mut self,
        now_ms: u64,
        d: &PartitionDelta,
        lag: Option<i64>,
        lag_seconds: f64,
        state: &str,
    ) {
        let active = d.acked > 0 || d.bytes > 0 || d.age.count > 0 || d.latency.count > 0;
        let state_index = STATES
            .iter()
            .position(|s| *s == state)
            .unwrap_or(usize::MAX);
        let published = Some((lag, lag_seconds.to_bits(), state_index));
        if active {
            self.active_at = now_ms;
            self.settled = false;
        } else if self.settled && published == self.published {
            // Nothing to change: skip the windows and the gauges (thousands of idle
            // partitions publish every second).
            return;
        }
        self.record_count += d.acked;
        self.byte_count += d.bytes;
        self.records.inc_by(d.acked);
        self.rate.add_total(now_ms, d.acked as f64);
        self.bytes.add_total(now_ms, d.bytes as f64);
        let a = d.age;
        self.age
            .record_summary(now_ms, a.count, a.sum, a.min, a.max, a.last);
        let l = d.latency;
        self.latency
            .record_summary(now_ms, l.count, l.sum, l.min, l.max, l.last);
        let values = [
            self.record_count as f64,
            self.rate.rate(now_ms),
            self.byte_count as f64,
            self.bytes.rate(now_ms),
            self.age.last().unwrap_or(f64::NAN),
            self.age.min(now_ms),
            self.age.max(now_ms),
            self.age.avg(now_ms),
            self.latency.last().unwrap_or(f64::NAN),
            self.latency.min(now_ms),
            self.latency.max(now_ms),
            self.latency.avg(now_ms),
        ];
        for (g, v) in self.mm2.iter().zip(values) {
            g.set(v);
        }
        if let Some(lag) = lag {
            self.lag_records.set(lag as f64);
        }
        self.lag_seconds.set(lag_seconds);
        if self.state.as_ref().map(|(i, _)| *i) != Some(state_index) {
            let mut labels: Vec<&str> = self.own_labels.iter().map(String::as_str).collect();
            // The first time, every state: an earlier replicator of the partition (replaced
            // after a fatal error) may have left its own.
            let stale: Vec<&str> = match self.state.take() {
                Some((old, _)) => STATES.get(old).into_iter().copied().collect(),
                None => STATES.to_vec(),
            };
            for s in stale {
                labels.push(s);
                let _ = self.state_family.remove_label_values(&labels);
                labels.pop();
            }
            if let Some(name) = STATES.get(state_index) {
                labels.push(name);
                let gauge = self.state_family.with_label_values(&labels);
                gauge.set(1.0);
                self.state = Some((state_index, gauge));
            }
        }
        self.published = published;
        self.settled = !active && now_ms.saturating_sub(self.active_at) >= SETTLES_AFTER_MS;
    }

    /// Removes the partition's series (it was released).
    pub fn remove(&self, m: &Metrics) {
        let mm2: Vec<&str> = self.mm2_labels.iter().map(String::as_str).collect();
        let own: Vec<&str> = self.own_labels.iter().map(String::as_str).collect();
        for g in &m.mm2_source {
            let _ = g.remove_label_values(&mm2);
        }
        let _ = m.lag_records.remove_label_values(&own);
        let _ = m.lag_seconds.remove_label_values(&own);
        let _ = m.records.remove_label_values(&own);
        for s in STATES {
            let mut l = own.clone();
            l.push(s);
            let _ = m.partition_state.remove_label_values(&l);
        }
    }
}
