//! `kmirror offsets`: where a consumer group resumes on the target, and the failover commit.
//!
//! With the source reachable, the group's committed offsets are read there and translated
//! exactly with the offset maps kmirror stored. When the source is gone, the latest
//! checkpoints on the target are used instead. Blocking.

use std::collections::BTreeMap;
use std::time::Duration;

use kmirror_core::checkpoint::group_is_active;
use kmirror_core::config::Mirror;
use kmirror_core::TopicPartition;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::{ClientFactory, Role};
use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Source topic.
    pub topic: String,
    /// Topic on the target.
    pub target_topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset on the source.
    pub source_offset: i64,
    /// Where the group resumes on the target.
    pub target_offset: i64,
    /// Source records not yet replicated (source log end minus replicated progress), when the
    /// source is reachable.
    pub unreplicated: Option<i64>,
    /// Records the group read on the source already and reads again on the target from
    /// `target_offset`: copies that come after records it has not read (two-way mirroring,
    /// see [`kmirror_core::translate::translate_back`]), or a translation that is not exact.
    pub rereads: i64,
    /// Records only the target has (written there after the opposite flow's last copy) that
    /// the group never read: it reads them from `target_offset`, before the rereads.
    pub target_only_unread: i64,
}

/// The report for one group and flow.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `S->T`.
    pub flow: String,
    /// Consumer group.
    pub group: String,
    /// `source` (committed offsets read on the source, translated exactly) or `checkpoints`
    /// (the source was unreachable: the latest checkpoints on the target).
    pub basis: &'static str,
    /// Per partition.
    pub partitions: Vec<Row>,
}

fn consumer(factory: &ClientFactory, group: &str) -> Result<BaseConsumer> {
    let mut cfg = factory.config(Role::Admin, &[]);
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false");
    cfg.create().map_err(|e| Error::client("consumer", &e))
}

