//! What the replicator copies: topic refreshes (and, with scale-out, the group's decisions)
//! turned into commands — partitions assigned where their stored progress says, released when
//! their topic is gone or another replica owns them, and copied again when their topic was
//! deleted and created again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kmirror_core::progress::{Recreated, TopicIds};
use kmirror_core::translate::OffsetMap;
use kmirror_core::{Offset, StartFrom, TopicPartition};

use super::{Flow, LOGGED_ONE_BY_ONE};
use crate::codec::{Codec, CodecSource};
use crate::replicator::{Assignment, Command, Start};
use crate::status::StatusBoard;
use crate::topics::SyncRound;

/// Scale-out: the partitions of `round` whose target partition this replica owns.
pub(super) fn owned_only(
    mut round: SyncRound,
    owned: &HashSet<crate::ownership::TargetPartition>,
) -> SyncRound {
    // Once per topic refresh or group decision, not per record.
    round
        .partitions
        .retain(|r| owned.contains(&(r.target_topic.to_string(), r.source.partition)));
    round
}

/// Turns topic refreshes into commands for the replicator: new partitions assigned where their
/// stored progress says, partitions of deleted topics released, and partitions of topics that
/// were deleted and created again (a new topic id on either side) copied again from the source's
/// beginning.
#[derive(Default)]
pub(super) struct Assigner {
    pub(super) assigned: HashSet<TopicPartition>,
    /// The latest ids seen of each replicated source topic and its target topic.
    ids: HashMap<String, TopicIds>,
    /// Topics whose stale stored progress was already reported.
    reported: HashSet<String>,
    /// Topics that disappeared from the source listing while kmirror ran, with their ids and
    /// the last progress of their partitions: one listed again with the same id resumes there
    /// (the listing missed it for a moment); one with another id is new, copied from its
    /// beginning.
    gone: HashMap<String, Gone>,
    /// Topics that came back as new topics.
    returned: HashSet<String>,
    /// Source topics whose target topic was deleted, since when: it is created again once what
    /// was sent to the old one has drained.
    awaiting_target: HashMap<String, std::time::Instant>,
    /// `max.message.bytes` of each target topic described (`None`: it could not be read).
    limits: HashMap<String, Option<usize>>,
    /// The codec of each source topic's target batches, once learned (see [`crate::codec`]).
    pub(super) codecs: HashMap<String, Codec>,
}

/// A topic that disappeared from the source listing.
struct Gone {
    ids: TopicIds,
    progress: HashMap<i32, i64>,
}

/// Longest wait for records sent to a deleted target topic to drain before it is created again.
const TARGET_DRAIN_WAIT: Duration = Duration::from_secs(60);

impl Assigner {
    /// Source topics whose target topic must not be created if missing: every topic being
    /// copied (a missing target topic was deleted), except those whose partitions have been
    /// reset and drained since.
    pub(super) fn hold(&self, status: &StatusBoard) -> HashSet<String> {
        let mut topics: HashSet<String> = self
            .assigned
            .iter()
            .map(|tp| tp.topic.to_string())
            .collect();
        for (topic, since) in &self.awaiting_target {
            if !status.topic_resetting(topic) || since.elapsed() > TARGET_DRAIN_WAIT {
                topics.remove(topic);
            }
        }
        topics
    }

    /// Target topics whose `max.message.bytes` must be read before their partitions are
    /// assigned: never described, about to get partitions, or created again.
    pub(super) fn limits_wanted(&self, round: &SyncRound) -> Vec<String> {
        let mut out = BTreeSet::new();
        for r in &round.partitions {
            let topic = &*r.source.topic;
            let recreated = round.ids.get(topic).is_some_and(|ids| {
                self.ids
                    .get(topic)
                    .is_some_and(|known| known.target != ids.target)
            });
            if recreated
                || !self.assigned.contains(&r.source)
                || !self.limits.contains_key(&*r.target_topic)
            {
                out.insert(r.target_topic.to_string());
            }
        }
        out.into_iter().collect()
    }

