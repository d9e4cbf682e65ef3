//! Reading stored replication progress from the target's progress topic.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kmirror_core::progress::{decode, decode_map, Newest, TopicIds};
use kmirror_core::translate::OffsetMap;
use kmirror_core::{Offset, TopicPartition};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::error::{Error, Result};

/// Reads the whole progress topic (it is compacted, so small) and returns the stored next
/// offset of every partition of `source_alias`. Blocking: call from a blocking thread.
/// Reads until every partition reported end-of-partition (the Fetch high watermark), so a
/// broker whose ListOffsets answer is approximate still yields everything.
/// What a flow stored: positions and translation maps, per source partition.
#[derive(Debug, Default)]
pub struct Stored {
    /// Next source offset to copy.
    pub positions: BTreeMap<TopicPartition, Offset>,
    /// Where copied records landed on the target.
    pub maps: BTreeMap<TopicPartition, OffsetMap>,
    /// The topic ids each position was taken on (empty where MM2 wrote it).
    pub ids: BTreeMap<TopicPartition, TopicIds>,
    /// The topic ids each map was taken on.
    pub map_ids: BTreeMap<TopicPartition, TopicIds>,
}

impl Stored {
    /// Drops what was stored for a topic that was deleted and created again since (on either
    /// side, by comparing ids with `current`), and says so. Returns which side, if any.
    pub fn forget_if_recreated(
        &mut self,
        tp: &TopicPartition,
        current: &TopicIds,
    ) -> Option<kmirror_core::progress::Recreated> {
        let recreated = self
            .ids
            .get(tp)
            .and_then(|ids| ids.recreated(current))
            .or_else(|| self.map_ids.get(tp).and_then(|ids| ids.recreated(current)))?;
        self.positions.remove(tp);
        self.maps.remove(tp);
        self.ids.remove(tp);
        self.map_ids.remove(tp);
        Some(recreated)
    }
}

pub fn read(
    config: &ClientConfig,
    topic: &str,
    source_alias: &str,
    timeout: Duration,
) -> Result<Stored> {
    let consumer: BaseConsumer<ReaderContext> = config
        .create_with_context(ReaderContext("progress reader"))
        .map_err(|e| Error::client("progress reader", &e))?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        Error::Retriable(format!(
            "reading metadata of the progress topic {topic}: {e}"
        ))
    })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(rdkafka::metadata::MetadataPartition::id)
        })
        .collect();
    // The newest position and map of each source partition, whatever order the partitions of
    // the progress topic are read in (see `Newest`).
    let mut out: Newest<(Offset, TopicIds)> = Newest::default();
    let mut maps: Newest<(OffsetMap, TopicIds)> = Newest::default();
    if partitions.is_empty() {
        return Ok(Stored::default());
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Beginning)
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::Retriable(format!("reading the progress topic {topic}: {e}")))?;
    let mut eof: HashMap<i32, bool> = partitions.iter().map(|p| (*p, false)).collect();
    let deadline = Instant::now() + timeout;
    while eof.values().any(|done| !done) {
        if Instant::now() > deadline {
            return Err(Error::Retriable(format!(
                "timed out reading the progress topic {topic} to its end"
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p, true);
            }
            Some(Err(e)) => tracing::warn!(topic, "reading progress: {e}"),
            Some(Ok(msg)) if decode_map(msg.key().unwrap_or_default(), msg.payload()).is_some() => {
                if let Some(m) = decode_map(msg.key().unwrap_or_default(), msg.payload()) {
                    if m.cluster == source_alias {
                        maps.offer(
                            m.partition,
                            Some((m.map, m.ids)),
                            msg.partition(),
                            timestamp(&msg),
                        );
                    }
                }
            }
            Some(Ok(msg)) => match decode(msg.key().unwrap_or_default(), msg.payload()) {
                Ok(Some(progress)) if progress.cluster == source_alias => {
                    out.offer(
                        progress.partition,
                        Some((progress.next, progress.ids)),
                        msg.partition(),
                        timestamp(&msg),
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // A tombstone clears stored progress for the key.
                    if msg.payload().is_none() {
                        if let Some(tp) = tombstone_partition(msg.key(), source_alias) {
                            out.offer(tp, None, msg.partition(), timestamp(&msg));
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    topic,
                    offset = msg.offset(),
                    "skipping a record kmirror does not understand: {e}"
                ),
            },
        }
    }
    let mut stored = Stored::default();
    for (tp, (next, ids)) in out.into_values() {
        stored.positions.insert(tp.clone(), next);
        stored.ids.insert(tp, ids);
    }
    for (tp, (mut map, ids)) in maps.into_values() {
        // Progress is stored more often than maps: what lies between is not translated exactly.
        if let Some(next) = stored.positions.get(&tp) {
            map.resumed_at(next.0);
        }
        stored.maps.insert(tp.clone(), map);
        stored.map_ids.insert(tp, ids);
    }
    Ok(stored)
}

fn timestamp(msg: &rdkafka::message::BorrowedMessage<'_>) -> i64 {
    msg.timestamp().to_millis().unwrap_or(-1)
}

/// A reader that asks for end-of-partition events (they are not errors), named in its warnings.
pub(crate) struct ReaderContext(pub &'static str);

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::warn!(error = %error, "{}: {reason}", self.0);
        }
    }
}

impl ConsumerContext for ReaderContext {}

fn tombstone_partition(key: Option<&[u8]>, source_alias: &str) -> Option<TopicPartition> {
    let key = key?;
    let probe = decode(key, Some(b"{\"offset\":0}")).ok()??;
    (probe.cluster == source_alias).then_some(probe.partition)
}
