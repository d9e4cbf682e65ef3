//! Topic discovery on the source, and creation or growth of the remote topics on the target.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kmirror_core::config::Mirror;
use kmirror_core::progress::TopicIds;
use kmirror_core::topic_config::{
    replicated_partitions, ConfigEntry, ConfigOrigin, PartitionAction,
};
use kmirror_core::TopicPartition;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::error::RDKafkaErrorCode;

use crate::client::ClusterContext;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Longest wait for a full metadata listing.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// An admin client shared with blocking threads.
pub type Admin = Arc<AdminClient<ClusterContext>>;

/// Lists every topic with its partition count (full metadata listing: a per-topic metadata
/// request can auto-create topics on some brokers). Runs on a blocking thread.
pub async fn list_topics(admin: &Admin, timeout: Duration) -> Result<BTreeMap<String, i32>> {
    let admin = Arc::clone(admin);
    tokio::task::spawn_blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(|e| Error::Retriable(format!("listing topics: {e}")))?;
        Ok(md
            .topics()
            .iter()
            // A topic whose leaders are being elected exists all the same; only a topic the
            // broker does not report at all (or refuses to describe) is missing.
            .filter(|t| match t.error() {
                None => true,
                Some(e) => {
                    e == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
                        && !t.partitions().is_empty()
                }
            })
            .map(|t| {
                (
                    t.name().to_owned(),
                    i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                )
            })
            .collect())
    })
    .await
    .map_err(|e| Error::Internal(format!("metadata task: {e}")))?
}

/// Whether `admin`'s cluster answers: a Metadata request naming no topic (a few bytes,
/// whatever the number of topics; every Kafka version answers it; see
/// [`kmirror_admin::count_brokers`]). Runs on a blocking thread.
pub async fn cluster_answers(admin: &Admin, timeout: Duration) -> Result<()> {
    let client = Arc::clone(admin);
    tokio::task::spawn_blocking(move || kmirror_admin::count_brokers(client.inner(), timeout))
        .await
        .map_err(|e| Error::Internal(format!("cluster probe task: {e}")))?
        .map(|_| ())
        .map_err(|e| Error::Retriable(format!("asking the cluster for its brokers: {e}")))
}

/// Topics per DescribeTopics request.
const DESCRIBE_BATCH: usize = 500;

