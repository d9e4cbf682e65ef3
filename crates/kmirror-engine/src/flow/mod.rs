//! One mirror end to end: start-up checks, the progress topic, the topic refresh loop and the
//! supervision of the replicator thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use kmirror_core::config::{Config, Mirror, SyncLocation};
use kmirror_core::{ClusterAlias, TopicPartition};
use rdkafka::admin::AdminClient;
use tokio_util::sync::CancellationToken;

use crate::client::{check_properties, probe, ClientFactory, ClusterContext, Role};
use crate::codec::{Codec, CodecSource};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::replicator::{Command, Replicator, ReplicatorSettings, SyncTarget};
use crate::security::{check_cluster, ClusterSecurity};
use crate::status::{Connectivity, StatusBoard};
use crate::topics::{
    describe_topic_configs, ensure_compacted_topic_retrying, Admin, Prepared, TopicSync,
    LIST_TIMEOUT,
};

mod assign;

mod codecs;
mod health;

use assign::{owned_only, Assigner};

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
    /// The topic discovery's newest listings, which the config sync reuses.
    listings: Arc<crate::topics::Listings>,
    /// Blocking tasks that close clients whose answers were already used (see
    /// [`crate::codec::probe_then`]), awaited when the flow's clients stop.
    closing: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
            listings: Arc::default(),
            closing: std::sync::Mutex::default(),
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
        self.closed().await;
        result
    }

    /// The flow's topic sync through these admin clients, sharing the flow's listings.
    fn topic_sync(&self, source_admin: Admin, target_admin: Admin) -> TopicSync {
        TopicSync::new(
            Arc::clone(&self.mirror),
            source_admin,
            target_admin,
            Arc::clone(&self.options.metrics),
        )
        .sharing(Arc::clone(&self.listings))
    }

    /// Keeps `task`, a blocking task closing a client, to be awaited by [`Self::closed`].
    fn close_later(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut closing) = self.closing.lock() {
            closing.retain(|t| !t.is_finished());
            closing.push(task);
        }
    }

    /// Waits for the clients being closed, at most [`CLIENT_CLOSE_WAIT`] in all (a close that
    /// waits on a cluster that does not answer ends on its own timeout).
    async fn closed(&self) {
        let tasks = self
            .closing
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, all).await;
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
        let sync = self.topic_sync(source_admin, target_admin);
        let (source_admin, target_admin) = (&sync.source, &sync.target);
        // The progress topic and the offset-syncs topic are prepared side by side.
        let offset_syncs = async {
            let Some(os) = &self.mirror.offset_syncs else {
                return Ok(Some(None));
            };
            let admin = match os.location {
                SyncLocation::Source => source_admin,
                SyncLocation::Target => target_admin,
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
        // The codecs of the source's topics are looked up meanwhile: at a start the lookup
        // (a consumer reading the newest batches) takes longer than the first topic sync, and
        // the copy of a topic waits for its codec.
        let codecs = async {
            // (A listing waits up to its timeout for a source that does not answer.)
            Ok(tokio::select! {
                codecs = self.replicated_codecs(&sync, |_| false, &shutdown) => codecs,
                () = shutdown.cancelled() => HashMap::new(),
            })
        };
        // The first error (one the operator must fix) ends the wait for the others.
        let (prepared, syncs_prepared, codecs) = tokio::try_join!(
            ensure_compacted_topic_retrying(
                target_admin,
                &progress.topic,
                progress.partitions,
                progress.replication_factor,
                timeout,
                &shutdown,
            ),
            offset_syncs,
            codecs
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
        let mut carried = Carried {
            initial: None,
            failing_since: None,
            last_round: None,
            codecs,
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

    /// Scale-out: how many partitions this replica copies, in the gauge and `/readyz`.
    fn publish_owned(&self, gauge: &prometheus::Gauge, owned: usize) {
        #[allow(clippy::cast_precision_loss)]
        gauge.set(owned as f64);
        self.options
            .connectivity
            .update_role(&self.mirror.name(), |r| {
                r.owned = owned;
                r.standby_mode = self.standby();
            });
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
                self.publish_owned(
                    &self.options.metrics.owned_partitions.with_label_values(&[
                        self.mirror.source.as_str(),
                        self.mirror.target.as_str(),
                    ]),
                    0,
                );
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
                        // A standby may run its first replicator long after the topic was
                        // created, with progress another replica committed meanwhile.
                        created: std::mem::take(&mut progress_empty) && !self.standby(),
                    },
                    carried,
                    topics_synced,
                    shutdown,
                )
                .await
            {
                Ok(()) if self.standby() && !shutdown.is_cancelled() => {}
                Ok(()) => return Ok(()),
                // Another replica took over (this one stopped leading, or is about to learn it
                // did): stand by again.
                Err(Error::Fenced(why)) if self.standby() => {
                    tracing::info!(
                        "scale-out, exactly-once: fenced by the replica that copies now ({why})"
                    );
                    // Still named the leader: the group says otherwise soon.
                    if self.leadership.is_leader()
                        && sleep_or_cancel(RESTART_BACKOFF, shutdown).await
                    {
                        return Ok(());
                    }
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
            last_round,
            codecs: looked_up,
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
                // The group's decisions first: a partition revoked before this run started is
                // handed over before the first refresh could assign it again.
                biased;
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
                    // A standby that stopped leading left its open transaction to the next
                    // leader: not a shutdown that could not store its progress.
                    if !report.clean && (shutdown.is_cancelled() || !self.standby()) {
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
                    let looked_up = std::mem::take(looked_up);
                    // The codecs of source topics not seen before are looked up while the
                    // target topics are created, so that the copy starts no later (at a start,
                    // while the internal topics were prepared).
                    let early_codecs = async {
                        if !looked_up.is_empty() {
                            return looked_up;
                        }
                        self.replicated_codecs(sync, |t| plan.codecs.contains_key(t), shutdown)
                            .await
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
                                    *last_round = Some(round.clone());
                                    owned_only(round, &m.owned)
                                }
                                None => round,
                            };
                            for command in plan.apply(round, &mut stored, initial.as_ref(), self) {
                                // A send error means the replicator ended; the next loop turn reports why.
                                let _ = tx.send(command);
                            }
                            if membership.is_some() {
                                self.publish_owned(&owned_gauge, plan.assigned.len());
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
                    let fresh = tokio::select! {
                        fresh = self.read_progress() => fresh,
                        () = shutdown.cancelled() => continue,
                    };
                    match fresh {
                        Ok(fresh) => stored = fresh,
                        Err(e) => {
                            // The next replicator reads the progress again, for every partition
                            // this replica owns; this one stops first (never two at once).
                            stop_replicator.cancel();
                            if let Ok(Ok(Ok(report))) =
                                tokio::time::timeout(self.options.shutdown_timeout, &mut done)
                                    .await
                                    .map(|r| r.map_err(|_| ()))
                            {
                                tracing::info!(
                                    copied = report.copied,
                                    clean = report.clean,
                                    "replicator stopped"
                                );
                            }
                            let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, &mut handle).await;
                            return Err(Error::Retriable(format!(
                                "reading the stored progress of partitions the group gave this replica: {e}"
                            )));
                        }
                    }
                    if let Some(round) = last_round.as_ref() {
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
            self.publish_owned(&owned_gauge, plan.assigned.len());
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
    /// Scale-out: the last topic refresh, applied again to the partitions the group gives.
    last_round: Option<crate::topics::SyncRound>,
    /// The codecs looked up while the flow's internal topics were prepared, for the first
    /// topic sync.
    codecs: HashMap<String, (Codec, CodecSource)>,
}

/// How long every topic refresh may fail while both clusters answer new clients, before the
/// flow starts again with new clients.
const CLIENTS_STUCK_AFTER: Duration = Duration::from_secs(30);

/// How long the target producer may acknowledge nothing, with records in flight and a leader
/// named for them, before it is replaced (see [`ReplicatorSettings::wedged_after`]).
const PRODUCER_WEDGED_AFTER: Duration = Duration::from_secs(60);

impl Flow {
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
        let sync = self.topic_sync(source_admin, target_admin);
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
            self.closed().await;
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
