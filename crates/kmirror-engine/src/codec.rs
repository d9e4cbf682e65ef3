//! Which codec the target's batches of a topic use.
//!
//! A replicator that decompresses what it reads and writes it uncompressed multiplies the disk
//! and network a DR cluster needs by the source's compression ratio (30 to 80 for JSON-like
//! payloads under zstd). So, unless the operator sets the producer's `compression.type`, each
//! target topic's batches use the source topic's codec: its `compression.type` when that names a
//! codec, else the codec of its newest batches. librdkafka does not hand a batch's codec to the
//! application; it names it in its `msg` debug line for every fetched message set, so a short
//! lived consumer with that debug context reads the newest records of a few partitions and the
//! codec is taken from those lines.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// A record-batch compression codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The name librdkafka's `compression.type` and Kafka's topic config use.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// A codec by its librdkafka or Kafka name (`uncompressed` is Kafka's topic-config name
    /// for none; `producer` and `inherit` name no codec).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "none" | "uncompressed" => Some(Codec::None),
            "gzip" => Some(Codec::Gzip),
            "snappy" => Some(Codec::Snappy),
            "lz4" => Some(Codec::Lz4),
            "zstd" => Some(Codec::Zstd),
            _ => None,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a topic's codec was learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecSource {
    /// The source topic's `compression.type`.
    TopicConfig,
    /// The source topic's newest batches.
    Batches,
    /// The source topic had no records to look at: written uncompressed.
    Empty,
    /// Its batches could not be read in time: written uncompressed.
    Undetermined,
}

impl CodecSource {
    pub fn describe(self) -> &'static str {
        match self {
            CodecSource::TopicConfig => "the source topic's compression.type",
            CodecSource::Batches => "seen in the source topic's newest batches",
            CodecSource::Empty => "the source topic holds no records to look at",
            CodecSource::Undetermined => {
                "none: the source topic's newest batches could not be read in time"
            }
        }
    }
}

/// The codec a source topic's `compression.type` value imposes on its batches, if any
/// (`producer`, Kafka's default, keeps whatever each producer sent).
pub fn from_topic_config(value: Option<&str>) -> Option<Codec> {
    value.and_then(Codec::parse)
}

/// Reads librdkafka's `CONSUME` debug line for a fetched message set:
/// `Enqueue 12 message(s) (12288 bytes, 12 ops) on orders [3] fetch queue (qlen 12, v2,
/// last_offset 99, 0 ctrl msgs, 0 aborted msgsets, zstd)`. Returns the topic, partition and
/// codec when the set held records.
pub fn parse_consume_line(line: &str) -> Option<(&str, i32, Codec)> {
    // After the thread and broker names librdkafka puts first.
    let rest = &line[line.find("Enqueue ")? + "Enqueue ".len()..];
    let (count, rest) = rest.split_once(' ')?;
    if count.parse::<u64>().ok()? == 0 {
        return None;
    }
    let (head, tail) = rest.rsplit_once(" fetch queue (")?;
    let (_, tp) = head.rsplit_once(" on ")?;
    let (topic, partition) = tp.rsplit_once(" [")?;
    let partition = partition.strip_suffix(']')?.parse().ok()?;
    let codec = tail.strip_suffix(')')?.rsplit(", ").next()?;
    let codec = if codec == "uncompressed" {
        Codec::None
    } else {
        Codec::parse(codec)?
    };
    Some((topic, partition, codec))
}

/// Reads librdkafka's `FETCH` debug line for one partition of a Fetch response:
/// `Topic orders [3] MessageSet size 0, error "Success", MaxOffset 0, LSO 0, Ver 2/2`.
/// Returns the topic, partition and high watermark when the answer holds no records and no
/// error (a response can also be empty for a partition because the response was full: the
/// caller compares the high watermark with the offset it asked for).
pub fn parse_empty_fetch_line(line: &str) -> Option<(&str, i32, i64)> {
    let rest = &line[line.find(": Topic ")? + ": Topic ".len()..];
    let (tp, rest) = rest.split_once(" MessageSet size ")?;
    let (size, rest) = rest.split_once(", error \"")?;
    let (error, rest) = rest.split_once('"')?;
    if size != "0" || error != "Success" {
        return None;
    }
    let high = rest
        .strip_prefix(", MaxOffset ")?
        .split(',')
        .next()?
        .parse()
        .ok()?;
    let (topic, partition) = tp.rsplit_once(" [")?;
    Some((topic, partition.strip_suffix(']')?.parse().ok()?, high))
}

