//! Checkpoints (`<source>.checkpoints.internal` on the target) and consumer-group offset sync.
//!
//! Every `emit.checkpoints.interval.seconds` the committed offsets of the source groups that
//! pass the group filter are translated **exactly** with the replicator's offset maps and
//! written as MM2 Checkpoint records, following MM2's emission rules against what is already
//! stored (first, forward, or upstream rewind). With `sync.group.offsets.enabled` the
//! translated offsets are also committed to the same group on the target, only while that
//! group has no active members there and never moving it backwards.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmirror_core::checkpoint::{group_is_active, should_emit, sync_decision, SyncDecision};
use kmirror_core::config::{CheckpointSettings, Mirror};
use kmirror_core::mm2::Checkpoint;
use kmirror_core::TopicPartition;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::client::ClusterContext;
use crate::commit_watch::{CommitWatch, Entries, OFFSETS_TOPIC};
use crate::metrics::Metrics;
use crate::status::MapBoard;
use crate::topics::{ensure_compacted_topic_retrying, Admin};

const TIMEOUT: Duration = Duration::from_secs(10);

/// OffsetFetch requests a checkpoint round keeps in flight on its one source client.
const OFFSET_FETCHES_IN_FLIGHT: usize = 32;

/// How often the job looks whether the copy reached the group partitions it is waiting for
/// (see the early rounds in [`CheckpointJob::run`]).
const CATCH_UP_CHECK: Duration = Duration::from_secs(1);

/// (group, target topic, partition).
pub type Key = (String, String, i32);

/// What the checkpoint job needs.
pub struct CheckpointJob {
    /// The flow.
    pub mirror: Arc<Mirror>,
    /// Its checkpoint settings.
    pub settings: CheckpointSettings,
    /// A client config on the source (group id set per group).
    pub source: ClientConfig,
    /// A client config on the target (group id set per group).
    pub target: ClientConfig,
    /// A progress-reader config on the target, for reading stored checkpoints.
    pub reader: ClientConfig,
    /// Producer config on the target.
    pub producer: ClientConfig,
    /// Target context for the producer.
    pub context: ClusterContext,
    /// Target admin (topic creation).
    pub target_admin: Admin,
    /// The replicator's maps.
    pub maps: Arc<MapBoard>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether MM2's checkpoint-latency gauges are kept per group, topic and partition (four
    /// series per checkpointed group partition: at thousands of them, most of the process's
    /// memory and of every scrape).
    pub per_partition_metrics: bool,
}

/// A stored checkpoint.
pub struct Stored {
    /// The group's source offset.
    pub upstream: i64,
    /// Its translation.
    pub downstream: i64,
    /// Commit metadata.
    pub metadata: String,
}

