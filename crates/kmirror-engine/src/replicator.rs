//! The replication data plane of one flow: source partitions copied to the target.
//!
//! A [`Replicator`] runs on a dedicated thread (librdkafka calls block) and owns one consumer on
//! the source and an idempotent producer on the target (more than one when some target topics
//! accept smaller batches than it sends: see [`crate::lanes`]). Each assigned source partition is a
//! pipeline slot with a [`PartitionTracker`]; records go to the same partition number of the
//! target topic with key, value, headers and timestamp unchanged. Delivery reports are applied
//! on the same thread, so the hot path takes no contended lock, spawns no task and allocates
//! nothing beyond what librdkafka copies.
//!
//! Progress (the next source offset whose predecessors are all acknowledged) is written to the
//! progress topic every flush interval, and between flushes as soon as the previous write is
//! acknowledged, through a producer of its own (not queued behind the data). It only ever names
//! acknowledged records, so it can never get ahead of the data it describes. A partition whose records the target refuses for good (too large,
//! not authorized) stops with an error naming topic, partition and offset; the others go on.
//! Ownership changes come as [`Command`]s: a released partition drains its in-flight records and
//! stores its final progress before it is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use kmirror_core::mm2::OffsetSync;
use kmirror_core::offset_sync::SyncWriter;
use kmirror_core::progress::{
    encode_key, encode_map_key, encode_map_value, encode_value, partition_for_key, TopicIds,
};
use kmirror_core::provenance::{Decision, Provenance};
use kmirror_core::tracker::{PartitionTracker, PipelineState};
use kmirror_core::translate::OffsetMap;
use kmirror_core::{ClusterAlias, Offset, TopicPartition};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::client::ClusterContext;
use crate::error::{Error, Result};
use crate::lanes::{
    record_size, DeliveryBuf, DeliveryContext, Lanes, Route, MAP_BIT, PROGRESS_BIT,
};
use crate::metrics::{Metrics, PartitionDelta, PartitionMetrics};
use crate::status::{PartitionReport, StatusBoard};

/// How long one consumer poll may wait when idle.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How long it may wait once nothing was fetched or acknowledged for [`QUIET_AFTER`] polls:
/// new records end the wait at once, only delivery reports of records sent a second or more
/// before wait longer, and a caught-up replicator of many partitions wakes up 4 times a
/// second instead of 20.
const QUIET_POLL: Duration = Duration::from_millis(250);
const QUIET_AFTER: u32 = 20;
/// How often every partition is looked at for a due retry or a finished reset: each look
/// visits every partition, which at 10,000 of them on every loop of a busy replicator costs
/// more than the copy.
const SLOT_SCAN_EVERY: Duration = Duration::from_millis(100);
/// How often the partitions are looked at for due retries and resets even when no
/// partition is known to wait for one (a safety net for the `scan_needed` flag).
const SLOT_SCAN_AT_LEAST_EVERY: Duration = Duration::from_secs(5);
/// Records forwarded between two producer polls.
const BATCH: usize = 2048;
/// Back-off before a partition stopped by a retriable error is tried again.
const RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// Back-off before a partition whose target partition the producer did not know is tried again
/// (after a metadata refresh).
const METADATA_BACKOFF: Duration = Duration::from_millis(500);
/// A repeated source consumer error is logged again after this long.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Largest map (in runs) written with the progress between flushes.
const FAST_MAP_RUNS: usize = 16;
/// Shortest time between two progress writes between flushes.
const PROGRESS_MIN_INTERVAL: Duration = Duration::from_millis(20);
/// Most progress records per second written between flushes (many busy partitions write less
/// often).
const PROGRESS_RECORDS_PER_SECOND: f64 = 5_000.0;
/// How long a partition whose source log ends before its position waits for the topic refresh
/// to find the topic recreated, before it continues from the log's end.
const TRUNCATION_WAIT: Duration = Duration::from_secs(15);
/// Longest look for copies on the target beyond the stored progress, per assignment.
const TAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// Exactly-once mode: when the first transaction of a replicator is committed (after the first
/// batch of records forwarded).
const FIRST_COMMIT_AFTER: Duration = Duration::ZERO;

/// Longest wait at shutdown for offset syncs to be acknowledged by the source.
const SYNC_DRAIN: Duration = Duration::from_secs(1);

/// Longest wait for the producer's metadata of one topic.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest time between two checks of a silent producer's metadata.
const WEDGE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Where a newly assigned partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Stored progress: the next offset to copy.
    At(Offset),
    /// The oldest record on the source.
    Earliest,
    /// The end of the source partition.
    Latest,
}

/// A source partition to copy.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// Source topic and partition.
    pub source: TopicPartition,
    /// Topic on the target (same partition number).
    pub target_topic: Arc<str>,
    /// Where to start.
    pub start: Start,
    /// Where the partition's records were copied so far (from stored progress).
    pub map: OffsetMap,
    /// The ids of the source and target topics, stored with the progress.
    pub ids: TopicIds,
    /// The target topic's `max.message.bytes`, if known: batches are kept within it, and a
    /// record that alone exceeds it stops its partition before it is sent.
    pub max_message_bytes: Option<usize>,
    /// The codec of the target topic's batches (`None`: as the producer is configured).
    pub compression: Option<crate::codec::Codec>,
}

/// Ownership changes for the replicator.
#[derive(Debug)]
pub enum Command {
    /// Start copying these partitions.
    Assign(Vec<Assignment>),
    /// Stop copying these partitions: drain, store progress, release.
    Release(Vec<TopicPartition>),
    /// The topic of these partitions was deleted and created again on the source or the target:
    /// drain what is in flight, then copy each again as the assignment says (with a new map).
    Reset(Vec<Assignment>),
    /// Topic ids learned after the topic's partitions were assigned (a side not known then,
    /// or a target topic created again): stored with progress and maps from now on.
    SetIds(Vec<(Arc<str>, TopicIds)>),
    /// Scale-out: these partitions go to another replica. Like a release, and `done` is
    /// answered once each is dropped with its final progress acknowledged by the target (or
    /// at once for partitions not held).
    HandOver(Vec<TopicPartition>, std::sync::mpsc::Sender<()>),
}

/// Partitions being handed to another replica (see [`Command::HandOver`]).
struct HandOver {
    pending: HashSet<TopicPartition>,
    count: u64,
    done: std::sync::mpsc::Sender<()>,
}

/// How often a replicator with partitions to hand over stores progress and drops what drained.
const HANDOVER_TICK: Duration = Duration::from_millis(50);

/// How long one look waits for the final progress of handed-over partitions to be acknowledged
/// (not acknowledged yet, it is looked at again at the next tick).
const HANDOVER_FLUSH: Duration = Duration::from_millis(500);

/// How the replicator ended.
#[derive(Debug, Default)]
pub struct Report {
    /// Records acknowledged by the target during this run.
    pub copied: u64,
    /// Whether every partition drained and its progress was stored before the deadline.
    pub clean: bool,
}

/// Settings of a replicator.
pub struct ReplicatorSettings {
    /// Source alias (the `cluster` of progress records).
    pub source: ClusterAlias,
    /// Flow name for logs (`S->T`).
    pub flow: String,
    /// Progress topic on the target.
    pub progress_topic: String,
    /// Its partition count.
    pub progress_partitions: i32,
    /// How often progress is written.
    pub flush_interval: Duration,
    /// Time allowed for draining at shutdown.
    pub shutdown_timeout: Duration,
    /// Target alias (metric labels).
    pub target: ClusterAlias,
    /// Where metrics go.
    pub metrics: Arc<Metrics>,
    /// Where translation maps are published for checkpoints.
    pub maps: Arc<crate::status::MapBoard>,
    /// How long a partition may be neither copying nor caught up before it is reported stuck.
    pub stall_after: Duration,
    /// Replication producers per kind of batch (size limit, codec); partitions are spread over
    /// them by number.
    pub producers: usize,
    /// How long records may be in flight with no delivery report at all, while the target names
    /// a leader for their partition (or the producer cannot reach it), before the producer is
    /// taken for stuck and replaced (the
    /// replicator ends with a retriable error and is started again from the stored progress).
    /// librdkafka can stay stuck for good after a metadata response without a leader (a fenced
    /// broker): only a new client recovers.
    pub wedged_after: Duration,
    /// Readers of both clusters that find, at assignment, the records a crash left on the
    /// target beyond the stored progress (see [`crate::tail`]); `None`: copy from the progress.
    pub tails: Option<crate::tail::Readers>,
    /// The origin header written on copied records and by which records from the target are
    /// not copied back (`None`: records are copied as they are).
    pub provenance: Option<Provenance>,
    /// Exactly-once mode (`None`: at least once). The producer config must be transactional
    /// (see [`crate::transactions::producer_config`]).
    pub transactions: Option<crate::transactions::Transactions>,
}

/// The source's (log start, high watermark) of a partition as the consumer last saw them in
/// a Fetch response, for lag and pruning; `None` until one carried them.
type Marks<'a> = &'a dyn Fn(&str, i32) -> Option<(i64, i64)>;

/// Consumer context: logs errors and records librdkafka statistics, when an operator turned
/// them on (`statistics.interval.ms`; off by default, as their JSON grows with partitions).
pub struct SourceContext {
    metrics: Arc<Metrics>,
    alias: String,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(cluster = %self.alias, error = %error, "{reason}");
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        self.metrics
            .client_statistics(&self.alias, "replication-consumer", &statistics);
    }
}

impl ConsumerContext for SourceContext {}

/// Producer context of the offset-sync producer: counts syncs in flight (MM2 allows 10).
pub struct SyncContext {
    cluster: ClusterContext,
    in_flight: std::sync::atomic::AtomicUsize,
}

impl ClientContext for SyncContext {
    /// Not used: skip parsing (rdkafka's default logs each report at INFO).
    fn stats_raw(&self, _statistics: &[u8]) {}

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.cluster.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cluster.error(error, reason);
    }
}

impl ProducerContext for SyncContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        self.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Err((e, _)) = result {
            // A later sync supersedes it; a lost one only makes translation coarser.
            tracing::warn!("offset sync not delivered: {e}");
        }
    }
}

/// Where offset syncs go.
pub struct SyncTarget {
    /// Producer config for the cluster holding the offset-syncs topic.
    pub producer: ClientConfig,
    /// That cluster's context.
    pub context: ClusterContext,
    /// Topic name.
    pub topic: String,
    /// `offset.lag.max`.
    pub lag_max: i64,
}

struct SyncEmitter {
    producer: BaseProducer<SyncContext>,
    topic: String,
    lag_max: i64,
    /// Slots that may have a pending sync.
    dirty: Vec<u32>,
}

/// MM2's limit of offset syncs in flight.
const MAX_SYNCS_IN_FLIGHT: usize = 10;

struct Slot {
    source: TopicPartition,
    target_topic: Arc<str>,
    /// The producer lane of the target topic, and its limit.
    route: Route,
    tracker: PartitionTracker,
    releasing: bool,
    /// Released for another replica: its map leaves this process with it.
    handed_over: bool,
    retry_at: Option<Instant>,
    /// The producer did not know the target partition: refresh its metadata before retrying.
    refresh_target: bool,
    /// Whether the consumer's position is known: a stored position, or a record fetched. A
    /// partition started at the earliest or latest offset has none until its first record, so
    /// it can neither be out of range nor have lost records.
    position_known: bool,
    final_progress_sent: Option<Offset>,
    metrics: PartitionMetrics,
    delta: PartitionDelta,
    sync: Option<SyncWriter>,
    map: OffsetMap,
    map_dirty: bool,
    /// The map changed since it was last published for checkpoints.
    map_unpublished: bool,
    last_acked_ts: Option<i64>,
    first_fetched_ts: Option<i64>,
    /// The topic ids stored with progress and map.
    ids: TopicIds,
    /// The topic was recreated: once drained, the partition starts again as this says.
    pending_reset: Option<Assignment>,
    /// The source partition ended before the position (the high watermark then): it continues
    /// from there unless a reset (recreated topic) comes first.
    truncated_to: Option<i64>,
    /// What `/readyz`, the state metric and the log were last told.
    watch: StallWatch,
    /// Whether a map was ever sent for this partition (since it was assigned or reset): a
    /// position stored without any map would read as copied by another replicator.
    map_written: bool,
    /// When a delivery report of this partition's records last came, or its first record in
    /// flight was sent: a producer silent since long is checked for being stuck.
    delivered_at: Instant,
    /// Where the consumer was told to start (for a partition assigned again before any record).
    start: Start,
    /// When the partition was (last) handed to the consumer.
    handed_at: Instant,
    /// Exactly-once mode: the first record the target refused for good in an earlier run, and
    /// why (the partition stops there).
    poison: Option<(Offset, String)>,
}

/// Tells a partition that moves from one that does not, for [`PartitionReport`]s.
struct StallWatch {
    /// Progress at the last look, and when it last changed (or the partition was caught up).
    progress: i64,
    moved_at: Instant,
    /// The state at the last look, and since when.
    state: &'static str,
    since: Instant,
    /// Whether the partition was reported stuck.
    stuck: bool,
    /// The source's (log start, high watermark) at the last look.
    marks: Option<(i64, i64)>,
    /// The last report published to the status board.
    reported: Option<Reported>,
}

