//! The replication producers and their delivery reports.
//!
//! librdkafka fills every batch up to one `batch.size` per producer, and a broker refuses a whole
//! batch larger than its topic's `max.message.bytes`: every record in it, however small. So the
//! partitions of a target topic whose limit is below the producer's batch size go through a
//! producer of their own (a *lane*) whose batches fit: lane 0 is the configured producer, and
//! each further lane has a smaller `batch.size` (rounded down to a quarter of a power of two, so
//! that topics with similar limits share one; at most [`MAX_EXTRA_LANES`] of them, each with a
//! queue of at most [`LANE_QUEUE_KBYTES`]). A partition stays in one lane, so its records keep
//! their order. All lanes share one buffer of delivery reports, drained by the replicator.
//!
//! Lanes also carry the codec: unless the operator set the producer's `compression.type`, each
//! target topic's batches use its source topic's codec (see [`crate::codec`]), so a topic's
//! partitions go through the lane of its (batch size, codec).
//!
//! In exactly-once mode lanes are per codec only, each a transactional producer (see
//! [`crate::transactions`]).
//!
//! A record that alone does not fit its topic's limit is refused before it is sent (when the
//! producer does not compress: the broker checks the compressed size), so that nothing after it
//! can reach the target first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientConfig;

use tokio_util::sync::CancellationToken;

use crate::client::ClusterContext;
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Opaque bit marking delivery reports of progress records (data records carry their source
/// offset, which is never negative, so bit 63 is free).
pub(crate) const PROGRESS_BIT: usize = 1 << 63;
/// With [`PROGRESS_BIT`]: a translation-map record.
pub(crate) const MAP_BIT: usize = 1 << 62;

/// Most lanes besides the configured producer.
pub(crate) const MAX_EXTRA_LANES: usize = 8;
/// Queue of each lane with small batches (`queue.buffering.max.kbytes`), at most: it carries
/// only the topics with small limits. A lane of full batches for another codec queues as much
/// as lane 0.
pub(crate) const LANE_QUEUE_KBYTES: usize = 8192;
/// librdkafka's default `batch.size` and `message.max.bytes`.
const LIBRDKAFKA_BATCH: usize = 1_000_000;
/// Size of a record batch without its records (magic v2).
const BATCH_OVERHEAD: usize = 61;
/// More than the batch header and a record's varints, which librdkafka's size check leaves out.
const RECORD_FRAMING_MARGIN: usize = 1024;

/// FNV-1a: the per-record lookups of partitions by topic name hash short names the
/// configuration chose, where the default SipHash's resistance to chosen keys buys nothing and
/// costs about 3 % of the replicator's CPU.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A map keyed by topic name, looked up for every record.
pub(crate) type TopicMap<V> = HashMap<Arc<str>, V, std::hash::BuildHasherDefault<Fnv>>;

/// One delivery report.
pub(crate) struct Delivery {
    pub slot: u32,
    pub opaque: usize,
    pub timestamp: i64,
    pub dst_offset: i64,
    pub error: Option<KafkaError>,
    pub progress_value: Option<kmirror_core::Offset>,
}

/// The most delivery-report events [`drain`] serves in one call.
const DRAIN_MAX: usize = 100_000;

/// Serves the delivery reports queued on `producer` without waiting. rdkafka's `poll` serves a
/// single event once its deadline has passed, and librdkafka queues one event per delivered
/// batch, that is per partition: with thousands of partitions acknowledged at once, one event
/// per poll of the replicator's loop (every 50 ms when idle) left acknowledged records
/// unaccounted for minutes.
pub(crate) fn drain(producer: &BaseProducer<DeliveryContext>) {
    let pending = || {
        producer
            .context()
            .buf()
            .lock()
            .map_or(usize::MAX, |b| b.events.len())
    };
    for _ in 0..DRAIN_MAX {
        let before = pending();
        producer.poll(Duration::ZERO);
        if pending() == before {
            break;
        }
    }
}

/// Delivery reports waiting for the replicator, and how to find their partitions.
#[derive(Default)]
pub(crate) struct DeliveryBuf {
    /// Target topic → slot index per partition (`u32::MAX`: none).
    pub topics: TopicMap<Vec<u32>>,
    /// Reports not applied yet.
    pub events: Vec<Delivery>,
}

/// Producer context: buffers delivery reports for the replicator thread.
pub struct DeliveryContext {
    cluster: ClusterContext,
    buf: Arc<Mutex<DeliveryBuf>>,
    metrics: Arc<Metrics>,
    alias: String,
}

impl DeliveryContext {
    pub(crate) fn new(
        cluster: ClusterContext,
        buf: Arc<Mutex<DeliveryBuf>>,
        metrics: Arc<Metrics>,
        alias: String,
    ) -> Self {
        Self {
            cluster,
            buf,
            metrics,
            alias,
        }
    }

    pub(crate) fn buf(&self) -> &Mutex<DeliveryBuf> {
        &self.buf
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.cluster.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cluster.error(error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        self.metrics
            .client_statistics(&self.alias, "replication-producer", &statistics);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (msg, error) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e.clone())),
        };
        let Ok(mut buf) = self.buf.lock() else { return };
        let (slot, progress_value) = if opaque & PROGRESS_BIT != 0 {
            let value = msg.payload().and_then(kmirror_core::progress::decode_value);
            (
                u32::try_from(opaque & !(PROGRESS_BIT | MAP_BIT)).unwrap_or(u32::MAX),
                value,
            )
        } else {
            let slot = buf
                .topics
                .get(msg.topic())
                .and_then(|parts| {
                    usize::try_from(msg.partition())
                        .ok()
                        .and_then(|p| parts.get(p))
                })
                .copied()
                .unwrap_or(u32::MAX);
            (slot, None)
        };
        buf.events.push(Delivery {
            slot,
            opaque,
            timestamp: msg.timestamp().to_millis().unwrap_or(-1),
            dst_offset: msg.offset(),
            error,
            progress_value,
        });
    }
}

