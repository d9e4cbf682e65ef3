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

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

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
    BROKER, CLIENT, CLUSTER, GROUP, KEY, KIND, OPERATION, PARTITION, RESOURCE, SOURCE, TARGET,
    TOPIC,
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
    /// The per-partition families (MM2's source metrics, lag, lag seconds, records, state).
    partitions: PartitionTable,
    /// MM2 checkpoint latency: value, min, max, avg.
    pub mm2_checkpoint: Vec<GaugeVec>,
    /// See [`names::RPO_SECONDS`].
    pub rpo_seconds: GaugeVec,
    /// See [`names::LATENCY`].
    pub latency: HistogramVec,
    /// See [`names::TRANSACTION_COMMIT`].
    pub transaction_commit: HistogramVec,
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
            partitions: PartitionTable::new(),
            mm2_checkpoint,
            rpo_seconds: gauge(&r, names::RPO_SECONDS, "Seconds of source data that would be lost if the source vanished now (highest partition lag in seconds)", &flow),
            latency,
            transaction_commit,
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
            source_records_deleted: counter(&r, names::SOURCE_RECORDS_DELETED, "Records the source deleted (retention, DeleteRecords) before kmirror copied them", &[SOURCE, TARGET, TOPIC, PARTITION]),
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
        let mut scrape = self.scrape();
        let mut buf = Vec::new();
        while scrape.next_chunk(&mut buf, usize::MAX) {}
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The text exposition in pieces, for an endpoint that writes each before rendering the
    /// next: at 10,000 partitions the whole text is over 20 MB.
    pub fn scrape(&self) -> Scrape<'_> {
        Scrape {
            metrics: self,
            registry_done: false,
            series: self.partitions.snapshot(),
            family: 0,
            next: 0,
            header_done: false,
        }
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

impl PartitionDelta {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.acked == 0
            && self.from_target == 0
            && self.bytes == 0
            && self.age.count == 0
            && self.latency.count == 0
    }
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

/// The numbers behind one partition's series, written by its replicator and read at scrape
/// time. The `prometheus` crate costs about 520 bytes a series, and a partition has sixteen
/// (83 MB at 10,000 partitions, and a scrape built an object per series on top); these are
/// plain atomics, written out as text by [`Scrape`].
struct PartitionCells {
    /// The remote topic (MM2's families are labelled with it).
    remote_topic: String,
    /// MM2's source attributes, as in [`MM2_SOURCE_ATTRIBUTES`] (f64 bits).
    mm2: [AtomicU64; MM2_SOURCE_ATTRIBUTES.len()],
    /// [`names::LAG_RECORDS`] (f64 bits).
    lag_records: AtomicU64,
    /// [`names::LAG_SECONDS`] (f64 bits).
    lag_seconds: AtomicU64,
    /// [`names::RECORDS`].
    records: AtomicU64,
    /// The index in [`STATES`] of the current state; `u8::MAX` before the first.
    state: AtomicU8,
}

/// A partition's place in the table: source alias, target alias, source topic, partition.
type SeriesKey = (String, String, String, i32);

/// Every assigned partition's cells, in label order.
struct PartitionTable {
    series: Mutex<BTreeMap<SeriesKey, Arc<PartitionCells>>>,
    /// The names of MM2's source families, as in [`MM2_SOURCE_ATTRIBUTES`].
    mm2_names: Vec<String>,
}

/// What a family of the table shows.
#[derive(Clone, Copy)]
enum Column {
    Mm2(usize),
    LagRecords,
    LagSeconds,
    Records,
    State,
}

/// The table's families, in the order they are written.
const COLUMNS: [Column; MM2_SOURCE_ATTRIBUTES.len() + 4] = {
    let mut c = [Column::State; MM2_SOURCE_ATTRIBUTES.len() + 4];
    let mut i = 0;
    while i < MM2_SOURCE_ATTRIBUTES.len() {
        c[i] = Column::Mm2(i);
        i += 1;
    }
    c[i] = Column::LagRecords;
    c[i + 1] = Column::LagSeconds;
    c[i + 2] = Column::Records;
    c
};

