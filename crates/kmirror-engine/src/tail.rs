//! Records a crash left on the target beyond the stored progress, found so that they are not
//! copied again.
//!
//! Progress is stored a few milliseconds after the target acknowledges a record, and the
//! records the target accepted just before a kill -9 are never acknowledged to kmirror at all.
//! A restart from the stored progress copies them again. For each partition whose target holds
//! more than its translation map knows, [`find`] reads the target from where the map ends and
//! the source from the matching offset, compares them record by record (key, value, headers,
//! timestamp), and says where copying can resume: after the last source record whose copy is on
//! the target in the place it would have had.
//!
//! Nothing is ever skipped on a guess. The records before the stored progress must all match
//! (they are known to be copied: a mismatch there means someone else wrote to the target, or
//! the source was compacted since), or nothing found counts. The first record that does not
//! match ends the comparison, and the partition resumes there, never before its stored
//! progress. A timeout, a read error or a shutdown keeps what was matched so far by the same
//! rule. At worst, records are copied twice, as without this module.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmirror_core::provenance::{Decision, Provenance};
use kmirror_core::TopicPartition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::progress_store::ReaderContext;

/// Most target records compared per partition (what one producer's in-flight window holds,
/// many times over).
const MAX_PER_PARTITION: usize = 100_000;

/// Most target records held in all (16 bytes each).
const MAX_TOTAL: usize = 1_000_000;

/// Consumers that read both sides (assigned partitions only; nothing committed).
#[derive(Clone)]
pub struct Readers {
    /// Reads the source (as the replication consumer does: committed records only).
    pub source: ClientConfig,
    /// Reads the target.
    pub target: ClientConfig,
    /// The flow's origin header: left out of the comparison (the copy has it, the source
    /// record may not), and source records from the target are passed over (never copied).
    pub provenance: Option<kmirror_core::provenance::Provenance>,
}

/// A partition whose target may hold copies beyond what its map knows.
#[derive(Clone, Debug)]
pub struct Tail {
    /// Source topic and partition.
    pub source: TopicPartition,
    /// Target topic (same partition number).
    pub target_topic: Arc<str>,
    /// Where to start comparing: the source offset after the last record the map knows was
    /// copied, or, for a map stored ahead of its progress, the stored progress (see
    /// `OffsetMap::tail_start`).
    pub source_from: i64,
    /// The target offset of that record's copy, or where it would be.
    pub target_from: i64,
    /// The stored progress: every source record before it is on the target.
    pub stored: i64,
}

/// Copies found on the target for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Source offset → target offset of each record found, in order.
    pub pairs: Vec<(i64, i64)>,
    /// Where copying resumes: after the last record found, never before the stored progress.
    pub resume: i64,
    /// Source offsets before `resume` passed over because they came from the target.
    pub passed: Vec<i64>,
}

/// Per partition: the target's records from `target_from`, then the comparison.
struct Probe {
    tail: Tail,
    /// Target high watermark.
    target_end: i64,
    /// Fingerprint and offset of each target record read, in order.
    target: Vec<(u64, i64)>,
    target_done: bool,
    /// Source high watermark (unknown: -1).
    source_end: i64,
    /// Records matched so far.
    pairs: Vec<(i64, i64)>,
    /// Records passed over (they came from the target) so far.
    passed: Vec<i64>,
    /// The first source offset not matched (a mismatch, or the record after the target's end),
    /// or the source's end.
    stop: Option<i64>,
}

impl Probe {
    fn last_matched(&self) -> Option<i64> {
        self.pairs.last().map(|&(u, _)| u)
    }

    /// Whether every source record before the stored progress was matched: they are known to
    /// be on the target, so a mismatch among them means the target is not what the map says.
    fn trustworthy(&self) -> bool {
        let stored = self.tail.stored;
        match self.stop {
            Some(at) => at >= stored,
            None => self.last_matched().is_some_and(|m| m + 1 >= stored),
        }
    }

