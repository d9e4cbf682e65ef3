//! Topic discovery on the source, and creation or growth of the remote topics on the target.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kmirror_core::config::Mirror;
use kmirror_core::filter::ListPattern;
use kmirror_core::topic_config::{
    creation_configs, ConfigEntry, ConfigOrigin, DEFAULT_CONFIG_EXCLUDE,
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
            .filter(|t| t.error().is_none())
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

/// Keeps the target's topics in step with the source for one mirror.
pub struct TopicSync {
    mirror: Arc<Mirror>,
    source: Admin,
    target: Admin,
    exclude: ListPattern,
    metrics: Arc<Metrics>,
}

impl TopicSync {
    /// A syncer for `mirror`.
    pub fn new(mirror: Arc<Mirror>, source: Admin, target: Admin, metrics: Arc<Metrics>) -> Self {
        Self {
            mirror,
            source,
            target,
            metrics,
            exclude: ListPattern::parse(DEFAULT_CONFIG_EXCLUDE)
                .unwrap_or_else(|_| ListPattern::empty()),
        }
    }

    /// One round: create missing remote topics, grow short ones, and return every source
    /// partition that has a counterpart on the target.
    pub async fn sync(&self) -> Result<Vec<Replicable>> {
        // Bounded well below admin.timeout.ms: a refresh must not hold up shutdown for a minute
        // while a cluster is unreachable.
        let timeout = self.mirror.admin_timeout.min(LIST_TIMEOUT);
        let source_topics = list_topics(&self.source, timeout).await?;
        let mut target_topics = list_topics(&self.target, timeout).await?;
        let mut out = Vec::new();
        for (topic, &partitions) in &source_topics {
            if !should_replicate(&self.mirror, topic) {
                continue;
            }
            let remote = self
                .mirror
                .policy
                .format_remote_topic(&self.mirror.source, topic);
            let on_target = match target_topics.get(&remote) {
                None => match self.create(topic, &remote, partitions).await {
                    Ok(()) => partitions,
                    Err(e) => {
                        self.metrics.error(
                            self.mirror.source.as_str(),
                            self.mirror.target.as_str(),
                            "topic_create",
                        );
                        tracing::error!(topic = %topic, target_topic = %remote, "cannot create the target topic: {e}; retrying at the next refresh");
                        continue;
                    }
                },
                Some(&n) if n < partitions => self.grow(&remote, n, partitions).await,
                Some(&n) => {
                    if n > partitions {
                        tracing::warn!(topic = %topic, source_partitions = partitions, target_partitions = n,
                            "the target topic has more partitions than the source; the extra ones are left alone");
                    }
                    partitions
                }
            };
            target_topics.insert(remote.clone(), on_target);
            let remote: Arc<str> = remote.into();
            let source_topic: Arc<str> = topic.as_str().into();
            for p in 0..partitions.min(on_target) {
                out.push(Replicable {
                    source: TopicPartition::new(Arc::clone(&source_topic), p),
                    target_topic: Arc::clone(&remote),
                });
            }
        }
        Ok(out)
    }

    fn flow_counter(&self, family: &prometheus::IntCounterVec) -> prometheus::IntCounter {
        family.with_label_values(&[self.mirror.source.as_str(), self.mirror.target.as_str()])
    }

    async fn source_configs(&self, topic: &str) -> Vec<(String, String)> {
        let opts = AdminOptions::new().request_timeout(Some(self.mirror.admin_timeout));
        let result = self
            .source
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
            .await;
        let entries: Vec<ConfigEntry> = match result {
            Ok(results) => results
                .into_iter()
                .filter_map(Result::ok)
                .flat_map(|r| r.entries)
                .map(|e| ConfigEntry {
                    origin: match e.source {
                        rdkafka::admin::ConfigSource::DynamicTopic => ConfigOrigin::DynamicTopic,
                        rdkafka::admin::ConfigSource::DynamicBroker
                        | rdkafka::admin::ConfigSource::DynamicDefaultBroker => {
                            ConfigOrigin::DynamicBroker
                        }
                        rdkafka::admin::ConfigSource::StaticBroker => ConfigOrigin::StaticBroker,
                        rdkafka::admin::ConfigSource::Default => ConfigOrigin::Default,
                        _ => ConfigOrigin::Unknown,
                    },
                    name: e.name,
                    value: e.value,
                    read_only: e.is_read_only,
                    sensitive: e.is_sensitive,
                    is_default: e.is_default,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(topic, "cannot read the source topic's configs ({e}); creating it with the target's defaults");
                Vec::new()
            }
        };
        creation_configs(&entries, &self.exclude, false)
    }

    async fn create(&self, topic: &str, remote: &str, partitions: i32) -> Result<()> {
        let configs = self.source_configs(topic).await;
        let rf = self.mirror.replication_factor.unwrap_or(-1);
        let mut new = NewTopic::new(remote, partitions, TopicReplication::Fixed(rf));
        for (k, v) in &configs {
            new = new.set(k, v);
        }
        let opts = AdminOptions::new().request_timeout(Some(self.mirror.admin_timeout));
        let results = self
            .target
            .create_topics(&[new], &opts)
            .await
            .map_err(|e| Error::Retriable(format!("CreateTopics: {e}")))?;
        for r in results {
            match r {
                Ok(_) => {
                    self.flow_counter(&self.metrics.topics_created).inc();
                    let shown: Vec<String> =
                        configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    tracing::info!(topic = %remote, partitions, replication_factor = rf, configs = %shown.join(","), "created target topic");
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(Error::Retriable(format!("{code}"))),
            }
        }
        Ok(())
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
                    tracing::warn!(topic = %remote, from = current, to = wanted, "cannot add partitions on the target ({code}); copying the {current} partitions both sides have");
                    current
                }
                None => current,
            },
            Err(e) => {
                tracing::warn!(topic = %remote, "CreatePartitions failed ({e}); copying the {current} partitions both sides have");
                current
            }
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
) -> Result<i32> {
    let timeout = timeout.min(LIST_TIMEOUT);
    if let Some(&n) = list_topics(admin, timeout).await?.get(name) {
        return Ok(n);
    }
    create_compacted_topic(admin, name, partitions, rf, timeout).await?;
    for _ in 0..50 {
        if let Some(&n) = list_topics(admin, timeout).await?.get(name) {
            if n > 0 {
                return Ok(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Retriable(format!(
        "{name} was created but is not in the metadata yet"
    )))
}

/// [`ensure_compacted_topic`], retried every 5 s until it succeeds (`Ok(Some(partitions))`)
/// or `stop` is cancelled (`Ok(None)`). Problems the operator must fix return at once.
pub async fn ensure_compacted_topic_retrying(
    admin: &Admin,
    name: &str,
    partitions: i32,
    rf: Option<i32>,
    timeout: Duration,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Option<i32>> {
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
) -> Result<()> {
    let new = NewTopic::new(name, partitions, TopicReplication::Fixed(rf.unwrap_or(-1)))
        .set("cleanup.policy", "compact");
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .create_topics(&[new], &opts)
        .await
        .map_err(|e| Error::Retriable(format!("creating {name}: {e}")))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic = name, partitions, "created internal topic"),
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
    Ok(())
}