/// A target topic's limit, and the lane its partitions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub lane: usize,
    /// The topic's `max.message.bytes`, if known.
    pub limit: Option<usize>,
}

/// One producer and the batches it makes.
struct Lane {
    /// Its largest batch.
    batch: usize,
    /// Its codec (`None`: as the operator configured the producer).
    codec: Option<Codec>,
    /// Which of the producers of its (batch, codec) it is: partition number modulo
    /// [`Lanes::shards`].
    shard: usize,
    producer: LaneProducer,
}

/// A lane's producer: copies go through its topic handles (see [`kmirror_admin::TopicProducer`]).
type LaneProducer =
    kmirror_admin::TopicProducer<DeliveryContext, std::hash::BuildHasherDefault<Fnv>>;

/// `queue.buffering.max.kbytes` of one of `shards` producers sharing `kbytes`: an equal part,
/// but at least two of its largest batches.
fn shard_queue(kbytes: usize, shards: usize, batch: usize) -> usize {
    (kbytes / shards.max(1)).max(2 * batch.div_ceil(1024))
}

/// `queue.buffering.max.messages` of a producer whose queue is `kbytes` of the configured
/// producer's: the same share of its records, so that their count stays within the budget
/// however many producers there are. `None` if `config` has no such setting.
fn lane_messages(config: &ClientConfig, kbytes: usize) -> Option<usize> {
    let number = |key: &str| config.get(key).and_then(|v| v.parse::<usize>().ok());
    let (messages, configured) = (
        number("queue.buffering.max.messages")?,
        number("queue.buffering.max.kbytes")?,
    );
    let share = messages.saturating_mul(kbytes) / configured.max(1);
    Some(share.clamp(1_000, messages.max(1_000)))
}