    /// Remembers the limits of `topics`, as described.
    pub(super) fn learn_limits(
        &mut self,
        topics: Vec<String>,
        described: Vec<std::result::Result<Vec<kmirror_core::topic_config::ConfigEntry>, String>>,
    ) {
        for (topic, answer) in topics.into_iter().zip(described) {
            let limit = match answer {
                Ok(entries) => entries
                    .iter()
                    .find(|e| e.name == "max.message.bytes")
                    .and_then(|e| e.value.as_deref())
                    .and_then(|v| v.parse().ok()),
                Err(e) => {
                    if !self.limits.contains_key(&topic) {
                        tracing::warn!(target_topic = %topic, "cannot read the target topic's max.message.bytes ({e}): its batches are as large as producer.batch.size allows");
                    }
                    None
                }
            };
            self.limits.insert(topic, limit);
        }
    }

    pub(super) fn limit(&self, target_topic: &str) -> Option<usize> {
        self.limits.get(target_topic).copied().flatten()
    }

    pub(super) fn codec(&self, source_topic: &str) -> Option<Codec> {
        self.codecs.get(source_topic).copied()
    }

    /// Source topics (with their partition counts) whose codec must be learned before their
    /// partitions are assigned: never learned, or created again.
    pub(super) fn codecs_wanted(&self, round: &SyncRound) -> Vec<(String, i32)> {
        let mut out: BTreeMap<String, i32> = BTreeMap::new();
        for r in &round.partitions {
            let topic = &*r.source.topic;
            // Only a source id that changed (not one a failed describe left unknown).
            let recreated = round.ids.get(topic).is_some_and(|ids| {
                self.ids
                    .get(topic)
                    .is_some_and(|known| known.recreated(ids) == Some(Recreated::Source))
            });
            if recreated || !self.codecs.contains_key(topic) {
                let n = out.entry(topic.to_owned()).or_default();
                *n = (*n).max(r.source.partition + 1);
            }
        }
        out.into_iter().collect()
    }

    /// Remembers the codecs decided for topics (see [`super::codecs::choose_codec`]).
    /// One line per topic for a few topics; one line per codec and reason for many (a first
    /// start with thousands of topics).
    pub(super) fn learn_codecs(
        &mut self,
        decided: BTreeMap<String, (Codec, CodecSource)>,
        level: &str,
    ) {
        let summarize = decided.len() > LOGGED_ONE_BY_ONE;
        let mut groups: BTreeMap<(&'static str, &'static str), Vec<String>> = BTreeMap::new();
        for (topic, (codec, from)) in decided {
            if summarize {
                groups
                    .entry((codec.name(), from.describe()))
                    .or_default()
                    .push(topic.clone());
            } else {
                tracing::info!(
                    topic = %topic, compression = codec.name(), level, from = from.describe(),
                    "target batches of {topic} use {codec} ({})", from.describe()
                );
            }
            self.codecs.insert(topic, codec);
        }
        for ((codec, from), topics) in groups {
            tracing::info!(
                compression = codec, level, from, topics = topics.len(),
                first = ?&topics[..topics.len().min(LOGGED_ONE_BY_ONE)],
                "target batches of {} topics use {codec} ({from})", topics.len()
            );
        }
    }