/// What a [`PartitionReport`] says, to publish only reports that changed.
#[derive(Clone, PartialEq, Eq)]
struct Reported {
    state: &'static str,
    stuck: bool,
    stuck_for: u64,
    next_offset: i64,
    in_flight: u64,
    copied: u64,
    error: Option<String>,
}

impl Slot {
    /// Exactly-once mode: the progress to write into the open transaction. Every record
    /// forwarded is in it and commits with it, or none does: so the position after the last
    /// one forwarded, written before they are acknowledged (the commit then waits for both at
    /// once). `None` if that is stored already.
    fn transaction_progress(&self) -> Option<Offset> {
        if self.tracker.in_flight() == 0 {
            return self.tracker.progress_to_store();
        }
        let next = self.tracker.fetch_next();
        (self.tracker.stored() != Some(next)).then_some(next)
    }
}

impl StallWatch {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            progress: -1,
            moved_at: now,
            state: "copying",
            since: now,
            stuck: false,
            marks: None,
            reported: None,
        }
    }
}

/// A caught-up partition's watermarks are looked up once in this many status publications at
/// least (each lookup is a linear search of librdkafka's topic list); a partition that moves,
/// has records in flight or is behind, at every one.
const CAUGHT_UP_MARKS_EVERY: usize = 5;
/// ... and with more partitions, less often: about this many lookups a publication, at most
/// once in [`CAUGHT_UP_MARKS_EVERY_MAX`] (at 10,000 partitions of 1,000 topics, one lookup per
/// partition every five seconds was 0.7 % of a core). A caught-up partition whose new records
/// the consumer does not fetch is reported stalled that much later.
const CAUGHT_UP_MARKS_PER_PUBLICATION: usize = 400;
const CAUGHT_UP_MARKS_EVERY_MAX: usize = 30;

/// The replication worker of one flow.
pub struct Replicator {
    consumer: BaseConsumer<SourceContext>,
    core: Core,
    /// Source consumer errors: when each was last logged and how often it came since.
    consumer_errors: HashMap<String, (Instant, u64)>,
    /// Source topics the consumer has been assigned partitions of (it has their metadata).
    consumer_topics: HashSet<Arc<str>>,
    /// Polls in a row that fetched nothing and saw nothing acknowledged.
    quiet_polls: u32,
    /// When the replicator started, and whether its first fetched and first copied record
    /// were logged (start-up milestones).
    started: Instant,
    first_fetch_logged: bool,
    first_copy_logged: bool,
}

/// Everything but the consumer, so that a fetched record (which borrows the consumer) can be
/// forwarded while the state is mutated.
struct Core {
    settings: ReplicatorSettings,
    /// Cancelled at shutdown: every wait on the target gives up.
    shutdown: CancellationToken,
    /// When the shutdown must be over (set once it starts).
    deadline: Option<Instant>,
    /// The replication producers.
    lanes: Lanes,
    /// Writes progress and translation maps.
    progress_producer: BaseProducer<DeliveryContext>,
    slots: Vec<Option<Slot>>,
    /// Status publications so far (caught-up partitions take turns at watermark lookups).
    publications: usize,
    /// Indexes of the empty entries of `slots`.
    free_slots: Vec<usize>,
    /// Many partitions are being assigned at once: each is logged at debug level, and the
    /// batch in one line.
    assigning_many: bool,
    /// Source topic → slot index per partition.
    by_source: crate::lanes::TopicMap<Vec<u32>>,
    status: Arc<StatusBoard>,
    copied: u64,
    latency: prometheus::Histogram,
    syncs: Option<SyncEmitter>,
    /// When partition states were last published.
    published_at: Instant,
    /// Progress records sent and not yet acknowledged.
    progress_in_flight: usize,
    /// Data records acknowledged since progress was last written.
    acked_since_progress: u64,
    /// When progress was last written, and how long to wait before writing it again between
    /// flushes.
    progress_at: Instant,
    progress_wait: Duration,
    /// When the producer was last checked for being stuck.
    wedge_checked_at: Instant,
    /// Whether some partition may wait for a retry or a reset: only then are all of them
    /// looked at every [`SLOT_SCAN_EVERY`] (otherwise every [`SLOT_SCAN_AT_LEAST_EVERY`]).
    scan_needed: bool,
    /// Exactly-once mode: whether a transaction is open, and since when; transactions
    /// committed so far.
    txn_open: Vec<bool>,
    txn_began: Instant,
    txn_commits: u64,
    /// When every changed map was last written into a transaction.
    maps_stored_at: Instant,
    /// A progress record could not be queued since the last look.
    progress_unqueued: bool,
    /// Scale-out hand-overs not finished yet.
    handovers: Vec<HandOver>,
}

impl Replicator {
    /// Creates the clients. `producer_cluster` is the target's context (for error messages).
    pub fn build(
        settings: ReplicatorSettings,
        consumer: &ClientConfig,
        producer: &ClientConfig,
        producer_cluster: ClusterContext,
        status: Arc<StatusBoard>,
        syncs: Option<SyncTarget>,
    ) -> Result<Self> {
        let syncs = match syncs {
            None => None,
            Some(t) => {
                let context = SyncContext {
                    cluster: t.context,
                    in_flight: std::sync::atomic::AtomicUsize::new(0),
                };
                let producer: BaseProducer<SyncContext> =
                    t.producer
                        .create_with_context(context)
                        .map_err(|e| Error::client("offset-sync producer", &e))?;
                Some(SyncEmitter {
                    producer,
                    topic: t.topic,
                    lag_max: t.lag_max,
                    dirty: Vec::new(),
                })
            }
        };
        let source_context = SourceContext {
            metrics: Arc::clone(&settings.metrics),
            alias: settings.source.to_string(),
        };
        let consumer: BaseConsumer<SourceContext> = consumer
            .create_with_context(source_context)
            .map_err(|e| Error::client("replication consumer", &e))?;
        let progress_context = DeliveryContext::new(
            producer_cluster.sibling(),
            Arc::new(Mutex::new(DeliveryBuf::default())),
            Arc::clone(&settings.metrics),
            settings.target.to_string(),
        );
        let latency = settings
            .metrics
            .latency
            .with_label_values(&[settings.source.as_str(), settings.target.as_str()]);
        // Progress goes through a producer of its own, so that it is not queued behind the data
        // (a write acknowledged within milliseconds keeps what a crash copies twice small). Its
        // values are acknowledged positions, so it can never get ahead of the data.
        let mut progress_config = producer.clone();
        // In exactly-once mode progress goes with the records, through the transactional
        // producer; this one stays idle.
        progress_config.remove("transactional.id");
        progress_config
            .set("linger.ms", "0")
            .set("statistics.interval.ms", "0")
            .set("queue.buffering.max.kbytes", "4096");
        let progress_producer: BaseProducer<DeliveryContext> = progress_config
            .create_with_context(progress_context)
            .map_err(|e| Error::client("progress producer", &e))?;
        let transactional = settings.transactions.is_some();
        let mut lanes = Lanes::new(
            producer,
            producer_cluster,
            Arc::clone(&settings.metrics),
            settings.target.to_string(),
            if transactional { 1 } else { settings.producers },
        )?;
        if let Some(t) = &settings.transactions {
            lanes.transactional(&t.transactional_id);
        }
        Ok(Self {
            consumer,
            consumer_errors: HashMap::new(),
            consumer_topics: HashSet::new(),
            quiet_polls: 0,
            started: Instant::now(),
            first_fetch_logged: false,
            first_copy_logged: false,
            core: Core {
                settings,
                shutdown: CancellationToken::new(),
                deadline: None,
                lanes,
                progress_producer,
                slots: Vec::new(),
                free_slots: Vec::new(),
                publications: 0,
                assigning_many: false,
                by_source: crate::lanes::TopicMap::default(),
                status,
                copied: 0,
                latency,
                syncs,
                published_at: Instant::now(),
                progress_in_flight: 0,
                acked_since_progress: 0,
                progress_at: Instant::now(),
                progress_wait: PROGRESS_MIN_INTERVAL,
                wedge_checked_at: Instant::now(),
                scan_needed: false,
                txn_open: Vec::new(),
                txn_began: Instant::now(),
                txn_commits: 0,
                maps_stored_at: Instant::now(),
                progress_unqueued: false,
                handovers: Vec::new(),
            },
        })
    }

    /// Exactly-once mode: fences earlier instances of the flow (their open transaction is
    /// aborted) and readies the transactional producer. Call before the stored progress is
    /// read, so that nothing an earlier instance commits afterwards is missed. Blocking.
    pub fn init_transactions(&self, shutdown: &CancellationToken) -> Result<()> {
        let Some(t) = &self.core.settings.transactions else {
            return Ok(());
        };
        self.core.lanes.fence(shutdown)?;
        tracing::info!(
            transactional_id = %t.transactional_id,
            commit_interval_ms = t.commit_interval.as_millis(),
            "exactly-once mode: records and their progress are committed together; earlier instances of this flow are fenced"
        );
        Ok(())
    }

    /// Runs until `shutdown` is cancelled (then drains and stores progress) or a fatal error.
    /// Blocking: call from a dedicated thread. Returns the replicator too: dropping it closes
    /// its clients, which can wait on a cluster that does not answer (the consumer leaves its
    /// group), so the caller can take the report first and bound that wait.
    pub fn run(
        mut self,
        commands: &mpsc::Receiver<Command>,
        shutdown: &CancellationToken,
    ) -> (Result<Report>, Self) {
        let outcome = self.work(commands, shutdown);
        (outcome, self)
    }