impl PartitionTable {
    fn new() -> Self {
        Self {
            series: Mutex::new(BTreeMap::new()),
            mm2_names: MM2_SOURCE_ATTRIBUTES
                .iter()
                .map(|a| format!("{}_{a}", names::MM2_SOURCE))
                .collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SeriesKey, Arc<PartitionCells>>> {
        // The map holds plain numbers: a panic elsewhere cannot leave it inconsistent.
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cells of `key`, created at 0 if new. A partition assigned again (a replicator
    /// replaced after a fatal error) keeps its record count.
    fn cells(&self, key: SeriesKey, remote_topic: &str) -> Arc<PartitionCells> {
        Arc::clone(self.lock().entry(key).or_insert_with(|| {
            Arc::new(PartitionCells {
                remote_topic: remote_topic.to_owned(),
                mm2: std::array::from_fn(|_| AtomicU64::new(0f64.to_bits())),
                lag_records: AtomicU64::new(0f64.to_bits()),
                lag_seconds: AtomicU64::new(0f64.to_bits()),
                records: AtomicU64::new(0),
                state: AtomicU8::new(u8::MAX),
            })
        }))
    }

    /// Removes `key` if it still holds `cells`.
    fn remove(&self, key: &SeriesKey, cells: &Arc<PartitionCells>) {
        let mut series = self.lock();
        if series.get(key).is_some_and(|c| Arc::ptr_eq(c, cells)) {
            series.remove(key);
        }
    }

    fn snapshot(&self) -> Vec<(SeriesKey, Arc<PartitionCells>)> {
        self.lock()
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect()
    }

    fn name(&self, column: Column) -> &str {
        match column {
            Column::Mm2(i) => self.mm2_names.get(i).map_or("", String::as_str),
            Column::LagRecords => names::LAG_RECORDS,
            Column::LagSeconds => names::LAG_SECONDS,
            Column::Records => names::RECORDS,
            Column::State => names::PARTITION_STATE,
        }
    }
}

impl Column {
    fn help(self) -> &'static str {
        match self {
            Self::Mm2(_) => "MirrorMaker 2 compatible",
            Self::LagRecords => "Records on the source not yet acknowledged by the target",
            Self::LagSeconds => "Seconds since the newest replicated record was written, while behind (0 when caught up)",
            Self::Records => "Records acknowledged by the target",
            Self::State => "1 for the partition's current state",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Records => "counter",
            _ => "gauge",
        }
    }

    /// The value of `cells` in this family, or `None` for no series.
    fn value(self, cells: &PartitionCells) -> Option<f64> {
        let bits = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        match self {
            Self::Mm2(i) => cells.mm2.get(i).map(bits),
            Self::LagRecords => Some(bits(&cells.lag_records)),
            Self::LagSeconds => Some(bits(&cells.lag_seconds)),
            #[allow(clippy::cast_precision_loss)]
            Self::Records => Some(cells.records.load(Ordering::Relaxed) as f64),
            Self::State => {
                (usize::from(cells.state.load(Ordering::Relaxed)) < STATES.len()).then_some(1.0)
            }
        }
    }
}

/// A scrape in progress: the registry's families, then the partition table's, family by family.
pub struct Scrape<'a> {
    metrics: &'a Metrics,
    registry_done: bool,
    /// The partitions when the scrape began.
    series: Vec<(SeriesKey, Arc<PartitionCells>)>,
    /// The table's family being written (index in [`COLUMNS`]).
    family: usize,
    /// The next partition of that family.
    next: usize,
    /// Whether that family's `HELP` and `TYPE` lines are written.
    header_done: bool,
}

impl Scrape<'_> {
    /// Appends the next part of the text to `buf`, until it holds at least `limit` bytes or
    /// the text ends; false once there was nothing left.
    pub fn next_chunk(&mut self, buf: &mut Vec<u8>, limit: usize) -> bool {
        let start = buf.len();
        if !self.registry_done {
            self.registry_done = true;
            if let Err(e) = TextEncoder::new().encode(&self.metrics.registry.gather(), buf) {
                tracing::warn!("encoding metrics: {e}");
            }
        }
        let table = &self.metrics.partitions;
        while buf.len() < limit {
            let Some(&column) = COLUMNS.get(self.family) else {
                break;
            };
            if self.series.is_empty() {
                break;
            }
            let name = table.name(column);
            if !self.header_done {
                self.header_done = true;
                let _ = write!(buf, "# HELP {name} {}", column.help());
                if let Column::Mm2(i) = column {
                    let _ = write!(buf, ": {}", MM2_SOURCE_ATTRIBUTES.get(i).unwrap_or(&""));
                }
                let _ = write!(buf, "\n# TYPE {name} {}\n", column.kind());
            }
            while buf.len() < limit {
                let Some(((source, target, topic, partition), cells)) = self.series.get(self.next)
                else {
                    self.family += 1;
                    self.next = 0;
                    self.header_done = false;
                    break;
                };
                self.next += 1;
                let Some(value) = column.value(cells) else {
                    continue;
                };
                let topic = match column {
                    Column::Mm2(_) => cells.remote_topic.as_str(),
                    _ => topic.as_str(),
                };
                // Label names in alphabetical order, as the `prometheus` crate writes them.
                let _ = write!(buf, "{name}{{partition=\"{partition}\",source=\"");
                escape_label(buf, source);
                if let Column::State = column {
                    let state = STATES
                        .get(usize::from(cells.state.load(Ordering::Relaxed)))
                        .copied()
                        .unwrap_or_default();
                    let _ = write!(buf, "\",state=\"{state}");
                }
                buf.extend_from_slice(b"\",target=\"");
                escape_label(buf, target);
                buf.extend_from_slice(b"\",topic=\"");
                escape_label(buf, topic);
                let _ = writeln!(buf, "\"}} {value}");
            }
        }
        buf.len() > start
    }
}

/// Appends a label value with `\`, `"` and newlines escaped.
fn escape_label(buf: &mut Vec<u8>, value: &str) {
    for b in value.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\n' => buf.extend_from_slice(b"\\n"),
            _ => buf.push(b),
        }
    }
}