impl CheckpointJob {
    /// Runs until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let topic = self.settings.topic.clone();
        let (s, t) = (
            self.mirror.source.to_string(),
            self.mirror.target.to_string(),
        );
        match ensure_compacted_topic_retrying(
            &self.target_admin,
            &topic,
            1,
            self.settings.replication_factor,
            self.mirror.admin_timeout,
            &stop,
        )
        .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                tracing::error!(topic = %topic, "cannot prepare the checkpoints topic: {e}; no checkpoints are emitted");
                self.metrics.error(&s, &t, "checkpoint");
                return;
            }
        }
        let (cfg, tp) = (self.reader.clone(), topic.clone());
        let mut store: HashMap<Key, Stored> = match tokio::task::spawn_blocking(move || {
            read_checkpoints(&cfg, &tp)
        })
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(topic = %topic, "cannot read stored checkpoints ({e}); starting without them");
                HashMap::new()
            }
            Err(e) => {
                tracing::error!("checkpoint reader: {e}");
                return;
            }
        };
        let context = std::mem::replace(
            &mut self.context,
            ClusterContext::named(self.mirror.target.as_str()),
        );
        let producer: crate::polled::PolledProducer<ClusterContext> =
            match crate::polled::PolledProducer::new(&self.producer, context) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(
                        "cannot create the checkpoint producer: {e}; no checkpoints are emitted"
                    );
                    return;
                }
            };
        // One client reads every group's offsets for the life of the job (OffsetFetch and
        // ListGroups need no group membership): no client per group per round.
        let reader: Arc<AdminClient<DefaultClientContext>> = match group_reader(&self.source) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(
                    "cannot create the source group reader: {e}; no checkpoints are emitted"
                );
                return;
            }
        };
        let mut groups: Vec<String> = Vec::new();
        let mut groups_listed: Option<Instant> = None;
        // Which groups each round reads (those whose commits may have changed).
        let mut watch = CommitWatch::new();
        // Groups whose last round left nothing to do (every checkpoint due acknowledged, none
        // waiting for the copy), and the maps of that round: such a group is computed again
        // only once its offsets or the map of one of its partitions changed.
        let mut settled: HashSet<String> = HashSet::new();
        let mut last_maps: BTreeMap<TopicPartition, crate::status::PublishedMap> = BTreeMap::new();
        let mut last_emit: HashMap<String, Instant> = HashMap::new();
        let mut degraded_reported: std::collections::HashSet<TopicPartition> =
            std::collections::HashSet::new();
        // MM2's checkpoint-latency min/max/avg, per checkpointed partition.
        let mut latencies: HashMap<Key, kmirror_core::window::Window> = HashMap::new();
        // What kmirror last committed to each group partition on the target. Before its own
        // first commit after a start, that is the latest checkpoint (what it commits).
        let mut written: HashMap<Key, i64> = store
            .iter()
            .map(|(k, s)| (k.clone(), s.downstream))
            .collect();
        let mut foreign_reported: HashMap<Key, i64> = HashMap::new();
        // Group partitions committed beyond what was copied when the last round read them, and
        // never checkpointed exactly since the start: their checkpoint points at the end of the
        // copy. As soon as the copy reaches every one of them, a round runs without waiting for
        // the interval, so that a start or a catch-up leaves groups exact within seconds. Each
        // group partition takes part once, so a consumer that keeps reading ahead of the copy
        // by a few records does not add rounds.
        let mut waiting: HashMap<Key, (TopicPartition, i64)> = HashMap::new();
        let mut exact_seen: HashSet<Key> = HashSet::new();
        // Scale-out: the partitions checkpointed by this replica at the last round.
        let mut held: HashSet<TopicPartition> = HashSet::new();
        let mut emit = tokio::time::interval(self.settings.interval);
        emit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync = crate::every(self.settings.sync_group_offsets.unwrap_or(crate::NEVER));
        let mut catch_up = crate::every(CATCH_UP_CHECK);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = emit.tick() => {}
                _ = sync.tick(), if self.settings.sync_group_offsets.is_some() => {
                    self.sync_groups(&store, &mut written, &mut foreign_reported, &stop).await;
                    continue;
                }
                _ = catch_up.tick(), if !waiting.is_empty() => {
                    let reached = waiting.values().all(|(tp, upstream)| {
                        self.maps.copied_end(tp).is_some_and(|end| end >= *upstream)
                    });
                    if !reached {
                        continue;
                    }
                    tracing::debug!(group_partitions = waiting.len(), "the copy reached the group partitions it was behind: checkpointing now");
                }
            }
            let refresh_due = groups_listed.is_none_or(|at| {
                self.settings
                    .refresh_groups
                    .is_some_and(|r| at.elapsed() >= r)
            });
            let maps = self.maps.snapshot();
            if maps.is_empty() {
                continue;
            }
            let partitions: HashSet<TopicPartition> = maps.keys().cloned().collect();
            if self.mirror.scale_out.is_some() {
                // Partitions given to this replica since the last round: another replica
                // checkpointed them and committed their groups until then. What it wrote is
                // kmirror's own (emission rules, and group offsets it may move on from).
                let gained: HashSet<(String, i32)> = partitions
                    .iter()
                    .filter(|tp| !held.contains(*tp))
                    .filter_map(|tp| maps.get(tp).map(|(t, _)| (t.to_string(), tp.partition)))
                    .collect();
                if !gained.is_empty() {
                    settled.clear();
                    let (cfg, tp) = (self.reader.clone(), topic.clone());
                    match unless_stopped(&stop, move || read_checkpoints(&cfg, &tp)).await {
                        None => return,
                        Some(Ok(Ok(fresh))) => {
                            for (key, stored) in fresh {
                                if gained.contains(&(key.1.clone(), key.2)) {
                                    written.insert(key.clone(), stored.downstream);
                                    store.insert(key, stored);
                                }
                            }
                        }
                        Some(Ok(Err(e))) => {
                            tracing::warn!(topic = %topic, "cannot read the checkpoints of partitions given to this replica ({e}): a group another replica committed may be reported as committed by someone else")
                        }
                        Some(Err(e)) => tracing::warn!("checkpoint reader: {e}"),
                    }
                }
                held.clone_from(&partitions);
            }
            let (reader, filter, known) = (
                Arc::clone(&reader),
                self.mirror.groups.clone(),
                groups.clone(),
            );
            let round_start = crate::now_millis();
            let token = stop.clone();
            let mut round_watch = std::mem::replace(&mut watch, CommitWatch::new());
            let Some(fetched) = unless_stopped(&stop, move || {
                let fetched = fetch_committed(
                    &reader,
                    refresh_due.then_some(&filter),
                    known,
                    &partitions,
                    &mut round_watch,
                    &token,
                );
                (fetched, round_watch)
            })
            .await
            else {
                return;
            };
            let fetched = fetched.map(|(fetched, round_watch)| {
                watch = round_watch;
                fetched
            });
            tracing::debug!(
                took_ms = crate::now_millis() - round_start,
                listed = refresh_due,
                "read the groups' committed offsets"
            );
            let GroupRound {
                listed,
                committed,
                failed,
                changed,
            } = match fetched {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    tracing::warn!(
                        "reading source group offsets failed: {e}; retrying next interval"
                    );
                    self.metrics.error(&s, &t, "checkpoint");
                    continue;
                }
                Err(e) => {
                    tracing::error!("group offset reader: {e}");
                    continue;
                }
            };
            if let Some(listed) = listed {
                if listed != groups {
                    if listed.len() <= 20 {
                        tracing::info!(groups = ?listed, "consumer groups to checkpoint");
                    } else {
                        tracing::info!(
                            groups = listed.len(),
                            first = ?&listed[..20],
                            "consumer groups to checkpoint"
                        );
                    }
                }
                groups = listed;
                groups_listed = Some(Instant::now());
            }
            waiting.clear();
            for (group, e) in &failed {
                self.metrics.error(&s, &t, "checkpoint");
                tracing::warn!(group = %group, "reading the group's committed offsets failed: {e}; retrying next interval");
            }
            // Every checkpoint of the round is handed to the producer at once; the round then
            // waits for the acknowledgements, and only acknowledged checkpoints are stored (the
            // others are emitted again next round).
            let mut sent = Vec::new();
            // Checkpoints left for the next round because the producer's queue was full.
            let mut deferred = 0usize;
            let same_map = |tp: &TopicPartition| match (last_maps.get(tp), maps.get(tp)) {
                (Some((_, a)), Some((_, b))) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            for (group, entries) in committed {
                if settled.contains(&group)
                    && !changed.contains(&group)
                    && entries.iter().all(|(tp, _, _)| same_map(tp))
                {
                    continue;
                }
                // Unsettled if a checkpoint waits for the copy, the producer's room or a retry.
                let mut unsettled = false;
                for (tp, upstream, metadata) in entries {
                    let Some((target_topic, map)) = maps.get(&tp) else {
                        continue;
                    };
                    let key: Key = (group.clone(), target_topic.to_string(), tp.partition);
                    let Some(translation) = map.translate_detail(upstream) else {
                        // (A map that passed records over waits for the opposite flow's
                        // map, which this job does not have: not for the copy.)
                        if map.is_empty()
                            && map.passed().is_empty()
                            && map.known_from_offset().is_none()
                            && !exact_seen.contains(&key)
                        {
                            // Nothing copied yet: checkpointed once the copy reaches it.
                            waiting.insert(key, (tp.clone(), upstream));
                            unsettled = true;
                        }
                        continue;
                    };
                    let downstream = translation.offset;
                    if !exact_seen.contains(&key) {
                        if map.copied_end().is_some_and(|(end, _)| upstream > end) {
                            waiting.insert(key.clone(), (tp.clone(), upstream));
                            unsettled = true;
                        } else {
                            exact_seen.insert(key.clone());
                        }
                    }
                    if !should_emit(
                        store.get(&key).map(|s| (s.upstream, s.downstream)),
                        upstream,
                        downstream,
                    ) {
                        continue;
                    }
                    let cp = Checkpoint {
                        group: group.clone(),
                        topic: key.1.clone(),
                        partition: tp.partition,
                        upstream,
                        downstream,
                        metadata: metadata.clone(),
                    };
                    let (Ok(k), Ok(v)) = (cp.key(), cp.value()) else {
                        continue;
                    };
                    if deferred > 0 {
                        deferred += 1;
                        unsettled = true;
                        continue;
                    }
                    match producer.send(&topic, 0, &k, &v, round_start) {
                        Ok(delivery) => sent.push((
                            delivery,
                            group.clone(),
                            key,
                            tp,
                            upstream,
                            translation,
                            metadata.clone(),
                        )),
                        Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                            deferred = 1;
                            unsettled = true;
                        }
                        Err(e) => {
                            unsettled = true;
                            self.metrics.error(&s, &t, "checkpoint");
                            tracing::warn!(group = %group, topic = %tp.topic, partition = tp.partition, "checkpoint not queued: {e}; retrying next interval");
                        }
                    }
                }
                // (A group whose checkpoints are in flight is settled unless one fails below.)
                if unsettled {
                    settled.remove(&group);
                } else {
                    settled.insert(group);
                }
            }
            last_maps = maps;
            if deferred > 0 {
                tracing::warn!(
                    deferred,
                    queued = sent.len(),
                    "the checkpoint producer's queue is full: {deferred} checkpoints wait for the next round"
                );
            }
            for (delivery, group, key, tp, upstream, translation, metadata) in sent {
                let delivered = tokio::select! {
                    () = stop.cancelled() => return,
                    d = delivery => d,
                };
                let downstream = translation.offset;
                // A dropped delivery (the producer went away) is a failed one.
                let delivered = delivered.map_err(|_| KafkaError::Canceled).and_then(|d| d);
                match delivered {
                    Ok(_) => {
                        if self.per_partition_metrics {
                            #[allow(clippy::cast_precision_loss)]
                            let latency = (crate::now_millis() - round_start) as f64;
                            let labels = [
                                s.as_str(),
                                t.as_str(),
                                group.as_str(),
                                key.1.as_str(),
                                &tp.partition.to_string(),
                            ];
                            let window = latencies.entry(key.clone()).or_default();
                            let now = u64::try_from(crate::now_millis()).unwrap_or(0);
                            window.record(now, latency);
                            let values =
                                [latency, window.min(now), window.max(now), window.avg(now)];
                            for (gauge, value) in self.metrics.mm2_checkpoint.iter().zip(values) {
                                gauge.with_label_values(&labels).set(value);
                            }
                        }
                        self.metrics.checkpoints.with_label_values(&[&s, &t]).inc();
                        if !translation.exact {
                            self.metrics
                                .translation_degraded
                                .with_label_values(&[&s, &t])
                                .inc();
                            if degraded_reported.insert(tp.clone()) {
                                tracing::warn!(group = %group, topic = %tp.topic, partition = tp.partition, source_offset = upstream, target_offset = downstream, rereads = translation.rereads,
                                        "translation rounded back: the group is in the oldest part of the partition's offset map, which keeps how many offsets were gaps but not where; resuming there re-reads at most {} records, none is skipped (logged once per partition)", translation.rereads);
                            }
                        }
                        last_emit.insert(group.clone(), Instant::now());
                        store.insert(
                            key,
                            Stored {
                                upstream,
                                downstream,
                                metadata,
                            },
                        );
                    }
                    Err(e) => {
                        settled.remove(&group);
                        self.metrics.error(&s, &t, "checkpoint");
                        tracing::warn!(group = %group, topic = %tp.topic, partition = tp.partition, "checkpoint not delivered: {e}; emitted again next interval");
                    }
                }
            }
            tracing::debug!(
                took_ms = crate::now_millis() - round_start,
                "checkpoint round done"
            );
            for (group, at) in &last_emit {
                self.metrics
                    .checkpoint_age
                    .with_label_values(&[&s, &t, group])
                    .set(at.elapsed().as_secs_f64());
            }
        }
    }

    /// Commits the latest checkpoints to the groups that are idle on the target, forwards and
    /// backwards, except where someone other than kmirror committed since (see
    /// [`sync_decision`]).
    async fn sync_groups(
        &self,
        store: &HashMap<Key, Stored>,
        written: &mut HashMap<Key, i64>,
        foreign_reported: &mut HashMap<Key, i64>,
        stop: &CancellationToken,
    ) {
        let mut by_group: BTreeMap<String, Vec<SyncEntry>> = BTreeMap::new();
        for (key, s) in store {
            if written.get(key) == Some(&s.downstream) {
                // Committed already: nothing to ask the target (and if someone committed
                // there since, it is theirs to keep).
                continue;
            }
            by_group.entry(key.0.clone()).or_default().push(SyncEntry {
                topic: key.1.clone(),
                partition: key.2,
                translated: s.downstream,
                metadata: s.metadata.clone(),
                last_written: written.get(key).copied(),
            });
        }
        if by_group.is_empty() {
            return;
        }
        let (cfg, token) = (self.target.clone(), stop.clone());
        let Some(outcome) =
            unless_stopped(stop, move || commit_groups(&cfg, &by_group, &token)).await
        else {
            return;
        };
        let outcome = match outcome {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                tracing::warn!("group offset sync failed: {e}; retrying next interval");
                return;
            }
            Err(e) => {
                tracing::error!("group offset sync: {e}");
                return;
            }
        };
        let (s, t) = (self.mirror.source.as_str(), self.mirror.target.as_str());
        for (key, offset) in outcome.committed {
            foreign_reported.remove(&key);
            written.insert(key, offset);
        }
        for (key, current, translated) in outcome.foreign {
            self.metrics
                .group_sync_skipped
                .with_label_values(&[s, t, "foreign_commit"])
                .inc();
            if foreign_reported.get(&key) != Some(&current) {
                tracing::warn!(group = %key.0, topic = %key.1, partition = key.2, target_offset = current, translated,
                    "not syncing this group partition: its offset on the target was committed by someone other than kmirror; it is never overwritten");
                foreign_reported.insert(key, current);
            }
        }
        if outcome.active > 0 {
            self.metrics
                .group_sync_skipped
                .with_label_values(&[s, t, "active"])
                .inc_by(outcome.active);
        }
    }
}