    fn work(
        &mut self,
        commands: &mpsc::Receiver<Command>,
        shutdown: &CancellationToken,
    ) -> Result<Report> {
        let span = tracing::info_span!("replicator", flow = %self.core.settings.flow);
        let _guard = span.enter();
        self.core.shutdown = shutdown.clone();
        let mut last_flush = Instant::now();
        let mut last_scan = Instant::now();
        let mut logged_copied = 0;
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Assign(list)) => self.assign(list)?,
                    Ok(Command::Release(list)) => self.release(&list),
                    Ok(Command::Reset(list)) => self.reset(list)?,
                    Ok(Command::SetIds(list)) => self.core.set_ids(list),
                    Ok(Command::HandOver(list, done)) => self.hand_over(&list, done),
                    Err(mpsc::TryRecvError::Empty | mpsc::TryRecvError::Disconnected) => break,
                }
            }
            if shutdown.is_cancelled() {
                return self.shutdown();
            }
            self.pump()?;
            // Every few seconds even when nothing asked for it: a wait whose flag was not set
            // is found late, never left forever.
            let since_scan = last_scan.elapsed();
            if (self.core.scan_needed && since_scan >= SLOT_SCAN_EVERY)
                || since_scan >= SLOT_SCAN_AT_LEAST_EVERY
            {
                // Set again by the scans while some partition still waits.
                self.core.scan_needed = false;
                self.retry_failed()?;
                self.finish_resets()?;
                last_scan = Instant::now();
            }
            let transactional = self.core.settings.transactions.is_some();
            if !transactional {
                self.core.progress_between_flushes();
            }
            if last_flush.elapsed() >= self.core.settings.flush_interval
                || (!self.core.handovers.is_empty() && last_flush.elapsed() >= HANDOVER_TICK)
            {
                if transactional {
                    // Progress changed without records (none in flight to carry it).
                    let mut to_pause = Vec::new();
                    let stop = self.core.shutdown.clone();
                    self.core
                        .commit(&mut to_pause, crate::transactions::COMMIT_PATIENCE, &stop)?;
                    for tp in &to_pause {
                        self.pause(tp);
                    }
                } else {
                    self.core.store_progress(false)?;
                }
                self.core.promote_delayed_syncs();
                self.core.finish_releases();
                let consumer = &self.consumer;
                self.core.publish_status(&|t, p| {
                    kmirror_admin::cached_watermarks(consumer.client(), t, p)
                });
                self.core.check_wedged()?;
                self.reassign_unfetched();
                if tracing::enabled!(tracing::Level::DEBUG) && self.core.copied != logged_copied {
                    logged_copied = self.core.copied;
                    let in_flight: u64 = self
                        .core
                        .slots
                        .iter()
                        .flatten()
                        .map(|s| s.tracker.in_flight())
                        .sum();
                    tracing::debug!(copied = self.core.copied, in_flight, "copy progress");
                }
                last_flush = Instant::now();
            }
        }
    }

    /// Consume a batch, forward it, apply delivery reports.
    fn pump(&mut self) -> Result<()> {
        let mut timeout = if self.quiet_polls >= QUIET_AFTER {
            QUIET_POLL
        } else {
            IDLE_POLL
        };
        let mut to_pause = Vec::new();
        let now_ms = crate::now_millis();
        let copied_before = self.core.copied;
        let mut fetched = false;
        for _ in 0..BATCH {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(msg)) => {
                    fetched = true;
                    let consumer = &self.consumer;
                    self.core.forward(&msg, now_ms, &mut to_pause, &|t, p| {
                        kmirror_admin::cached_watermarks(consumer.client(), t, p)
                    })?;
                    timeout = Duration::ZERO;
                }
                Some(Err(e)) => {
                    self.consumer_error(&e);
                    break;
                }
            }
        }
        self.core.lanes.poll(0, Duration::ZERO);
        self.core.progress_producer.poll(Duration::ZERO);
        crate::lanes::drain(&self.core.progress_producer);
        if self.core.settings.transactions.is_some() {
            // Reports are applied when their transaction commits: maps, offset syncs and so
            // checkpoints never name a record that could still be aborted.
            self.core.commit_if_due(&mut to_pause)?;
        } else {
            self.core.apply_deliveries(&mut to_pause)?;
        }
        self.core.fire_syncs();
        for tp in &to_pause {
            self.pause(tp);
        }
        if fetched && !self.first_fetch_logged {
            self.first_fetch_logged = true;
            tracing::info!(
                after_ms = self.started.elapsed().as_millis(),
                "first record fetched from the source"
            );
        }
        if self.core.copied != copied_before && !self.first_copy_logged {
            self.first_copy_logged = true;
            tracing::info!(
                after_ms = self.started.elapsed().as_millis(),
                "first record copied (acknowledged by the target)"
            );
        }
        if fetched || self.core.copied != copied_before || self.core.progress_in_flight > 0 {
            self.quiet_polls = 0;
        } else {
            self.quiet_polls = self.quiet_polls.saturating_add(1);
        }
        Ok(())
    }

    fn pause(&self, tp: &TopicPartition) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition);
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(topic = %tp.topic, partition = tp.partition, "could not pause: {e}");
        }
    }

    /// Looks on the target for copies beyond the stored progress of partitions that resume
    /// from it (see [`crate::tail`]).
    fn find_tails(&self, list: &[Assignment]) -> HashMap<TopicPartition, crate::tail::Found> {
        let Some(readers) = &self.core.settings.tails else {
            return HashMap::new();
        };
        let tails: Vec<crate::tail::Tail> = list
            .iter()
            .filter(|a| {
                self.core
                    .slot_index(&a.source.topic, a.source.partition)
                    .is_none()
            })
            .filter_map(|a| {
                let Start::At(stored) = a.start else {
                    return None;
                };
                let Some((source_from, target_from)) = a.map.tail_start(stored.0) else {
                    tracing::debug!(topic = %a.source.topic, partition = a.source.partition, stored = stored.0, "no offset map beyond the stored progress: copies on the target after it cannot be looked for");
                    return None;
                };
                Some(crate::tail::Tail {
                    source: a.source.clone(),
                    target_topic: Arc::clone(&a.target_topic),
                    source_from,
                    target_from,
                    stored: stored.0,
                })
            })
            .collect();
        crate::tail::find(readers, tails, TAIL_TIMEOUT, &self.core.shutdown)
    }

    /// The end offsets of the partitions of `list` that start at the source's end, in one
    /// ListOffsets round (blocking, bounded); partitions it could not tell start at the end as
    /// the consumer finds it.
    fn latest_offsets(&self, list: &[Assignment]) -> HashMap<TopicPartition, i64> {
        self.logical_offsets(list, Start::Latest)
    }

    /// The offsets that `start` (earliest or latest) names now for the partitions of `list`
    /// that start there, in one ListOffsets request per broker (assigned at a logical offset,
    /// librdkafka sends one request per partition: 10,000 of them delay the first fetch by
    /// seconds). Partitions not answered are left out.
    fn logical_offsets(&self, list: &[Assignment], start: Start) -> HashMap<TopicPartition, i64> {
        let logical = match start {
            Start::Earliest => rdkafka::Offset::Beginning,
            Start::Latest => rdkafka::Offset::End,
            Start::At(_) => return HashMap::new(),
        };
        let mut tpl = TopicPartitionList::new();
        for a in list.iter().filter(|a| a.start == start) {
            if tpl
                .add_partition_offset(&a.source.topic, a.source.partition, logical)
                .is_err()
            {
                return HashMap::new();
            }
        }
        if tpl.count() == 0 {
            return HashMap::new();
        }
        match self.consumer.offsets_for_times(tpl, METADATA_TIMEOUT) {
            Ok(found) => found
                .elements()
                .iter()
                .filter_map(|e| match (e.error(), e.offset()) {
                    (Ok(()), rdkafka::Offset::Offset(end)) => {
                        Some((TopicPartition::new(e.topic(), e.partition()), end))
                    }
                    _ => None,
                })
                .collect(),
            Err(e) if start == Start::Latest => {
                tracing::warn!("cannot read the end offsets of partitions that start at the end ({e}); their position is stored once a record is copied");
                HashMap::new()
            }
            Err(e) => {
                tracing::debug!("cannot read the start offsets of partitions that start at the beginning ({e}): librdkafka asks for each");
                HashMap::new()
            }
        }
    }

    /// Restart partitions stopped by a retriable error once their back-off passed and nothing
    /// of theirs is in flight: seek back to the progress and fetch again.
    fn retry_failed(&mut self) -> Result<()> {
        let now = Instant::now();
        for slot in self.core.slots.iter_mut().flatten() {
            let due = slot.retry_at.is_some_and(|t| t <= now)
                && slot.tracker.is_drained()
                && !slot.releasing
                && slot.pending_reset.is_none();
            if !due {
                if slot.retry_at.is_some() {
                    self.core.scan_needed = true;
                }
                continue;
            }
            slot.retry_at = None;
            if std::mem::take(&mut slot.refresh_target) {
                refresh_producer_metadata(self.core.lanes.get(slot.route.lane), &slot.target_topic);
            }
            let mut from = slot.tracker.restart();
            if let Some(high) = slot.truncated_to.take() {
                // No reset came: the source partition was truncated, not recreated.
                slot.tracker.on_position_reset(Offset(high));
                from = Offset(high);
                tracing::warn!(topic = %slot.source.topic, partition = slot.source.partition, "the topic was not recreated: the source partition was truncated; continuing from its end, offset {high}");
            }
            let tp = &slot.source;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&tp.topic, tp.partition);
            let restarted = reposition(&self.consumer, tp, from.0)
                .map_err(|e| format!("cannot seek to {from}: {e}"))
                .and_then(|()| {
                    self.consumer
                        .resume(&tpl)
                        .map_err(|e| format!("cannot resume: {e}"))
                });
            match restarted {
                Ok(()) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition, offset = from.0, "partition restarted");
                }
                Err(why) => {
                    // Only this partition waits and tries again; the others go on.
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, offset = from.0, "partition not restarted ({why}); retrying in {}s", RETRY_BACKOFF.as_secs());
                    self.core.settings.metrics.error(
                        self.core.settings.source.as_str(),
                        self.core.settings.target.as_str(),
                        "partition_restart",
                    );
                    slot.tracker.on_rejected(from, why);
                    slot.retry_at = Some(now + RETRY_BACKOFF);
                    self.core.scan_needed = true;
                }
            }
        }
        Ok(())
    }

    fn consumer_error(&mut self, e: &KafkaError) {
        if let KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) = e {
            self.handle_out_of_range();
            return;
        }
        // librdkafka retries fetch errors by itself; each is counted, and logged once per
        // interval with how often it repeated (a partition that stops moving because of one
        // is also reported by its state).
        self.core.settings.metrics.error(
            self.core.settings.source.as_str(),
            self.core.settings.target.as_str(),
            "source_fetch",
        );
        let now = Instant::now();
        let text = e.to_string();
        let entry = self.consumer_errors.entry(text).or_insert((now, 0));
        if entry.1 == 0 || now.duration_since(entry.0) >= ERROR_LOG_INTERVAL {
            let repeated = std::mem::take(&mut entry.1);
            entry.0 = now;
            tracing::warn!(error = %e, repeated, "source consumer error; librdkafka retries it");
        }
        entry.1 += 1;
    }

    /// Assigns again the partitions the consumer has not fetched once (no fetch response named
    /// them) within the stall bound of being handed to it, at the position they were given.
    /// Seen once at 10,000 partitions on one consumer: some partitions never entered a fetch
    /// and sat silent; a new assignment restarts librdkafka's state machine for them.
    fn reassign_unfetched(&mut self) {
        let stall_after = self.core.settings.stall_after;
        let mut tpl = TopicPartitionList::new();
        for slot in self.core.slots.iter_mut().flatten() {
            if slot.watch.marks.is_some()
                || !slot.tracker.is_running()
                || slot.tracker.in_flight() > 0
                || slot.releasing
                || slot.pending_reset.is_some()
                || slot.handed_at.elapsed() < stall_after
            {
                continue;
            }
            let offset = if slot.position_known {
                rdkafka::Offset::Offset(slot.tracker.fetch_next().0)
            } else {
                match slot.start {
                    Start::At(o) => rdkafka::Offset::Offset(o.0),
                    Start::Earliest => rdkafka::Offset::Beginning,
                    Start::Latest => rdkafka::Offset::End,
                }
            };
            if tpl
                .add_partition_offset(&slot.source.topic, slot.source.partition, offset)
                .is_ok()
            {
                slot.handed_at = Instant::now();
            }
        }
        if tpl.count() == 0 {
            return;
        }
        let mut bare = TopicPartitionList::new();
        for e in tpl.elements() {
            bare.add_partition(e.topic(), e.partition());
        }
        let first: Vec<String> = tpl
            .elements()
            .iter()
            .take(crate::flow::LOGGED_ONE_BY_ONE)
            .map(|e| format!("{}-{}", e.topic(), e.partition()))
            .collect();
        tracing::warn!(
            partitions = tpl.count(),
            ?first,
            "the source consumer has not fetched these partitions since they were assigned {}s ago: assigning them again",
            stall_after.as_secs()
        );
        if let Err(e) = self
            .consumer
            .incremental_unassign(&bare)
            .and_then(|()| self.consumer.incremental_assign(&tpl))
        {
            tracing::error!(
                "assigning unfetched partitions again failed: {e}; retrying after the stall bound"
            );
        }
    }

    /// A stored position is no longer on the source: records were deleted (retention) before
    /// they were copied. This cannot be undone; say so loudly, then continue from the log start.
    fn handle_out_of_range(&mut self) {
        // Partitions that start at the beginning were given the log start read at assignment;
        // retention may have moved it before their first fetch. Nothing of theirs was fetched:
        // they are assigned again at the beginning, nothing skipped.
        let mut again = TopicPartitionList::new();
        for slot in self.core.slots.iter().flatten() {
            if slot.tracker.is_running() && !slot.position_known && slot.start == Start::Earliest {
                again.add_partition(&slot.source.topic, slot.source.partition);
            }
        }
        if again.count() > 0 {
            let mut at = TopicPartitionList::new();
            for e in again.elements() {
                let _ =
                    at.add_partition_offset(e.topic(), e.partition(), rdkafka::Offset::Beginning);
            }
            if let Err(e) = self
                .consumer
                .incremental_unassign(&again)
                .and_then(|()| self.consumer.incremental_assign(&at))
            {
                tracing::warn!("assigning partitions at their beginning again failed: {e}");
            }
        }
        // Both ends of every running partition, in one ListOffsets request per broker for each
        // end (one request per partition took hours at 10,000 partitions: each waits behind the
        // fetch the broker holds on the same connection).
        let known = || {
            self.core
                .slots
                .iter()
                .flatten()
                .filter(|s| s.tracker.is_running() && s.position_known)
                .map(|s| (s.source.topic.to_string(), s.source.partition))
        };
        if known().next().is_none() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let ends = crate::tail::list_offsets(
            &self.consumer,
            known(),
            rdkafka::Offset::Beginning,
            deadline,
        )
        .and_then(|lows| {
            crate::tail::list_offsets(&self.consumer, known(), rdkafka::Offset::End, deadline)
                .map(|highs| (lows, highs))
        });
        let (lows, highs) = match ends {
            Ok(ends) => ends,
            Err(e) => {
                // As when one partition's lookup failed before: its partition stands still, and
                // the stall check reports it and assigns it again, which fetches (and fails)
                // again.
                tracing::warn!("cannot read the source's log starts and ends after an out-of-range position: {e}");
                return;
            }
        };
        for slot in self.core.slots.iter_mut().flatten() {
            if !slot.tracker.is_running() || !slot.position_known {
                continue;
            }
            let tp = &slot.source;
            let key = (tp.topic.to_string(), tp.partition);
            let (Some(&low), Some(&high)) = (lows.get(&key), highs.get(&key)) else {
                continue;
            };
            let next = slot.tracker.fetch_next();
            if next.0 > high {
                // The source's log ends before the position: the topic was deleted and created
                // again (the topic refresh sees its new id and resets the partition), or the
                // partition was truncated (an unclean leader election lost records kmirror had
                // already copied). The partition waits for the refresh to tell which; without a
                // reset it continues from `high`, where new records are written.
                tracing::error!(
                    topic = %tp.topic, partition = tp.partition, offset = next.0, high_watermark = high,
                    "the source partition ends at offset {high}, before kmirror's position {}: the topic was deleted and created again, or the partition lost records {high}..{} (unclean leader election); waiting {}s for the topic refresh to tell which",
                    next.0, next.0 - 1, TRUNCATION_WAIT.as_secs()
                );
                self.core.settings.metrics.error(
                    self.core.settings.source.as_str(),
                    self.core.settings.target.as_str(),
                    "source_truncated",
                );
                slot.tracker.on_rejected(
                    next,
                    format!(
                        "the source partition ends at {high}, before position {}",
                        next.0
                    ),
                );
                slot.truncated_to = Some(high);
                slot.retry_at = Some(Instant::now() + TRUNCATION_WAIT);
                self.core.scan_needed = true;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&tp.topic, tp.partition);
                let _ = self.consumer.pause(&tpl);
                continue;
            }
            if next.0 < low {
                tracing::error!(
                    topic = %tp.topic, partition = tp.partition, offset = next.0, log_start = low,
                    lost = low - next.0,
                    "records {}..{} were deleted from the source before kmirror copied them (retention or DeleteRecords); continuing from {}",
                    next.0, low - 1, low
                );
                self.core
                    .settings
                    .metrics
                    .source_records_deleted
                    .with_label_values(&[
                        self.core.settings.source.as_str(),
                        self.core.settings.target.as_str(),
                        &tp.topic,
                        &tp.partition.to_string(),
                    ])
                    .inc_by(u64::try_from(low - next.0).unwrap_or(0));
                slot.tracker.on_position_reset(Offset(low));
                if let Err(err) = reposition(&self.consumer, tp, low) {
                    // Loud, and retried: the partition restarts from its progress (now the log
                    // start) after the back-off.
                    slot.tracker.on_rejected(
                        Offset(low),
                        format!("cannot resume at the log start: {err}"),
                    );
                    slot.retry_at = Some(Instant::now() + RETRY_BACKOFF);
                    self.core.scan_needed = true;
                    tracing::error!(topic = %tp.topic, partition = tp.partition, "cannot resume at the log start {low}: {err}; retrying in {}s", RETRY_BACKOFF.as_secs());
                }
            }
        }
    }

    fn assign(&mut self, list: Vec<Assignment>) -> Result<()> {
        // Partitions added to a topic the producer already knows: librdkafka refreshes a
        // known topic's metadata only every `topic.metadata.refresh.interval.ms` (5 min) and
        // refuses records for partitions it has not seen, so refresh it now.
        let mut known_topics: Vec<(Arc<str>, usize)> = Vec::new();
        for a in &list {
            let known = self
                .core
                .by_source
                .get(&a.source.topic)
                .is_some_and(|parts| parts.iter().any(|&i| i != u32::MAX));
            if known {
                let lane = self
                    .core
                    .lanes
                    .route(
                        &a.target_topic,
                        a.source.partition,
                        a.max_message_bytes,
                        a.compression,
                    )
                    .lane;
                known_topics.push((Arc::clone(&a.target_topic), lane));
            }
        }
        known_topics.sort_unstable();
        known_topics.dedup();
        for (topic, lane) in &known_topics {
            refresh_producer_metadata(self.core.lanes.get(*lane), topic);
        }
        let ends = self.latest_offsets(&list);
        let beginnings = self.logical_offsets(&list, Start::Earliest);
        let mut found = self.find_tails(&list);
        self.core.assigning_many = list.len() > crate::flow::LOGGED_ONE_BY_ONE;
        if self.core.assigning_many {
            let stored = list
                .iter()
                .filter(|a| matches!(a.start, Start::At(_)))
                .count();
            tracing::info!(
                partitions = list.len(),
                topics = list
                    .iter()
                    .map(|a| &a.source.topic)
                    .collect::<HashSet<_>>()
                    .len(),
                from_stored_progress = stored,
                from_start_setting = list.len() - stored,
                "assigning partitions (each is logged at debug level)"
            );
        }
        let mut tpl = TopicPartitionList::new();
        // Room for exactly this many more slots: grown by doubling, 10,000 partitions left
        // room for 16,384 (a slot is over a kilobyte).
        let new_slots = list.len().saturating_sub(self.core.free_slots.len());
        self.core.slots.reserve_exact(new_slots);
        for mut a in list {
            // The stored progress, where copies beyond it were found; whether the map grew.
            let (mut stored_at, mut map_grown) = (None, false);
            if let (Start::At(stored), Some(f)) = (a.start, found.remove(&a.source)) {
                // Copies a crash left on the target beyond the stored progress: known now, not
                // copied again.
                a.map.forget_unknown_end();
                if let Some(&(from, _)) = f.pairs.first() {
                    // (A map stored ahead of its progress knows some of them already.)
                    a.map.forget_from(from);
                }
                for &(u, d) in &f.pairs {
                    a.map.record(u, d);
                }
                for &u in &f.passed {
                    a.map.passed_over(u);
                }
                map_grown = !f.pairs.is_empty() || !f.passed.is_empty();
                if f.resume > stored.0 {
                    let skipped = f.resume - stored.0;
                    tracing::info!(
                        topic = %a.source.topic, partition = a.source.partition,
                        "offsets {}..{} were already on the target (copied before the last stop, progress not yet stored); copying from offset {}",
                        stored.0, f.resume - 1, f.resume
                    );
                    let found_records = f.pairs.iter().filter(|&&(u, _)| u >= stored.0).count();
                    self.core
                        .settings
                        .metrics
                        .found_on_target
                        .with_label_values(&[
                            self.core.settings.source.as_str(),
                            self.core.settings.target.as_str(),
                        ])
                        .inc_by(found_records as u64);
                    debug_assert!(skipped >= found_records as i64);
                    a.start = Start::At(Offset(f.resume));
                    stored_at = Some(stored);
                }
            }
            // The end of the source, known now, is stored as the position before any record
            // is copied: a restart resumes there instead of at the (later) end again, which
            // would skip what was written in between.
            let mut anchor = None;
            if a.start == Start::Latest {
                if let Some(&end) = ends.get(&a.source) {
                    a.start = Start::At(Offset(end));
                    anchor = Some(Offset(end));
                }
            }
            if let Some(idx) = self.core.slot_index(&a.source.topic, a.source.partition) {
                // Assigned again while its release drains (its topic was deleted and created
                // again): it starts afresh once drained.
                if let Some(slot) = self.core.slots[idx].as_mut() {
                    if slot.releasing {
                        slot.releasing = false;
                        slot.handed_over = false;
                        slot.pending_reset = Some(a);
                        self.core.scan_needed = true;
                    }
                }
                continue;
            }
            let (offset, next, stored) = match a.start {
                Start::At(o) => (rdkafka::Offset::Offset(o.0), o, Some(o)),
                // The log start just read: the position stays unknown until a record is
                // fetched (should retention pass it first, see `handle_out_of_range`).
                Start::Earliest => (
                    beginnings
                        .get(&a.source)
                        .map_or(rdkafka::Offset::Beginning, |&o| rdkafka::Offset::Offset(o)),
                    Offset(0),
                    None,
                ),
                Start::Latest => (rdkafka::Offset::End, Offset(0), None),
            };
            tpl.add_partition_offset(&a.source.topic, a.source.partition, offset)
                .map_err(|e| Error::Internal(format!("partition list: {e}")))?;
            let Some(at) = anchor else {
                let idx = self.core.add_slot(a, next, stored_at.or(stored))?;
                if map_grown {
                    if let Some(slot) = self.core.slots[idx].as_mut() {
                        slot.map_dirty = true;
                        slot.map_unpublished = true;
                    }
                }
                continue;
            };
            let idx = self.core.add_slot(a, next, None)?;
            if let Some(slot) = self.core.slots[idx].as_mut() {
                slot.tracker.anchor(at);
                slot.position_known = true;
                tracing::info!(topic = %slot.source.topic, partition = slot.source.partition, offset = at.0, "starts at the end of the source partition; storing the position");
            }
        }
        if tpl.count() > 0 {
            // A topic the consumer has no metadata for waits for librdkafka's once-a-second
            // topic scan before its partitions are fetched; one metadata request (all topics)
            // when a topic is new to it lets fetching start at once.
            let mut new_topic = false;
            for e in tpl.elements() {
                new_topic |= self.consumer_topics.insert(Arc::from(e.topic()));
            }
            if new_topic {
                if let Err(e) = self
                    .consumer
                    .client()
                    .fetch_metadata(None, METADATA_TIMEOUT)
                {
                    tracing::debug!("metadata before assigning: {e}");
                }
            }
            self.consumer
                .incremental_assign(&tpl)
                .map_err(|e| Error::Retriable(format!("assigning source partitions: {e}")))?;
        }
        Ok(())
    }

    /// Partitions whose topic was recreated: stop fetching and drain; [`Self::finish_resets`]
    /// starts them again once nothing of theirs is in flight.
    fn reset(&mut self, list: Vec<Assignment>) -> Result<()> {
        if let Some(t) = &self.core.settings.transactions {
            // A topic created again: what its old incarnation refused says nothing of it.
            if let Ok(mut poisoned) = t.poisoned.lock() {
                for a in &list {
                    poisoned.remove(&a.source);
                }
            }
        }
        let mut fresh = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for a in list {
            let Some(idx) = self.core.slot_index(&a.source.topic, a.source.partition) else {
                fresh.push(a);
                continue;
            };
            if let Some(slot) = self.core.slots[idx].as_mut() {
                if slot.pending_reset.is_none() && !slot.releasing {
                    tpl.add_partition(&a.source.topic, a.source.partition);
                }
                slot.tracker.start_draining();
                // The reset supersedes a release in progress: the slot stays.
                slot.releasing = false;
                slot.handed_over = false;
                slot.pending_reset = Some(a);
                self.core.scan_needed = true;
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.incremental_unassign(&tpl) {
                tracing::warn!("unassigning partitions of a recreated topic: {e}");
            }
        }
        for a in &fresh {
            self.core.status.reset_done(&a.source);
        }
        if !fresh.is_empty() {
            self.assign(fresh)?;
        }
        Ok(())
    }

    /// Starts again every reset partition with nothing in flight: new tracker and map, nothing
    /// stored yet (progress stored under the old topic ids is ignored after a restart), fetched
    /// from where its assignment says.
    fn finish_resets(&mut self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for slot in self.core.slots.iter_mut().flatten() {
            if slot.pending_reset.is_none() || !slot.tracker.is_drained() {
                if slot.pending_reset.is_some() {
                    self.core.scan_needed = true;
                }
                continue;
            }
            let Some(a) = slot.pending_reset.take() else {
                continue;
            };
            let (offset, next) = match a.start {
                Start::At(o) => (rdkafka::Offset::Offset(o.0), o),
                Start::Earliest => (rdkafka::Offset::Beginning, Offset(0)),
                Start::Latest => (rdkafka::Offset::End, Offset(0)),
            };
            tpl.add_partition_offset(&a.source.topic, a.source.partition, offset)
                .map_err(|e| Error::Internal(format!("partition list: {e}")))?;
            // The target topic may be new (with another limit): the producer learns its
            // partitions now.
            slot.route = self.core.lanes.route(
                &slot.target_topic,
                a.source.partition,
                a.max_message_bytes,
                a.compression,
            );
            refresh_producer_metadata(self.core.lanes.get(slot.route.lane), &slot.target_topic);
            slot.tracker = PartitionTracker::new(next, None);
            slot.map = a.map;
            slot.map_dirty = false;
            slot.map_unpublished = true;
            slot.ids = a.ids;
            slot.position_known = false;
            slot.final_progress_sent = None;
            slot.retry_at = None;
            slot.truncated_to = None;
            slot.watch = StallWatch::new();
            slot.map_written = false;
            slot.refresh_target = false;
            slot.sync = self.core.syncs.as_ref().map(|s| SyncWriter::new(s.lag_max));
            slot.last_acked_ts = None;
            slot.first_fetched_ts = None;
            slot.start = a.start;
            slot.handed_at = Instant::now();
            self.core.settings.maps.remove(&slot.source);
            self.core.status.reset_done(&slot.source);
            tracing::info!(topic = %a.source.topic, partition = a.source.partition, start = ?a.start, "partition of a recreated topic starts again");
        }
        if tpl.count() > 0 {
            self.consumer
                .incremental_assign(&tpl)
                .map_err(|e| Error::Retriable(format!("assigning source partitions: {e}")))?;
            // A partition paused by an earlier failure stays paused across assignments.
            if let Err(e) = self.consumer.resume(&tpl) {
                tracing::debug!("resuming reset partitions: {e}");
            }
        }
        Ok(())
    }

    fn release(&mut self, list: &[TopicPartition]) {
        let mut tpl = TopicPartitionList::new();
        for tp in list {
            if let Some(idx) = self.core.slot_index(&tp.topic, tp.partition) {
                if let Some(slot) = self.core.slots[idx].as_mut() {
                    slot.tracker.start_draining();
                    // Already unassigned when released twice or while a reset drains; the
                    // release supersedes the reset.
                    if !slot.releasing && slot.pending_reset.is_none() {
                        tpl.add_partition(&tp.topic, tp.partition);
                    }
                    if slot.pending_reset.take().is_some() {
                        self.core.status.reset_done(&slot.source);
                    }
                    slot.releasing = true;
                }
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.incremental_unassign(&tpl) {
                tracing::warn!("unassigning released partitions: {e}");
            }
        }
    }

    /// Scale-out: stops copying `list` for another replica; `done` is answered once their final
    /// progress is acknowledged.
    fn hand_over(&mut self, list: &[TopicPartition], done: std::sync::mpsc::Sender<()>) {
        let mut pending = HashSet::new();
        for tp in list {
            if let Some(idx) = self.core.slot_index(&tp.topic, tp.partition) {
                if let Some(slot) = self.core.slots[idx].as_mut() {
                    slot.handed_over = true;
                    pending.insert(tp.clone());
                }
            }
        }
        self.release(list);
        tracing::info!(
            partitions = list.len(),
            held = pending.len(),
            "scale-out: handing partitions over to another replica"
        );
        if pending.is_empty() {
            let _ = done.send(());
        } else {
            let count = pending.len() as u64;
            self.core.handovers.push(HandOver {
                pending,
                count,
                done,
            });
        }
    }

    fn shutdown(&mut self) -> Result<Report> {
        let core = &mut self.core;
        let deadline = Instant::now() + core.settings.shutdown_timeout;
        core.deadline = Some(deadline);
        tracing::info!("stopping: draining in-flight records");
        let mut tpl = TopicPartitionList::new();
        for slot in core.slots.iter_mut().flatten() {
            slot.tracker.start_draining();
            tpl.add_partition(&slot.source.topic, slot.source.partition);
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.pause(&tpl) {
                tracing::debug!("pausing at shutdown: {e}");
            }
        }
        let mut ignored = Vec::new();
        if core.settings.transactions.is_some() {
            // Everything forwarded is committed with its progress, or nothing of it.
            let never = CancellationToken::new();
            let patience = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = core.commit(&mut ignored, patience, &never) {
                tracing::warn!(copied = core.copied, "the last transaction was not committed before the shutdown timeout ({e}); its records are copied again at the next start, and read_committed consumers see them once");
                return Ok(Report {
                    copied: core.copied,
                    clean: false,
                });
            }
        } else {
            while Instant::now() < deadline
                && !core.slots.iter().flatten().all(|s| s.tracker.is_drained())
            {
                core.lanes.poll(0, Duration::from_millis(20));
                core.progress_producer.poll(Duration::ZERO);
                crate::lanes::drain(&core.progress_producer);
                core.apply_deliveries(&mut ignored)?;
            }
            core.store_progress(true)?;
        }
        core.promote_delayed_syncs();
        if let Some(s) = core.syncs.as_mut() {
            // Send what is pending, a few at a time as MM2 does, then wait for them, briefly:
            // they go to the source, which may be what is down, and they are only hints (the
            // maps stored with progress translate exactly without them).
            let deadline = deadline.min(Instant::now() + SYNC_DRAIN);
            while core
                .slots
                .iter()
                .flatten()
                .any(|sl| sl.sync.as_ref().is_some_and(SyncWriter::has_pending))
                && Instant::now() < deadline
            {
                s.producer.poll(Duration::from_millis(10));
                let dirty: Vec<u32> = (0..u32::try_from(core.slots.len()).unwrap_or(0)).collect();
                s.dirty = dirty;
                Core::fire(&mut core.slots, s);
            }
            let _ = s
                .producer
                .flush(deadline.saturating_duration_since(Instant::now()));
        }
        let flushed = core.lanes.flush(deadline)
            && core
                .progress_producer
                .flush(deadline.saturating_duration_since(Instant::now()))
                .is_ok();
        core.apply_deliveries(&mut ignored)?;
        let consumer = &self.consumer;
        core.publish_status(&|t, p| kmirror_admin::cached_watermarks(consumer.client(), t, p));
        let clean = flushed
            && core
                .slots
                .iter()
                .flatten()
                .all(|s| s.tracker.is_drained() && s.tracker.progress_to_store().is_none());
        if clean {
            tracing::info!(
                copied = core.copied,
                "stopped cleanly: all acknowledged progress is stored"
            );
        } else {
            let mut unstored = 0;
            for s in core.slots.iter().flatten() {
                let (in_flight, to_store) = (s.tracker.in_flight(), s.tracker.progress_to_store());
                if in_flight == 0 && to_store.is_none() {
                    continue;
                }
                unstored += 1;
                if unstored <= 20 {
                    tracing::warn!(
                        topic = %s.source.topic, partition = s.source.partition,
                        stored = s.tracker.stored().map_or(-1, |o| o.0),
                        acknowledged = s.tracker.progress().0,
                        in_flight,
                        "progress not stored before the shutdown timeout: records from the stored position on are copied again at the next start"
                    );
                }
            }
            tracing::warn!(copied = core.copied, partitions = unstored, "shutdown timeout reached: the progress of {unstored} partition(s) could not be stored (the target did not answer in time); nothing is lost, their records after the stored position are copied again at the next start");
        }
        Ok(Report {
            copied: core.copied,
            clean,
        })
    }
}

impl Core {
    fn slot_index(&self, topic: &str, partition: i32) -> Option<usize> {
        let parts = self.by_source.get(topic)?;
        let idx = *parts.get(usize::try_from(partition).ok()?)?;
        (idx != u32::MAX).then_some(idx as usize)
    }

    fn set_ids(&mut self, list: Vec<(Arc<str>, TopicIds)>) {
        for (topic, ids) in list {
            let Some(parts) = self.by_source.get(&topic) else {
                continue;
            };
            for &i in parts.iter().filter(|&&i| i != u32::MAX) {
                if let Some(slot) = self.slots.get_mut(i as usize).and_then(Option::as_mut) {
                    slot.ids.clone_from(&ids);
                    if let Some(a) = slot.pending_reset.as_mut() {
                        a.ids.clone_from(&ids);
                    }
                }
            }
        }
    }

    /// Adds a slot for `a`; returns its index.
    fn add_slot(&mut self, a: Assignment, next: Offset, stored: Option<Offset>) -> Result<usize> {
        let idx = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let idx32 =
            u32::try_from(idx).map_err(|_| Error::Internal("too many partitions".into()))?;
        set_index(
            &mut self.by_source,
            &a.source.topic,
            a.source.partition,
            idx32,
        );
        if let Ok(mut buf) = self.lanes.buf().lock() {
            set_index(&mut buf.topics, &a.target_topic, a.source.partition, idx32);
        }
        let route = self.lanes.route(
            &a.target_topic,
            a.source.partition,
            a.max_message_bytes,
            a.compression,
        );
        self.lanes.prepare(route.lane, &a.target_topic);
        if self.assigning_many {
            tracing::debug!(topic = %a.source.topic, partition = a.source.partition, start = ?a.start, target = %a.target_topic, "partition assigned");
        } else {
            tracing::info!(topic = %a.source.topic, partition = a.source.partition, start = ?a.start, target = %a.target_topic, "partition assigned");
        }
        let metrics = PartitionMetrics::new(
            &self.settings.metrics,
            self.settings.source.as_str(),
            self.settings.target.as_str(),
            &a.source.topic,
            &a.target_topic,
            a.source.partition,
        );
        self.slots[idx] = Some(Slot {
            target_topic: a.target_topic,
            route,
            tracker: PartitionTracker::new(next, stored),
            releasing: false,
            handed_over: false,
            retry_at: None,
            refresh_target: false,
            position_known: stored.is_some(),
            final_progress_sent: None,
            metrics,
            delta: PartitionDelta::default(),
            sync: self.syncs.as_ref().map(|s| SyncWriter::new(s.lag_max)),
            map: a.map,
            map_dirty: false,
            map_unpublished: true,
            last_acked_ts: None,
            first_fetched_ts: None,
            ids: a.ids,
            pending_reset: None,
            truncated_to: None,
            watch: StallWatch::new(),
            map_written: false,
            delivered_at: Instant::now(),
            poison: self.settings.transactions.as_ref().and_then(|t| {
                t.poisoned
                    .lock()
                    .ok()
                    .and_then(|p| p.get(&a.source).cloned())
            }),
            source: a.source,
            start: a.start,
            handed_at: Instant::now(),
        });
        Ok(idx)
    }

    /// Hands one fetched record to the producer. A partition that must stop is pushed to
    /// `to_pause`.
    fn forward(
        &mut self,
        msg: &BorrowedMessage<'_>,
        now_ms: i64,
        to_pause: &mut Vec<TopicPartition>,
        watermarks: Marks<'_>,
    ) -> Result<()> {
        let Some(idx) = self.slot_index(msg.topic(), msg.partition()) else {
            return Ok(());
        };
        let Some(slot) = self.slots[idx].as_ref() else {
            return Ok(());
        };
        let offset = Offset(msg.offset());
        if !slot.tracker.is_running() || offset < slot.tracker.fetch_next() {
            // Stopped or draining (it is fetched again after a restart), or already forwarded.
            return Ok(());
        }
        let Ok(opaque) = usize::try_from(offset.0) else {
            return Ok(());
        };
        let route = slot.route;
        let lane = route.lane;
        let headers = msg.headers();
        let decision = origin(self.settings.provenance.as_ref(), headers);
        if decision == Decision::Skip {
            // It came from the target: copying it back would start a loop.
            if let Some(slot) = self.slots[idx].as_mut() {
                slot.tracker.on_skipped(offset);
                // Translation needs to know: a group here goes back to the record's original.
                slot.map.passed_over(offset.0);
                slot.map_dirty = true;
                slot.map_unpublished = true;
                slot.delta.from_target += 1;
            }
            return Ok(());
        }
        let mark = decision == Decision::CopyMarked;
        let added = match &self.settings.provenance {
            Some(rule) if mark => rule.added_bytes(),
            _ => 0,
        };
        if let Some(reason) = self.lanes.refuses(route, || record_size(msg) + added) {
            self.stop_partition(idx, offset, "the target would refuse", reason, to_pause);
            return Ok(());
        }
        if let Some((at, reason)) = slot.poison.as_ref().filter(|(at, _)| offset >= *at) {
            let reason = format!(
                "{reason} (a transaction with record {} was aborted for it)",
                at.0
            );
            self.stop_partition(idx, offset, "the target refused", reason, to_pause);
            return Ok(());
        }

        let target_topic = Arc::clone(&slot.target_topic);
        let timestamp = match msg.timestamp() {
            Timestamp::CreateTime(ts) | Timestamp::LogAppendTime(ts) => Some(ts),
            Timestamp::NotAvailable => None,
        };
        let value_len = msg.payload_len() as u64;
        if self.settings.transactions.is_some() && !self.lane_open(lane) {
            self.begin_transaction(lane)?;
        }
        loop {
            let header = match &self.settings.provenance {
                Some(rule) if mark => Some((rule.header.as_str(), rule.source.as_str().as_bytes())),
                _ => None,
            };
            let sent = self.lanes.send_copy(
                lane,
                &target_topic,
                msg.partition(),
                msg,
                headers.is_some(),
                header,
                timestamp,
                opaque,
            );
            match sent {
                Ok(()) => {
                    if let Some(slot) = self.slots[idx].as_mut() {
                        if slot.tracker.in_flight() == 0 {
                            slot.delivered_at = Instant::now();
                        }
                        slot.tracker.on_produced(offset);
                        slot.position_known = true;
                        slot.delta.bytes += value_len;
                        if let Some(ts) = timestamp {
                            #[allow(clippy::cast_precision_loss)]
                            slot.delta.age.add((now_ms - ts) as f64);
                            slot.first_fetched_ts.get_or_insert(ts);
                        }
                    }
                    return Ok(());
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    if self.shutdown.is_cancelled() {
                        // Stopping while the target does not take records: this one is not
                        // produced, and nothing after it may be (it would overtake it).
                        if let Some(slot) = self.slots[idx].as_mut() {
                            slot.tracker.start_draining();
                        }
                        return Ok(());
                    }
                    // Back-pressure: the target is slower than the source. Wait for acks, and
                    // keep saying how each partition is doing (stuck, if the target is gone).
                    self.lanes.poll(lane, Duration::from_millis(10));
                    self.progress_producer.poll(Duration::ZERO);
                    crate::lanes::drain(&self.progress_producer);
                    if self.settings.transactions.is_none() {
                        // Exactly-once mode applies them when it commits.
                        self.apply_deliveries(to_pause)?;
                    }
                    if self.published_at.elapsed() >= self.settings.flush_interval {
                        self.publish_status(watermarks);
                    }
                }
                Err(e)
                    if self.settings.transactions.is_some()
                        && crate::transactions::ends_transaction(&e) =>
                {
                    // The transaction cannot go on (a record of it failed, or the producer is
                    // fenced): abort it. Other refusals are this record's own, handled as in
                    // at-least-once mode (nothing of it is in the transaction).
                    return Err(self.fail_transaction("sending a record", &e));
                }
                Err(e) => {
                    let reason = describe(&e);
                    if !is_retriable(&e) {
                        self.stop_partition(idx, offset, "the producer refused", reason, to_pause);
                        return Ok(());
                    }
                    if let Some(slot) = self.slots[idx].as_mut() {
                        // The producer's metadata is behind (a partition added a moment ago):
                        // refresh it and copy from this record again.
                        slot.refresh_target = true;
                        slot.retry_at = Some(Instant::now() + METADATA_BACKOFF);
                        self.scan_needed = true;
                        self.settings.metrics.error(
                            self.settings.source.as_str(),
                            self.settings.target.as_str(),
                            "delivery_retry",
                        );
                        tracing::warn!(
                            topic = %slot.source.topic, partition = slot.source.partition, offset = offset.0,
                            "the producer cannot send to {}[{}] yet ({reason}); refreshing its metadata and copying from offset {} again",
                            slot.target_topic, slot.source.partition, offset.0
                        );
                        slot.tracker.on_rejected(offset, reason);
                        to_pause.push(slot.source.clone());
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Exactly-once mode: whether `lane` has an open transaction.
    fn lane_open(&self, lane: usize) -> bool {
        self.txn_open.get(lane).copied().unwrap_or(false)
    }

    /// Exactly-once mode: whether any lane has an open transaction.
    fn any_open(&self) -> bool {
        self.txn_open.iter().any(|o| *o)
    }

    /// Exactly-once mode: opens a transaction on `lane` (a local step: the target hears of it
    /// with its first record).
    fn begin_transaction(&mut self, lane: usize) -> Result<()> {
        if let Err(e) = self.lanes.get(lane).begin_transaction() {
            return Err(self.fail_transaction("beginning a transaction", &e));
        }
        if !self.any_open() {
            self.txn_began = Instant::now();
        }
        if self.txn_open.len() <= lane {
            self.txn_open.resize(lane + 1, false);
        }
        self.txn_open[lane] = true;
        Ok(())
    }

    /// Exactly-once mode: the open transactions failed. Aborts them (bounded; unless the
    /// producer was fenced) and returns the error that ends the replicator: it starts again
    /// from the committed progress.
    fn fail_transaction(&mut self, what: &str, e: &KafkaError) -> Error {
        let id = self
            .settings
            .transactions
            .as_ref()
            .map_or_else(String::new, |t| t.transactional_id.clone());
        self.settings.metrics.error(
            self.settings.source.as_str(),
            self.settings.target.as_str(),
            "transaction_aborted",
        );
        // At shutdown, only what is left of its deadline (the next start aborts them anyway).
        let budget = self
            .deadline
            .map_or(crate::transactions::CALL_TIMEOUT * 3, |d| {
                d.saturating_duration_since(Instant::now())
            });
        let open: Vec<usize> = (0..self.txn_open.len())
            .filter(|l| self.txn_open[*l])
            .collect();
        if !open.is_empty() && !crate::transactions::fatal(e) && !budget.is_zero() {
            // librdkafka's abort waits for the reports of every record purged, and does not
            // serve them itself: purge, serve the reports, then abort.
            let lanes = &self.lanes;
            for &lane in &open {
                lanes
                    .get(lane)
                    .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
            }
            let until = Instant::now() + budget / 3;
            while open.iter().any(|l| lanes.get(*l).in_flight_count() > 0) && Instant::now() < until
            {
                lanes.poll(0, Duration::from_millis(10));
            }
            self.remember_refused();
            let lanes = &self.lanes;
            let never = CancellationToken::new();
            let share = budget * 2 / 3 / u32::try_from(open.len()).unwrap_or(1);
            for &lane in &open {
                let producer = lanes.get(lane);
                let aborted = crate::transactions::with_retries(
                    "aborting the transaction",
                    share,
                    &never,
                    |t| {
                        crate::lanes::drain(producer);
                        producer.abort_transaction(t.min(Duration::from_secs(1)))
                    },
                );
                if let Err(abort) = aborted {
                    // The next instance's init_transactions aborts it, or the broker after
                    // transaction.timeout.ms.
                    tracing::warn!("cannot abort the transaction: {abort}; it is aborted when the flow starts again, or by the target after transaction.timeout.ms");
                }
            }
        }
        if open.is_empty() || crate::transactions::fatal(e) || budget.is_zero() {
            self.lanes.poll(0, Duration::ZERO);
            self.remember_refused();
        }
        self.txn_open.iter_mut().for_each(|o| *o = false);
        // The records' own errors may not say it (librdkafka fails them with `_FATAL`): the
        // producer's fatal error does.
        match self.lanes.fatal() {
            Some((code, reason)) if crate::transactions::fenced_code(code) => {
                crate::transactions::fenced(&id, what, reason)
            }
            Some((_, reason)) => Error::Fatal(format!(
                "{what}: the transactional producer failed for good: {reason}; the flow starts again from the committed progress"
            )),
            None => crate::transactions::failure(&id, what, e),
        }
    }

    /// Exactly-once mode: commits the open transactions once the commit interval passed.
    fn commit_if_due(&mut self, to_pause: &mut Vec<TopicPartition>) -> Result<()> {
        let Some(t) = &self.settings.transactions else {
            return Ok(());
        };
        // The first transaction is committed as soon as it can be, so that a start shows its
        // first records on the target at once.
        let interval = if self.txn_commits == 0 {
            FIRST_COMMIT_AFTER.min(t.commit_interval)
        } else {
            t.commit_interval
        };
        if self.any_open() && self.txn_began.elapsed() >= interval {
            self.commit(
                to_pause,
                crate::transactions::COMMIT_PATIENCE,
                &self.shutdown.clone(),
            )?;
        }
        Ok(())
    }

    /// Exactly-once mode: writes the progress (the position after the last record forwarded)
    /// and maps of the partitions into the transaction of their lane, waits for every record of
    /// the open transactions to be acknowledged, applies their delivery reports and commits
    /// the transactions. Without an open transaction, commits progress alone if some changed
    /// without records (a partition anchored at the source's end, records passed over).
    /// Retries slow answers for `patience` (until `stop`); a failure aborts what is open and
    /// ends the replicator. Returns whether it committed.
    fn commit(
        &mut self,
        to_pause: &mut Vec<TopicPartition>,
        patience: Duration,
        stop: &CancellationToken,
    ) -> Result<bool> {
        if self.settings.transactions.is_none() {
            return Ok(false);
        }
        let started = Instant::now();
        // Maps as the last commit left them (they learn where records landed from the
        // acknowledgements): large ones every flush interval, small ones (and first ones)
        // with each commit. Each commit's marker starts a new run in the maps of the
        // partitions it covers; a map stored behind its progress translates conservatively
        // (re-read, never skip).
        let all_maps = self.maps_stored_at.elapsed() >= self.settings.flush_interval;
        let max_runs = if all_maps { usize::MAX } else { FAST_MAP_RUNS };
        let mut lanes: Vec<usize> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| {
                (s.map_dirty && (!s.map_written || s.map.entries() <= max_runs))
                    || s.transaction_progress()
                        .is_some_and(|n| s.final_progress_sent != Some(n))
            })
            .map(|s| s.route.lane)
            .collect();
        lanes.sort_unstable();
        lanes.dedup();
        if lanes.is_empty() && !self.any_open() {
            return Ok(false);
        }
        for lane in lanes {
            if !self.lane_open(lane) {
                self.begin_transaction(lane)?;
            }
        }
        self.store_maps(max_runs);
        if all_maps {
            self.maps_stored_at = Instant::now();
        }
        self.progress_unqueued = false;
        let progress = self.write_progress(false, true);
        if std::mem::take(&mut self.progress_unqueued) {
            // Committing records without their progress would copy them again after a crash.
            return Err(self.fail_transaction(
                "a progress record could not be queued",
                &KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
            ));
        }
        // Records, progress and maps acknowledged: the commit then only ends the transactions.
        let until = started + patience;
        if !self.await_acks(until, stop)? {
            // Stopping: the shutdown commits what is open, within its deadline.
            return Ok(false);
        }
        self.check_transaction_deliveries()?;
        self.apply_deliveries(to_pause)?;
        let acknowledged = started.elapsed();
        let never = CancellationToken::new();
        for lane in 0..self.txn_open.len() {
            if !self.txn_open[lane] {
                continue;
            }
            let producer = self.lanes.get(lane);
            let committed = crate::transactions::with_retries(
                "committing the transaction",
                until.saturating_duration_since(Instant::now()),
                &never,
                |t| producer.commit_transaction(t),
            );
            if let Err(e) = committed {
                return Err(self.fail_transaction("committing the transaction", &e));
            }
            self.txn_open[lane] = false;
        }
        self.txn_commits += 1;
        tracing::debug!(
            acknowledged_ms = acknowledged.as_millis(),
            total_ms = started.elapsed().as_millis(),
            progress,
            "transaction committed"
        );
        self.settings
            .metrics
            .transaction_commit
            .with_label_values(&[self.settings.source.as_str(), self.settings.target.as_str()])
            .observe(started.elapsed().as_secs_f64());
        Ok(true)
    }

    /// Exactly-once mode: serves the transactional producers until every record sent is
    /// acknowledged and its report served, or one failed (librdkafka then holds the others
    /// back until the abort): `true`; or `stop` is cancelled: `false` (nothing is aborted, the
    /// shutdown commits); or `until` passes (the transactions are aborted). librdkafka's
    /// own flush, with reports delivered as events, waits its whole timeout: it counts a
    /// record as outstanding until the application has served its report.
    fn await_acks(&mut self, until: Instant, stop: &CancellationToken) -> Result<bool> {
        loop {
            let outstanding: i32 = (0..self.lanes.count())
                .map(|l| self.lanes.get(l).in_flight_count())
                .sum();
            if outstanding == 0 {
                return Ok(true);
            }
            self.lanes.poll(0, Duration::from_millis(5));
            let failed = self
                .lanes
                .buf()
                .lock()
                .map_or(true, |b| b.events.iter().any(|d| d.error.is_some()));
            if failed {
                return Ok(true);
            }
            if stop.is_cancelled() {
                return Ok(false);
            }
            if Instant::now() >= until {
                return Err(self.fail_transaction(
                    "the target did not acknowledge the transaction's records in time",
                    &KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
                ));
            }
        }
    }

    /// Exactly-once mode, before a commit: any record of the transaction that failed fails the
    /// transaction.
    fn check_transaction_deliveries(&mut self) -> Result<()> {
        let first = match self.lanes.buf().lock() {
            Ok(buf) => buf.events.iter().find_map(|d| d.error.clone()),
            Err(_) => return Err(Error::Internal("delivery buffer poisoned".into())),
        };
        match first {
            None => Ok(()),
            Some(e) => {
                Err(self.fail_transaction("a record of the transaction was not delivered", &e))
            }
        }
    }

    /// Exactly-once mode, when a transaction fails: records the target refused for what they
    /// are (too large, invalid) are remembered, so that after the restart their partition
    /// copies up to the first of them and stops there (the others go on).
    fn remember_refused(&mut self) {
        let Some(t) = &self.settings.transactions else {
            return;
        };
        let Ok(buf) = self.lanes.buf().lock() else {
            return;
        };
        for d in &buf.events {
            let Some(e) = &d.error else { continue };
            if d.opaque & PROGRESS_BIT != 0 || !crate::transactions::refused_for_good(e) {
                continue;
            }
            let Some(slot) = self.slots.get(d.slot as usize).and_then(Option::as_ref) else {
                continue;
            };
            #[allow(clippy::cast_possible_wrap)]
            let offset = Offset(d.opaque as i64);
            let reason = describe(e);
            let Ok(mut poisoned) = t.poisoned.lock() else {
                return;
            };
            let first = poisoned
                .get(&slot.source)
                .is_none_or(|(at, _)| offset < *at);
            if first {
                tracing::error!(
                    topic = %slot.source.topic, partition = slot.source.partition, offset = offset.0,
                    "the target refused the record: {reason}; the transaction is aborted, and after the restart the partition copies up to this record and stops there (the others go on); fix the cause (e.g. the target topic's max.message.bytes, or producer.batch.size below it) and restart kmirror"
                );
                poisoned.insert(slot.source.clone(), (offset, reason));
            }
        }
    }

    /// Stops a partition at a record that `who` refuses for good: loud, counted, and nothing
    /// after the record is sent.
    fn stop_partition(
        &mut self,
        idx: usize,
        offset: Offset,
        who: &str,
        reason: String,
        to_pause: &mut Vec<TopicPartition>,
    ) {
        let Some(slot) = self.slots[idx].as_mut() else {
            return;
        };
        self.settings.metrics.error(
            self.settings.source.as_str(),
            self.settings.target.as_str(),
            "partition_stopped",
        );
        tracing::error!(
            topic = %slot.source.topic, partition = slot.source.partition, offset = offset.0,
            "partition stopped: {who} the record: {reason}; nothing after it is copied until this is fixed and kmirror restarted"
        );
        slot.tracker.on_rejected(offset, reason);
        to_pause.push(slot.source.clone());
    }

    /// Applies buffered delivery reports. Partitions that failed are pushed to `to_pause`.
    fn apply_deliveries(&mut self, to_pause: &mut Vec<TopicPartition>) -> Result<()> {
        let mut events = match self.lanes.buf().lock() {
            Ok(mut buf) => std::mem::take(&mut buf.events),
            Err(_) => return Err(Error::Internal("delivery buffer poisoned".into())),
        };
        match self.progress_producer.context().buf().lock() {
            Ok(mut buf) => events.append(&mut buf.events),
            Err(_) => return Err(Error::Internal("delivery buffer poisoned".into())),
        }
        let mut fatal = None;
        let now_ms = crate::now_millis();
        let now = Instant::now();
        for d in &events {
            if d.opaque & PROGRESS_BIT != 0 && d.opaque & MAP_BIT == 0 {
                // Counted whether or not the partition is still here.
                self.progress_in_flight = self.progress_in_flight.saturating_sub(1);
            }
            let Some(slot) = self.slots.get_mut(d.slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            if d.opaque & MAP_BIT != 0 {
                if let Some(e) = &d.error {
                    // The next change writes the whole map again.
                    slot.map_dirty = true;
                    slot.map_unpublished = true;
                    tracing::warn!(topic = %slot.source.topic, partition = slot.source.partition, "translation map not stored ({})", describe(e));
                }
                continue;
            }
            if d.opaque & PROGRESS_BIT != 0 {
                match (&d.error, d.progress_value) {
                    (None, Some(v)) => slot.tracker.mark_stored(v),
                    (Some(e), failed) => {
                        // Written again at the next flush even if the partition stays idle
                        // (nothing else would change its progress and trigger a write).
                        if failed.is_none() || slot.final_progress_sent == failed {
                            slot.final_progress_sent = None;
                        }
                        self.settings.metrics.error(
                            self.settings.source.as_str(),
                            self.settings.target.as_str(),
                            "progress_not_stored",
                        );
                        tracing::warn!(
                            topic = %slot.source.topic, partition = slot.source.partition,
                            "progress record not stored ({}); it is written again at the next flush", describe(e)
                        );
                    }
                    _ => {}
                }
                continue;
            }
            #[allow(clippy::cast_possible_wrap)]
            let offset = Offset(d.opaque as i64);
            slot.delivered_at = now;
            let Some(e) = &d.error else {
                if slot.tracker.on_acked(offset) == kmirror_core::tracker::AckOutcome::Advanced
                    && d.dst_offset >= 0
                {
                    slot.map.record(offset.0, d.dst_offset);
                    slot.map_dirty = true;
                    slot.map_unpublished = true;
                }
                self.copied += 1;
                self.acked_since_progress += 1;
                slot.delta.acked += 1;
                if let (Some(w), Some(s)) = (slot.sync.as_mut(), self.syncs.as_mut()) {
                    if w.update(offset.0, d.dst_offset) {
                        s.dirty.push(d.slot);
                    }
                }
                if d.timestamp >= 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let ms = (now_ms - d.timestamp) as f64;
                    slot.delta.latency.add(ms);
                    self.latency.observe(ms / 1000.0);
                    slot.last_acked_ts = Some(d.timestamp);
                }
                continue;
            };
            let reason = describe(e);
            if is_fatal(e) {
                fatal = Some(reason.clone());
            }
            if slot.tracker.on_failed(offset, reason.clone()) {
                let tp = &slot.source;
                let kind = if is_retriable(e) {
                    "delivery_retry"
                } else {
                    "partition_stopped"
                };
                self.settings.metrics.error(
                    self.settings.source.as_str(),
                    self.settings.target.as_str(),
                    kind,
                );
                if is_retriable(e) {
                    slot.retry_at = Some(Instant::now() + RETRY_BACKOFF);
                    self.scan_needed = true;
                    tracing::warn!(
                        topic = %tp.topic, partition = tp.partition, offset = offset.0,
                        "delivery failed ({reason}); the partition restarts from offset {} in {}s",
                        slot.tracker.progress().0, RETRY_BACKOFF.as_secs()
                    );
                } else {
                    // The broker checks whole batches against the topic's `max.message.bytes`:
                    // a small record is refused too when the batch it travels in is larger.
                    let hint = if e.rdkafka_error_code()
                        == Some(RDKafkaErrorCode::MessageSizeTooLarge)
                    {
                        format!(
                            " (the record, or the batch it was sent in: if {}'s max.message.bytes is below the producer's batch.size, set producer.batch.size below it)",
                            slot.target_topic
                        )
                    } else {
                        String::new()
                    };
                    tracing::error!(
                        topic = %tp.topic, partition = tp.partition, offset = offset.0,
                        "partition stopped: the target refused the record: {reason}{hint}; nothing after it is copied until this is fixed and kmirror restarted"
                    );
                }
                to_pause.push(tp.clone());
            }
        }
        if let Some(reason) = fatal.or_else(|| self.lanes.fatal_error()).or_else(|| {
            self.progress_producer
                .client()
                .fatal_error()
                .map(|(_, s)| s)
        }) {
            if let Some(t) = &self.settings.transactions {
                if self
                    .lanes
                    .fatal()
                    .is_some_and(|(code, _)| crate::transactions::fenced_code(code))
                {
                    return Err(crate::transactions::fenced(
                        &t.transactional_id,
                        "the transactional producer failed for good",
                        reason,
                    ));
                }
            }
            return Err(Error::Fatal(format!(
                "the target producer failed: {reason}"
            )));
        }
        Ok(())
    }

    /// Fails with a retriable error when the producer is stuck: records in flight, no delivery
    /// report for [`ReplicatorSettings::wedged_after`], and yet the target names a leader for
    /// one of their partitions, or the producer cannot ask it (asked through the same producer,
    /// every 10 s at most). A target without a leader for them is waited for.
    fn check_wedged(&mut self) -> Result<()> {
        let wedged_after = self.settings.wedged_after;
        let stuck = self
            .slots
            .iter()
            .flatten()
            .find(|s| s.tracker.in_flight() > 0 && s.delivered_at.elapsed() >= wedged_after);
        let Some(slot) = stuck else {
            return Ok(());
        };
        if self.wedge_checked_at.elapsed() < WEDGE_CHECK_INTERVAL {
            return Ok(());
        }
        let silent = slot.delivered_at.elapsed();
        self.wedge_checked_at = Instant::now();
        let producer = self.lanes.get(slot.route.lane);
        let leader = producer
            .client()
            .fetch_metadata(Some(&slot.target_topic), METADATA_TIMEOUT)
            .map(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == &*slot.target_topic)
                    .and_then(|t| {
                        t.partitions()
                            .iter()
                            .find(|p| p.id() == slot.source.partition)
                            .map(|p| p.leader())
                    })
            });
        let why = match leader {
            Ok(Some(leader)) if leader >= 0 => {
                format!("although the target names broker {leader} as its leader")
            }
            // The target has no leader for it: the target is what waits.
            Ok(_) => return Ok(()),
            // The producer cannot even ask: after a long silence, a new client (which bootstraps
            // afresh) is the way out, whether the target is down or the client lost its way.
            Err(e) => format!("and the producer cannot reach the target ({e})"),
        };
        self.settings.metrics.error(
            self.settings.source.as_str(),
            self.settings.target.as_str(),
            "producer_stuck",
        );
        Err(Error::Retriable(format!(
            "the target producer has acknowledged nothing for {}s while {} records of {}[{}] are in flight, {why}: librdkafka's producer can stay stuck for good after a broker was fenced; replacing it",
            silent.as_secs(),
            slot.tracker.in_flight(),
            slot.target_topic,
            slot.source.partition
        )))
    }

    /// Drop released slots whose final progress is stored.
    fn finish_releases(&mut self) {
        for idx in 0..self.slots.len() {
            let done = self.slots[idx].as_ref().is_some_and(|s| {
                s.releasing && s.tracker.is_drained() && s.tracker.progress_to_store().is_none()
            });
            if !done {
                continue;
            }
            if let Some(slot) = self.slots[idx].take() {
                self.free_slots.push(idx);
                set_index(
                    &mut self.by_source,
                    &slot.source.topic,
                    slot.source.partition,
                    u32::MAX,
                );
                if let Ok(mut buf) = self.lanes.buf().lock() {
                    set_index(
                        &mut buf.topics,
                        &slot.target_topic,
                        slot.source.partition,
                        u32::MAX,
                    );
                }
                self.status.remove(&slot.source);
                slot.metrics.remove(&self.settings.metrics);
                if slot.handed_over {
                    // Its checkpoints are the next owner's to write.
                    self.settings.maps.remove(&slot.source);
                }
                tracing::info!(topic = %slot.source.topic, partition = slot.source.partition, "partition released");
            }
        }
        // Pending: the partitions still draining for another replica (dropped ones are done; one
        // given back while it drained is copied again, no longer handed over).
        let mut handovers = std::mem::take(&mut self.handovers);
        for h in &mut handovers {
            h.pending.retain(|tp| {
                self.slot_index(&tp.topic, tp.partition)
                    .and_then(|i| self.slots[i].as_ref())
                    .is_some_and(|slot| slot.releasing && slot.handed_over)
            });
        }
        self.handovers = handovers;
        if self.handovers.iter().any(|h| h.pending.is_empty()) {
            // Their final progress is queued: the next owner reads it once acknowledged.
            if self.progress_producer.flush(HANDOVER_FLUSH).is_err() {
                return;
            }
            let (source, target) = (self.settings.source.as_str(), self.settings.target.as_str());
            self.handovers.retain(|h| {
                if !h.pending.is_empty() {
                    return true;
                }
                self.settings
                    .metrics
                    .handovers
                    .with_label_values(&[source, target, "stored"])
                    .inc_by(h.count);
                let _ = h.done.send(());
                false
            });
        }
    }

    /// Produce a progress record for every partition whose progress changed. With `all`, also
    /// for partitions whose earlier record is not acknowledged yet.
    fn store_progress(&mut self, all: bool) -> Result<()> {
        self.store_maps(usize::MAX);
        self.write_progress(all, true);
        Ok(())
    }

    /// Between two flushes, while records are acknowledged: progress written as soon as the
    /// previous write is acknowledged (at most every [`PROGRESS_MIN_INTERVAL`], and at most
    /// [`PROGRESS_RECORDS_PER_SECOND`]), so that a crash copies little twice. Never waits for
    /// room in the producer queue.
    fn progress_between_flushes(&mut self) {
        if self.acked_since_progress == 0
            || self.progress_in_flight > 0
            || self.progress_at.elapsed() < self.progress_wait
        {
            return;
        }
        self.acked_since_progress = 0;
        // Small maps (a partition copied without gaps has one run), and each partition's first,
        // go with their progress, so that translation stays exact up to the stored position
        // after a crash; large ones wait for the flush (a map behind its progress only
        // translates conservatively).
        self.store_maps(FAST_MAP_RUNS);
        let written = self.write_progress(false, false);
        tracing::trace!(written, "progress written between flushes");
        let budget = Duration::from_secs_f64(written as f64 / PROGRESS_RECORDS_PER_SECOND);
        self.progress_wait = budget.max(PROGRESS_MIN_INTERVAL);
    }

    /// Produces the progress records; returns how many. With `block`, waits for room in the
    /// producer queue (until the shutdown deadline).
    fn write_progress(&mut self, all: bool, block: bool) -> usize {
        self.progress_at = Instant::now();
        let mut written = 0;
        let transactional = self.settings.transactions.is_some();
        for idx in 0..self.slots.len() {
            let Some(slot) = self.slots[idx].as_mut() else {
                continue;
            };
            let next = if transactional {
                slot.transaction_progress()
            } else {
                slot.tracker.progress_to_store()
            };
            let Some(next) = next else {
                continue;
            };
            if !all && slot.final_progress_sent == Some(next) {
                // Already sent and waiting for its acknowledgement.
                continue;
            }
            slot.final_progress_sent = Some(next);
            // Exactly-once mode: in the open transaction of its lane, with the records it names.
            let producer = if transactional {
                self.lanes.get(slot.route.lane)
            } else {
                &self.progress_producer
            };
            let key = encode_key(self.settings.source.as_str(), &slot.source);
            let value = encode_value(next, &slot.ids);
            let partition = partition_for_key(&key, self.settings.progress_partitions);
            let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
                &self.settings.progress_topic,
                PROGRESS_BIT | idx,
            )
            .partition(partition)
            .key(&key)
            .payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => {
                        written += 1;
                        self.progress_in_flight += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        let out_of_time = self.deadline.is_some_and(|d| Instant::now() >= d)
                            || (self.deadline.is_none() && self.shutdown.is_cancelled());
                        if out_of_time || !block {
                            // Tried again at the next flush (the shutdown path reports what is
                            // not stored).
                            slot.final_progress_sent = None;
                            self.progress_unqueued = true;
                            return written;
                        }
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        // Not stored only means a larger replay after a crash: try again at
                        // the next flush rather than stopping replication.
                        slot.final_progress_sent = None;
                        self.progress_unqueued = true;
                        tracing::warn!(
                            topic = %slot.source.topic,
                            partition = slot.source.partition,
                            "cannot write progress to {}: {}; retrying at the next flush",
                            self.settings.progress_topic,
                            describe(&e)
                        );
                        break;
                    }
                }
            }
        }
        written
    }

    /// Writes the translation map of every partition that copied something since the last
    /// flush (with `max_runs`, only maps that small, and maps never written yet). A map not written only makes translation of the newest records coarser (towards
    /// re-reading), never skips a record.
    fn store_maps(&mut self, max_runs: usize) {
        let transactional = self.settings.transactions.is_some();
        for idx in 0..self.slots.len() {
            let Some(slot) = self.slots[idx].as_mut() else {
                continue;
            };
            if !slot.map_dirty || (slot.map_written && slot.map.entries() > max_runs) {
                continue;
            }
            slot.map_dirty = false;
            let producer = if transactional {
                self.lanes.get(slot.route.lane)
            } else {
                &self.progress_producer
            };
            let key = encode_map_key(self.settings.source.as_str(), &slot.source);
            let value = encode_map_value(&slot.map, &slot.ids);
            let partition = partition_for_key(&key, self.settings.progress_partitions);
            let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
                &self.settings.progress_topic,
                PROGRESS_BIT | MAP_BIT | idx,
            )
            .partition(partition)
            .key(&key)
            .payload(&value);
            match producer.send(record) {
                Ok(()) => slot.map_written = true,
                Err((e, _)) => {
                    slot.map_dirty = true;
                    if !matches!(
                        e,
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                    ) {
                        tracing::warn!(topic = %slot.source.topic, partition = slot.source.partition, "translation map not queued: {}", describe(&e));
                    }
                }
            }
        }
    }

    /// Sends pending offset syncs, at most [`MAX_SYNCS_IN_FLIGHT`] in flight.
    fn fire_syncs(&mut self) {
        if let Some(s) = self.syncs.as_mut() {
            s.producer.poll(Duration::ZERO);
            Core::fire(&mut self.slots, s);
        }
    }

    fn fire(slots: &mut [Option<Slot>], s: &mut SyncEmitter) {
        let mut dirty = std::mem::take(&mut s.dirty);
        while let Some(idx) = dirty.pop() {
            if s.producer
                .context()
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed)
                >= MAX_SYNCS_IN_FLIGHT
            {
                dirty.push(idx);
                break;
            }
            let Some(slot) = slots.get_mut(idx as usize).and_then(Option::as_mut) else {
                continue;
            };
            let Some(w) = slot.sync.as_mut() else {
                continue;
            };
            let Some((u, d)) = w.take_pending() else {
                continue;
            };
            let sync = OffsetSync {
                topic: slot.source.topic.to_string(),
                partition: slot.source.partition,
                upstream: u,
                downstream: d,
            };
            let Ok(key) = sync.key() else { continue };
            let value = sync.value();
            let record = BaseRecord::<[u8], [u8], ()>::to(&s.topic)
                .partition(0)
                .key(&key)
                .payload(&value);
            match s.producer.send(record) {
                Ok(()) => {
                    s.producer
                        .context()
                        .in_flight
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err((e, _)) => {
                    w.restore_pending((u, d));
                    dirty.push(idx);
                    if !matches!(
                        e,
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                    ) {
                        tracing::warn!(topic = %slot.source.topic, partition = slot.source.partition, "offset sync not queued: {e}");
                    }
                    break;
                }
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        s.dirty = dirty;
    }

    /// Promotes every partition's delayed sync (the tail of a quiet partition) and sends them.
    fn promote_delayed_syncs(&mut self) {
        let Some(s) = self.syncs.as_mut() else { return };
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(w) = slot.as_mut().and_then(|sl| sl.sync.as_mut()) {
                w.promote_delayed();
                s.dirty.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        self.fire_syncs();
    }

    fn publish_status(&mut self, watermarks: Marks<'_>) {
        self.published_at = Instant::now();
        let now_ms = crate::now_millis();
        let mut rpo: f64 = 0.0;
        let mut reports = Vec::new();
        let now = Instant::now();
        let stall_after = self.settings.stall_after;
        self.publications = self.publications.wrapping_add(1);
        let every = (self.slots.len() / CAUGHT_UP_MARKS_PER_PUBLICATION)
            .clamp(CAUGHT_UP_MARKS_EVERY, CAUGHT_UP_MARKS_EVERY_MAX);
        let turn = self.publications % every;
        let mut from_target = 0;
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(s) = s.as_mut() else { continue };
            let progress = s.tracker.progress().0;
            let settled = s.watch.state == "caught_up"
                && progress == s.watch.progress
                && s.tracker.in_flight() == 0;
            if settled
                && i % every != turn
                && s.watch.marks.is_some()
                && s.delta.is_empty()
                && !s.map_unpublished
                && s.pending_reset.is_none()
                && matches!(s.tracker.state(), PipelineState::Running)
            {
                // Caught up, nothing fetched or acknowledged since the last look, and not its
                // turn to look at the source's end again: nothing to publish. (Each look
                // asks librdkafka for the partition's cached end, which it finds by a linear
                // search over every topic; its windowed gauges then change every fifth second
                // until they settle.)
                s.watch.moved_at = now;
                continue;
            }
            if !settled || i % every == turn || s.watch.marks.is_none() {
                if let Some(m) = watermarks(&s.source.topic, s.source.partition) {
                    s.watch.marks = Some(m);
                }
            }
            let marks = s.watch.marks;
            let lag = marks.map(|(_, hi)| (hi - progress).max(0));
            if let Some((lo, _)) = marks.filter(|(lo, _)| *lo > 0) {
                // Records deleted on the source need no translation any more.
                let pruned = s.map.prune_below(lo);
                s.map_dirty |= pruned;
                s.map_unpublished |= pruned;
            }
            let in_flight = s.tracker.in_flight();
            let w = &mut s.watch;
            if progress != w.progress {
                w.progress = progress;
                w.moved_at = now;
            }
            // A partition the source never answered a fetch for is not caught up: it is
            // behind by an unknown amount until a fetch response names its end.
            let behind = lag.is_none_or(|l| l > 0) || in_flight > 0;
            if !behind {
                w.moved_at = now;
            }
            let still = now.saturating_duration_since(w.moved_at);
            let (state, error) = match s.tracker.state() {
                _ if s.pending_reset.is_some() => (
                    "resetting",
                    Some(format!(
                        "its topic was recreated; waiting for {in_flight} records sent before"
                    )),
                ),
                PipelineState::Running if !behind => ("caught_up", None),
                PipelineState::Running if still < stall_after => ("copying", None),
                PipelineState::Running if in_flight > 0 => (
                    "waiting_for_target",
                    Some(format!(
                        "{in_flight} records sent to the target are not acknowledged"
                    )),
                ),
                PipelineState::Running => (
                    "stalled",
                    Some(match lag {
                        Some(lag) => format!("{lag} records behind the source and nothing copied"),
                        None => "no fetch response from the source names this partition (its end is unknown) and nothing was copied; it is assigned to the consumer again".to_owned(),
                    }),
                ),
                PipelineState::Draining => (
                    "draining",
                    Some(format!("waiting for {in_flight} records in flight")),
                ),
                PipelineState::Failed { reason, .. } => (
                    if s.retry_at.is_some() {
                        "retrying"
                    } else {
                        "failed"
                    },
                    Some(reason.clone()),
                ),
            };
            if state != w.state {
                w.state = state;
                w.since = now;
            }
            let stuck_for = match state {
                "copying" | "caught_up" => Duration::ZERO,
                "waiting_for_target" | "stalled" => still,
                _ => now.saturating_duration_since(w.since),
            };
            let stuck = state == "failed" || stuck_for >= stall_after;
            if stuck && !w.stuck {
                tracing::error!(
                    topic = %s.source.topic, partition = s.source.partition, state,
                    offset = progress, high_watermark = marks.map_or(-1, |(_, hi)| hi), in_flight,
                    stuck_seconds = stuck_for.as_secs(),
                    "partition not moving for {}s: {state}: {}",
                    stuck_for.as_secs(), error.as_deref().unwrap_or("")
                );
            } else if !stuck && w.stuck {
                tracing::info!(topic = %s.source.topic, partition = s.source.partition, state, offset = progress, "partition moving again");
            }
            w.stuck = stuck;
            let lag_seconds = match lag {
                Some(l) if l > 0 => s.last_acked_ts.or(s.first_fetched_ts).map_or(0.0, |ts| {
                    #[allow(clippy::cast_precision_loss)]
                    let secs = (now_ms - ts).max(0) as f64 / 1000.0;
                    secs
                }),
                _ => 0.0,
            };
            rpo = rpo.max(lag_seconds);
            // Published even before the first copy: the checkpoint job then knows the
            // partition is mirrored and checkpoints it as soon as its copy reaches a group.
            if s.map_unpublished {
                self.settings.maps.set(&s.source, &s.target_topic, &s.map);
                s.map_unpublished = false;
            }
            let delta = std::mem::take(&mut s.delta);
            from_target += delta.from_target;
            s.metrics
                .publish(now_ms.unsigned_abs(), &delta, lag, lag_seconds, state);
            let report = Reported {
                state,
                stuck,
                stuck_for: stuck_for.as_secs(),
                next_offset: progress,
                in_flight: s.tracker.in_flight(),
                copied: s.tracker.copied(),
                error,
            };
            if s.watch.reported.as_ref() != Some(&report) {
                reports.push(PartitionReport {
                    source: s.source.clone(),
                    state: report.state,
                    stuck: report.stuck,
                    stuck_for: report.stuck_for,
                    next_offset: report.next_offset,
                    in_flight: report.in_flight,
                    copied: report.copied,
                    error: report.error.clone(),
                });
                s.watch.reported = Some(report);
            }
        }
        let flow = [self.settings.source.as_str(), self.settings.target.as_str()];
        self.settings
            .metrics
            .rpo_seconds
            .with_label_values(&flow)
            .set(rpo);
        if from_target > 0 {
            self.settings
                .metrics
                .records_from_target
                .with_label_values(&flow)
                .inc_by(from_target);
        }
        self.status.update(reports.into_iter());
    }
}

/// What the flow whose origin rule is `rule` does with a record with `headers` (see
/// [`kmirror_core::provenance`]); without a rule every record is copied as it is.
pub(crate) fn origin(rule: Option<&Provenance>, headers: Option<&BorrowedHeaders>) -> Decision {
    match rule {
        None => Decision::Copy,
        Some(rule) => rule.decide(
            headers
                .into_iter()
                .flat_map(|h| h.iter().map(|h| (h.key, h.value))),
        ),
    }
}

fn set_index(
    map: &mut crate::lanes::TopicMap<Vec<u32>>,
    topic: &Arc<str>,
    partition: i32,
    idx: u32,
) {
    let Ok(p) = usize::try_from(partition) else {
        return;
    };
    let parts = map.entry(Arc::clone(topic)).or_default();
    if parts.len() <= p {
        parts.resize(p + 1, u32::MAX);
    }
    parts[p] = idx;
}

/// Moves the consumer's position in `tp` to `offset`. A partition whose fetch stopped on an
/// error (an out-of-range position with `auto.offset.reset=error`) cannot be seeked
/// ("erroneous state"): it is assigned again at `offset` instead.
fn reposition<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &TopicPartition,
    offset: i64,
) -> std::result::Result<(), String> {
    if consumer
        .seek(
            &tp.topic,
            tp.partition,
            rdkafka::Offset::Offset(offset),
            Duration::from_secs(10),
        )
        .is_ok()
    {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.topic, tp.partition);
    consumer
        .incremental_unassign(&tpl)
        .map_err(|e| format!("unassign: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&tp.topic, tp.partition, rdkafka::Offset::Offset(offset))
        .map_err(|e| e.to_string())?;
    consumer
        .incremental_assign(&tpl)
        .map_err(|e| format!("assign: {e}"))
}

/// Asks the target for `topic`'s metadata through the producer, so that its cache knows new
/// partitions. Blocking, bounded by [`METADATA_TIMEOUT`].
fn refresh_producer_metadata(producer: &BaseProducer<DeliveryContext>, topic: &str) {
    if let Err(e) = producer
        .client()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
    {
        tracing::warn!(
            topic,
            "cannot refresh the target's metadata of the topic: {e}"
        );
    }
}

fn describe(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code} ({e})"),
        None => e.to_string(),
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
}

/// Errors after which copying the same record again can succeed without operator action.
fn is_retriable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageTimedOut
                | C::RequestTimedOut
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NetworkException
                | C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
                | C::PurgeQueue
                | C::PurgeInflight
                // Granting the ACL fixes it: the permission check names what is missing.
                | C::TopicAuthorizationFailed
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmirror_core::progress::decode_value;

    #[test]
    fn progress_values_parse() {
        assert_eq!(decode_value(br#"{"offset":41}"#), Some(Offset(42)));
        assert_eq!(decode_value(br#"{"offset":-1}"#), Some(Offset(0)));
        assert_eq!(
            decode_value(br#"{"offset":7,"sourceTopicId":"x"}"#),
            Some(Offset(8))
        );
        assert_eq!(decode_value(b"junk"), None);
    }
}