/// The ids of `topics` (KIP-516) as `admin`'s cluster reports them; topics it could not
/// describe, and brokers that report the null id, are left out. Blocking.
fn describe_ids(admin: &Admin, topics: &[String], timeout: Duration) -> BTreeMap<String, String> {
    const NULL_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";
    let mut out = BTreeMap::new();
    for chunk in topics.chunks(DESCRIBE_BATCH) {
        match kmirror_admin::describe_topics(admin.inner(), chunk, false, timeout) {
            Ok(answers) => {
                for (name, answer) in answers {
                    if let Ok(d) = answer {
                        if !d.id.is_empty() && d.id != NULL_ID {
                            out.insert(name, d.id);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("cannot read topic ids: {e}"),
        }
    }
    out
}

/// The source and target ids of each `(source topic, target topic)` pair.
async fn topic_ids(
    source: &Admin,
    target: &Admin,
    pairs: Vec<(String, String)>,
    timeout: Duration,
) -> std::collections::HashMap<String, TopicIds> {
    let (source, target) = (Arc::clone(source), Arc::clone(target));
    tokio::task::spawn_blocking(move || {
        let names: Vec<String> = pairs.iter().map(|(s, _)| s.clone()).collect();
        let remotes: Vec<String> = pairs.iter().map(|(_, t)| t.clone()).collect();
        let mut src = describe_ids(&source, &names, timeout);
        let mut dst = describe_ids(&target, &remotes, timeout);
        pairs
            .into_iter()
            .map(|(s, t)| {
                let ids = TopicIds::new(src.remove(&s), dst.remove(&t));
                (s, ids)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// `shouldReplicateTopic` (MM2-COMPAT §4.1).
pub fn should_replicate(mirror: &Mirror, topic: &str) -> bool {
    let policy = &mirror.policy;
    (mirror.topics.accepts(topic)
        || (mirror.heartbeats_replication && policy.is_heartbeats_topic(topic)))
        && !policy.is_internal_topic(topic)
        && !policy.is_cycle(topic, &mirror.target)
}

/// A source partition with its remote topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicable {
    /// Source topic and partition.
    pub source: TopicPartition,
    /// Remote topic name on the target.
    pub target_topic: Arc<str>,
}

/// Topics per CreateTopics request.
const CREATE_BATCH: usize = 100;

/// Adds the partitions of `topic` copied to `remote` (its `on_target` partitions) to `out`.
fn push_partitions(
    out: &mut Vec<Replicable>,
    topic: &str,
    remote: String,
    partitions: i32,
    on_target: i32,
) {
    let remote: Arc<str> = remote.into();
    let source_topic: Arc<str> = topic.into();
    for p in 0..replicated_partitions(partitions, on_target) {
        out.push(Replicable {
            source: TopicPartition::new(Arc::clone(&source_topic), p),
            target_topic: Arc::clone(&remote),
        });
    }
}

/// What one topic refresh found.
#[derive(Clone, Debug, Default)]
pub struct SyncRound {
    /// Every source partition that has a counterpart on the target.
    pub partitions: Vec<Replicable>,
    /// Every replicated topic that exists on the source (with or without a target topic).
    pub source_topics: std::collections::HashSet<String>,
    /// The ids of each replicated source topic and its target topic, where the clusters
    /// reported them.
    pub ids: std::collections::HashMap<String, TopicIds>,
    /// Source topics in `hold` whose target topic is missing (deleted): not created again.
    pub target_missing: Vec<String>,
}

/// Keeps the target's topics in step with the source for one mirror: topics and partitions
/// here, configs and ACLs in [`crate::target_sync`].
pub struct TopicSync {
    pub(crate) mirror: Arc<Mirror>,
    pub(crate) source: Admin,
    pub(crate) target: Admin,
    pub(crate) metrics: Arc<Metrics>,
    /// Conditions already reported, so that a refresh every few seconds logs them once.
    reported: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Target topics of partitions being copied that a listing did not show, and since when:
    /// a broker answers metadata from a cache that may lag behind topics created moments ago,
    /// so a topic counts as deleted only once it stays missing for [`MISSING_CONFIRMED_AFTER`].
    missing_since: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Source topics whose target topic a listing has shown since it was created: a broker
    /// busy creating thousands of partitions may leave a topic it just created out of its
    /// listings for many seconds, so a topic never listed yet counts as deleted only after
    /// [`MISSING_UNSEEN_CONFIRMED_AFTER`].
    listed: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The newest listings of both clusters, shared with the flow's other syncer.
    pub(crate) listings: Arc<Listings>,
}

/// Topic listings of both clusters with their partition counts.
pub type ListingPair = (BTreeMap<String, i32>, BTreeMap<String, i32>);

/// The newest topic listings of both clusters, taken by the topic discovery round and reused by
/// the config sync: a full listing names every partition (10,000 at 10,000 partitions) and
/// librdkafka files all of it into its metadata cache, so one listing per cluster serves both.
#[derive(Default)]
pub struct Listings(std::sync::Mutex<Option<(std::time::Instant, Arc<ListingPair>)>>);

impl Listings {
    fn store(&self, source: &BTreeMap<String, i32>, target: &BTreeMap<String, i32>) {
        if let Ok(mut l) = self.0.lock() {
            *l = Some((
                std::time::Instant::now(),
                Arc::new((source.clone(), target.clone())),
            ));
        }
    }

    /// Both listings, if taken within `max_age`.
    pub(crate) fn fresh(&self, max_age: Duration) -> Option<Arc<ListingPair>> {
        let l = self.0.lock().ok()?;
        l.as_ref()
            .filter(|(at, _)| at.elapsed() <= max_age)
            .map(|(_, pair)| Arc::clone(pair))
    }
}

/// How long a target topic never listed since its creation must stay unlisted to count as
/// deleted.
const MISSING_UNSEEN_CONFIRMED_AFTER: Duration = Duration::from_secs(60);

/// How long a target topic of partitions being copied must stay unlisted to count as deleted.
const MISSING_CONFIRMED_AFTER: Duration = Duration::from_secs(3);

/// Describes the configs of `topics` (in batches), each with its own outcome, in order.
pub async fn describe_topic_configs(
    admin: &Admin,
    topics: &[String],
    timeout: Duration,
) -> Vec<std::result::Result<Vec<ConfigEntry>, String>> {
    const BATCH: usize = 100;
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let mut out = Vec::with_capacity(topics.len());
    for chunk in topics.chunks(BATCH) {
        let specs: Vec<ResourceSpecifier<'_>> =
            chunk.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        match admin.describe_configs(&specs, &opts).await {
            Ok(results) if results.len() == chunk.len() => {
                out.extend(results.into_iter().map(|r| match r {
                    Ok(resource) => Ok(resource.entries.into_iter().map(entry_from).collect()),
                    Err(code) => Err(code.to_string()),
                }));
            }
            Ok(results) => {
                let why = format!("{} answers for {} topics", results.len(), chunk.len());
                out.extend(chunk.iter().map(|_| Err(why.clone())));
            }
            Err(e) => out.extend(chunk.iter().map(|_| Err(e.to_string()))),
        }
    }
    out
}

fn entry_from(e: rdkafka::admin::ConfigEntry) -> ConfigEntry {
    use rdkafka::admin::ConfigSource;
    ConfigEntry {
        origin: match e.source {
            ConfigSource::DynamicTopic => ConfigOrigin::DynamicTopic,
            ConfigSource::DynamicBroker | ConfigSource::DynamicDefaultBroker => {
                ConfigOrigin::DynamicBroker
            }
            ConfigSource::StaticBroker => ConfigOrigin::StaticBroker,
            ConfigSource::Default => ConfigOrigin::Default,
            _ => ConfigOrigin::Unknown,
        },
        name: e.name,
        value: e.value,
        read_only: e.is_read_only,
        sensitive: e.is_sensitive,
        is_default: e.is_default,
    }
}

impl TopicSync {
    /// A syncer for `mirror`.
    pub fn new(mirror: Arc<Mirror>, source: Admin, target: Admin, metrics: Arc<Metrics>) -> Self {
        Self {
            mirror,
            source,
            target,
            metrics,
            reported: std::sync::Mutex::default(),
            missing_since: std::sync::Mutex::default(),
            listed: std::sync::Mutex::default(),
            listings: Arc::default(),
        }
    }

    /// Shares `listings` with another syncer of the same flow.
    #[must_use]
    pub fn sharing(mut self, listings: Arc<Listings>) -> Self {
        self.listings = listings;
        self
    }

    /// Whether the target topic of `topic` (being copied) has been missing from the listings
    /// for [`MISSING_CONFIRMED_AFTER`]; the first listing without it starts the clock.
    fn missing_long_enough(&self, topic: &str) -> bool {
        let Ok(mut m) = self.missing_since.lock() else {
            return true;
        };
        let since = *m
            .entry(topic.to_owned())
            .or_insert_with(std::time::Instant::now);
        let listed = self.listed.lock().map_or(true, |l| l.contains(topic));
        since.elapsed()
            >= if listed {
                MISSING_CONFIRMED_AFTER
            } else {
                MISSING_UNSEEN_CONFIRMED_AFTER
            }
    }

    /// Forgets whether the target topic of `topic` was listed and since when it is missing: it
    /// was just created (again).
    fn forget_listing(&self, topic: &str) {
        if let Ok(mut m) = self.missing_since.lock() {
            m.remove(topic);
        }
        if let Ok(mut l) = self.listed.lock() {
            l.remove(topic);
        }
    }

    /// Whether `condition` is new (and records it).
    fn first_report(&self, condition: String) -> bool {
        self.reported
            .lock()
            .map_or(true, |mut seen| seen.insert(condition))
    }

    /// The remote name of every source topic this flow replicates, with the source's
    /// partition count.
    pub(crate) fn replicated_topics<'a>(
        &'a self,
        source_topics: &'a BTreeMap<String, i32>,
    ) -> impl Iterator<Item = (&'a String, String, i32)> + 'a {
        source_topics
            .iter()
            .filter(|(t, _)| should_replicate(&self.mirror, t))
            .map(|(t, &n)| {
                (
                    t,
                    self.mirror
                        .policy
                        .format_remote_topic(&self.mirror.source, t),
                    n,
                )
            })
    }

    /// One round: create missing remote topics, grow short ones, and return every source
    /// partition that has a counterpart on the target, with the topics' ids. The target topics of
    /// source topics in `hold` are not created when missing (they were deleted while their
    /// partitions were copied: what was sent to them must drain first).
    pub async fn sync(&self, hold: &std::collections::HashSet<String>) -> Result<SyncRound> {
        // Bounded well below admin.timeout.ms: a refresh must not hold up shutdown for a minute
        // while a cluster is unreachable.
        let timeout = self.mirror.admin_timeout.min(LIST_TIMEOUT);
        let source_topics = list_topics(&self.source, timeout).await?;
        let mut target_topics = list_topics(&self.target, timeout).await?;
        self.listings.store(&source_topics, &target_topics);
        let mut out = Vec::new();
        let mut round = SyncRound::default();
        let mut pairs = Vec::new();
        let mut to_create = Vec::new();
        for (topic, remote, partitions) in self.replicated_topics(&source_topics) {
            round.source_topics.insert(topic.clone());
            pairs.push((topic.clone(), remote.clone()));
            let on_target = match PartitionAction::decide(
                partitions,
                target_topics.get(&remote).copied(),
            ) {
                PartitionAction::Create(_) if hold.contains(topic) => {
                    if self.missing_long_enough(topic) {
                        // Created again, it must be listed again before a new absence is
                        // taken for a deletion within seconds, and its clock starts anew.
                        self.forget_listing(topic);
                        round.target_missing.push(topic.clone());
                    }
                    continue;
                }
                // Created together below: CreateTopics and DescribeConfigs take many topics.
                PartitionAction::Create(n) => {
                    to_create.push((topic.clone(), remote, n, partitions));
                    continue;
                }
                // Grown before the new partitions are handed to the replicator.
                PartitionAction::Grow { from, to } => self.grow(&remote, from, to).await,
                PartitionAction::InStep => partitions,
                PartitionAction::TargetLarger { source, target } => {
                    if self.first_report(format!("larger:{remote}:{target}")) {
                        tracing::warn!(topic = %topic, source_partitions = source, target_partitions = target,
                        "the target topic has more partitions than the source; the extra ones are left alone");
                    }
                    target
                }
            };
            if let Ok(mut m) = self.missing_since.lock() {
                m.remove(topic);
            }
            if let Ok(mut l) = self.listed.lock() {
                l.insert(topic.clone());
            }
            target_topics.insert(remote.clone(), on_target);
            push_partitions(&mut out, topic, remote, partitions, on_target);
        }
        let outcomes = self.create_many(&to_create).await;
        for ((topic, remote, n, partitions), outcome) in to_create.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.forget_listing(&topic);
                    push_partitions(&mut out, &topic, remote, partitions, n);
                }
                Err(e) => {
                    self.metrics.error(
                        self.mirror.source.as_str(),
                        self.mirror.target.as_str(),
                        "topic_create",
                    );
                    tracing::error!(topic = %topic, target_topic = %remote, "cannot create the target topic: {e}; retrying at the next refresh");
                }
            }
        }
        // Topics no longer on the source are forgotten (listed again, they start afresh).
        if let Ok(mut l) = self.listed.lock() {
            l.retain(|t| round.source_topics.contains(t));
        }
        if let Ok(mut m) = self.missing_since.lock() {
            m.retain(|t, _| round.source_topics.contains(t));
        }
        round.partitions = out;
        round.ids = topic_ids(&self.source, &self.target, pairs, timeout).await;
        Ok(round)
    }

    fn flow_counter(&self, family: &prometheus::IntCounterVec) -> prometheus::IntCounter {
        family.with_label_values(&[self.mirror.source.as_str(), self.mirror.target.as_str()])
    }

    /// Creates the target topics of `list` (source topic, target topic, partitions, ...):
    /// their source configs described and the topics created in batches of
    /// [`CREATE_BATCH`] per request. Each topic's outcome, in order; a topic that exists
    /// already is fine.
    async fn create_many(&self, list: &[(String, String, i32, i32)]) -> Vec<Result<()>> {
        if list.is_empty() {
            return Vec::new();
        }
        let sources: Vec<String> = list.iter().map(|(t, ..)| t.clone()).collect();
        let described =
            describe_topic_configs(&self.source, &sources, self.mirror.admin_timeout).await;
        let configs: Vec<Vec<(String, String)>> = list
            .iter()
            .zip(described)
            .map(|((topic, ..), d)| match d {
                Ok(entries) => self.mirror.config_filter.creation_configs(&entries),
                Err(e) => {
                    tracing::warn!(topic = %topic, "cannot read the source topic's configs ({e}); creating it with the target's defaults");
                    Vec::new()
                }
            })
            .collect();
        let rf = self.mirror.replication_factor.unwrap_or(-1);
        let opts = AdminOptions::new().request_timeout(Some(self.mirror.admin_timeout));
        let mut out = Vec::with_capacity(list.len());
        for (chunk, chunk_configs) in list.chunks(CREATE_BATCH).zip(configs.chunks(CREATE_BATCH)) {
            let new: Vec<NewTopic<'_>> = chunk
                .iter()
                .zip(chunk_configs)
                .map(|((_, remote, n, _), configs)| {
                    configs.iter().fold(
                        NewTopic::new(remote, *n, TopicReplication::Fixed(rf)),
                        |t, (k, v)| t.set(k, v),
                    )
                })
                .collect();
            let answers: std::collections::HashMap<
                String,
                std::result::Result<(), RDKafkaErrorCode>,
            > = match self.target.create_topics(&new, &opts).await {
                Ok(results) => results
                    .into_iter()
                    .map(|r| match r {
                        Ok(name) => (name, Ok(())),
                        Err((name, code)) => (name, Err(code)),
                    })
                    .collect(),
                Err(e) => {
                    let why = format!("CreateTopics: {e}");
                    out.extend(chunk.iter().map(|_| Err(Error::Retriable(why.clone()))));
                    continue;
                }
            };
            for ((_, remote, n, _), configs) in chunk.iter().zip(chunk_configs) {
                out.push(match answers.get(remote) {
                    Some(Ok(())) => {
                        self.flow_counter(&self.metrics.topics_created).inc();
                        let shown: Vec<String> =
                            configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        tracing::info!(topic = %remote, partitions = n, replication_factor = rf, configs = %shown.join(","), "created target topic");
                        Ok(())
                    }
                    Some(Err(RDKafkaErrorCode::TopicAlreadyExists)) => Ok(()),
                    Some(Err(code)) => Err(Error::Retriable(format!("{code}"))),
                    None => Err(Error::Retriable("no answer for the topic".into())),
                });
            }
        }
        out
    }

    /// Grows `remote` to `wanted` partitions; returns the count it has afterwards.
    async fn grow(&self, remote: &str, current: i32, wanted: i32) -> i32 {
        let Ok(wanted_usize) = usize::try_from(wanted) else {
            return current;
        };
        let opts = AdminOptions::new().request_timeout(Some(self.mirror.admin_timeout));
        let request = NewPartitions::new(remote, wanted_usize);
        match self.target.create_partitions(&[request], &opts).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => {
                    self.flow_counter(&self.metrics.partitions_created)
                        .inc_by(u64::try_from(wanted - current).unwrap_or(0));
                    tracing::info!(topic = %remote, from = current, to = wanted, "added partitions to the target topic");
                    wanted
                }
                Some(Err((_, code))) => {
                    self.grow_failed(remote, current, wanted, &code.to_string());
                    current
                }
                None => current,
            },
            Err(e) => {
                self.grow_failed(remote, current, wanted, &e.to_string());
                current
            }
        }
    }

    /// Partitions both sides have keep replicating; the rest wait for the next refresh (their
    /// records stay on the source, nothing is skipped).
    fn grow_failed(&self, remote: &str, current: i32, wanted: i32, why: &str) {
        self.metrics.error(
            self.mirror.source.as_str(),
            self.mirror.target.as_str(),
            "partition_grow",
        );
        if self.first_report(format!("grow:{remote}:{wanted}:{why}")) {
            tracing::warn!(topic = %remote, from = current, to = wanted,
                "cannot add partitions on the target ({why}); copying the {current} partitions both sides have and retrying at every refresh");
        }
    }
}

/// Creates a compacted internal topic if it is missing (TopicAlreadyExists is fine) and
/// returns the partition count it really has, which differs from `partitions` when someone
/// else created it (records keyed by murmur2 must be spread over the real count).
pub async fn ensure_compacted_topic(
    admin: &Admin,
    name: &str,
    partitions: i32,
    rf: Option<i32>,
    timeout: Duration,
) -> Result<Prepared> {
    let timeout = timeout.min(LIST_TIMEOUT);
    if let Some(&n) = list_topics(admin, timeout).await?.get(name) {
        return Ok(Prepared {
            partitions: n,
            created: false,
        });
    }
    let created = create_compacted_topic(admin, name, partitions, rf, timeout).await?;
    for _ in 0..50 {
        if let Some(&n) = list_topics(admin, timeout).await?.get(name) {
            if n > 0 {
                return Ok(Prepared {
                    partitions: n,
                    created,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Retriable(format!(
        "{name} was created but is not in the metadata yet"
    )))
}

/// An internal topic ready for use.
#[derive(Clone, Copy, Debug)]
pub struct Prepared {
    /// Its partition count.
    pub partitions: i32,
    /// Whether this call created it (so it holds nothing yet).
    pub created: bool,
}

/// [`ensure_compacted_topic`], retried every 5 s until it succeeds (`Ok(Some(prepared))`)
/// or `stop` is cancelled (`Ok(None)`). Problems the operator must fix return at once.
pub async fn ensure_compacted_topic_retrying(
    admin: &Admin,
    name: &str,
    partitions: i32,
    rf: Option<i32>,
    timeout: Duration,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Option<Prepared>> {
    loop {
        let attempt = tokio::select! {
            () = stop.cancelled() => return Ok(None),
            r = ensure_compacted_topic(admin, name, partitions, rf, timeout) => r,
        };
        match attempt {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.is_user_error() => return Err(e),
            Err(e) => {
                tracing::warn!(topic = name, "cannot prepare {name}: {e}; retrying in 5 s");
                tokio::select! {
                    () = stop.cancelled() => return Ok(None),
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

async fn create_compacted_topic(
    admin: &Admin,
    name: &str,
    partitions: i32,
    rf: Option<i32>,
    timeout: Duration,
) -> Result<bool> {
    let new = NewTopic::new(name, partitions, TopicReplication::Fixed(rf.unwrap_or(-1)))
        .set("cleanup.policy", "compact");
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .create_topics(&[new], &opts)
        .await
        .map_err(|e| Error::Retriable(format!("creating {name}: {e}")))?;
    let mut created = false;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic = name, partitions, "created internal topic");
                created = true;
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((
                _,
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed),
            )) => {
                return Err(Error::Config(format!("not allowed to create {name} on the target ({code}); create it (compacted) or grant CreateTopics")));
            }
            Err((_, code)) => return Err(Error::Retriable(format!("creating {name}: {code}"))),
        }
    }
    Ok(created)
}
