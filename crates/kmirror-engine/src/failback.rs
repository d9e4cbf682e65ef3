//! `kmirror failback plan`: before going back to the old primary, what it lacks, what it holds
//! that never reached the DR cluster, and what the reverse flow would copy.
//!
//! After a failover from A to B (the flow `A->B` stopped, producers and consumers moved to B),
//! A comes back. For every partition the forward flow `A->B` copied and the reverse flow `B->A`
//! would copy back (not heartbeats, which MM2's cycle rule keeps on their side), the plan
//! reads:
//!
//! - on A, the forward flow's stored progress (kept on B) and A's log end: the records between
//!   them were written on A after the last record copied to B. They exist on A only (*at
//!   risk*): the reverse flow leaves them where they are and appends after them, and the
//!   forward flow copies them to B when it runs again.
//! - on B, the reverse flow's stored progress (kept on A; before its first run, where it would
//!   start) and B's log end, and every record in between, by origin header (see
//!   [`kmirror_core::provenance`]): records written on B (or anywhere but A) are what A lacks
//!   and what the reverse flow copies; copies of A's records are passed over.
//!
//! Read only. Blocking.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kmirror_core::config::Mirror;
use kmirror_core::provenance::{Decision, Provenance};
use kmirror_core::{StartFrom, TopicPartition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::{ClientFactory, Role};
use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition of the plan.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    /// The topic on the old primary (the forward flow's source).
    pub topic: String,
    /// Partition (the same number on both clusters).
    pub partition: i32,
    /// The old primary's log end.
    pub primary_end: i64,
    /// The forward flow's stored progress: every record of the old primary before it reached
    /// the DR cluster.
    pub copied_until: i64,
    /// Records of the old primary in `copied_until..primary_end`: never copied to the DR
    /// cluster.
    pub at_risk: i64,
    /// The topic on the DR cluster.
    pub dr_topic: String,
    /// Where the reverse flow reads the DR cluster from: its stored progress, or where it would
    /// start without one.
    pub reverse_from: i64,
    /// Whether `reverse_from` is the reverse flow's stored progress (false: where it would
    /// start).
    pub reverse_stored: bool,
    /// The DR cluster's log start.
    pub dr_start: i64,
    /// The DR cluster's log end.
    pub dr_end: i64,
    /// Records in `reverse_from..dr_end` that the old primary lacks and the reverse flow
    /// copies: written on the DR cluster, or anywhere but the old primary.
    pub to_copy: i64,
    /// Copies of the old primary's records in that range: the reverse flow passes them over.
    pub passed_over: i64,
    /// Whether every record of the range was read (false: the deadline passed first, and
    /// `to_copy` and `passed_over` count what was read).
    pub complete: bool,
    /// Records of the DR cluster that the old primary lacks but that were deleted there
    /// (retention) before the reverse flow copied them, up to the DR cluster's log start (from
    /// the reverse flow's stored progress, or before its first run from the forward flow's last
    /// copy); the old primary never gets them.
    pub deleted_on_dr: i64,
    /// Records the forward flow copied that the old primary no longer has (its log ends
    /// before `copied_until`: restored from an older state, or an unclean leader election; a
    /// lower bound, since a rebuilt primary may hold other records at the same offsets).
    /// Their copies on the DR cluster are the old primary's own records to the reverse flow,
    /// which passes them over: they do not come back by themselves.
    pub primary_lost: i64,
}

/// The plan for one pair of flows.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The old primary (the forward flow's source).
    pub primary: String,
    /// The DR cluster.
    pub dr: String,
    /// The forward flow, `primary->dr`.
    pub forward: String,
    /// The reverse flow, `dr->primary`.
    pub reverse: String,
    /// The reverse flow's origin header (`None`: it copies every record, its own copies too).
    pub origin_header: Option<String>,
    /// Per partition, by topic and partition.
    pub partitions: Vec<Row>,
}

impl Plan {
    /// Records on the old primary that never reached the DR cluster.
    pub fn at_risk(&self) -> i64 {
        self.partitions.iter().map(|r| r.at_risk).sum()
    }

    /// Records the reverse flow copies.
    pub fn to_copy(&self) -> i64 {
        self.partitions.iter().map(|r| r.to_copy).sum()
    }

