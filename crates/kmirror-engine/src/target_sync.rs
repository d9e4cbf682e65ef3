//! Topic config sync, ACL sync and the plan of what the next sync would do
//! (MM2-COMPAT §4.3, §4.4).
//!
//! Configs: every `sync.topic.configs.interval.seconds`, the source configs of every mirrored
//! topic that exists on the target go through MM2's property filter and are compared with the
//! target's; only differences are sent (IncrementalAlterConfigs), each logged as
//! `topic key: old -> new`. A value the target refuses is logged with the broker's reason,
//! counted, and tried again at the next interval; replication is never affected.
//!
//! ACLs: every `sync.topic.acls.interval.seconds`, literal topic ACLs of the source are
//! translated with MM2's rules and the ones the target lacks are created. A cluster without an
//! authorizer is reported once and ACL sync stops for the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kmirror_admin::{AdminError, AlterOp};
use kmirror_core::acl::{self, TopicAcl};
use kmirror_core::plan::{
    FlowPlan, GroupCheckpoint, PartitionGrowth, TopicConfigChanges, TopicCreation,
};
use kmirror_core::topic_config::{ConfigOp, PartitionAction};
use kmirror_core::TopicPartition;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::topics::{
    describe_topic_configs, list_topics, Admin, ListingPair, TopicSync, LIST_TIMEOUT,
};

/// Topics with the operations to send for each.
type AlterRequest = Vec<(String, Vec<(String, AlterOp)>)>;
/// Each topic's outcome.
type AlterOutcomes = BTreeMap<String, std::result::Result<(), AdminError>>;

/// What the ACL sync can do this round.
#[derive(Debug)]
pub enum AclRound {
    /// Bindings the target lacks.
    Create(Vec<TopicAcl>),
    /// ACL sync cannot work against these clusters (no authorizer, no ACL API); the reason.
    Off(String),
}

/// Whether an error says a cluster has no authorizer, or cannot do the request at all.
fn is_permanent(e: &AdminError) -> bool {
    matches!(
        e.code,
        RDKafkaErrorCode::SecurityDisabled
            | RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::UnsupportedFeature
    )
}

impl TopicSync {
    fn timeout(&self) -> Duration {
        self.mirror.admin_timeout.min(LIST_TIMEOUT)
    }

    fn labels(&self) -> [&str; 2] {
        [self.mirror.source.as_str(), self.mirror.target.as_str()]
    }

    /// The replicated source topics and their partition counts (a listing of the source only:
    /// at 10,000 partitions each full listing costs a share of the idle CPU).
    pub(crate) async fn replicated(&self) -> Result<Vec<(String, i32)>> {
        let source = list_topics(&self.source, self.timeout()).await?;
        Ok(self
            .replicated_topics(&source)
            .map(|(t, _, n)| (t.clone(), n))
            .collect())
    }

    /// Both topic listings, taken now.
    async fn listings(&self) -> Result<ListingPair> {
        let timeout = self.timeout();
        let source = list_topics(&self.source, timeout).await?;
        let target = list_topics(&self.target, timeout).await?;
        Ok((source, target))
    }

    /// Both listings: the topic discovery's if taken within `max_age`, else new ones.
    async fn listings_within(&self, max_age: Duration) -> Result<Arc<ListingPair>> {
        match self.listings.fresh(max_age) {
            Some(pair) => Ok(pair),
            None => self.listings().await.map(Arc::new),
        }
    }