/// One partition to sync.
struct SyncEntry {
    topic: String,
    partition: i32,
    translated: i64,
    metadata: String,
    last_written: Option<i64>,
}

/// What a sync round did.
#[derive(Default)]
struct SyncOutcome {
    /// Committed: key and offset.
    committed: Vec<(Key, i64)>,
    /// Left alone, someone else's commit: key, its offset, the translation.
    foreign: Vec<(Key, i64, i64)>,
    /// Groups skipped because they are active on the target.
    active: u64,
}

fn client(cfg: &ClientConfig, group: &str) -> Result<BaseConsumer, KafkaError> {
    let mut c = cfg.clone();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c.create()
}

/// The client that lists groups and reads their committed offsets: an admin client, whose own
/// thread serves its events (a consumer's would pile up unpolled for the life of the job).
pub(crate) fn group_reader(
    cfg: &ClientConfig,
) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    cfg.create()
}

pub(crate) type Committed = Vec<(String, Vec<(TopicPartition, i64, String)>)>;

/// Runs the blocking `f` (a round of requests to a cluster) on the blocking pool and waits for
/// it, unless `stop` fires first: then `None` at once. `f` watches `stop` between its requests,
/// so it ends on its own within one request timeout, and a shutdown never waits for a round
/// against a cluster that does not answer.
async fn unless_stopped<T: Send + 'static>(
    stop: &CancellationToken,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<Result<T, tokio::task::JoinError>> {
    let round = tokio::task::spawn_blocking(f);
    tokio::select! {
        () = stop.cancelled() => None,
        done = round => Some(done),
    }
}

