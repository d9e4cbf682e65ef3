//! One mirror end to end: start-up checks, the progress topic, the topic refresh loop and the
//! supervision of the replicator thread.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use kmirror_core::config::{Config, Mirror, SyncLocation};
use kmirror_core::progress::{Recreated, TopicIds};
use kmirror_core::translate::OffsetMap;
use kmirror_core::{ClusterAlias, Offset, StartFrom, TopicPartition};
use rdkafka::admin::AdminClient;
use tokio_util::sync::CancellationToken;

use crate::client::{check_properties, probe, ClientFactory, ClusterContext, Role};
use crate::codec::{Codec, CodecSource};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::replicator::{Assignment, Command, Replicator, ReplicatorSettings, Start, SyncTarget};
use crate::security::{check_cluster, ClusterSecurity};
use crate::status::{Connectivity, StatusBoard};
use crate::topics::{
    describe_topic_configs, ensure_compacted_topic_retrying, Admin, Prepared, SyncRound, TopicSync,
    LIST_TIMEOUT,
};

/// How long start-up waits for a cluster's metadata before it reports and retries.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);
/// Back-off between restarts of a failed replicator or unreachable clusters.
const RESTART_BACKOFF: Duration = Duration::from_secs(5);
/// A problem that persists is logged again after this long.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// How often both clusters are probed for the readiness check.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Beyond this many topics or lines, start-up decisions are logged as one summary line.
pub(crate) const LOGGED_ONE_BY_ONE: usize = 20;
/// Runs `job` until it ends or `stop` fires.
async fn until_stopped(stop: &CancellationToken, job: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = job => {}
        () = stop.cancelled() => {}
    }
}

/// Longest wait, once the replicator reported, for its clients to close.
const CLIENT_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Settings that come from the command line.
#[derive(Clone)]
pub struct FlowOptions {
    /// Time allowed to drain and store progress at shutdown.
    pub shutdown_timeout: Duration,
    /// Where metrics go.
    pub metrics: Arc<Metrics>,
    /// Cluster reachability, for the readiness check.
    pub connectivity: Arc<Connectivity>,
    /// Set when a replicator stopped before all acknowledged progress was stored.
    pub unclean_stop: Arc<std::sync::atomic::AtomicBool>,
    /// How long a partition may be neither copying nor caught up before it is reported stuck.
    pub stall_after: Duration,
    /// Bytes this flow's record buffers may take (see [`ClientFactory::with_memory`]); `None`:
    /// kmirror's fixed defaults.
    pub memory: Option<usize>,
    /// Replication producers per kind of batch, partitions spread over them by number.
    pub producers: usize,
    /// MM2's checkpoint-latency gauges per group, topic and partition (else none).
    pub per_partition_checkpoint_metrics: bool,
}

/// A ready-to-run mirror.
pub struct Flow {
    maps: Arc<crate::status::MapBoard>,
    /// Exactly-once mode: records the target refused for good, kept across replicator
    /// restarts (see [`crate::transactions`]).
    poisoned: crate::transactions::Poisoned,
    mirror: Arc<Mirror>,
    source: ClientFactory,
    target: ClientFactory,
    status: Arc<StatusBoard>,
    options: FlowOptions,
    /// Whether this replica runs the singleton jobs (always, without scale-out).
    leadership: crate::ownership::Leadership,
}

impl Flow {
    /// Builds the flow and checks every client property with librdkafka (no network).
    pub fn build(
        config: &Config,
        mirror: &Mirror,
        security: &BTreeMap<ClusterAlias, ClusterSecurity>,
        status: Arc<StatusBoard>,
        options: FlowOptions,
    ) -> Result<Self> {
        let factory = |alias: &ClusterAlias| -> Result<ClientFactory> {
            let cluster = config
                .cluster(alias)
                .ok_or_else(|| Error::Config(format!("unknown cluster alias {alias}")))?;
            let sec = security.get(alias).cloned().unwrap_or_default();
            Ok(
                ClientFactory::new(cluster.clone(), sec, format!("kmirror|{}", mirror.name()))
                    .with_memory(options.memory),
            )
        };
        let flow = Self {
            maps: Arc::default(),
            poisoned: Arc::default(),
            mirror: Arc::new(mirror.clone()),
            source: factory(&mirror.source)?,
            target: factory(&mirror.target)?,
            status,
            options,
            leadership: crate::ownership::Leadership::new(mirror.scale_out.is_none()),
        };
        for (role, cfg) in flow.client_configs() {
            check_properties(&cfg).map_err(|e| Error::Config(format!("{role}: {e}")))?;
        }
        Ok(flow)
    }

    fn client_configs(&self) -> Vec<(&'static str, rdkafka::ClientConfig)> {
        let c = &self.mirror.clients;
        vec![
            (
                "source consumer",
                self.source.config(
                    Role::ReplicationConsumer,
                    &[&c.source_all, &c.source_consumer],
                ),
            ),
            ("target producer", self.producer_config()),
            (
                "source admin",
                self.source
                    .config(Role::Admin, &[&c.source_all, &c.source_admin]),
            ),
            (
                "target admin",
                self.target
                    .config(Role::Admin, &[&c.target_all, &c.target_admin]),
            ),
            (
                "progress reader",
                self.target.config(Role::ProgressReader, &[&c.target_all]),
            ),
        ]
    }

    /// The progress reader's config: in exactly-once mode `read_committed` whatever the
    /// target's client settings say (progress of aborted transactions names records that
    /// are not there).
    fn progress_reader_config(&self) -> rdkafka::ClientConfig {
        let mut config = self
            .target
            .config(Role::ProgressReader, &[&self.mirror.clients.target_all]);
        if self.mirror.exactly_once.is_some() {
            config.set("isolation.level", "read_committed");
        }
        config
    }

    /// The replication producer's config: transactional in exactly-once mode.
    fn producer_config(&self) -> rdkafka::ClientConfig {
        let c = &self.mirror.clients;
        let mut config = self.target.config(
            Role::ReplicationProducer,
            &[&c.target_all, &c.target_producer],
        );
        if let Some(eos) = &self.mirror.exactly_once {
            crate::transactions::producer_config(&mut config, &eos.transactional_id);
        }
        config
    }