    /// Config differences for mirrored topics that exist on the target; problems reading
    /// either side are returned as notes.
    pub(crate) async fn config_changes(
        &self,
        source_topics: &BTreeMap<String, i32>,
        target_topics: &BTreeMap<String, i32>,
    ) -> (Vec<TopicConfigChanges>, Vec<String>) {
        let pairs: Vec<(String, String)> = self
            .replicated_topics(source_topics)
            .filter(|(_, remote, _)| target_topics.contains_key(remote))
            .map(|(t, remote, _)| (t.clone(), remote))
            .collect();
        let sources: Vec<String> = pairs.iter().map(|(s, _)| s.clone()).collect();
        let targets: Vec<String> = pairs.iter().map(|(_, t)| t.clone()).collect();
        let timeout = self.mirror.admin_timeout;
        let (source_configs, target_configs) = tokio::join!(
            describe_topic_configs(&self.source, &sources, timeout),
            describe_topic_configs(&self.target, &targets, timeout)
        );
        let mut changes = Vec::new();
        let mut notes = Vec::new();
        for (((topic, remote), src), tgt) in
            pairs.into_iter().zip(source_configs).zip(target_configs)
        {
            match (src, tgt) {
                (Ok(src), Ok(tgt)) => {
                    let c = self.mirror.config_filter.changes(&src, &tgt);
                    if !c.is_empty() {
                        changes.push(TopicConfigChanges {
                            topic,
                            target_topic: remote,
                            changes: c,
                        });
                    }
                }
                (Err(e), _) => notes.push(format!(
                    "cannot read the configs of {topic} on {}: {e}",
                    self.mirror.source
                )),
                (_, Err(e)) => notes.push(format!(
                    "cannot read the configs of {remote} on {}: {e}",
                    self.mirror.target
                )),
            }
        }
        (changes, notes)
    }

    /// Sends config changes. `Err` only when the target cannot take IncrementalAlterConfigs at
    /// all or did not answer; refused values are logged, counted and left for the next round.
    pub(crate) async fn apply_config_changes(
        &self,
        plan: &[TopicConfigChanges],
    ) -> std::result::Result<(), AdminError> {
        self.apply_config_changes_with(plan, |request| self.alter(request))
            .await
    }