    fn source_done(&self) -> bool {
        self.stop.is_some()
            || (self.target_done
                && self.pairs.len() == self.target.len()
                && self
                    .last_matched()
                    .is_some_and(|m| m + 1 >= self.tail.stored))
    }
}

/// The copies found on the target beyond each tail's map, by source partition. Partitions
/// whose target holds nothing beyond the map (the usual case after a clean stop) cost one
/// ListOffsets request in all. Blocks up to `timeout`; stops early at shutdown.
pub fn find(
    readers: &Readers,
    tails: Vec<Tail>,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> HashMap<TopicPartition, Found> {
    let deadline = Instant::now() + timeout;
    match probe(readers, tails, deadline, shutdown) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("cannot look for copies on the target beyond the stored progress ({e}); copying from the stored progress (records the target already has may be copied twice)");
            HashMap::new()
        }
    }
}

fn reader(config: &ClientConfig) -> Result<BaseConsumer<ReaderContext>, String> {
    let mut config = config.clone();
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        .set("queued.max.messages.kbytes", "8192")
        .set("statistics.interval.ms", "0");
    config
        .create_with_context(ReaderContext("target tail reader"))
        .map_err(|e| e.to_string())
}

fn ends(
    consumer: &BaseConsumer<ReaderContext>,
    partitions: impl Iterator<Item = (String, i32)>,
    deadline: Instant,
) -> Result<HashMap<(String, i32), i64>, String> {
    list_offsets(consumer, partitions, rdkafka::Offset::End, deadline)
}

/// The first (`Offset::Beginning`) or end (`Offset::End`) offset of each partition, in one
/// ListOffsets request per broker; partitions the brokers did not answer for are left out.
pub(crate) fn list_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: impl Iterator<Item = (String, i32)>,
    at: rdkafka::Offset,
    deadline: Instant,
) -> Result<HashMap<(String, i32), i64>, String> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition_offset(&topic, partition, at)
            .map_err(|e| e.to_string())?;
    }
    let found = consumer
        .offsets_for_times(tpl, deadline.saturating_duration_since(Instant::now()))
        .map_err(|e| format!("reading offsets: {e}"))?;
    Ok(found
        .elements()
        .iter()
        .filter_map(|e| match (e.error(), e.offset()) {
            (Ok(()), rdkafka::Offset::Offset(end)) => {
                Some(((e.topic().to_string(), e.partition()), end))
            }
            _ => None,
        })
        .collect())
}