    fn admin(
        &self,
        factory: &ClientFactory,
        overrides: &[&kmirror_core::config::ClientProps],
    ) -> Result<Admin> {
        let cfg = factory.config(Role::Admin, overrides);
        let admin: AdminClient<ClusterContext> = cfg
            .create_with_context(ClusterContext::new(factory))
            .map_err(|e| Error::client("admin client", &e))?;
        Ok(Arc::new(admin))
    }

    /// Runs until `shutdown` is cancelled. Returns an error only for problems the operator
    /// must fix; cluster trouble (unreachable, refused credentials, missing permissions) is
    /// reported and retried.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        if !self.preflight(&shutdown).await? {
            return Ok(());
        }
        self.options
            .metrics
            .flow_started(self.mirror.source.as_str(), self.mirror.target.as_str());
        match self.provenance() {
            Some(rule) => tracing::info!(
                header = %rule.header,
                "copied records carry the origin header `{}: {}` (or keep the one they have); records whose origin is {} are not copied back",
                rule.header, rule.source, rule.target
            ),
            None => tracing::info!("records are copied without an origin header (provenance.header.enabled: false): a flow in the opposite direction would copy them back"),
        }
        loop {
            match self.run_with_new_clients(&shutdown).await {
                Err(Error::Restart(why)) => {
                    self.options.metrics.error(
                        self.mirror.source.as_str(),
                        self.mirror.target.as_str(),
                        "clients_restarted",
                    );
                    tracing::error!(
                        "{why}: starting the flow again with new clients in {}s",
                        RESTART_BACKOFF.as_secs()
                    );
                    if sleep_or_cancel(RESTART_BACKOFF, &shutdown).await {
                        return Ok(());
                    }
                }
                other => return other,
            }
        }
    }

    /// One run of the flow with clients of its own, until `shutdown` or an error.
    async fn run_with_new_clients(&self, shutdown: &CancellationToken) -> Result<()> {
        let c = &self.mirror.clients;
        let source_admin = self.admin(&self.source, &[&c.source_all, &c.source_admin])?;
        let target_admin = self.admin(&self.target, &[&c.target_all, &c.target_admin])?;
        // Probes, heartbeats, checkpoints and syncs run beside the flow (topic sync can block
        // for admin.timeout.ms when a cluster is down) and stop with it.
        let side_stop = shutdown.child_token();
        // The config and ACL sync starts after the first topic sync, so that its start-up plan
        // shows what remains to do rather than racing the creation of topics.
        let topics_synced = CancellationToken::new();
        let health = self.health_loop(
            Arc::clone(&source_admin),
            Arc::clone(&target_admin),
            side_stop.clone(),
        );
        // Scale-out: one replica at a time emits heartbeats and syncs configs and ACLs; every
        // replica checkpoints the partitions it copies (their maps are its own).
        let (heartbeat_admin, sync_source, sync_target) = (
            Arc::clone(&target_admin),
            Arc::clone(&source_admin),
            Arc::clone(&target_admin),
        );
        let heartbeats = self.leadership.run_while_leading(&side_stop, |stop| {
            self.heartbeats(Arc::clone(&heartbeat_admin), stop)
        });
        let checkpoints = self.checkpoints(Arc::clone(&target_admin), side_stop.clone());
        let target_sync = self.leadership.run_while_leading(&side_stop, |stop| {
            self.config_and_acl_sync(
                Arc::clone(&sync_source),
                Arc::clone(&sync_target),
                topics_synced.clone(),
                stop,
            )
        });
        let permissions = crate::permissions::run(
            Arc::clone(&self.mirror),
            Arc::clone(&source_admin),
            Arc::clone(&target_admin),
            Arc::clone(&self.options.metrics),
            Arc::clone(&self.options.connectivity),
            topics_synced.clone(),
            side_stop.clone(),
        );
        let main = async {
            let result = self
                .run_flow(source_admin, target_admin, &topics_synced, shutdown)
                .await;
            side_stop.cancel();
            result
        };
        // A side job waiting on a cluster that does not answer (a request with its own timeout,
        // on the blocking pool) is abandoned at the stop rather than awaited: the shutdown
        // never waits for it, and the request ends on its timeout.
        let (result, (), (), (), (), ()) = tokio::join!(
            main,
            until_stopped(&side_stop, health),
            until_stopped(&side_stop, heartbeats),
            until_stopped(&side_stop, checkpoints),
            until_stopped(&side_stop, target_sync),
            until_stopped(&side_stop, permissions)
        );
        result
    }

    async fn run_flow(
        &self,
        source_admin: Admin,
        target_admin: Admin,
        topics_synced: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let shutdown = shutdown.clone();
        let progress = &self.mirror.progress;
        let timeout = self.mirror.admin_timeout;
        // The progress topic and the offset-syncs topic are prepared side by side.
        let offset_syncs = async {
            let Some(os) = &self.mirror.offset_syncs else {
                return Ok(Some(None));
            };
            let admin = match os.location {
                SyncLocation::Source => &source_admin,
                SyncLocation::Target => &target_admin,
            };
            ensure_compacted_topic_retrying(
                admin,
                &os.topic,
                1,
                os.replication_factor,
                timeout,
                &shutdown,
            )
            .await
            .map(|p| p.map(Some))
        };
        // The first error (one the operator must fix) ends the wait for the other.
        let (prepared, syncs_prepared) = tokio::try_join!(
            ensure_compacted_topic_retrying(
                &target_admin,
                &progress.topic,
                progress.partitions,
                progress.replication_factor,
                timeout,
                &shutdown,
            ),
            offset_syncs
        )?;
        let (Some(prepared), Some(_)) = (prepared, syncs_prepared) else {
            return Ok(());
        };
        let progress_partitions = prepared.partitions;
        // A progress topic created just now holds nothing: reading it would only wait for
        // its end.
        let progress_empty = prepared.created;
        if progress_partitions != progress.partitions {
            tracing::info!(topic = %progress.topic, partitions = progress_partitions, "the progress topic exists with its own partition count; using it");
        }
        for factory in [&self.source, &self.target] {
            if let Some(not_after) = factory.security().client_cert_not_after {
                let secs = not_after
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                self.options
                    .metrics
                    .cert_expiry
                    .with_label_values(&[factory.cluster().alias.as_str()])
                    .set(secs);
            }
        }
        let sync = TopicSync::new(
            Arc::clone(&self.mirror),
            source_admin,
            target_admin,
            Arc::clone(&self.options.metrics),
        );
        let mut carried = Carried {
            initial: None,
            failing_since: None,
            membership: match &self.mirror.scale_out {
                Some(scale_out) => Some(self.join_group(scale_out)?),
                None => None,
            },
        };
        if let (true, Some(m)) = (self.standby(), &carried.membership) {
            // Only the leader partition matters: it copies every partition.
            m.subscribe(vec![self.mirror.progress.topic.clone()]);
        }
        let result = self
            .replicate(
                &sync,
                progress_partitions,
                progress_empty,
                &mut carried,
                topics_synced,
                &shutdown,
            )
            .await;
        if let Some(m) = carried.membership {
            m.close(CLIENT_CLOSE_WAIT).await;
        }
        result
    }

    /// Exactly-once mode with scale-out: only the replica that leads copies.
    fn standby(&self) -> bool {
        self.mirror.scale_out.is_some() && self.mirror.exactly_once.is_some()
    }

    /// Scale-out: joins the flow's group on the target.
    fn join_group(
        &self,
        scale_out: &kmirror_core::config::ScaleOut,
    ) -> Result<crate::ownership::Membership> {
        let (source, target) = (self.mirror.source.as_str(), self.mirror.target.as_str());
        let metrics = &self.options.metrics;
        crate::ownership::Membership::start(
            self.target
                .config(Role::ProgressReader, &[&self.mirror.clients.target_all]),
            ClusterContext::new(&self.target),
            crate::ownership::Settings {
                scale_out: scale_out.clone(),
                leader_topic: self.mirror.progress.topic.clone(),
                handover_timeout: self.options.shutdown_timeout,
                leadership: self.leadership.clone(),
                singleton_gauge: metrics.singleton_owner.with_label_values(&[source, target]),
                timed_out: metrics
                    .handovers
                    .with_label_values(&[source, target, "timed_out"]),
                readiness: (Arc::clone(&self.options.connectivity), self.mirror.name()),
            },
        )
    }

    /// Runs replicators one after the other (a new one after a failure) until shutdown.
    async fn replicate(
        &self,
        sync: &TopicSync,
        progress_partitions: i32,
        mut progress_empty: bool,
        carried: &mut Carried,
        topics_synced: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        loop {
            if self.standby() {
                // Exactly-once with scale-out: one replica copies (its transactional ids fence
                // any other), the others wait to take over.
                tracing::info!("scale-out, exactly-once: standing by until the group makes this replica the one that copies");
                tokio::select! {
                    () = self.leadership.until(true) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                tracing::info!("scale-out, exactly-once: this replica copies now");
            }
            match self
                .run_replicator(
                    sync,
                    Prepared {
                        partitions: progress_partitions,
                        created: std::mem::take(&mut progress_empty),
                    },
                    carried,
                    topics_synced,
                    shutdown,
                )
                .await
            {
                Ok(()) if self.standby() && !shutdown.is_cancelled() => {}
                Ok(()) => return Ok(()),
                // Another replica took over after this one stopped leading: stand by again.
                Err(Error::Fenced(why)) if self.standby() && !self.leadership.is_leader() => {
                    tracing::info!(
                        "scale-out, exactly-once: fenced by the replica that copies now ({why})"
                    );
                }
                Err(e)
                    if e.is_user_error() || matches!(e, Error::Restart(_) | Error::Fenced(_)) =>
                {
                    return Err(e)
                }
                Err(e) => {
                    self.options.metrics.error(
                        self.mirror.source.as_str(),
                        self.mirror.target.as_str(),
                        "replicator_restart",
                    );
                    tracing::error!(
                        "replication stopped: {e}; restarting from the stored progress in {}s",
                        RESTART_BACKOFF.as_secs()
                    );
                    if sleep_or_cancel(RESTART_BACKOFF, shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits until both clusters answer. Unreachable clusters, and TLS or authentication
    /// failures, are reported (log line, `/readyz`, metrics) and retried; before each retry the
    /// certificates, keys and passwords are read again, so that Secrets fixed or rotated in place
    /// are picked up without a restart. Returns `false` on shutdown.
    async fn preflight(&mut self, shutdown: &CancellationToken) -> Result<bool> {
        for source_side in [true, false] {
            let mut reported: Option<(String, tokio::time::Instant)> = None;
            loop {
                let c = &self.mirror.clients;
                let (factory, cfg) = if source_side {
                    let f = self.source.clone();
                    let cfg = f.config(Role::Admin, &[&c.source_all, &c.source_admin]);
                    (f, cfg)
                } else {
                    let f = self.target.clone();
                    let cfg = f.config(Role::Admin, &[&c.target_all, &c.target_admin]);
                    (f, cfg)
                };
                let alias = factory.cluster().alias.clone();
                let f = factory.clone();
                let outcome =
                    tokio::task::spawn_blocking(move || probe(&f, &cfg, PREFLIGHT_TIMEOUT))
                        .await
                        .map_err(|e| Error::Internal(format!("probe: {e}")))?;
                let (kind, message) = match outcome {
                    Ok(()) => {
                        tracing::info!(cluster = %alias, "connected");
                        self.set_health(alias.as_str(), Ok(()));
                        break;
                    }
                    Err((_, Some(diagnosis))) => (diagnosis.kind, diagnosis.message),
                    Err((e, None)) => (
                        "cluster_unreachable",
                        format!(
                            "cluster {alias} is unreachable at {} ({e})",
                            factory.cluster().bootstrap_servers
                        ),
                    ),
                };
                self.set_health(alias.as_str(), Err(message.clone()));
                self.options.metrics.error(
                    self.mirror.source.as_str(),
                    self.mirror.target.as_str(),
                    kind,
                );
                let repeat = reported.as_ref().is_none_or(|(last, at)| {
                    *last != message || at.elapsed() >= REPORT_AGAIN_AFTER
                });
                if repeat {
                    tracing::error!(cluster = %alias, "{message}; nothing is copied until this is fixed; retrying every {}s", RESTART_BACKOFF.as_secs());
                    reported = Some((message, tokio::time::Instant::now()));
                }
                if sleep_or_cancel(RESTART_BACKOFF, shutdown).await {
                    return Ok(false);
                }
                self.reload_security(source_side);
            }
        }
        Ok(true)
    }

    /// Reads a cluster's certificates, keys and password files again.
    fn reload_security(&mut self, source_side: bool) {
        let factory = if source_side {
            &mut self.source
        } else {
            &mut self.target
        };
        match check_cluster(factory.cluster(), std::time::SystemTime::now()) {
            Ok(security) => *factory = factory.with_security(security),
            Err(problems) => {
                let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
                tracing::error!(cluster = %factory.cluster().alias, "cannot read the security files again: {}; retrying with the ones read before", shown.join("; "));
            }
        }
    }

    async fn run_replicator(
        &self,
        sync: &TopicSync,
        progress_topic: Prepared,
        carried: &mut Carried,
        topics_synced: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let Carried {
            initial,
            failing_since,
            membership,
        } = carried;
        let c = &self.mirror.clients;
        let progress = &self.mirror.progress;
        let (progress_partitions, progress_empty) =
            (progress_topic.partitions, progress_topic.created);
        let provenance = self.provenance();
        let settings = ReplicatorSettings {
            source: self.mirror.source.clone(),
            flow: self.mirror.name(),
            progress_topic: progress.topic.clone(),
            progress_partitions,
            target: self.mirror.target.clone(),
            metrics: Arc::clone(&self.options.metrics),
            maps: Arc::clone(&self.maps),
            flush_interval: progress.flush_interval,
            // The replicator's own deadline leaves a fifth of the time for closing the clients
            // before the process exits at the shutdown timeout.
            shutdown_timeout: self.options.shutdown_timeout.mul_f64(0.8),
            stall_after: self.options.stall_after,
            producers: self.options.producers,
            wedged_after: PRODUCER_WEDGED_AFTER,
            // In exactly-once mode too: committed copies beyond the stored progress are left
            // by an at-least-once run before, or by a partition released and assigned again.
            tails: Some(crate::tail::Readers {
                source: self.source.config(
                    Role::ReplicationConsumer,
                    &[&c.source_all, &c.source_consumer],
                ),
                target: self.progress_reader_config(),
                provenance: provenance.clone(),
            }),
            provenance,
            transactions: self.mirror.exactly_once.as_ref().map(|e| {
                crate::transactions::Transactions {
                    transactional_id: e.transactional_id.clone(),
                    commit_interval: e.commit_interval,
                    poisoned: Arc::clone(&self.poisoned),
                }
            }),
        };
        let replicator = Replicator::build(
            settings,
            &self.source.config(
                Role::ReplicationConsumer,
                &[&c.source_all, &c.source_consumer],
            ),
            &self.producer_config(),
            ClusterContext::new(&self.target),
            Arc::clone(&self.status),
            self.sync_target(),
        )?;
        // Exactly-once mode: earlier instances are fenced (their open transaction aborted)
        // before the progress is read, so that nothing they commit is missed.
        let replicator = if self.mirror.exactly_once.is_some() {
            let stop = shutdown.clone();
            let ready = tokio::task::spawn_blocking(move || {
                // On failure the replicator is dropped here: closing its clients may block.
                replicator.init_transactions(&stop).map(|()| replicator)
            })
            .await
            .map_err(|e| Error::Internal(format!("initializing transactions: {e}")))?;
            match ready {
                Ok(r) => r,
                Err(_) if shutdown.is_cancelled() => return Ok(()),
                Err(e) => return Err(e),
            }
        } else {
            replicator
        };
        // Read once the replicator's clients exist, so that they connect (and the producer gets
        // its id) meanwhile.
        let stored = if progress_empty {
            crate::progress_store::Stored::default()
        } else {
            self.read_progress().await?
        };
        tracing::info!(partitions = stored.positions.len(), maps = stored.maps.len(), topic = %progress.topic, "read stored progress");

        let (tx, rx) = mpsc::channel();
        // Cancelled at shutdown, or when this run ends for another reason (clients that stopped
        // answering): the replicator then drains and reports like at a shutdown.
        let stop_replicator = shutdown.child_token();
        let token = stop_replicator.clone();
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        let mut handle = tokio::task::spawn_blocking(move || {
            let (outcome, replicator) = replicator.run(&rx, &token);
            let _ = done_tx.send(outcome);
            // Closing the clients: the source consumer leaves its group, which waits on the
            // source if it does not answer.
            drop(replicator);
        });

        let mut plan = Assigner::default();
        let mut stored = stored;
        let refresh = self.mirror.refresh_topics.unwrap_or(Duration::MAX);
        let mut first = true;
        // Scale-out: the last topic refresh, applied again to the partitions the group gives.
        let mut last_round: Option<crate::topics::SyncRound> = None;
        let owned_gauge = self
            .options
            .metrics
            .owned_partitions
            .with_label_values(&[self.mirror.source.as_str(), self.mirror.target.as_str()]);

        let mut next_sync = tokio::time::Instant::now();
        loop {
            let wait = if first {
                Duration::ZERO
            } else {
                next_sync.saturating_duration_since(tokio::time::Instant::now())
            };
            first = false;
            let mut event = None;
            tokio::select! {
                () = self.leadership.until(false), if self.standby() && !stop_replicator.is_cancelled() => {
                    tracing::info!("scale-out, exactly-once: no longer the replica that copies: committing what is open and stopping");
                    stop_replicator.cancel();
                }
                e = async {
                    match membership.as_mut() {
                        Some(m) => m.next().await,
                        None => std::future::pending().await,
                    }
                } => event = Some(e),

                outcome = &mut done => {
                    let Ok(outcome) = outcome else {
                        // The thread ended without a report: it panicked.
                        return match handle.await {
                            Err(e) => Err(Error::Internal(format!("replicator thread: {e}"))),
                            Ok(()) => Err(Error::Internal("replicator thread ended without a report".into())),
                        };
                    };
                    let report = match outcome {
                        Ok(report) => report,
                        Err(e) => {
                            // Restarted next: the old clients are closed first (as ever), so
                            // that nothing of theirs lands after the new replicator's records.
                            let _ = handle.await;
                            return Err(e);
                        }
                    };
                    tracing::info!(copied = report.copied, clean = report.clean, "replicator stopped");
                    if !report.clean {
                        self.options.unclean_stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if tokio::time::timeout(CLIENT_CLOSE_WAIT, &mut handle).await.is_err() {
                        // Its progress is stored; what is left is a goodbye nobody hears.
                        tracing::warn!("the replication clients did not close within {}s (a cluster does not answer); not waiting for them", CLIENT_CLOSE_WAIT.as_secs());
                    }
                    return Ok(());
                }
                () = tokio::time::sleep(wait), if refresh != Duration::MAX || wait == Duration::ZERO => {
                    next_sync = tokio::time::Instant::now() + refresh.min(Duration::from_secs(86_400));
                    let hold = plan.hold(&self.status);
                    let codec_fixed = self.codec_fixed();
                    // The codecs of source topics not seen before are looked up while the
                    // target topics are created, so that the copy starts no later.
                    let early_codecs = async {
                        if codec_fixed {
                            return HashMap::new();
                        }
                        let Ok(topics) = sync.replicated().await else {
                            return HashMap::new();
                        };
                        let unknown: Vec<(String, i32)> = topics
                            .into_iter()
                            .filter(|(t, _)| !plan.codecs.contains_key(t))
                            .collect();
                        self.decide_codecs(sync, &unknown, shutdown).await
                    };
                    let (synced, mut codecs) = tokio::select! {
                        both = async { tokio::join!(sync.sync(&hold), early_codecs) } => both,
                        // A refresh waiting on a cluster that does not answer is abandoned
                        // (its requests end on their own timeouts); the replicator's report
                        // comes next.
                        () = shutdown.cancelled() => continue,
                    };
                    topics_synced.cancel();
                    match synced {
                        Ok(round) => {
                            *failing_since = None;
                            if initial.is_none() {
                                *initial = Some(round.partitions.iter().map(|r| r.source.clone()).collect());
                            }
                            // The limits of target topics about to get partitions: batches
                            // must fit them.
                            let wanted = plan.limits_wanted(&round);
                            if !wanted.is_empty() {
                                let timeout = self.mirror.admin_timeout.min(LIST_TIMEOUT);
                                let described = tokio::select! {
                                    d = describe_topic_configs(&sync.target, &wanted, timeout) => d,
                                    () = shutdown.cancelled() => continue,
                                };
                                plan.learn_limits(wanted, described);
                            }
                            if !codec_fixed {
                                let wanted = plan.codecs_wanted(&round);
                                let missing: Vec<(String, i32)> = wanted
                                    .iter()
                                    .filter(|(t, _)| !codecs.contains_key(t))
                                    .cloned()
                                    .collect();
                                if !missing.is_empty() {
                                    let more = tokio::select! {
                                        more = self.decide_codecs(sync, &missing, shutdown) => more,
                                        () = shutdown.cancelled() => continue,
                                    };
                                    codecs.extend(more);
                                }
                                let decided = wanted
                                    .into_iter()
                                    .filter_map(|(t, _)| codecs.remove_entry(&t))
                                    .collect();
                                plan.learn_codecs(decided, &self.compression_level());
                            }
                            let round = match membership.as_ref() {
                                Some(_) if self.standby() => round,
                                Some(m) => {
                                    let mut topics: Vec<String> = round
                                        .partitions
                                        .iter()
                                        .map(|r| r.target_topic.to_string())
                                        .collect();
                                    topics.push(progress.topic.clone());
                                    m.subscribe(topics);
                                    last_round = Some(round.clone());
                                    owned_only(round, &m.owned)
                                }
                                None => round,
                            };
                            for command in plan.apply(round, &mut stored, initial.as_ref(), self) {
                                // A send error means the replicator ended; the next loop turn reports why.
                                let _ = tx.send(command);
                            }
                            if membership.is_some() {
                                owned_gauge.set(plan.assigned.len() as f64);
                            }
                        }
                        Err(e) => {
                            let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                            if since.elapsed() >= CLIENTS_STUCK_AFTER && self.clusters_answer().await {
                                // librdkafka clients can stay stuck for good after a broker was
                                // fenced or killed, while new ones connect at once.
                                let why = format!(
                                    "every topic refresh for {}s failed ({e}) although both clusters answer new clients",
                                    since.elapsed().as_secs()
                                );
                                stop_replicator.cancel();
                                if let Ok(Ok(Ok(report))) = tokio::time::timeout(
                                    self.options.shutdown_timeout,
                                    &mut done,
                                )
                                .await
                                .map(|r| r.map_err(|_| ()))
                                {
                                    tracing::info!(copied = report.copied, clean = report.clean, "replicator stopped");
                                }
                                let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, &mut handle).await;
                                return Err(Error::Restart(why));
                            }
                            tracing::warn!("topic refresh failed: {e}; retrying in {}s", refresh.as_secs());
                        }
                    }
                }
            }
            let (Some(event), Some(m)) = (event, membership.as_mut()) else {
                continue;
            };
            match event {
                crate::ownership::Event::Assigned(list) => {
                    tracing::info!(
                        partitions = list.len(),
                        "scale-out: the group gave this replica partitions"
                    );
                    m.owned.extend(list);
                    // Their last owner stored its final progress before letting them go.
                    stored = self.read_progress().await?;
                    if let Some(round) = &last_round {
                        let round = owned_only(round.clone(), &m.owned);
                        for command in plan.apply(round, &mut stored, initial.as_ref(), self) {
                            let _ = tx.send(command);
                        }
                    }
                }
                crate::ownership::Event::Revoked { partitions, done } => {
                    tracing::info!(
                        partitions = partitions.len(),
                        "scale-out: the group moves partitions to another replica"
                    );
                    for p in &partitions {
                        m.owned.remove(p);
                    }
                    let revoked: HashSet<(&str, i32)> =
                        partitions.iter().map(|(t, p)| (t.as_str(), *p)).collect();
                    let policy = &self.mirror.policy;
                    let leaving: Vec<TopicPartition> = plan
                        .assigned
                        .iter()
                        .filter(|tp| {
                            let remote = policy.format_remote_topic(&self.mirror.source, &tp.topic);
                            revoked.contains(&(remote.as_str(), tp.partition))
                        })
                        .cloned()
                        .collect();
                    for tp in &leaving {
                        plan.assigned.remove(tp);
                    }
                    // Not sent (the replicator ended): `done` is dropped, and the group goes on.
                    let _ = tx.send(Command::HandOver(leaving, done));
                }
            }
            owned_gauge.set(plan.assigned.len() as f64);
        }
    }

    /// Reads the stored progress of every partition of the flow.
    async fn read_progress(&self) -> Result<crate::progress_store::Stored> {
        let reader = self.progress_reader_config();
        let (topic, source_alias, timeout) = (
            self.mirror.progress.topic.clone(),
            self.mirror.source.to_string(),
            self.mirror.admin_timeout,
        );
        tokio::task::spawn_blocking(move || {
            crate::progress_store::read(&reader, &topic, &source_alias, timeout)
        })
        .await
        .map_err(|e| Error::Internal(format!("progress reader: {e}")))?
    }
}

/// What one replicator run leaves to the next.
struct Carried {
    /// Partitions that existed at the first topic sync: only these start where
    /// `auto.offset.reset` says when they have no stored progress.
    initial: Option<HashSet<TopicPartition>>,
    /// Since when every topic refresh has failed.
    failing_since: Option<tokio::time::Instant>,
    /// Scale-out: the group membership, which outlives replicator restarts (a restart is no
    /// reason to move partitions) and is left once the final progress is stored.
    membership: Option<crate::ownership::Membership>,
}

/// Scale-out: the partitions of `round` whose target partition this replica owns.
fn owned_only(
    mut round: crate::topics::SyncRound,
    owned: &HashSet<crate::ownership::TargetPartition>,
) -> crate::topics::SyncRound {
    round.partitions.retain(|r| {
        // Looked up without building a key per partition.
        owned.contains(&(r.target_topic.to_string(), r.source.partition))
    });
    round
}

/// Turns topic refreshes into commands for the replicator: new partitions assigned where their
/// stored progress says, partitions of deleted topics released, and partitions of topics that
/// were deleted and created again (a new topic id on either side) copied again from the source's
/// beginning.
#[derive(Default)]
struct Assigner {
    assigned: HashSet<TopicPartition>,
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
    codecs: HashMap<String, Codec>,
}

/// A topic that disappeared from the source listing.
struct Gone {
    ids: TopicIds,
    progress: HashMap<i32, i64>,
}

/// How long every topic refresh may fail while both clusters answer new clients, before the
/// flow starts again with new clients.
const CLIENTS_STUCK_AFTER: Duration = Duration::from_secs(30);

/// How long the target producer may acknowledge nothing, with records in flight and a leader
/// named for them, before it is replaced (see [`ReplicatorSettings::wedged_after`]).
const PRODUCER_WEDGED_AFTER: Duration = Duration::from_secs(60);

/// The codec a source topic's `compression.type` names, if any.
fn configured_codec(entries: Option<&[kmirror_core::topic_config::ConfigEntry]>) -> Option<Codec> {
    crate::codec::from_topic_config(
        entries?
            .iter()
            .find(|e| e.name == "compression.type")
            .and_then(|e| e.value.as_deref()),
    )
}

/// A topic's target codec: its `compression.type` where that names one, else the codec seen
/// in its newest batches, else none (no records to look at).
fn choose_codec(
    entries: Option<&[kmirror_core::topic_config::ConfigEntry]>,
    probed: Option<&Codec>,
    undetermined: bool,
) -> (Codec, CodecSource) {
    match (configured_codec(entries), probed) {
        (Some(c), _) => (c, CodecSource::TopicConfig),
        (None, Some(c)) => (*c, CodecSource::Batches),
        (None, None) if undetermined => (Codec::None, CodecSource::Undetermined),
        (None, None) => (Codec::None, CodecSource::Empty),
    }
}

/// Longest look at the source's newest batches for their codec.
const CODEC_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for records sent to a deleted target topic to drain before it is created again.
const TARGET_DRAIN_WAIT: Duration = Duration::from_secs(60);

impl Assigner {
    /// Source topics whose target topic must not be created if missing: every topic being
    /// copied (a missing target topic was deleted), except those whose partitions have been
    /// reset and drained since.
    fn hold(&self, status: &StatusBoard) -> HashSet<String> {
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
    fn limits_wanted(&self, round: &SyncRound) -> Vec<String> {
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
    fn learn_limits(
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

    fn limit(&self, target_topic: &str) -> Option<usize> {
        self.limits.get(target_topic).copied().flatten()
    }

    fn codec(&self, source_topic: &str) -> Option<Codec> {
        self.codecs.get(source_topic).copied()
    }

    /// Source topics (with their partition counts) whose codec must be learned before their
    /// partitions are assigned: never learned, or created again.
    fn codecs_wanted(&self, round: &SyncRound) -> Vec<(String, i32)> {
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

    /// Remembers the codecs decided for topics (see [`choose_codec`]).
    /// One line per topic for a few topics; one line per codec and reason for many (a first
    /// start with thousands of topics).
    fn learn_codecs(&mut self, decided: BTreeMap<String, (Codec, CodecSource)>, level: &str) {
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

    fn apply(
        &mut self,
        round: crate::topics::SyncRound,
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

impl Flow {
    /// Whether the operator set the producer's codec (then every topic uses it).
    fn codec_fixed(&self) -> bool {
        let cfg = self.producer_config();
        cfg.get("compression.type").is_some() || cfg.get("compression.codec").is_some()
    }

    /// The producer's `compression.level`, as logged beside each topic's codec.
    fn compression_level(&self) -> String {
        self.producer_config()
            .get("compression.level")
            .filter(|l| l.trim() != "-1")
            .map_or_else(|| "the codec's default".to_owned(), str::to_owned)
    }

    /// The source configs of `topics` and the codecs of their newest batches (for the topics
    /// whose `compression.type` names no codec).
    async fn probe_codecs(
        &self,
        sync: &TopicSync,
        topics: &[(String, i32)],
        shutdown: &CancellationToken,
    ) -> (
        Vec<std::result::Result<Vec<kmirror_core::topic_config::ConfigEntry>, String>>,
        crate::codec::Probed,
    ) {
        let timeout = self.mirror.admin_timeout.min(LIST_TIMEOUT);
        let names: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
        let configs = describe_topic_configs(&sync.source, &names, timeout).await;
        let unknown: Vec<(String, i32)> = topics
            .iter()
            .zip(&configs)
            .filter(|(_, c)| configured_codec(c.as_ref().ok().map(Vec::as_slice)).is_none())
            .map(|(t, _)| t.clone())
            .collect();
        if unknown.is_empty() {
            return (configs, crate::codec::Probed::default());
        }
        let unknown_names: HashSet<String> = unknown.iter().map(|(t, _)| t.clone()).collect();
        let c = &self.mirror.clients;
        let config = self
            .source
            .config(Role::ProgressReader, &[&c.source_all, &c.source_consumer]);
        let stop = shutdown.clone();
        let probed = tokio::task::spawn_blocking(move || {
            crate::codec::probe(&config, &unknown, CODEC_PROBE_TIMEOUT, &stop)
        })
        .await;
        let probed = match probed {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!("cannot look at the source's batches ({e}): topics without a compression.type are written uncompressed");
                crate::codec::Probed {
                    codecs: HashMap::new(),
                    undetermined: unknown_names,
                }
            }
            Err(e) => {
                tracing::warn!("codec probe: {e}");
                crate::codec::Probed {
                    codecs: HashMap::new(),
                    undetermined: unknown_names,
                }
            }
        };
        (configs, probed)
    }

    /// The codec each of `topics` gets (see [`choose_codec`]).
    async fn decide_codecs(
        &self,
        sync: &TopicSync,
        topics: &[(String, i32)],
        shutdown: &CancellationToken,
    ) -> HashMap<String, (Codec, CodecSource)> {
        if topics.is_empty() {
            return HashMap::new();
        }
        let (configs, probed) = self.probe_codecs(sync, topics, shutdown).await;
        topics
            .iter()
            .zip(configs)
            .map(|((topic, _), config)| {
                (
                    topic.clone(),
                    choose_codec(
                        config.ok().as_deref(),
                        probed.codecs.get(topic),
                        probed.undetermined.contains(topic),
                    ),
                )
            })
            .collect()
    }

    fn set_health(&self, alias: &str, outcome: std::result::Result<(), String>) {
        let up = outcome.is_ok();
        self.options.connectivity.set(alias, outcome);
        self.options
            .metrics
            .cluster_up
            .with_label_values(&[alias])
            .set(if up { 1.0 } else { 0.0 });
    }

    /// Where offset syncs go, if enabled: a standalone idempotent producer on the cluster that
    /// holds the topic, as MM2 does.
    fn sync_target(&self) -> Option<SyncTarget> {
        let os = self.mirror.offset_syncs.as_ref()?;
        let c = &self.mirror.clients;
        let (factory, overrides) = match os.location {
            SyncLocation::Source => (&self.source, &c.source_all),
            SyncLocation::Target => (&self.target, &c.target_all),
        };
        Some(SyncTarget {
            producer: factory.config(Role::ReplicationProducer, &[overrides]),
            context: ClusterContext::new(factory),
            topic: os.topic.clone(),
            lag_max: os.lag_max,
        })
    }

    /// Emits checkpoints (and syncs group offsets) until `stop`, if enabled.
    async fn checkpoints(&self, target_admin: Admin, stop: CancellationToken) {
        let Some(settings) = self.mirror.checkpoints.clone() else {
            return;
        };
        let c = &self.mirror.clients;
        let job = crate::checkpoint::CheckpointJob {
            mirror: Arc::clone(&self.mirror),
            settings,
            source: self
                .source
                .config(Role::Admin, &[&c.source_all, &c.source_admin]),
            target: self
                .target
                .config(Role::Admin, &[&c.target_all, &c.target_admin]),
            reader: self.target.config(Role::ProgressReader, &[&c.target_all]),
            producer: self.target.config(
                Role::ReplicationProducer,
                &[&c.target_all, &c.target_producer],
            ),
            context: ClusterContext::new(&self.target),
            target_admin,
            maps: Arc::clone(&self.maps),
            metrics: Arc::clone(&self.options.metrics),
            per_partition_metrics: self.options.per_partition_checkpoint_metrics,
        };
        job.run(stop).await;
    }

    /// Logs the start-up plan, then syncs topic configs and ACLs until `stop`.
    async fn config_and_acl_sync(
        &self,
        source_admin: Admin,
        target_admin: Admin,
        topics_synced: CancellationToken,
        stop: CancellationToken,
    ) {
        if !before_stop(topics_synced, &stop).await {
            return;
        }
        let sync = TopicSync::new(
            Arc::clone(&self.mirror),
            source_admin,
            target_admin,
            Arc::clone(&self.options.metrics),
        );
        sync.run_config_and_acl_sync(self.group_lister(), stop)
            .await;
    }

    /// A source client config for listing consumer groups, when checkpoints are on.
    fn group_lister(&self) -> Option<rdkafka::ClientConfig> {
        self.mirror.checkpoints.as_ref()?;
        let c = &self.mirror.clients;
        Some(
            self.source
                .config(Role::Admin, &[&c.source_all, &c.source_admin]),
        )
    }

    /// What the next sync would do (`kmirror plan`): connects to both clusters and changes
    /// nothing.
    pub async fn plan(&self) -> Result<kmirror_core::plan::FlowPlan> {
        let c = &self.mirror.clients;
        for (factory, overrides) in [
            (&self.source, [&c.source_all, &c.source_admin]),
            (&self.target, [&c.target_all, &c.target_admin]),
        ] {
            let (f, conf) = (factory.clone(), factory.config(Role::Admin, &overrides));
            let outcome = tokio::task::spawn_blocking(move || probe(&f, &conf, PREFLIGHT_TIMEOUT))
                .await
                .map_err(|e| Error::Internal(format!("probe: {e}")))?;
            match outcome {
                Ok(()) => {}
                Err((_, Some(diagnosis))) => return Err(Error::Config(diagnosis.message)),
                Err((e, None)) => {
                    return Err(Error::Retriable(format!(
                        "cannot reach {} at {}: {e}",
                        factory.cluster().alias,
                        factory.cluster().bootstrap_servers
                    )))
                }
            }
        }
        let sync = TopicSync::new(
            Arc::clone(&self.mirror),
            self.admin(&self.source, &[&c.source_all, &c.source_admin])?,
            self.admin(&self.target, &[&c.target_all, &c.target_admin])?,
            Arc::clone(&self.options.metrics),
        );
        let mut plan = sync.plan(self.group_lister()).await?;
        if let Some(eos) = &self.mirror.exactly_once {
            plan.notes.push(format!(
                "exactly-once mode: records and their progress are committed together every {} ms in transactions of `{}` (read_committed consumers on the target see each record once)",
                eos.commit_interval.as_millis(),
                eos.transactional_id
            ));
        }
        let level = self.compression_level();
        if self.codec_fixed() {
            let cfg = self.producer_config();
            let codec = cfg
                .get("compression.type")
                .or_else(|| cfg.get("compression.codec"))
                .unwrap_or("none");
            plan.notes.push(format!(
                "target compression: every topic's batches use {codec} (level: {level}), as the producer's compression.type says"
            ));
        } else {
            let topics = sync.replicated().await?;
            let decided: BTreeMap<String, (Codec, CodecSource)> = self
                .decide_codecs(&sync, &topics, &CancellationToken::new())
                .await
                .into_iter()
                .collect();
            for (topic, (codec, from)) in decided {
                plan.compression.push(kmirror_core::plan::TopicCompression {
                    topic,
                    codec: codec.name().to_owned(),
                    level: level.clone(),
                    from: from.describe().to_owned(),
                });
            }
        }
        Ok(plan)
    }

    /// Emits heartbeats until `stop`, if enabled.
    async fn heartbeats(&self, target_admin: Admin, stop: CancellationToken) {
        let Some(settings) = self.mirror.heartbeats.clone() else {
            return;
        };
        let c = &self.mirror.clients;
        let producer = self.target.config(
            Role::ReplicationProducer,
            &[&c.target_all, &c.target_producer],
        );
        crate::heartbeat::run(
            Arc::clone(&self.mirror),
            settings,
            producer,
            ClusterContext::new(&self.target),
            target_admin,
            Arc::clone(&self.options.metrics),
            stop,
        )
        .await;
    }

    /// Probes both clusters every [`HEALTH_INTERVAL`] until `stop`.
    async fn health_loop(&self, source: Admin, target: Admin, stop: CancellationToken) {
        let mut tick = crate::every(HEALTH_INTERVAL);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (s, t) = tokio::join!(
                crate::topics::cluster_answers(&source, HEALTH_INTERVAL),
                crate::topics::cluster_answers(&target, HEALTH_INTERVAL)
            );
            // The long-lived admin client can sit on a connection that went stale while the
            // cluster was frozen or away: a failed probe is confirmed with a fresh client.
            let (s_up, t_up) = tokio::join!(
                self.confirm_down(true, s.is_ok()),
                self.confirm_down(false, t.is_ok())
            );
            for (alias, admin, up) in [
                (&self.mirror.source, &source, s_up),
                (&self.mirror.target, &target, t_up),
            ] {
                let context = admin.inner().context();
                let outcome = if up {
                    context.clear_diagnosis();
                    Ok(())
                } else {
                    let (kind, reason) = context.diagnosis().map_or_else(
                        || {
                            (
                                "cluster_unreachable",
                                format!("cluster {alias} is unreachable"),
                            )
                        },
                        |d| (d.kind, d.message),
                    );
                    self.options.metrics.error(
                        self.mirror.source.as_str(),
                        self.mirror.target.as_str(),
                        kind,
                    );
                    Err(reason)
                };
                self.set_health(alias.as_str(), outcome);
            }
        }
    }
}

impl Flow {
    /// Whether both clusters answer new clients.
    async fn clusters_answer(&self) -> bool {
        let (s, t) = tokio::join!(
            self.confirm_down(true, false),
            self.confirm_down(false, false)
        );
        s && t
    }

    /// Whether a cluster whose admin probe said `up` is up: a failed probe is tried again
    /// with a new client (a new connection).
    async fn confirm_down(&self, source_side: bool, up: bool) -> bool {
        if up {
            return true;
        }
        let c = &self.mirror.clients;
        let (factory, cfg) = if source_side {
            let cfg = self
                .source
                .config(Role::Admin, &[&c.source_all, &c.source_admin]);
            (self.source.clone(), cfg)
        } else {
            let cfg = self
                .target
                .config(Role::Admin, &[&c.target_all, &c.target_admin]);
            (self.target.clone(), cfg)
        };
        tokio::task::spawn_blocking(move || probe(&factory, &cfg, HEALTH_INTERVAL).is_ok())
            .await
            .unwrap_or(false)
    }
}

/// Waits for `event`; `false` if `stop` comes first.
async fn before_stop(event: CancellationToken, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = event.cancelled() => true,
    }
}

/// Sleeps, or returns `true` early if `shutdown` is cancelled.
async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = shutdown.cancelled() => true,
    }
}

impl Flow {
    /// `S->T`.
    pub fn name(&self) -> String {
        self.mirror.name()
    }

    /// The flow's origin-header rule (see [`kmirror_core::provenance`]).
    fn provenance(&self) -> Option<kmirror_core::provenance::Provenance> {
        self.mirror.provenance.as_ref().map(|header| {
            kmirror_core::provenance::Provenance::new(
                header.clone(),
                self.mirror.source.clone(),
                self.mirror.target.clone(),
            )
        })
    }
}