/// Reads librdkafka's `FETCH` debug line for one partition of a Fetch request:
/// `Fetch topic orders [3] at offset 42 (leader epoch 0, current leader epoch 0, v2)`.
pub fn parse_fetch_request_line(line: &str) -> Option<(&str, i32, i64)> {
    let rest = &line[line.find(": Fetch topic ")? + ": Fetch topic ".len()..];
    let (tp, rest) = rest.split_once(" at offset ")?;
    let offset = rest.split(' ').next()?.parse().ok()?;
    let (topic, partition) = tp.rsplit_once(" [")?;
    Some((topic, partition.strip_suffix(']')?.parse().ok()?, offset))
}

/// What the probe's fetches showed.
#[derive(Default)]
struct Seen {
    /// Per topic, the strongest codec seen (a topic with any compressed batch among its newest
    /// ones is compressed).
    codecs: HashMap<String, Codec>,
    /// Partitions with nothing at or after the offset fetched (it is their high watermark).
    empty: HashSet<(String, i32)>,
    /// The offset last asked for, per partition.
    asked: HashMap<(String, i32), i64>,
}

struct ProbeContext {
    seen: Mutex<Seen>,
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match fac {
            "CONSUME" => {
                if let Some((topic, _, codec)) = parse_consume_line(log_message) {
                    if let Ok(mut seen) = self.seen.lock() {
                        let entry = seen.codecs.entry(topic.to_owned()).or_insert(codec);
                        if *entry == Codec::None {
                            *entry = codec;
                        }
                    }
                }
            }
            "FETCH" => {
                if let Some((topic, partition, offset)) = parse_fetch_request_line(log_message) {
                    if let Ok(mut seen) = self.seen.lock() {
                        seen.asked.insert((topic.to_owned(), partition), offset);
                    }
                } else if let Some((topic, partition, high)) = parse_empty_fetch_line(log_message) {
                    if let Ok(mut seen) = self.seen.lock() {
                        let key = (topic.to_owned(), partition);
                        if seen.asked.get(&key) == Some(&high) {
                            seen.empty.insert(key);
                        }
                    }
                }
            }
            _ if matches!(
                level,
                RDKafkaLogLevel::Emerg
                    | RDKafkaLogLevel::Alert
                    | RDKafkaLogLevel::Critical
                    | RDKafkaLogLevel::Error
                    | RDKafkaLogLevel::Warning
            ) =>
            {
                tracing::debug!(fac, "codec probe: {log_message}");
            }
            _ => {}
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // The caller learns what the probe could not see from its answer.
        tracing::debug!("codec probe: {error}: {reason}");
    }
}

impl ConsumerContext for ProbeContext {}

/// Partitions probed per topic, at most.
const PROBED_PARTITIONS: i32 = 8;
/// Records read back from the end of each probed partition (control records of transactions
/// are uncompressed and come last: several records reach the data batches before them).
const PROBED_RECORDS: i64 = 20;

/// What [`probe`] learned.
#[derive(Debug, Default)]
pub struct Probed {
    /// The codec of each topic whose newest batches were read.
    pub codecs: HashMap<String, Codec>,
    /// Topics neither read nor found empty before the probe gave up.
    pub undetermined: HashSet<String>,
}