/// The metric series of one replicated partition, resolved once when it is assigned.
pub struct PartitionMetrics {
    key: SeriesKey,
    cells: Arc<PartitionCells>,
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
        let key = (
            source.to_owned(),
            target.to_owned(),
            source_topic.to_owned(),
            partition,
        );
        Self {
            cells: m.partitions.cells(key.clone(), remote_topic),
            key,
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
        let cells = &self.cells;
        for (cell, v) in cells.mm2.iter().zip(values) {
            cell.store(v.to_bits(), Ordering::Relaxed);
        }
        cells.records.fetch_add(d.acked, Ordering::Relaxed);
        if let Some(lag) = lag {
            cells
                .lag_records
                .store((lag as f64).to_bits(), Ordering::Relaxed);
        }
        cells
            .lag_seconds
            .store(lag_seconds.to_bits(), Ordering::Relaxed);
        cells.state.store(
            u8::try_from(state_index).unwrap_or(u8::MAX),
            Ordering::Relaxed,
        );
        self.published = published;
        self.settled = !active && now_ms.saturating_sub(self.active_at) >= SETTLES_AFTER_MS;
    }

    /// Removes the partition's series (it was released).
    pub fn remove(&self, m: &Metrics) {
        m.partitions.remove(&self.key, &self.cells);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_and_renders_mm2_names() {
        let m = Metrics::new();
        m.error("a", "b", "fetch");
        let mut p = PartitionMetrics::new(&m, "a", "b", "t", "t", 0);
        let delta = PartitionDelta {
            acked: 1,
            bytes: 10,
            ..PartitionDelta::default()
        };
        p.publish(1_000, &delta, Some(3), 0.5, "copying");
        let text = m.render();
        for line in [
            "# TYPE kafka_connect_mirror_mirrorsourceconnector_record_count gauge",
            "kafka_connect_mirror_mirrorsourceconnector_record_count{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} 1",
            "kafka_connect_mirror_mirrorsourceconnector_byte_count{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} 10",
            "kafka_connect_mirror_mirrorsourceconnector_record_age_ms{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} NaN",
            "kmirror_replication_lag_records{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} 3",
            "kmirror_replication_lag_seconds{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} 0.5",
            "# TYPE kmirror_records_replicated_total counter",
            "kmirror_records_replicated_total{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} 1",
            "kmirror_partition_state{partition=\"0\",source=\"a\",state=\"copying\",target=\"b\",topic=\"t\"} 1",
            "kmirror_errors_total{kind=\"fetch\",source=\"a\",target=\"b\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in:\n{text}");
        }
    }