/// Builds the report for `group` on `mirror`. `opposite`, the flow copying the other way
/// between the same clusters when the configuration has one (two-way mirroring, failback), is
/// read too: records its copies on the source stand for are placed at their originals.
pub fn report(
    mirror: &Mirror,
    opposite: Option<&Mirror>,
    source: &ClientFactory,
    target: &ClientFactory,
    group: &str,
) -> Result<Report> {
    let reader = target.config(Role::ProgressReader, &[]);
    let stored = crate::progress_store::read(
        &reader,
        &mirror.progress.topic,
        mirror.source.as_str(),
        Duration::from_secs(30),
    )?;
    let partitions: Vec<TopicPartition> = stored
        .maps
        .keys()
        .chain(stored.positions.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Read on demand: offsets copied before kmirror took over are translated by the
    // checkpoint the previous replicator (MirrorMaker 2) wrote for the same source offset.
    let mut checkpoints: Option<
        std::collections::HashMap<crate::checkpoint::Key, crate::checkpoint::Stored>,
    > = None;
    let mut rows = Vec::new();
    let mut basis = "source";
    match committed_offsets(source, group, &partitions) {
        Ok(committed) => {
            let c = consumer(source, group)?;
            let two_way = match opposite {
                Some(o) => Some(TwoWay::read(o, source, target, group, &committed, mirror)?),
                None => None,
            };
            for (tp, u) in committed {
                let remote = mirror.policy.format_remote_topic(&mirror.source, &tp.topic);
                let (mut rereads, mut target_only_unread) = (0, 0);
                // Where records from the target lie ahead of the group, only the two maps
                // together place it; an older checkpoint would not know about them.
                let mut two_sided = false;
                let translated = stored.maps.get(&tp).and_then(|own| {
                    let key = TopicPartition::new(remote.as_str(), tp.partition);
                    two_sided = own.first_passed_from(u).is_some();
                    match two_way.as_ref().and_then(|t| t.back(own, &key, u)) {
                        Some(back) => {
                            two_sided = true;
                            let back = back?;
                            rereads = back.rereads;
                            target_only_unread = back.unread_target_only;
                            Some(back.offset)
                        }
                        None => own.translate_detail(u).map(|t| {
                            rereads = t.rereads;
                            t.offset
                        }),
                    }
                });
                let d = match translated {
                    Some(d) => Some(d),
                    None if two_sided => None,
                    None => {
                        if checkpoints.is_none() {
                            checkpoints = Some(match &mirror.checkpoints {
                                Some(cps) => crate::checkpoint::read_checkpoints(
                                    &target.config(Role::ProgressReader, &[]),
                                    &cps.topic,
                                )
                                .unwrap_or_default(),
                                None => Default::default(),
                            });
                        }
                        checkpoints
                            .as_ref()
                            .and_then(|c| c.get(&(group.to_owned(), remote.clone(), tp.partition)))
                            .filter(|s| s.upstream == u)
                            .map(|s| s.downstream)
                    }
                };
                let Some(d) = d else {
                    if two_sided {
                        tracing::warn!(topic = %tp.topic, partition = tp.partition, source_offset = u,
                            "cannot translate: records ahead of the group came from {} and the opposite flow's map does not place them (copied before kmirror took over, or forgotten); the partition is left out",
                            mirror.target);
                    } else {
                        tracing::warn!(topic = %tp.topic, partition = tp.partition, source_offset = u,
                            "cannot translate: kmirror did not copy this offset and no checkpoint has it; the partition is left out");
                    }
                    continue;
                };
                let progress = stored.positions.get(&tp).map_or(0, |o| o.0);
                let unreplicated = c
                    .fetch_watermarks(&tp.topic, tp.partition, TIMEOUT)
                    .ok()
                    .map(|(_, hi)| (hi - progress).max(0));
                rows.push(Row {
                    target_topic: remote,
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    source_offset: u,
                    target_offset: d,
                    unreplicated,
                    rereads,
                    target_only_unread,
                });
            }
        }
        Err(e) => {
            tracing::warn!(
                "the source is unreachable ({e}); using the latest checkpoints on the target"
            );
            basis = "checkpoints";
            let cps = mirror.checkpoints.as_ref().ok_or_else(|| {
                Error::Config(
                    "the source is unreachable and checkpoints are disabled for this flow".into(),
                )
            })?;
            let stored_cps = crate::checkpoint::read_checkpoints(
                &target.config(Role::ProgressReader, &[]),
                &cps.topic,
            )
            .map_err(|e| Error::Retriable(format!("reading {}: {e}", cps.topic)))?;
            for ((g, topic, partition), s) in stored_cps {
                if g == group {
                    rows.push(Row {
                        topic: mirror
                            .policy
                            .upstream_topic(&topic)
                            .unwrap_or(&topic)
                            .to_owned(),
                        target_topic: topic,
                        partition,
                        source_offset: s.upstream,
                        target_offset: s.downstream,
                        unreplicated: None,
                        rereads: 0,
                        target_only_unread: 0,
                    });
                }
            }
        }
    }
    rows.sort_by(|a, b| (&a.target_topic, a.partition).cmp(&(&b.target_topic, b.partition)));
    Ok(Report {
        flow: mirror.name(),
        group: group.to_owned(),
        basis,
        partitions: rows,
    })
}

/// What the opposite flow (target → source) knows, for two-way translation.
struct TwoWay {
    /// Its offset maps (source offsets on this flow's target, target offsets on this flow's
    /// source), by this flow's target topic and partition.
    maps: BTreeMap<TopicPartition, kmirror_core::translate::OffsetMap>,
    /// The group's committed offsets on this flow's target (from before it moved to the
    /// source), by target topic and partition.
    committed: BTreeMap<TopicPartition, i64>,
}

impl TwoWay {
    fn read(
        opposite: &Mirror,
        source: &ClientFactory,
        target: &ClientFactory,
        group: &str,
        committed: &BTreeMap<TopicPartition, i64>,
        mirror: &Mirror,
    ) -> Result<Self> {
        // The opposite flow stores its maps on its own target: this flow's source.
        let stored = crate::progress_store::read(
            &source.config(Role::ProgressReader, &[]),
            &opposite.progress.topic,
            opposite.source.as_str(),
            Duration::from_secs(30),
        )?;
        let on_target: Vec<TopicPartition> = committed
            .keys()
            .map(|tp| {
                TopicPartition::new(
                    mirror
                        .policy
                        .format_remote_topic(&mirror.source, &tp.topic)
                        .as_str(),
                    tp.partition,
                )
            })
            .collect();
        let committed = committed_offsets(target, group, &on_target)?;
        Ok(Self {
            maps: stored.maps,
            committed,
        })
    }

    /// Where a group at `u` on the source resumes on the target partition `key`, through both
    /// flows' maps ([`kmirror_core::translate::translate_back`]); `None` if the opposite flow
    /// has no map for it.
    fn back(
        &self,
        own: &kmirror_core::translate::OffsetMap,
        key: &TopicPartition,
        u: i64,
    ) -> Option<Option<kmirror_core::translate::Back>> {
        let opposite = self.maps.get(key)?;
        let target_only = opposite
            .copied_end()
            .map(|(from, _)| (from, self.committed.get(key).copied()));
        Some(kmirror_core::translate::translate_back(
            own,
            opposite,
            u,
            target_only,
        ))
    }
}

/// The group's committed offsets on the cluster `source` makes clients for.
fn committed_offsets(
    source: &ClientFactory,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>> {
    let c = consumer(source, group)?;
    c.fetch_metadata(None, TIMEOUT)
        .map_err(|e| Error::Retriable(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    for tp in partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    let got = c
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| Error::Retriable(e.to_string()))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some((TopicPartition::new(e.topic(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// Commits the report's target offsets to `group` on the target. Refuses an active group.
pub fn commit(target: &ClientFactory, report: &Report) -> Result<usize> {
    let c = consumer(target, &report.group)?;
    let groups = c
        .fetch_group_list(Some(&report.group), TIMEOUT)
        .map_err(|e| Error::Retriable(format!("describing the group on the target: {e}")))?;
    if let Some(g) = groups.groups().iter().find(|g| g.name() == report.group) {
        if group_is_active(g.state(), g.members().len()) {
            return Err(Error::Config(format!(
                "group {} is active on the target ({} members, state {}); stop its consumers first",
                report.group,
                g.members().len(),
                g.state()
            )));
        }
    }
    let mut tpl = TopicPartitionList::new();
    for r in &report.partitions {
        tpl.add_partition_offset(
            &r.target_topic,
            r.partition,
            Offset::Offset(r.target_offset),
        )
        .map_err(|e| Error::Internal(e.to_string()))?;
    }
    if tpl.count() > 0 {
        c.commit(&tpl, CommitMode::Sync)
            .map_err(|e| Error::Retriable(format!("committing on the target: {e}")))?;
    }
    Ok(tpl.count())
}