/// The replication producers: lane 0 as configured, further lanes with smaller batches.
pub(crate) struct Lanes {
    config: ClientConfig,
    cluster: ClusterContext,
    metrics: Arc<Metrics>,
    alias: String,
    buf: Arc<Mutex<DeliveryBuf>>,
    lanes: Vec<Lane>,
    /// Whether the configured producer compresses (then only the broker knows a batch's size
    /// on the wire).
    compresses: bool,
    /// The operator set the producer's codec: every topic uses it.
    codec_fixed: bool,
    /// The producer's `message.max.bytes`: librdkafka itself refuses a larger record when it
    /// is produced, so a topic limit well above it needs no check of ours.
    max_record: usize,
    /// Limits already reported as without a lane of their own.
    reported: std::collections::HashSet<usize>,
    /// Producers per (batch size, codec): librdkafka sends one ProduceRequest per partition
    /// and, idempotent, at most 5 at a time per broker connection, so thousands of partitions
    /// with a few records each wait for hundreds of round trips on one producer.
    shards: usize,
    /// Exactly-once mode: the `transactional.id` of lane 0 (see [`crate::transactions`]). Lanes
    /// are then per codec only, each transactional (`<id>-<codec>`), with lane 0's batch size.
    transactional: Option<String>,
}

/// The codecs that may get a lane of their own besides lane 0's.
const LANE_CODECS: [Codec; 4] = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