    #[test]
    fn mm2_families_name_the_remote_topic_and_labels_are_escaped() {
        let m = Metrics::new();
        let _p = PartitionMetrics::new(&m, "a\"b", "c\\d", "t", "a.t", 7);
        let text = m.render();
        assert!(
            text.contains("kafka_connect_mirror_mirrorsourceconnector_record_count{partition=\"7\",source=\"a\\\"b\",target=\"c\\\\d\",topic=\"a.t\"} 0"),
            "{text}"
        );
        assert!(text.contains("kmirror_replication_lag_records{partition=\"7\",source=\"a\\\"b\",target=\"c\\\\d\",topic=\"t\"} 0"), "{text}");
        // No state before the first publication.
        assert!(!text.contains("kmirror_partition_state{"), "{text}");
    }

    #[test]
    fn a_state_change_replaces_the_series_and_release_removes_every_series() {
        let m = Metrics::new();
        let mut p = PartitionMetrics::new(&m, "a", "b", "t", "t", 0);
        let mut q = PartitionMetrics::new(&m, "a", "b", "t", "t", 1);
        p.publish(1_000, &PartitionDelta::default(), Some(0), 0.0, "copying");
        q.publish(1_000, &PartitionDelta::default(), Some(0), 0.0, "copying");
        p.publish(2_000, &PartitionDelta::default(), Some(0), 0.0, "caught_up");
        let text = m.render();
        let states: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kmirror_partition_state{"))
            .collect();
        assert_eq!(
            states,
            [
                "kmirror_partition_state{partition=\"0\",source=\"a\",state=\"caught_up\",target=\"b\",topic=\"t\"} 1",
                "kmirror_partition_state{partition=\"1\",source=\"a\",state=\"copying\",target=\"b\",topic=\"t\"} 1",
            ]
        );
        p.remove(&m);
        let text = m.render();
        assert!(!text.contains("partition=\"0\""), "{text}");
        assert_eq!(
            text.matches("partition=\"1\"").count(),
            COLUMNS.len(),
            "{text}"
        );
        q.remove(&m);
        let text = m.render();
        assert!(!text.contains("partition="), "{text}");
        assert!(
            !text.contains(names::LAG_RECORDS),
            "no family without series: {text}"
        );
    }

    #[test]
    fn a_partition_assigned_again_keeps_its_count_and_the_old_one_cannot_remove_it() {
        let m = Metrics::new();
        let mut old = PartitionMetrics::new(&m, "a", "b", "t", "t", 0);
        let delta = PartitionDelta {
            acked: 5,
            ..PartitionDelta::default()
        };
        old.publish(1_000, &delta, None, 0.0, "failed");
        let mut new = PartitionMetrics::new(&m, "a", "b", "t", "t", 0);
        new.publish(2_000, &delta, None, 0.0, "copying");
        assert!(m.render().contains("kmirror_records_replicated_total{partition=\"0\",source=\"a\",target=\"b\",topic=\"t\"} 10"));
        // Released and assigned again: the new series stays when the old handle removes.
        new.remove(&m);
        let again = PartitionMetrics::new(&m, "a", "b", "t", "t", 0);
        old.remove(&m);
        assert!(m
            .render()
            .contains("kmirror_records_replicated_total{partition=\"0\""));
        drop(again);
    }

    #[test]
    fn the_text_in_small_chunks_is_the_text_in_one() {
        let m = Metrics::new();
        let mut parts: Vec<PartitionMetrics> = (0..50)
            .map(|i| PartitionMetrics::new(&m, "a", "b", &format!("t{}", i % 7), "r", i))
            .collect();
        for p in &mut parts {
            p.publish(1_000, &PartitionDelta::default(), Some(1), 0.0, "copying");
        }
        let whole = m.render();
        let mut scrape = m.scrape();
        let mut chunks = Vec::new();
        let mut buf = Vec::new();
        while scrape.next_chunk(&mut buf, 100) {
            assert!(buf.len() < 100 + 200, "a chunk ends soon after its limit");
            chunks.extend_from_slice(&buf);
            buf.clear();
        }
        assert_eq!(String::from_utf8_lossy(&chunks), whole);
    }
}