    /// [`Self::apply_config_changes`] with the IncrementalAlterConfigs call given.
    async fn apply_config_changes_with<F, Fut>(
        &self,
        plan: &[TopicConfigChanges],
        alter: F,
    ) -> std::result::Result<(), AdminError>
    where
        F: Fn(AlterRequest) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<AlterOutcomes, AdminError>>,
    {
        if plan.is_empty() {
            return Ok(());
        }
        let request: AlterRequest = plan
            .iter()
            .map(|t| {
                (
                    t.target_topic.clone(),
                    t.changes
                        .iter()
                        .map(|c| (c.name.clone(), alter_op(&c.op)))
                        .collect(),
                )
            })
            .collect();
        let outcomes = alter(request).await?;
        for t in plan {
            match outcomes.get(&t.target_topic) {
                Some(Ok(())) => self.changed(t, &t.changes),
                Some(Err(e)) if t.changes.len() == 1 => self.refused(t, &t.changes[0].name, e),
                Some(Err(_)) => {
                    // The broker refuses a topic's changes together; send them one by one to
                    // apply the good ones and name the refused key.
                    for change in &t.changes {
                        let one = vec![(
                            t.target_topic.clone(),
                            vec![(change.name.clone(), alter_op(&change.op))],
                        )];
                        match alter(one).await?.get(&t.target_topic) {
                            Some(Ok(())) => self.changed(t, std::slice::from_ref(change)),
                            Some(Err(e)) => self.refused(t, &change.name, e),
                            None => {}
                        }
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn alter(&self, request: AlterRequest) -> std::result::Result<AlterOutcomes, AdminError> {
        let admin = Arc::clone(&self.target);
        let timeout = self.mirror.admin_timeout;
        let outcomes = tokio::task::spawn_blocking(move || {
            kmirror_admin::incremental_alter_topic_configs(admin.inner(), &request, timeout)
        })
        .await
        .map_err(|e| AdminError {
            code: RDKafkaErrorCode::Fail,
            message: format!("config sync task: {e}"),
        })??;
        Ok(outcomes.into_iter().collect())
    }

    fn changed(
        &self,
        t: &TopicConfigChanges,
        changes: &[kmirror_core::topic_config::ConfigChange],
    ) {
        for c in changes {
            let new = match &c.op {
                ConfigOp::Set(v) => v.as_str(),
                ConfigOp::Delete => "(target default)",
            };
            tracing::info!(topic = %t.target_topic, key = %c.name, old = c.old.as_deref().unwrap_or("(unset)"), new,
                "changed target topic config: {} {c}", t.target_topic);
        }
        self.metrics
            .configs_changed
            .with_label_values(&self.labels())
            .inc_by(u64::try_from(changes.len()).unwrap_or(0));
    }

    fn refused(&self, t: &TopicConfigChanges, key: &str, e: &AdminError) {
        let [s, tg] = self.labels();
        self.metrics
            .configs_rejected
            .with_label_values(&[s, tg, t.target_topic.as_str(), key])
            .inc();
        self.metrics.error(s, tg, "topic_config");
        tracing::warn!(topic = %t.target_topic, key, reason = %e,
            "the target refused a topic config change; replication of the topic continues, retrying at the next sync");
    }

    /// The ACLs the target lacks, or why ACL sync cannot run.
    pub(crate) async fn acl_round(&self) -> Result<AclRound> {
        let should_replicate = |t: &str| crate::topics::should_replicate(&self.mirror, t);
        let remote = |t: &str| {
            self.mirror
                .policy
                .format_remote_topic(&self.mirror.source, t)
        };
        let source = match self.read_acls(&self.source, &self.mirror.source).await? {
            Ok(acls) => acls,
            Err(why) => return Ok(AclRound::Off(why)),
        };
        if source
            .iter()
            .all(|a| acl::translate(a, should_replicate, remote).is_none())
        {
            return Ok(AclRound::Create(Vec::new()));
        }
        let target = match self.read_acls(&self.target, &self.mirror.target).await? {
            Ok(acls) => acls,
            Err(why) => return Ok(AclRound::Off(why)),
        };
        Ok(AclRound::Create(acl::to_create(
            &source,
            &target,
            should_replicate,
            remote,
        )))
    }

    /// A cluster's topic ACLs, or (inner `Err`) why it cannot have any.
    async fn read_acls(
        &self,
        admin: &Admin,
        alias: &kmirror_core::ClusterAlias,
    ) -> Result<std::result::Result<Vec<TopicAcl>, String>> {
        let (admin, timeout) = (Arc::clone(admin), self.mirror.admin_timeout);
        let read = tokio::task::spawn_blocking(move || {
            kmirror_admin::describe_topic_acls(admin.inner(), timeout)
        })
        .await
        .map_err(|e| Error::Internal(format!("ACL task: {e}")))?;
        match read {
            Ok(acls) => Ok(Ok(acls)),
            Err(e) if is_permanent(&e) => Ok(Err(format!(
                "cannot read ACLs on {alias} ({e}): it has no authorizer or no ACL API"
            ))),
            Err(e) => Err(Error::Retriable(format!("reading ACLs on {alias}: {e}"))),
        }
    }

    /// Creates ACL bindings; each outcome is logged.
    pub(crate) async fn apply_acls(&self, acls: Vec<TopicAcl>) -> Result<()> {
        if acls.is_empty() {
            return Ok(());
        }
        let admin = Arc::clone(&self.target);
        let timeout = self.mirror.admin_timeout;
        let request = acls.clone();
        let outcomes = tokio::task::spawn_blocking(move || {
            kmirror_admin::create_topic_acls(admin.inner(), &request, timeout)
        })
        .await
        .map_err(|e| Error::Internal(format!("ACL task: {e}")))?
        .map_err(|e| Error::Retriable(format!("CreateAcls on {}: {e}", self.mirror.target)))?;
        for (a, outcome) in acls.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.metrics
                        .acls_created
                        .with_label_values(&self.labels())
                        .inc();
                    tracing::info!(acl = %a, "created ACL on the target");
                }
                Err(e) => {
                    let [s, t] = self.labels();
                    self.metrics.error(s, t, "acl");
                    tracing::warn!(acl = %a, reason = %e, "the target refused an ACL; retrying at the next sync");
                }
            }
        }
        Ok(())
    }

    /// What the next sync would do, without changing anything. `groups` is a source client
    /// config for listing consumer groups (`None`: checkpoints are off).
    pub async fn plan(&self, groups: Option<ClientConfig>) -> Result<FlowPlan> {
        let (mut plan, acls) = self.plan_with_acls(groups).await?;
        match acls {
            Some(Ok(AclRound::Off(why))) => plan.notes.push(format!("ACL sync skipped: {why}")),
            Some(Err(e)) => plan.notes.push(format!("ACLs not compared: {e}")),
            Some(Ok(AclRound::Create(_))) | None => {}
        }
        Ok(plan)
    }

    /// The plan, and the ACL round it was made from (`None`: ACL sync is off), which the
    /// caller reports or acts on.
    async fn plan_with_acls(
        &self,
        groups: Option<ClientConfig>,
    ) -> Result<(FlowPlan, Option<Result<AclRound>>)> {
        let mut plan = FlowPlan::new(self.mirror.name());
        let (source_topics, target_topics) = self.listings().await?;
        let mut partitions: std::collections::HashSet<TopicPartition> =
            std::collections::HashSet::new();
        let mut new_topics: Vec<(String, String, i32)> = Vec::new();
        for (topic, remote, n) in self.replicated_topics(&source_topics) {
            partitions.extend((0..n).map(|p| TopicPartition::new(topic.as_str(), p)));
            match PartitionAction::decide(n, target_topics.get(&remote).copied()) {
                PartitionAction::Create(n) => new_topics.push((topic.clone(), remote, n)),
                PartitionAction::Grow { from, to } => plan.partitions_to_add.push(PartitionGrowth {
                    topic: topic.clone(),
                    target_topic: remote,
                    from,
                    to,
                }),
                PartitionAction::InStep => {}
                PartitionAction::TargetLarger { source, target } => plan.notes.push(format!(
                    "{remote} has {target} partitions on {}, {source} on {}: the extra ones are left alone",
                    self.mirror.target, self.mirror.source
                )),
            }
        }
        let names: Vec<String> = new_topics.iter().map(|(t, _, _)| t.clone()).collect();
        let described =
            describe_topic_configs(&self.source, &names, self.mirror.admin_timeout).await;
        for ((topic, remote, n), configs) in new_topics.into_iter().zip(described) {
            let configs = match configs {
                Ok(entries) => self.mirror.config_filter.creation_configs(&entries),
                Err(e) => {
                    plan.notes
                        .push(format!("cannot read the configs of {topic}: {e}"));
                    Vec::new()
                }
            };
            plan.topics_to_create.push(TopicCreation {
                topic,
                target_topic: remote,
                partitions: n,
                replication_factor: self.mirror.replication_factor,
                configs: configs.into_iter().collect(),
            });
        }
        if self.mirror.sync_topic_configs.is_some() {
            let (changes, notes) = self.config_changes(&source_topics, &target_topics).await;
            plan.configs_to_change = changes;
            plan.notes.extend(notes);
        } else {
            plan.notes.push(
                "sync.topic.configs.enabled=false: configs of existing topics are not synced"
                    .into(),
            );
        }
        let acls = if self.mirror.sync_topic_acls.is_some() {
            let round = self.acl_round().await;
            if let Ok(AclRound::Create(create)) = &round {
                plan.acls_to_create.clone_from(create);
            }
            Some(round)
        } else {
            plan.notes
                .push("sync.topic.acls.enabled=false: ACLs are not synced".into());
            None
        };
        match groups {
            Some(cfg) if !partitions.is_empty() => {
                let filter = self.mirror.groups.clone();
                let listed = tokio::task::spawn_blocking(move || {
                    let reader = crate::checkpoint::group_reader(&cfg)?;
                    crate::checkpoint::fetch_committed(
                        &reader,
                        Some(&filter),
                        Vec::new(),
                        &partitions,
                        &mut crate::commit_watch::CommitWatch::every_group(),
                        &CancellationToken::new(),
                    )
                })
                .await
                .map_err(|e| Error::Internal(format!("group listing: {e}")))?;
                match listed {
                    Ok(crate::checkpoint::GroupRound {
                        committed, failed, ..
                    }) => {
                        for (group, e) in failed {
                            plan.notes
                                .push(format!("offsets of consumer group {group} not read: {e}"));
                        }
                        plan.groups_to_checkpoint = committed
                            .into_iter()
                            .map(|(group, entries)| GroupCheckpoint {
                                group,
                                partitions: entries.len(),
                            })
                            .collect();
                    }
                    Err(e) => plan.notes.push(format!("consumer groups not listed: {e}")),
                }
            }
            Some(_) => {}
            None => plan
                .notes
                .push("emit.checkpoints.enabled=false: no group is checkpointed".into()),
        }
        Ok((plan, acls))
    }

    /// The config and ACL sync loop of a running flow: logs the plan once, then keeps configs
    /// and ACLs in step at their intervals until `stop`.
    pub async fn run_config_and_acl_sync(
        &self,
        groups: Option<ClientConfig>,
        stop: CancellationToken,
    ) {
        let planned = tokio::select! {
            () = stop.cancelled() => return,
            p = self.plan_with_acls(groups) => p,
        };
        let mut configs_due = self.mirror.sync_topic_configs;
        let mut acls_due = self.mirror.sync_topic_acls;
        match planned {
            Ok((plan, acls)) => {
                if plan.changes_nothing() {
                    tracing::info!(
                        "start-up plan: the target's topics, configs and ACLs are in step"
                    );
                }
                let lines = plan.lines();
                let logged = crate::flow::LOGGED_ONE_BY_ONE * 5;
                for line in lines.iter().take(logged) {
                    tracing::info!("start-up plan: {line}");
                }
                if lines.len() > logged {
                    tracing::info!(
                        "start-up plan: {} more lines (`kmirror plan` prints every one)",
                        lines.len() - logged
                    );
                }
                if configs_due.is_some() {
                    self.apply_configs(&plan.configs_to_change, &mut configs_due)
                        .await;
                }
                if let Some(round) = acls {
                    self.settle_acl_round(round, &mut acls_due).await;
                }
            }
            Err(e) => tracing::warn!(
                "cannot compute the start-up plan: {e}; syncing at the next interval"
            ),
        }
        let mut configs_tick = crate::every(configs_due.unwrap_or(crate::NEVER));
        let mut acls_tick = crate::every(acls_due.unwrap_or(crate::NEVER));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = configs_tick.tick(), if configs_due.is_some() => {
                    // Which topics exist on both sides: the topic discovery's listings serve if
                    // they are no older than this interval.
                    let max_age = configs_due.unwrap_or_default();
                    match self.listings_within(max_age).await {
                        Ok(pair) => {
                            let (source, target) = &*pair;
                            let (changes, notes) = self.config_changes(source, target).await;
                            for n in notes {
                                tracing::warn!("config sync: {n}");
                            }
                            self.apply_configs(&changes, &mut configs_due).await;
                        }
                        Err(e) => tracing::warn!("config sync: {e}; retrying at the next interval"),
                    }
                }
                _ = acls_tick.tick(), if acls_due.is_some() => {
                    let round = self.acl_round().await;
                    self.settle_acl_round(round, &mut acls_due).await;
                }
            }
        }
    }