/// What [`fetch_committed`] found.
pub(crate) struct GroupRound {
    /// The groups listed, if they were.
    pub listed: Option<Vec<String>>,
    /// Every group's offsets on the mirrored partitions.
    pub committed: Committed,
    /// Groups whose offsets could not be read.
    pub failed: Failed,
    /// Groups whose offsets changed since they were last read.
    pub changed: HashSet<String>,
}

/// Groups whose committed offsets could not be read, with the reason.
pub(crate) type Failed = Vec<(String, kmirror_admin::AdminError)>;

/// Lists the source groups with `reader` if `filter` is given (otherwise uses `known`), then
/// reads the committed offsets of the groups `watch` picks (see [`crate::commit_watch`]) in one
/// batch of OffsetFetch requests on that client, and returns every group's offsets on
/// `partitions`, read now or remembered (see [`GroupRound`]). `Err` when the listing fails, or
/// when every group read failed for the same reason as the first (the cluster does not
/// answer). Blocking.
pub(crate) fn fetch_committed(
    reader: &AdminClient<DefaultClientContext>,
    filter: Option<&kmirror_core::filter::NameFilter>,
    known: Vec<String>,
    partitions: &HashSet<TopicPartition>,
    watch: &mut CommitWatch,
    stop: &CancellationToken,
) -> Result<GroupRound, KafkaError> {
    let listed = match filter {
        Some(f) => {
            let list = reader.inner().fetch_group_list(None, TIMEOUT)?;
            let mut names: Vec<String> = list
                .groups()
                .iter()
                .map(|g| g.name().to_owned())
                .filter(|n| f.accepts(n))
                .collect();
            names.sort();
            Some(names)
        }
        None => None,
    };
    let groups = listed.clone().unwrap_or(known);
    let now = Instant::now();
    let ends = watch.tracking().then(|| {
        let count = match watch.partitions(now) {
            Some(count) => Ok(count),
            None => offsets_topic_partitions(reader),
        };
        count.and_then(|count| consumer_offsets_ends(reader, count).map(|ends| (count, ends)))
    });
    let plan = watch.plan(&groups, ends, now);
    let answers = kmirror_admin::list_group_offsets(
        reader.inner(),
        &plan.read,
        OFFSET_FETCHES_IN_FLIGHT,
        TIMEOUT,
        &|| stop.is_cancelled(),
    )
    .map_err(|e| KafkaError::AdminOp(e.code))?;
    // After a full read, the ends again: to tell a commit made while the round ran from one
    // placed where Kafka would not put it.
    // (Not `watch.partitions(now)`: the full read is still due until the round is taken in,
    // and that asks for a new count.)
    let ends_after = watch
        .listed_partitions(&plan)
        .filter(|_| plan.full && watch.tracking())
        .and_then(|count| consumer_offsets_ends(reader, count).ok());
    let asked = plan.read.len();
    let (mut read, mut failed) = (Vec::with_capacity(answers.len()), Vec::new());
    for (group, answer) in answers {
        match answer {
            Ok(offsets) => {
                let entries: Entries = offsets
                    .into_iter()
                    .map(|o| {
                        (
                            TopicPartition::new(o.topic, o.partition),
                            o.offset,
                            o.metadata,
                        )
                    })
                    .collect();
                read.push((group, Some(entries)));
            }
            Err(e) => {
                read.push((group.clone(), None));
                failed.push((group, e));
            }
        }
    }
    if asked > 0 && failed.len() == asked {
        let code = failed[0].1.code;
        if failed.iter().all(|(_, e)| e.code == code) {
            return Err(KafkaError::AdminOp(code));
        }
    }
    tracing::debug!(
        groups = groups.len(),
        read = asked,
        full = plan.full,
        "group offsets"
    );
    let (out, changed) = watch.update(plan, &groups, partitions, read, ends_after, Instant::now());
    Ok(GroupRound {
        listed,
        committed: out,
        failed,
        changed,
    })
}