fn probe(
    readers: &Readers,
    tails: Vec<Tail>,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<HashMap<TopicPartition, Found>, String> {
    if tails.is_empty() {
        return Ok(HashMap::new());
    }
    let provenance = readers.provenance.as_ref();
    let target = reader(&readers.target)?;
    let target_ends = ends(
        &target,
        tails
            .iter()
            .map(|t| (t.target_topic.to_string(), t.source.partition)),
        deadline,
    )?;
    let mut probes: Vec<Probe> = tails
        .into_iter()
        .filter_map(|tail| {
            let end = *target_ends.get(&(tail.target_topic.to_string(), tail.source.partition))?;
            (end > tail.target_from).then_some(Probe {
                tail,
                target_end: end,
                target: Vec::new(),
                target_done: false,
                source_end: -1,
                pairs: Vec::new(),
                passed: Vec::new(),
                stop: None,
            })
        })
        .collect();
    if probes.is_empty() {
        return Ok(HashMap::new());
    }
    let mut by_target: HashMap<(String, i32), usize> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (i, p) in probes.iter().enumerate() {
        by_target.insert(
            (p.tail.target_topic.to_string(), p.tail.source.partition),
            i,
        );
        tpl.add_partition_offset(
            &p.tail.target_topic,
            p.tail.source.partition,
            rdkafka::Offset::Offset(p.tail.target_from),
        )
        .map_err(|e| e.to_string())?;
    }
    target.assign(&tpl).map_err(|e| e.to_string())?;
    let mut held = 0usize;
    let mut left = probes.len();
    while left > 0 && Instant::now() < deadline && !shutdown.is_cancelled() {
        let Some(polled) = target.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = match polled {
            Ok(msg) => msg,
            Err(e) => {
                // Out of range (retention on the target) or unreachable: what was read is
                // compared.
                tracing::warn!(
                    "reading the target beyond the stored progress: {e}; comparing what was read"
                );
                break;
            }
        };
        let Some(&i) = by_target.get(&(msg.topic().to_string(), msg.partition())) else {
            continue;
        };
        let p = &mut probes[i];
        if p.target_done {
            continue;
        }
        p.target.push((fingerprint(&msg, provenance), msg.offset()));
        held += 1;
        if msg.offset() + 1 >= p.target_end
            || p.target.len() >= MAX_PER_PARTITION
            || held >= MAX_TOTAL
        {
            p.target_done = true;
            left -= 1;
            let _ = target.pause(&one(msg.topic(), msg.partition()));
        }
        if held >= MAX_TOTAL {
            break;
        }
    }
    drop(target);
    // Whatever was read is compared (a partition cut short by the deadline just finds less).
    for p in &mut probes {
        p.target_done = true;
    }
    probes.retain(|p| !p.target.is_empty());
    if probes.is_empty() {
        return Ok(HashMap::new());
    }

    let source = reader(&readers.source)?;
    let source_ends = ends(
        &source,
        probes
            .iter()
            .map(|p| (p.tail.source.topic.to_string(), p.tail.source.partition)),
        deadline,
    )?;
    let mut by_source: HashMap<(String, i32), usize> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (i, p) in probes.iter_mut().enumerate() {
        let key = (p.tail.source.topic.to_string(), p.tail.source.partition);
        p.source_end = source_ends.get(&key).copied().unwrap_or(-1);
        if p.source_end >= 0 && p.source_end <= p.tail.source_from {
            p.stop = Some(p.source_end);
            continue;
        }
        by_source.insert(key, i);
        tpl.add_partition_offset(
            &p.tail.source.topic,
            p.tail.source.partition,
            rdkafka::Offset::Offset(p.tail.source_from),
        )
        .map_err(|e| e.to_string())?;
    }
    let mut left = probes.iter().filter(|p| !p.source_done()).count();
    if left > 0 {
        source.assign(&tpl).map_err(|e| e.to_string())?;
    }
    while left > 0 && Instant::now() < deadline && !shutdown.is_cancelled() {
        let Some(polled) = source.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = match polled {
            Ok(msg) => msg,
            Err(e) => {
                // Out of range (the source's log start passed `source_from`) or unreachable:
                // what was matched so far counts by the usual rule.
                tracing::warn!(
                    "reading the source to compare with the target: {e}; comparing what was read"
                );
                break;
            }
        };
        let Some(&i) = by_source.get(&(msg.topic().to_string(), msg.partition())) else {
            continue;
        };
        let p = &mut probes[i];
        if p.source_done() {
            continue;
        }
        let offset = msg.offset();
        let from_target = crate::replicator::origin(provenance, msg.headers()) == Decision::Skip;
        if from_target {
            if p.stop.is_none() {
                p.passed.push(offset);
            }
        } else {
            match p.target.get(p.pairs.len()) {
                Some(&(print, at)) if print == fingerprint(&msg, provenance) => {
                    p.pairs.push((offset, at));
                }
                _ => p.stop = Some(offset),
            }
        }
        if p.stop.is_none() && p.source_end >= 0 && offset + 1 >= p.source_end {
            p.stop = Some(p.source_end);
        }
        if p.source_done() {
            left -= 1;
            let _ = source.pause(&one(msg.topic(), msg.partition()));
        }
    }
    Ok(probes
        .into_iter()
        .filter_map(|p| {
            if !p.trustworthy() {
                tracing::info!(
                    topic = %p.tail.source.topic, partition = p.tail.source.partition,
                    source_from = p.tail.source_from, target_read = p.target.len(), matched = p.pairs.len(), stop = ?p.stop,
                    "the target's records after offset {} do not match the source's before the stored progress {}; copying from the stored progress",
                    p.tail.target_from, p.tail.stored
                );
                return None;
            }
            let Some(last) = p.last_matched() else {
                tracing::info!(
                    topic = %p.tail.source.topic, partition = p.tail.source.partition,
                    "the target's record at offset {} is not a copy of the source's at offset {} (written on the target, or by another writer); copying from the stored progress {}",
                    p.tail.target_from, p.tail.source_from, p.tail.stored
                );
                return None;
            };
            let resume = (last + 1).max(p.tail.stored);
            Some((
                p.tail.source.clone(),
                Found {
                    resume,
                    pairs: p.pairs,
                    passed: p.passed.into_iter().filter(|&u| u < resume).collect(),
                },
            ))
        })
        .collect())
}

fn one(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

/// What a copy keeps of a record: key, value, headers and timestamp. A target topic that
/// stamps its own time (`LogAppendTime`) never matches, and its partitions are copied from the
/// stored progress as before.
///
/// The origin header is left out: the copy has it and the source record may not.
fn fingerprint<M: Message>(msg: &M, provenance: Option<&Provenance>) -> u64 {
    let mut h = DefaultHasher::new();
    msg.key().hash(&mut h);
    msg.payload().hash(&mut h);
    match msg.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
        Timestamp::NotAvailable => None,
    }
    .hash(&mut h);
    if let Some(headers) = msg.headers() {
        for header in headers.iter() {
            if provenance.is_some_and(|rule| rule.header == header.key) {
                continue;
            }
            header.key.hash(&mut h);
            header.value.hash(&mut h);
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(stored: i64, pairs: &[(i64, i64)], stop: Option<i64>) -> Probe {
        Probe {
            tail: Tail {
                source: TopicPartition::new("t", 0),
                target_topic: "t".into(),
                source_from: 100,
                target_from: 100,
                stored,
            },
            target_end: 200,
            target: pairs.iter().map(|&(_, d)| (0, d)).collect(),
            target_done: true,
            source_end: -1,
            pairs: pairs.to_vec(),
            passed: Vec::new(),
            stop,
        }
    }

    #[test]
    fn records_before_the_stored_progress_must_all_match() {
        // 100..110 matched, stored progress 105: found, resumes at 110.
        let pairs: Vec<_> = (100..110).map(|u| (u, u)).collect();
        assert!(probe(105, &pairs, Some(110)).trustworthy());
        // A mismatch at 103, before the stored progress 105: the target is not what the map says.
        assert!(!probe(105, &pairs[..3], Some(103)).trustworthy());
        // Stopped by the deadline with no mismatch seen: only if what matched reaches the stored
        // progress.
        assert!(probe(105, &pairs, None).trustworthy());
        assert!(!probe(115, &pairs, None).trustworthy());
        // Transaction markers between the last match and the stored progress: the next record
        // is at or after the progress, so nothing before it was missed.
        assert!(probe(112, &pairs, Some(113)).trustworthy());
    }

    #[test]
    fn a_copy_matches_its_source_record_whatever_its_origin_header() {
        use kmirror_core::ClusterAlias;
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
        let message = |headers: &[(&str, &str)]| {
            let h = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(*v),
                })
            });
            OwnedMessage::new(
                Some(b"value".to_vec()),
                Some(b"key".to_vec()),
                "t".into(),
                Timestamp::CreateTime(7),
                0,
                0,
                Some(h),
            )
        };
        let source = message(&[("app", "x")]);
        let copy = message(&[("app", "x"), ("kmirror.origin", "primary")]);
        let rule = Provenance::new(
            "kmirror.origin",
            ClusterAlias::new("primary"),
            ClusterAlias::new("dr"),
        );
        assert_eq!(
            fingerprint(&source, Some(&rule)),
            fingerprint(&copy, Some(&rule))
        );
        assert_ne!(fingerprint(&source, None), fingerprint(&copy, None));
        assert_ne!(
            fingerprint(&message(&[("app", "y")]), Some(&rule)),
            fingerprint(&copy, Some(&rule))
        );
    }
}