    pub(super) fn apply(
        &mut self,
        round: SyncRound,
        stored: &mut crate::progress_store::Stored,
        initial: Option<&HashSet<TopicPartition>>,
        flow: &Flow,
    ) -> Vec<Command> {
        let mut commands = Vec::new();
        let (source_alias, target_alias) =
            (flow.mirror.source.as_str(), flow.mirror.target.as_str());
        // Topics gone from the source: their partitions are released (progress stored).
        let gone: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|tp| !round.source_topics.contains(&*tp.topic))
            .cloned()
            .collect();
        if !gone.is_empty() {
            let topics: BTreeSet<&str> = gone.iter().map(|tp| &*tp.topic).collect();
            let reports = flow.status.snapshot();
            for topic in topics {
                tracing::warn!(topic, "the source topic is no longer listed: its partitions are released; listed again with the same id it resumes where it was, a new topic under this name is copied from its beginning");
                let progress = reports
                    .iter()
                    .filter(|r| &*r.source.topic == topic)
                    .map(|r| (r.source.partition, r.next_offset))
                    .collect();
                let ids = self.ids.remove(topic).unwrap_or_default();
                // Listed again, it may be another topic with another codec.
                self.codecs.remove(topic);
                self.gone.insert(topic.to_owned(), Gone { ids, progress });
            }
            for tp in &gone {
                self.assigned.remove(tp);
            }
            commands.push(Command::Release(gone));
        }
        // Topics whose id changed on either side since the last refresh, and ids learned for
        // topics being copied (a side unknown until now, or a target topic created again).
        let mut recreated: HashMap<&str, Recreated> = HashMap::new();
        let mut learned = Vec::new();
        for (topic, ids) in &round.ids {
            let known = self.ids.remove(topic).unwrap_or_default();
            let now = match known.recreated(ids) {
                Some(side) => {
                    let (old, new) = match side {
                        Recreated::Source => (&known.source, &ids.source),
                        Recreated::Target => (&known.target, &ids.target),
                    };
                    tracing::warn!(
                        topic, side = side.side(), old_id = old.as_deref().unwrap_or_default(), new_id = new.as_deref().unwrap_or_default(),
                        "the {} topic was deleted and created again: {topic} is copied again from the source's beginning and its old translation map is dropped",
                        side.side()
                    );
                    flow.options
                        .metrics
                        .topics_recreated
                        .with_label_values(&[source_alias, target_alias, topic, side.side()])
                        .inc();
                    recreated.insert(topic, side);
                    ids.clone()
                }
                None => ids.clone().or(&known),
            };
            if now != known
                && !recreated.contains_key(topic.as_str())
                && self.assigned.iter().any(|tp| *tp.topic == **topic)
            {
                learned.push((Arc::from(topic.as_str()), now.clone()));
            }
            self.ids.insert(topic.clone(), now);
        }
        if !learned.is_empty() {
            commands.push(Command::SetIds(learned));
        }
        let mut resets = Vec::new();
        // Target topics deleted under partitions being copied: those partitions stop and drain;
        // the topic is created again at a later refresh and everything copied again.
        for topic in &round.target_missing {
            if let Some(known) = self.ids.get_mut(topic) {
                known.target = None;
            }
            if self.awaiting_target.contains_key(topic) {
                continue;
            }
            self.awaiting_target
                .insert(topic.clone(), std::time::Instant::now());
            let remote: Arc<str> = flow
                .mirror
                .policy
                .format_remote_topic(&flow.mirror.source, topic)
                .into();
            tracing::warn!(
                topic, target_topic = %remote, side = "target",
                "the target topic was deleted: copying {topic} stops until what was sent to it has drained, then the topic is created again and {topic} is copied again from the source's beginning"
            );
            flow.options
                .metrics
                .topics_recreated
                .with_label_values(&[source_alias, target_alias, topic, "target"])
                .inc();
            let ids = self.ids.get(topic).cloned().unwrap_or_default();
            for tp in self.assigned.iter().filter(|tp| &*tp.topic == topic) {
                resets.push(Assignment {
                    source: tp.clone(),
                    target_topic: Arc::clone(&remote),
                    start: Start::Earliest,
                    map: OffsetMap::default(),
                    ids: ids.clone(),
                    max_message_bytes: self.limit(&remote),
                    compression: self.codec(topic),
                });
            }
        }
        let mut new = Vec::new();
        let mut back: HashSet<String> = HashSet::new();
        for r in round.partitions {
            self.awaiting_target.remove(&*r.source.topic);
            let ids = self.ids.get(&*r.source.topic).cloned().unwrap_or_default();
            if self.assigned.contains(&r.source) {
                if recreated.contains_key(&*r.source.topic) {
                    let max_message_bytes = self.limit(&r.target_topic);
                    let compression = self.codec(&r.source.topic);
                    resets.push(Assignment {
                        source: r.source,
                        target_topic: r.target_topic,
                        start: Start::Earliest,
                        map: OffsetMap::default(),
                        ids,
                        max_message_bytes,
                        compression,
                    });
                }
                continue;
            }
            if let Some(side) = stored.forget_if_recreated(&r.source, &ids) {
                if self.reported.insert(r.source.topic.to_string()) {
                    tracing::warn!(
                        topic = %r.source.topic, side = side.side(),
                        "the {} topic was deleted and created again since its progress was stored: the stored progress and translation map are dropped and {} is copied from its beginning",
                        side.side(), r.source.topic
                    );
                    flow.options
                        .metrics
                        .topics_recreated
                        .with_label_values(&[
                            source_alias,
                            target_alias,
                            &r.source.topic,
                            side.side(),
                        ])
                        .inc();
                }
            }

            let existed_at_start = initial.is_some_and(|i| i.contains(&r.source));
            // Listed again after it was gone: the same topic resumes where it was.
            let resumed = self.gone.get(&*r.source.topic).and_then(|g| {
                let same = g.ids.source.is_some() && g.ids.source == ids.source;
                if back.insert(r.source.topic.to_string()) {
                    if same {
                        tracing::info!(topic = %r.source.topic, "the source topic is listed again with the same id: it resumes where it was");
                    } else {
                        tracing::warn!(
                            topic = %r.source.topic, side = "source",
                            "the source topic was deleted and created again: {} is copied from its beginning",
                            r.source.topic
                        );
                        flow.options
                            .metrics
                            .topics_recreated
                            .with_label_values(&[source_alias, target_alias, &r.source.topic, "source"])
                            .inc();
                        self.returned.insert(r.source.topic.to_string());
                    }
                }
                same.then(|| g.progress.get(&r.source.partition).copied())
                    .flatten()
            });
            let start = match (resumed, stored.positions.get(&r.source)) {
                (Some(at), _) => Start::At(Offset(at)),
                (None, Some(next)) if !self.returned.contains(&*r.source.topic) => Start::At(*next),
                // Every record of a topic or partition created while kmirror runs is new: it is
                // copied from the start, whatever auto.offset.reset says, so nothing written
                // before it was discovered is skipped.
                _ if !existed_at_start
                    || recreated.contains_key(&*r.source.topic)
                    || self.returned.contains(&*r.source.topic) =>
                {
                    Start::Earliest
                }
                _ => match flow.mirror.start_from {
                    StartFrom::Earliest => Start::Earliest,
                    StartFrom::Latest => Start::Latest,
                },
            };
            let map = match (stored.maps.get(&r.source), stored.positions.get(&r.source)) {
                // Resumed after a gap in the listing: the map as it was then.
                _ if resumed.is_some() => flow.maps.get(&r.source).unwrap_or_default(),
                _ if self.returned.contains(&*r.source.topic) => OffsetMap::default(),
                (Some(map), _) => map.clone(),
                // Progress without a map: another replicator (MirrorMaker 2) copied what came
                // before; it cannot be translated.
                (None, Some(next)) => OffsetMap::known_from(next.0),
                (None, None) => OffsetMap::default(),
            };
            self.assigned.insert(r.source.clone());
            let max_message_bytes = self.limit(&r.target_topic);
            let compression = self.codec(&r.source.topic);
            new.push(Assignment {
                source: r.source,
                target_topic: r.target_topic,
                start,
                map,
                ids,
                max_message_bytes,
                compression,
            });
        }
        for topic in back {
            self.gone.remove(&topic);
        }
        if !resets.is_empty() {
            flow.status
                .resetting(resets.iter().map(|a| a.source.clone()));
            commands.push(Command::Reset(resets));
        }
        if !new.is_empty() {
            commands.push(Command::Assign(new));
        }
        commands
    }
}