    /// Records the reverse flow passes over.
    pub fn passed_over(&self) -> i64 {
        self.partitions.iter().map(|r| r.passed_over).sum()
    }
}

/// Builds the plan for the forward flow `forward` (old primary → DR) and its reverse flow
/// `reverse`, reading for at most `read_for` the DR cluster's records that the reverse flow
/// would read.
pub fn plan(
    forward: &Mirror,
    reverse: &Mirror,
    primary: &ClientFactory,
    dr: &ClientFactory,
    read_for: Duration,
) -> Result<Plan> {
    if forward.source != reverse.target || forward.target != reverse.source {
        return Err(Error::Config(format!(
            "{} is not the reverse of {}",
            reverse.name(),
            forward.name()
        )));
    }
    // What the forward flow copied: its progress, stored on the DR cluster.
    let forward_stored = stored(forward, dr)?;
    if forward_stored.positions.is_empty() {
        return Err(Error::Config(format!(
            "flow {} stored no progress in {} on {}: nothing was copied, there is nothing to fail back",
            forward.name(),
            forward.progress.topic,
            forward.target
        )));
    }
    // Where the reverse flow stands: its progress, stored on the old primary.
    let reverse_stored = stored(reverse, primary)?;

    // Both directions' topics, then their offsets in one request per cluster and kind.
    let partitions: Vec<(&TopicPartition, i64, String)> = forward_stored
        .positions
        .iter()
        .map(|(tp, copied)| {
            let dr_topic = forward
                .policy
                .format_remote_topic(&forward.source, &tp.topic);
            (tp, copied.0, dr_topic)
        })
        // Only what goes both ways: heartbeats (`A.heartbeats` on B) and topics the reverse
        // flow does not copy have no way back.
        .filter(|(_, _, dr_topic)| crate::topics::should_replicate(reverse, dr_topic))
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    let primary_reader = reader(primary)?;
    let primary_ends = crate::tail::list_offsets(
        &primary_reader,
        partitions
            .iter()
            .map(|(tp, _, _)| (tp.topic.to_string(), tp.partition)),
        Offset::End,
        deadline,
    )
    .map_err(|e| reach(&forward.source, &e))?;
    let dr_reader = reader(dr)?;
    let dr_partitions = || {
        partitions
            .iter()
            .map(|(tp, _, dr_topic)| (dr_topic.clone(), tp.partition))
    };
    let dr_ends = crate::tail::list_offsets(&dr_reader, dr_partitions(), Offset::End, deadline)
        .map_err(|e| reach(&forward.target, &e))?;
    let dr_starts =
        crate::tail::list_offsets(&dr_reader, dr_partitions(), Offset::Beginning, deadline)
            .map_err(|e| reach(&forward.target, &e))?;
    drop(primary_reader);
    drop(dr_reader);
    let mut rows = Vec::new();
    for (tp, copied, dr_topic) in partitions {
        let unanswered = |cluster, topic: &str| {
            reach(
                cluster,
                &format!("no offsets for {topic}[{}]", tp.partition),
            )
        };
        let primary_end = *primary_ends
            .get(&(tp.topic.to_string(), tp.partition))
            .ok_or_else(|| unanswered(&forward.source, &tp.topic))?;
        let key = (dr_topic.clone(), tp.partition);
        let (Some(&dr_start), Some(&dr_end)) = (dr_starts.get(&key), dr_ends.get(&key)) else {
            return Err(unanswered(&forward.target, &dr_topic));
        };
        let stored = reverse_stored
            .positions
            .get(&TopicPartition::new(dr_topic.as_str(), tp.partition))
            .map(|o| o.0);
        let reverse_from = stored.unwrap_or(match reverse.start_from {
            StartFrom::Earliest => dr_start,
            StartFrom::Latest => dr_end,
        });
        // What the old primary lacks starts at the reverse flow's stored progress, or, before
        // its first run, after the forward flow's last copy on the DR cluster. Records deleted
        // there (retention) before the reverse flow copied them are not read (they are gone)
        // and are counted.
        let forward_map = forward_stored.maps.get(tp);
        let lacks_from = stored.or_else(|| {
            forward_map
                .and_then(kmirror_core::translate::OffsetMap::copied_end)
                .map(|(_, on_dr)| on_dr)
        });
        // Copies of the old primary's records among them are not lost: it has the originals.
        let deleted_on_dr = lacks_from.map_or(0, |from| {
            (dr_start - from).max(0) - forward_map.map_or(0, |m| m.copies_between(from, dr_start))
        });
        let reverse_from = reverse_from.max(dr_start);
        rows.push(Row {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            primary_end,
            copied_until: copied,
            at_risk: (primary_end - copied).max(0),
            dr_topic,
            reverse_from,
            reverse_stored: stored.is_some(),
            dr_start,
            dr_end,
            to_copy: 0,
            passed_over: 0,
            complete: reverse_from >= dr_end,
            deleted_on_dr,
            primary_lost: (copied - primary_end).max(0),
        });
    }
    let rule = reverse.provenance.as_ref().map(|header| {
        Provenance::new(
            header.clone(),
            reverse.source.clone(),
            reverse.target.clone(),
        )
    });
    count_by_origin(dr, &mut rows, rule.as_ref(), read_for)?;
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(Plan {
        primary: forward.source.to_string(),
        dr: forward.target.to_string(),
        forward: forward.name(),
        reverse: reverse.name(),
        origin_header: reverse.provenance.clone(),
        partitions: rows,
    })
}