impl Lanes {
    /// Creates lane 0 from `config`; each (batch size, codec) gets `shards` producers, the
    /// queue of `config` divided between them.
    pub fn new(
        config: &ClientConfig,
        cluster: ClusterContext,
        metrics: Arc<Metrics>,
        alias: String,
        shards: usize,
    ) -> Result<Self> {
        let shards = shards.max(1);
        let buf = Arc::new(Mutex::new(DeliveryBuf::default()));
        let setting = |key: &str| {
            config
                .get(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(LIBRDKAFKA_BATCH)
        };
        let max_record = setting("message.max.bytes");
        let batch = setting("batch.size").min(max_record);
        let configured: Vec<&str> = [
            config.get("compression.type"),
            config.get("compression.codec"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let compresses = configured.iter().any(|c| *c != "none");
        let codec_fixed = !configured.is_empty();
        let context = DeliveryContext::new(
            cluster.sibling(),
            Arc::clone(&buf),
            Arc::clone(&metrics),
            alias.clone(),
        );
        let mut first = config.clone();
        if shards > 1 {
            if let Some(queue) = config
                .get("queue.buffering.max.kbytes")
                .and_then(|v| v.parse::<usize>().ok())
            {
                let kbytes = shard_queue(queue, shards, batch);
                if let Some(messages) = lane_messages(config, kbytes) {
                    first.set("queue.buffering.max.messages", messages.to_string());
                }
                first.set("queue.buffering.max.kbytes", kbytes.to_string());
            }
        }
        let main: BaseProducer<DeliveryContext> = first
            .create_with_context(context)
            .map_err(|e| Error::client("replication producer", &e))?;
        Ok(Self {
            config: config.clone(),
            cluster,
            metrics,
            alias,
            buf,
            lanes: vec![Lane {
                batch,
                codec: None,
                shard: 0,
                producer: LaneProducer::new(main),
            }],
            compresses,
            codec_fixed,
            max_record,
            reported: std::collections::HashSet::new(),
            shards,
            transactional: None,
        })
    }

    /// Exactly-once mode: lane 0's producer is transactional with `id` (its config must say
    /// so), and further lanes are created per codec only, transactional too.
    pub fn transactional(&mut self, id: &str) {
        self.transactional = Some(id.to_owned());
        self.shards = 1;
    }

    /// Exactly-once mode: readies lane 0's transactions and fences every earlier instance of
    /// the flow on each `transactional.id` it may use (lane 0's and one per codec), so that none
    /// of them commits after the stored progress is read. Blocking; gives up at shutdown.
    pub fn fence(&self, shutdown: &CancellationToken) -> Result<()> {
        let Some(id) = &self.transactional else {
            return Ok(());
        };
        // Every id, whatever this instance's config: an earlier instance may have had other
        // codecs.
        std::thread::scope(|scope| {
            let others: Vec<_> = LANE_CODECS
                .iter()
                .map(|codec| {
                    let mut config = self.config.clone();
                    let lane_id = lane_transactional_id(id, *codec);
                    config
                        .set("transactional.id", &lane_id)
                        .set("statistics.interval.ms", "0");
                    scope.spawn(move || -> Result<()> {
                        let producer: BaseProducer = config
                            .create()
                            .map_err(|e| Error::client("replication producer (fencing)", &e))?;
                        crate::transactions::init(
                            &producer,
                            &lane_id,
                            crate::transactions::INIT_PATIENCE,
                            shutdown,
                        )
                    })
                })
                .collect();
            crate::transactions::init(
                self.lanes[0].producer.producer(),
                id,
                crate::transactions::INIT_PATIENCE,
                shutdown,
            )?;
            for handle in others {
                handle
                    .join()
                    .map_err(|_| Error::Internal("fencing thread panicked".into()))??;
            }
            Ok(())
        })
    }

    /// How many producers (lanes) there are.
    pub fn count(&self) -> usize {
        self.lanes.len()
    }

    /// The shared delivery buffer.
    pub fn buf(&self) -> &Mutex<DeliveryBuf> {
        &self.buf
    }

    /// The producer of `lane` (lane 0 if there is no such lane).
    pub fn get(&self, lane: usize) -> &BaseProducer<DeliveryContext> {
        self.lane(lane).producer()
    }

    /// The topic-handle producer of `lane` (lane 0 if there is no such lane).
    fn lane(&self, lane: usize) -> &LaneProducer {
        &self.lanes.get(lane).unwrap_or(&self.lanes[0]).producer
    }

    /// Produces a copy of `source` through `lane` (lane 0 if there is no such lane); see
    /// [`kmirror_admin::TopicProducer::send_copy`].
    #[allow(clippy::too_many_arguments)]
    pub fn send_copy(
        &self,
        lane: usize,
        topic: &str,
        partition: i32,
        source: &rdkafka::message::BorrowedMessage<'_>,
        copy_headers: bool,
        header: Option<(&str, &[u8])>,
        timestamp: Option<i64>,
        opaque: usize,
    ) -> Result<(), KafkaError> {
        self.lane(lane).send_copy(
            topic,
            partition,
            source,
            copy_headers,
            header,
            timestamp,
            opaque,
        )
    }

    /// Makes the handle of `topic` on `lane` now (see [`kmirror_admin::TopicProducer::prepare`]):
    /// the metadata of a target topic is asked for while its first records are fetched.
    pub fn prepare(&self, lane: usize, topic: &str) {
        if let Err(e) = self.lane(lane).prepare(topic) {
            tracing::debug!(topic, "topic handle: {e}");
        }
    }

    /// The lane for `partition` of a target topic whose `max.message.bytes` is `limit` and
    /// whose batches should use `codec` (created if needed).
    pub fn route(
        &mut self,
        topic: &str,
        partition: i32,
        limit: Option<usize>,
        codec: Option<Codec>,
    ) -> Route {
        if self.transactional.is_some() {
            return self.transactional_route(topic, limit, codec);
        }
        let shard = usize::try_from(partition).unwrap_or(0) % self.shards;
        // An operator's codec wins; without one, uncompressed batches are lane 0's.
        let codec = if self.codec_fixed {
            None
        } else {
            codec.filter(|c| *c != Codec::None)
        };
        let main = self.lanes[0].batch;
        let batch = limit.map_or(main, |l| quantize(l).min(main));
        if let Some(lane) = self
            .lanes
            .iter()
            .position(|l| l.batch == batch && l.codec == codec && l.shard == shard)
        {
            return Route { lane, limit };
        }
        if self.lanes.len() < (MAX_EXTRA_LANES + 1) * self.shards {
            match self.add(batch, codec, shard) {
                Ok(lane) => {
                    if let Some(limit) = limit.filter(|_| batch < main && shard == 0) {
                        tracing::info!(
                            target_topic = topic,
                            max_message_bytes = limit,
                            batch_size = batch,
                            "the target topic's max.message.bytes is below the producer's batch.size: its partitions go through a producer with batches of at most {batch} bytes"
                        );
                    }
                    return Route { lane, limit };
                }
                Err(e) => tracing::warn!(target_topic = topic, "{e}"),
            }
        }
        let Some(limit) = limit else {
            return Route { lane: 0, limit };
        };
        // No lane of its own: the largest one whose batches fit, else the smallest.
        let fits = self
            .lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.batch <= limit)
            .max_by_key(|(_, l)| (l.batch, l.codec == codec))
            .map(|(i, _)| i);
        let lane = fits.unwrap_or_else(|| {
            self.lanes
                .iter()
                .enumerate()
                .min_by_key(|(_, l)| l.batch)
                .map_or(0, |(i, _)| i)
        });
        if fits.is_none() && self.reported.insert(limit) {
            tracing::warn!(
                target_topic = topic,
                max_message_bytes = limit,
                "no producer has batches small enough for the target topic's max.message.bytes ({MAX_EXTRA_LANES} extra producers at most): batches of several records may be refused; set producer.batch.size below {limit}"
            );
        }
        Route {
            lane,
            limit: Some(limit),
        }
    }

    /// Exactly-once mode: one lane per codec, all with lane 0's batch size (a lane per batch
    /// size would be a `transactional.id` that could not be fenced at start).
    fn transactional_route(
        &mut self,
        topic: &str,
        limit: Option<usize>,
        codec: Option<Codec>,
    ) -> Route {
        let codec = if self.codec_fixed {
            None
        } else {
            codec.filter(|c| *c != Codec::None)
        };
        let main = self.lanes[0].batch;
        if let Some(limit) = limit.filter(|l| *l < main) {
            if self.reported.insert(limit) {
                tracing::warn!(
                    target_topic = topic,
                    max_message_bytes = limit,
                    batch_size = main,
                    "exactly-once mode: the target topic's max.message.bytes is below the producer's batch.size, and batches larger than it are refused (stopping the partition): set producer.batch.size below {limit}"
                );
            }
        }
        if let Some(lane) = self.lanes.iter().position(|l| l.codec == codec) {
            return Route { lane, limit };
        }
        match self.add(main, codec, 0) {
            Ok(lane) => Route { lane, limit },
            Err(e) => {
                tracing::warn!(
                    target_topic = topic,
                    "{e}; its batches go through the main transactional producer (its codec)"
                );
                Route { lane: 0, limit }
            }
        }
    }

    fn add(&mut self, batch: usize, codec: Option<Codec>, shard: usize) -> Result<usize> {
        let mut config = self.config.clone();
        let configured = config
            .get("queue.buffering.max.kbytes")
            .and_then(|v| v.parse::<usize>().ok());
        // A lane of full batches may carry as much as lane 0 (all topics compressed alike).
        let queue = if batch >= self.lanes[0].batch {
            configured.unwrap_or(LANE_QUEUE_KBYTES)
        } else {
            configured
                .unwrap_or(LANE_QUEUE_KBYTES)
                .min(LANE_QUEUE_KBYTES)
        };
        let kbytes = shard_queue(queue, self.shards, batch);
        if let Some(messages) = lane_messages(&self.config, kbytes) {
            config.set("queue.buffering.max.messages", messages.to_string());
        }
        config
            .set("batch.size", batch.to_string())
            .set("queue.buffering.max.kbytes", kbytes.to_string())
            // Lane 0 reports the producer's statistics.
            .set("statistics.interval.ms", "0");
        if let Some(codec) = codec {
            config.set("compression.type", codec.name());
        }
        let transactional_id = self
            .transactional
            .as_deref()
            .map(|id| lane_transactional_id(id, codec.unwrap_or(Codec::None)));
        if let Some(id) = &transactional_id {
            config.set("transactional.id", id);
        }
        let context = DeliveryContext::new(
            self.cluster.sibling(),
            Arc::clone(&self.buf),
            Arc::clone(&self.metrics),
            self.alias.clone(),
        );
        let producer: BaseProducer<DeliveryContext> = config
            .create_with_context(context)
            .map_err(|e| Error::client("replication producer (lane)", &e))?;
        if let Some(id) = &transactional_id {
            // Fenced at start already (see `fence`): this only readies it, briefly (on failure
            // the topic goes through lane 0).
            crate::transactions::init(
                &producer,
                id,
                crate::transactions::CALL_TIMEOUT * 2,
                &CancellationToken::new(),
            )?;
            tracing::info!(transactional_id = %id, "exactly-once mode: a transactional producer for the topics compressed with {}", codec.map_or("none", Codec::name));
        }
        self.lanes.push(Lane {
            batch,
            codec,
            shard,
            producer: LaneProducer::new(producer),
        });
        Ok(self.lanes.len() - 1)
    }

    /// Serves delivery reports: `lane` waits up to `timeout`, the others do not wait; then
    /// every lane serves what else is queued (see [`drain`]).
    pub fn poll(&self, lane: usize, timeout: Duration) {
        for (i, l) in self.lanes.iter().enumerate() {
            let producer = l.producer.producer();
            producer.poll(if i == lane { timeout } else { Duration::ZERO });
            drain(producer);
        }
    }

    /// Flushes every lane until `deadline`; whether all were flushed.
    pub fn flush(&self, deadline: Instant) -> bool {
        let mut all = true;
        for l in &self.lanes {
            all &= l
                .producer
                .producer()
                .flush(deadline.saturating_duration_since(Instant::now()))
                .is_ok();
        }
        all
    }

    /// The first fatal error of any lane, with its code.
    pub fn fatal(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.lanes
            .iter()
            .find_map(|l| l.producer.producer().client().fatal_error())
    }

    /// The first fatal error of any lane.
    pub fn fatal_error(&self) -> Option<String> {
        self.lanes
            .iter()
            .find_map(|l| l.producer.producer().client().fatal_error().map(|(_, s)| s))
    }

    /// Why a record of `size` bytes (see [`record_size`]) cannot be sent on `route`, if it
    /// cannot: the broker would refuse the batch it travels in, alone, as too large.
    pub fn refuses(&self, route: Route, size: impl FnOnce() -> usize) -> Option<String> {
        let limit = route.limit?;
        let compresses = self.compresses
            || self
                .lanes
                .get(route.lane)
                .is_some_and(|l| l.codec.is_some());
        // librdkafka's own check (record bytes above message.max.bytes) covers topics whose
        // limit leaves room for the framing it does not count; the common case costs nothing.
        if compresses || limit >= self.max_record + RECORD_FRAMING_MARGIN {
            return None;
        }
        let size = size();
        (size + BATCH_OVERHEAD > limit).then(|| {
            format!(
                "MessageSizeTooLarge (the record takes {} bytes in a batch of its own, above the target topic's max.message.bytes of {limit}; it is not sent, so that nothing after it reaches the target first)",
                size + BATCH_OVERHEAD
            )
        })
    }
}

/// The largest `batch.size` for a topic that accepts batches of at most `limit` bytes: `limit`
/// rounded down to a quarter of a power of two (4 sizes per doubling), so that similar limits
/// share a lane.
pub(crate) fn quantize(limit: usize) -> usize {
    if limit < 8 {
        return limit.max(1);
    }
    let top = usize::BITS - 1 - limit.leading_zeros();
    let step = 1usize << (top - 2);
    limit / step * step
}

/// Bytes a varint (zig-zag encoded) takes.
fn varint_len(v: i64) -> usize {
    #[allow(clippy::cast_sign_loss)]
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| {
        varint_len(i64::try_from(b.len()).unwrap_or(i64::MAX)) + b.len()
    })
}

/// Bytes the record takes alone in a batch (magic v2, uncompressed, batch header excluded).
pub(crate) fn record_size<M: Message>(msg: &M) -> usize {
    let mut body = 3 + bytes_len(msg.key()) + bytes_len(msg.payload());
    match msg.headers() {
        Some(h) => {
            body += varint_len(i64::try_from(h.count()).unwrap_or(i64::MAX));
            for header in h.iter() {
                body += bytes_len(Some(header.key.as_bytes())) + bytes_len(header.value);
            }
        }
        None => body += 1,
    }
    body + varint_len(i64::try_from(body).unwrap_or(i64::MAX))
}

/// The `transactional.id` of the lane for `codec` in exactly-once mode (lane 0, the codec the
/// producer is configured with, has the base id itself).
fn lane_transactional_id(base: &str, codec: Codec) -> String {
    format!("{base}-{}", codec.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_producer_queues_its_share_of_the_records_too() {
        let mut config = ClientConfig::new();
        config
            .set("queue.buffering.max.kbytes", "32768")
            .set("queue.buffering.max.messages", "32768");
        assert_eq!(lane_messages(&config, 8192), Some(8192));
        assert_eq!(lane_messages(&config, 32768), Some(32768));
        assert_eq!(lane_messages(&config, 1), Some(1_000), "a floor");
        assert_eq!(lane_messages(&ClientConfig::new(), 8192), None);
    }

    #[test]
    fn topic_names_hash_with_fnv_1a() {
        use std::hash::{BuildHasher, Hasher};
        let mut h = Fnv::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut map: TopicMap<u32> = TopicMap::default();
        map.insert(Arc::from("orders"), 1);
        map.insert(Arc::from("payments"), 2);
        assert_eq!(map.get("orders"), Some(&1));
        assert_eq!(map.get("payments"), Some(&2));
        assert_ne!(
            map.hasher().hash_one("orders"),
            map.hasher().hash_one("payments")
        );
    }

    #[test]
    fn limits_round_down_to_a_quarter_of_a_power_of_two() {
        assert_eq!(quantize(65_536), 65_536);
        assert_eq!(quantize(65_535), 57_344);
        assert_eq!(quantize(100_000), 98_304);
        assert_eq!(quantize(1_048_588), 1_048_576);
        assert_eq!(quantize(5), 5);
        for limit in [9, 100, 1_000, 12_345, 999_999, 10_000_000] {
            let q = quantize(limit);
            assert!(q <= limit && q * 5 / 4 >= limit, "{limit} -> {q}");
        }
    }

    #[test]
    fn varints_take_what_kafka_writes() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(-1), 1);
        assert_eq!(varint_len(63), 1);
        assert_eq!(varint_len(64), 2);
        assert_eq!(varint_len(8191), 2);
        assert_eq!(varint_len(8192), 3);
    }

    #[test]
    fn a_record_alone_is_sized_as_the_broker_counts_it() {
        use rdkafka::message::{OwnedHeaders, OwnedMessage, Timestamp};
        // Kafka's DefaultRecord.sizeInBytes for key "k", value of 100 bytes, one header
        // ("h", "v"), offset and timestamp deltas 0: body 3 + 2 + (2+100) + 1 + 2 + 2 = 112,
        // plus 2 for its length.
        let msg = OwnedMessage::new(
            Some(vec![b'x'; 100]),
            Some(b"k".to_vec()),
            "t".into(),
            Timestamp::CreateTime(1),
            0,
            0,
            Some(OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "h",
                value: Some("v"),
            })),
        );
        assert_eq!(record_size(&msg), 114);
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::CreateTime(1), 0, 0, None);
        // attributes, two deltas, null key, null value, no headers; one length byte.
        assert_eq!(record_size(&bare), 7);
    }
}