/// The partition count of `__consumer_offsets`, from a Metadata request naming it.
fn offsets_topic_partitions(reader: &AdminClient<DefaultClientContext>) -> Result<i32, String> {
    let md = reader
        .inner()
        .fetch_metadata(Some(OFFSETS_TOPIC), TIMEOUT)
        .map_err(|e| e.to_string())?;
    let topic = md
        .topics()
        .iter()
        .find(|t| t.name() == OFFSETS_TOPIC)
        .ok_or_else(|| "not in the metadata".to_owned())?;
    if let Some(e) = topic.error() {
        return Err(RDKafkaErrorCode::from(e).to_string());
    }
    i32::try_from(topic.partitions().len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| "no partitions".to_owned())
}

/// The end offsets of `__consumer_offsets`; `Err` unless every partition answered.
fn consumer_offsets_ends(
    reader: &AdminClient<DefaultClientContext>,
    partitions: i32,
) -> Result<Vec<i64>, String> {
    kmirror_admin::end_offsets(reader.inner(), OFFSETS_TOPIC, partitions, TIMEOUT)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|end| end.map_err(|e| e.to_string()))
        .collect()
}

/// For each group idle on the target, commits the translations [`sync_decision`] allows.
/// Blocking.
fn commit_groups(
    cfg: &ClientConfig,
    groups: &BTreeMap<String, Vec<SyncEntry>>,
    stop: &CancellationToken,
) -> Result<SyncOutcome, KafkaError> {
    let mut outcome = SyncOutcome::default();
    for (group, entries) in groups {
        if stop.is_cancelled() {
            break;
        }
        let consumer = client(cfg, group)?;
        let described = consumer.fetch_group_list(Some(group), TIMEOUT)?;
        if let Some(g) = described.groups().iter().find(|g| g.name() == group) {
            if group_is_active(g.state(), g.members().len()) {
                tracing::debug!(group = %group, state = g.state(), members = g.members().len(), "not syncing offsets: the group is active on the target");
                outcome.active += 1;
                continue;
            }
        }
        let mut query = TopicPartitionList::new();
        for e in entries {
            query.add_partition(&e.topic, e.partition);
        }
        let current = consumer.committed_offsets(query, TIMEOUT)?;
        let mut commit = TopicPartitionList::new();
        let mut committing = Vec::new();
        for e in entries {
            let now = current
                .find_partition(&e.topic, e.partition)
                .and_then(|el| match el.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                });
            let key: Key = (group.clone(), e.topic.clone(), e.partition);
            match sync_decision(now, e.last_written, e.translated) {
                SyncDecision::InStep => {}
                SyncDecision::Foreign => {
                    outcome.foreign.push((key, now.unwrap_or(-1), e.translated));
                }
                SyncDecision::Commit => {
                    if commit
                        .add_partition_offset(&e.topic, e.partition, Offset::Offset(e.translated))
                        .is_ok()
                    {
                        if let Some(mut el) = commit.find_partition(&e.topic, e.partition) {
                            el.set_metadata(&e.metadata);
                        }
                        committing.push((key, e.translated));
                    }
                }
            }
        }
        if commit.count() > 0 {
            consumer.commit(&commit, CommitMode::Sync)?;
            tracing::info!(group = %group, partitions = commit.count(), "synced group offsets to the target");
            outcome.committed.extend(committing);
        }
    }
    Ok(outcome)
}

/// Reads partition 0 of the checkpoints topic with a progress-reader config (see
/// [`crate::client::Role::ProgressReader`]): the latest checkpoint per key. Blocking.
///
/// # Errors
/// When the topic cannot be read.
pub fn read_checkpoints(
    cfg: &ClientConfig,
    topic: &str,
) -> Result<HashMap<Key, Stored>, KafkaError> {
    // `cfg` is a progress reader's: its group id is the flow's own (`kmirror|S->T|...`, one
    // prefix to grant DESCRIBE on); nothing is ever committed with it.
    let mut c = cfg.clone();
    c.set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer<crate::progress_store::ReaderContext> =
        c.create_with_context(crate::progress_store::ReaderContext("checkpoint reader"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut out = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Ok(m)) => {
                if let (Some(k), Some(v)) = (m.key(), m.payload()) {
                    if let Ok(cp) = Checkpoint::decode(k, v) {
                        out.insert(
                            (cp.group, cp.topic, cp.partition),
                            Stored {
                                upstream: cp.upstream,
                                downstream: cp.downstream,
                                metadata: cp.metadata,
                            },
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