/// What `flow` stored (on its target, whose clients `target` makes).
fn stored(flow: &Mirror, target: &ClientFactory) -> Result<crate::progress_store::Stored> {
    crate::progress_store::read(
        &target.config(Role::ProgressReader, &[]),
        &flow.progress.topic,
        flow.source.as_str(),
        Duration::from_secs(30),
    )
    .map_err(|e| reach(&flow.target, &e))
}

fn reach(cluster: &kmirror_core::ClusterAlias, e: &dyn std::fmt::Display) -> Error {
    Error::Retriable(format!(
        "cluster {cluster} does not answer ({e}): a failback plan needs both clusters"
    ))
}

fn reader(factory: &ClientFactory) -> Result<BaseConsumer> {
    let mut cfg = factory.config(Role::ProgressReader, &[]);
    cfg.set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    cfg.create()
        .map_err(|e| Error::client("failback reader", &e))
}

/// Reads each row's range of the DR cluster and counts its records by origin.
fn count_by_origin(
    dr: &ClientFactory,
    rows: &mut [Row],
    rule: Option<&Provenance>,
    read_for: Duration,
) -> Result<()> {
    let mut index: HashMap<(String, i32), usize> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (i, r) in rows.iter().enumerate() {
        if r.complete {
            continue;
        }
        index.insert((r.dr_topic.clone(), r.partition), i);
        tpl.add_partition_offset(&r.dr_topic, r.partition, Offset::Offset(r.reverse_from))
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    if index.is_empty() {
        return Ok(());
    }
    let consumer = reader(dr)?;
    consumer
        .assign(&tpl)
        .map_err(|e| Error::client("failback reader", &e))?;
    let deadline = Instant::now() + read_for;
    let mut left = index.len();
    while left > 0 && Instant::now() < deadline {
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        match polled {
            Ok(m) => {
                let Some(&i) = index.get(&(m.topic().to_owned(), m.partition())) else {
                    continue;
                };
                let row = &mut rows[i];
                if row.complete || m.offset() >= row.dr_end {
                    continue;
                }
                if crate::replicator::origin(rule, m.headers()) == Decision::Skip {
                    row.passed_over += 1;
                } else {
                    row.to_copy += 1;
                }
                if m.offset() + 1 >= row.dr_end {
                    row.complete = true;
                    left -= 1;
                }
            }
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                // The end of some partition (only its number is given): a range that ends with
                // transaction markers ends at its position, not at a record.
                let positions = consumer
                    .position()
                    .map_err(|e| Error::client("failback reader", &e))?;
                for e in positions.elements() {
                    let Some(&i) = index.get(&(e.topic().to_owned(), e.partition())) else {
                        continue;
                    };
                    let row = &mut rows[i];
                    if let Offset::Offset(at) = e.offset() {
                        if !row.complete && at >= row.dr_end {
                            row.complete = true;
                            left -= 1;
                        }
                    }
                }
            }
            Err(e) => {
                return Err(Error::Retriable(format!(
                    "reading the DR cluster's records: {e}"
                )))
            }
        }
    }
    Ok(())
}