    /// Applies config changes; a target that cannot take them turns config sync off (`due`).
    async fn apply_configs(&self, changes: &[TopicConfigChanges], due: &mut Option<Duration>) {
        if let Err(e) = self.apply_config_changes(changes).await {
            *due = self.config_sync_failed(&e);
        }
    }

    /// Creates what an ACL round found missing, or turns ACL sync off (`due`) with one log
    /// line when a cluster cannot have ACLs.
    async fn settle_acl_round(&self, round: Result<AclRound>, due: &mut Option<Duration>) {
        match round {
            Ok(AclRound::Create(acls)) => {
                if let Err(e) = self.apply_acls(acls).await {
                    tracing::warn!("ACL sync failed: {e}; retrying at the next interval");
                }
            }
            Ok(AclRound::Off(why)) => {
                tracing::info!("ACL sync skipped for this run: {why}");
                *due = None;
            }
            Err(e) => tracing::warn!("ACL sync failed: {e}; retrying at the next interval"),
        }
    }

    /// Whether config sync goes on after a failed request (`None`: the target cannot do it).
    fn config_sync_failed(&self, e: &AdminError) -> Option<Duration> {
        let [s, t] = self.labels();
        self.metrics.error(s, t, "topic_config");
        if is_permanent(e) {
            tracing::error!("the target cannot alter topic configs incrementally ({e}; Kafka 2.3 or newer is needed): config sync is off for this run");
            None
        } else {
            tracing::warn!("config sync failed: {e}; retrying at the next interval");
            self.mirror.sync_topic_configs
        }
    }
}