/// The codec of the newest batches of each of `topics` (name, partition count) on the cluster
/// `config` connects to. Topics whose probed partitions hold no record are in neither part of
/// the answer. Blocking: call from a blocking thread. Gives up at `timeout` or when `stop` is
/// cancelled, with what it learned.
pub fn probe(
    config: &ClientConfig,
    topics: &[(String, i32)],
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<Probed, String> {
    let mut consumer = None;
    probe_with(config, topics, timeout, stop, &mut consumer)
}

/// As [`probe`], but hands the answer to `answer` before its consumer is closed: rdkafka
/// closes a consumer (of a group, as every consumer that assigns partitions is) by polling
/// in steps of 100 ms, and the close that takes a few milliseconds costs a tenth of a second
/// that the start of the copy need not wait for.
pub fn probe_then(
    config: &ClientConfig,
    topics: &[(String, i32)],
    timeout: Duration,
    stop: &CancellationToken,
    answer: impl FnOnce(Result<Probed, String>),
) {
    let mut consumer = None;
    let probed = probe_with(config, topics, timeout, stop, &mut consumer);
    answer(probed);
    drop(consumer);
}

/// [`probe`], leaving its consumer in `closing` for the caller to drop.
fn probe_with(
    config: &ClientConfig,
    topics: &[(String, i32)],
    timeout: Duration,
    stop: &CancellationToken,
    closing: &mut Option<BaseConsumer<ProbeContext>>,
) -> Result<Probed, String> {
    if topics.is_empty() {
        return Ok(Probed::default());
    }
    let mut config = config.clone();
    // rust-rdkafka lowers librdkafka's log level after creating the client; the debug lines
    // are only delivered at Debug.
    config.set_log_level(RDKafkaLogLevel::Debug);
    config
        .set("debug", "msg,fetch")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "0")
        // A few batches per partition are all it needs, whatever the consumer settings.
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "65536")
        .set("group.id", "kmirror-codec-probe");
    let consumer: BaseConsumer<ProbeContext> = config
        .create_with_context(ProbeContext {
            seen: Mutex::new(Seen::default()),
        })
        .map_err(|e| format!("codec probe consumer: {e}"))?;
    let mut ends = TopicPartitionList::new();
    let mut pending: HashMap<&str, i32> = HashMap::new();
    for (topic, partitions) in topics {
        let probed = (*partitions).clamp(0, PROBED_PARTITIONS);
        for p in 0..probed {
            ends.add_partition_offset(topic, p, Offset::End)
                .map_err(|e| format!("codec probe: {e}"))?;
        }
        if probed > 0 {
            pending.insert(topic.as_str(), probed);
        }
    }
    let deadline = Instant::now() + timeout;
    // Without metadata, fetching would wait for librdkafka's once-a-second topic scan.
    let _ = consumer.fetch_metadata(None, timeout);
    // The end offsets of every probed partition in one ListOffsets request per broker: assigned
    // at a logical offset, librdkafka asks for each partition's in a request of its own, and
    // thousands of them (8,000 for 1,000 topics) take longer than the probe may.
    let tpl = match consumer.offsets_for_times(ends.clone(), timeout) {
        Ok(answered) => {
            let mut tpl = TopicPartitionList::new();
            let mut empty = Vec::new();
            for e in answered.elements() {
                match e.offset() {
                    Offset::Offset(end) if e.error().is_ok() && end <= 0 => {
                        empty.push((e.topic().to_owned(), e.partition()));
                    }
                    Offset::Offset(end) if e.error().is_ok() => {
                        let from = Offset::Offset((end - PROBED_RECORDS).max(0));
                        tpl.add_partition_offset(e.topic(), e.partition(), from)
                            .map_err(|e| format!("codec probe: {e}"))?;
                    }
                    _ => {
                        tpl.add_partition_offset(
                            e.topic(),
                            e.partition(),
                            Offset::OffsetTail(PROBED_RECORDS),
                        )
                        .map_err(|e| format!("codec probe: {e}"))?;
                    }
                }
            }
            if let Ok(mut seen) = consumer.context().seen.lock() {
                seen.empty.extend(empty);
            }
            tpl
        }
        Err(e) => {
            tracing::debug!("codec probe: end offsets: {e}; each partition asks for its own");
            let mut tpl = TopicPartitionList::new();
            for e in ends.elements() {
                tpl.add_partition_offset(
                    e.topic(),
                    e.partition(),
                    Offset::OffsetTail(PROBED_RECORDS),
                )
                .map_err(|e| format!("codec probe: {e}"))?;
            }
            tpl
        }
    };
    consumer
        .assign(&tpl)
        .map_err(|e| format!("codec probe: {e}"))?;
    while !pending.is_empty() && Instant::now() < deadline && !stop.is_cancelled() {
        // Records are only drained: the debug lines of their sets came before them.
        let _ = consumer.poll(Duration::from_millis(50));
        if let Ok(seen) = consumer.context().seen.lock() {
            pending.retain(|topic, probed| {
                !seen.codecs.contains_key(*topic)
                    && (0..*probed).any(|p| !seen.empty.contains(&((*topic).to_owned(), p)))
            });
        }
    }
    let codecs = consumer
        .context()
        .seen
        .lock()
        .map(|s| s.codecs.clone())
        .unwrap_or_default();
    let undetermined = pending
        .keys()
        .filter(|t| !codecs.contains_key(**t))
        .map(|t| (*t).to_owned())
        .collect();
    *closing = Some(consumer);
    Ok(Probed {
        codecs,
        undetermined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_codec_of_a_fetched_message_set() {
        let line = "[thrd:127.0.0.1:9092/1]: 127.0.0.1:9092/1: Enqueue 12 message(s) (12288 bytes, 12 ops) on orders.v1 [3] fetch queue (qlen 12, v2, last_offset 99, 0 ctrl msgs, 0 aborted msgsets, zstd)";
        assert_eq!(
            parse_consume_line(line),
            Some(("orders.v1", 3, Codec::Zstd))
        );
        let plain = "Enqueue 1 message(s) (10 bytes, 1 ops) on t [0] fetch queue (qlen 1, v4, last_offset 0, 0 ctrl msgs, 0 aborted msgsets, uncompressed)";
        assert_eq!(parse_consume_line(plain), Some(("t", 0, Codec::None)));
        let empty = "Enqueue 0 message(s) (0 bytes, 0 ops) on t [0] fetch queue (qlen 0, v4, last_offset -1, 1 ctrl msgs, 0 aborted msgsets, lz4)";
        assert_eq!(parse_consume_line(empty), None);
        assert_eq!(parse_consume_line("Fetch topic t [0] at offset 5"), None);
    }

    #[test]
    fn an_answer_without_records_marks_the_partition_empty() {
        let asked = "[thrd:127.0.0.1:9092/1]: 127.0.0.1:9092/1: Fetch topic orders [3] at offset 42 (leader epoch 0, current leader epoch 0, v2)";
        assert_eq!(parse_fetch_request_line(asked), Some(("orders", 3, 42)));
        let empty = "[thrd:127.0.0.1:9092/1]: 127.0.0.1:9092/1: Topic orders [3] MessageSet size 0, error \"Success\", MaxOffset 42, LSO 42, Ver 2/2";
        assert_eq!(parse_empty_fetch_line(empty), Some(("orders", 3, 42)));
        let data = "[thrd:b/1]: b/1: Topic orders [3] MessageSet size 1048576, error \"Success\", MaxOffset 10, LSO 10, Ver 2/2";
        assert_eq!(parse_empty_fetch_line(data), None);
        let failed = "[thrd:b/1]: b/1: Topic orders [3] MessageSet size 0, error \"Broker: Not leader for partition\", MaxOffset -1, LSO -1, Ver 2/2";
        assert_eq!(parse_empty_fetch_line(failed), None);
    }

    #[test]
    fn topic_configs_name_a_codec_or_leave_it_to_producers() {
        assert_eq!(from_topic_config(Some("zstd")), Some(Codec::Zstd));
        assert_eq!(from_topic_config(Some("uncompressed")), Some(Codec::None));
        assert_eq!(from_topic_config(Some("producer")), None);
        assert_eq!(from_topic_config(None), None);
    }
}