fn alter_op(op: &ConfigOp) -> AlterOp {
    match op {
        ConfigOp::Set(v) => AlterOp::Set(v.clone()),
        ConfigOp::Delete => AlterOp::Delete,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kmirror_core::topic_config::ConfigChange;
    use rdkafka::admin::AdminClient;

    use super::*;
    use crate::client::ClusterContext;
    use crate::metrics::Metrics;

    fn sync() -> TopicSync {
        let yaml = "clusters:\n  - alias: a\n    bootstrapServers: 127.0.0.1:1\n  - alias: b\n    bootstrapServers: 127.0.0.1:1\nmirrors:\n  - sourceCluster: a\n    targetCluster: b\n";
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kmirror.yaml");
        std::fs::write(&path, yaml).expect("written");
        let cfg = crate::load::load(&path, None).expect("valid config");
        let mirror = Arc::new(cfg.mirrors[0].clone());
        // Clients that never connect: only the injected alter call is used.
        let admin = || -> Admin {
            let a: AdminClient<ClusterContext> = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .create_with_context(ClusterContext::named("t"))
                .expect("client");
            Arc::new(a)
        };
        TopicSync::new(mirror, admin(), admin(), Arc::new(Metrics::new()))
    }

    fn set(name: &str, value: &str, old: &str) -> ConfigChange {
        ConfigChange {
            name: name.into(),
            op: ConfigOp::Set(value.into()),
            old: Some(old.into()),
        }
    }

    /// A target that refuses `max.message.bytes` above 1000, the way a broker refuses a value
    /// above its limit: the whole topic's request fails.
    #[tokio::test]
    async fn a_refused_value_is_counted_and_the_other_keys_still_apply() {
        let sync = sync();
        let plan = vec![TopicConfigChanges {
            topic: "orders".into(),
            target_topic: "a.orders".into(),
            changes: vec![
                set("retention.ms", "10", "20"),
                set("max.message.bytes", "5000", "900"),
            ],
        }];
        let requests: Mutex<Vec<AlterRequest>> = Mutex::default();
        let alter = |request: AlterRequest| {
            requests.lock().expect("lock").push(request.clone());
            async move {
                Ok(request
                    .into_iter()
                    .map(|(topic, ops)| {
                        let too_big = ops.iter().any(|(k, op)| {
                            k == "max.message.bytes" && *op == AlterOp::Set("5000".into())
                        });
                        let outcome = if too_big {
                            Err(AdminError {
                                code: RDKafkaErrorCode::InvalidConfig,
                                message: "max.message.bytes 5000 is above the broker limit".into(),
                            })
                        } else {
                            Ok(())
                        };
                        (topic, outcome)
                    })
                    .collect())
            }
        };
        sync.apply_config_changes_with(&plan, alter)
            .await
            .expect("the request itself succeeds");
        let sent = requests.lock().expect("lock").clone();
        assert_eq!(
            sent.len(),
            3,
            "one request for the topic, then one per key: {sent:?}"
        );
        assert_eq!(
            sent[1][0].1,
            vec![("retention.ms".to_owned(), AlterOp::Set("10".into()))]
        );
        let m = &sync.metrics;
        assert_eq!(m.configs_changed.with_label_values(&["a", "b"]).get(), 1);
        assert_eq!(
            m.configs_rejected
                .with_label_values(&["a", "b", "a.orders", "max.message.bytes"])
                .get(),
            1
        );
        assert_eq!(
            m.errors
                .with_label_values(&["a", "b", "topic_config"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn an_unreachable_target_fails_the_round_only() {
        let sync = sync();
        let plan = vec![TopicConfigChanges {
            topic: "t".into(),
            target_topic: "a.t".into(),
            changes: vec![set("retention.ms", "10", "20")],
        }];
        let alter = |_: AlterRequest| async {
            Err(AdminError {
                code: RDKafkaErrorCode::OperationTimedOut,
                message: "no answer".into(),
            })
        };
        let err = sync
            .apply_config_changes_with(&plan, alter)
            .await
            .expect_err("reported");
        assert_eq!(
            sync.config_sync_failed(&err),
            sync.mirror.sync_topic_configs
        );
        let unsupported = AdminError {
            code: RDKafkaErrorCode::UnsupportedVersion,
            message: String::new(),
        };
        assert_eq!(sync.config_sync_failed(&unsupported), None);
    }
}
