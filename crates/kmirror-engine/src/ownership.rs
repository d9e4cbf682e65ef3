//! Scale-out: which replica copies which partition, and which one runs the singleton jobs.
//!
//! Replicas of the same config join one consumer group on the **target** cluster (where
//! kmirror has its rights and its internal topics, like MM2's Connect group), subscribed to the
//! flow's target topics and to the progress topic. Kafka's assignor shares the partitions out
//! (`cooperative-sticky` with the classic protocol, or KIP-848's `consumer` protocol): a
//! replica copies the source partitions whose target partitions it was given, and the one given
//! partition 0 of the progress topic runs the flow's singleton jobs (heartbeats, topic config
//! and ACL sync). The group's consumer never reads a record: every partition it is given stays
//! paused.
//!
//! A revoked partition is handed over before the group may give it to another replica: the
//! rebalance callback waits (bounded) until the replicator stopped fetching it, its records in
//! flight were acknowledged and its final progress stored. The next owner reads that progress
//! when it is given the partition. A replica that dies hands nothing over: its partitions move
//! after the session timeout and resume at the progress stored last (records copied since are
//! found on the target by the tail check and not copied again).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmirror_core::config::{GroupProtocol, ScaleOut};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::client::ClusterContext;
use crate::{Error, Result};

/// A target partition: (topic, partition).
pub type TargetPartition = (String, i32);

/// What the group decided.
#[derive(Debug)]
pub enum Event {
    /// This replica now owns these target partitions.
    Assigned(Vec<TargetPartition>),
    /// These target partitions go to another replica: send on `done` once their final progress
    /// is stored (the group waits for it, bounded by the hand-over timeout).
    Revoked {
        /// The partitions.
        partitions: Vec<TargetPartition>,
        /// Answered when they are handed over.
        done: std::sync::mpsc::Sender<()>,
    },
}

/// Whether this replica runs the flow's singleton jobs. Without scale-out it always does.
#[derive(Clone)]
pub struct Leadership(Arc<watch::Sender<bool>>);

impl Leadership {
    /// Leading from the start (`true`: a single instance) or not until the group says so.
    pub fn new(leading: bool) -> Self {
        Self(Arc::new(watch::Sender::new(leading)))
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once this replica leads (`true`) or does not (`false`).
    pub async fn until(&self, leading: bool) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`: the wait ends only with the state.
        let _ = rx.wait_for(|l| *l == leading).await;
    }

    fn set(&self, leading: bool) {
        self.0
            .send_if_modified(|l| std::mem::replace(l, leading) != leading);
    }

    /// Runs `job` while this replica leads: started when it becomes the leader, dropped when it
    /// stops being one, started again if it leads again; until `stop`.
    pub async fn run_while_leading<F, Fut>(&self, stop: &CancellationToken, job: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut rx = self.0.subscribe();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                r = rx.wait_for(|l| *l) => if r.is_err() { return },
            }
            let token = stop.child_token();
            let run = job(token.clone());
            let lost = tokio::select! {
                () = stop.cancelled() => return,
                () = run => false,
                r = rx.wait_for(|l| !*l) => {
                    if r.is_err() {
                        return;
                    }
                    true
                }
            };
            if lost {
                token.cancel();
                tracing::info!("no longer the owner of the singleton jobs: one of them stopped");
            } else {
                // It ended on its own (disabled, or a problem it logged): wait for the next
                // term.
                tokio::select! {
                    () = stop.cancelled() => return,
                    r = rx.wait_for(|l| !*l) => if r.is_err() { return },
                }
            }
        }
    }
}

/// The group membership of one flow: a consumer that never fetches, on its own thread.
pub struct Membership {
    events: mpsc::UnboundedReceiver<Event>,
    topics: std::sync::mpsc::Sender<Vec<String>>,
    stop: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
    leadership: Leadership,
    /// Target partitions owned now (as the flow applied the events).
    pub owned: HashSet<TargetPartition>,
}

/// What the membership needs besides the client config.
pub struct Settings {
    /// The flow's scale-out keys.
    pub scale_out: ScaleOut,
    /// The progress topic: the owner of its partition 0 leads.
    pub leader_topic: String,
    /// How long a revoked partition may take to be handed over.
    pub handover_timeout: Duration,
    /// Set by the group.
    pub leadership: Leadership,
    /// 1 while leading.
    pub singleton_gauge: prometheus::Gauge,
    /// Partitions released when the hand-over timed out.
    pub timed_out: prometheus::IntCounter,
    /// Readiness: not ready until the group's first assignment.
    pub readiness: (Arc<crate::status::Connectivity>, String),
}

impl Membership {
    /// Joins the group on its own thread. `config` is a consumer config on the target cluster.
    pub fn start(
        mut config: ClientConfig,
        context: ClusterContext,
        settings: Settings,
    ) -> Result<Self> {
        let s = &settings.scale_out;
        config.set("group.id", &s.group_id);
        config.set("group.protocol", s.protocol.name());
        if s.protocol == GroupProtocol::Classic {
            config.set("partition.assignment.strategy", "cooperative-sticky");
            config.set(
                "session.timeout.ms",
                s.session_timeout.as_millis().to_string(),
            );
            config.set(
                "heartbeat.interval.ms",
                (s.session_timeout.as_millis() / 3).max(100).to_string(),
            );
        }
        config.set("enable.auto.commit", "false");
        config.set("auto.offset.reset", "latest");
        config.set("enable.partition.eof", "false");
        // New target topics and partitions reach the assignment within this.
        config.set("topic.metadata.refresh.interval.ms", "10000");
        // Its partitions stay paused: it never needs a fetch buffer.
        config.set("queued.max.messages.kbytes", "64");
        config.remove("isolation.level");
        let (connectivity, flow) = &settings.readiness;
        connectivity.update_role(flow, |r| r.group.clone_from(&s.group_id));
        connectivity.set_group_waiting(
            flow,
            Some(format!("flow {flow}: waiting for its scale-out group `{}` to give this replica its partitions", s.group_id)),
        );
        let (tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let leadership = settings.leadership.clone();
        let ctx = MemberContext {
            cluster: context,
            events: tx,
            leader_topic: settings.leader_topic,
            handover_timeout: settings.handover_timeout,
            leadership: settings.leadership,
            singleton_gauge: settings.singleton_gauge,
            timed_out: settings.timed_out,
            readiness: settings.readiness,
            stop: stop.clone(),
        };
        let consumer: BaseConsumer<MemberContext> = config
            .create_with_context(ctx)
            .map_err(|e| Error::Internal(format!("scale-out group consumer: {e}")))?;
        let (topics, topics_rx) = std::sync::mpsc::channel();
        let token = stop.clone();
        let group = s.group_id.clone();
        let handle = tokio::task::spawn_blocking(move || {
            member(&consumer, &group, &topics_rx, &token);
        });
        tracing::info!(group = %s.group_id, protocol = s.protocol.name(), "scale-out: joining the flow's group on the target; partitions are copied once the group gives them");
        Ok(Self {
            events,
            topics,
            stop,
            handle: Some(handle),
            leadership,
            owned: HashSet::new(),
        })
    }

    /// Subscribes to these target topics (the progress topic is added by the caller).
    pub fn subscribe(&self, topics: Vec<String>) {
        // A send error means the thread ended; `close` reports it.
        let _ = self.topics.send(topics);
    }

    /// The next decision of the group (pending forever once the thread ended).
    pub async fn next(&mut self) -> Event {
        match self.events.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        }
    }

    /// Leaves the group: called once the replicator stored its final progress, so that the next
    /// owners start where it ended.
    pub async fn close(mut self, wait: Duration) {
        self.stop.cancel();
        // Whatever the thread still does: a membership that leaves leads nothing (the next one
        // of this flow starts from there).
        self.leadership.set(false);
        if let Some(handle) = self.handle.take() {
            if tokio::time::timeout(wait, handle).await.is_err() {
                tracing::warn!("the scale-out group consumer did not leave its group within {}s (the target does not answer): the group gives its partitions to the others after the session timeout", wait.as_secs());
            }
        }
    }
}

/// The thread: subscribes as told and serves the group's callbacks until `stop`.
fn member(
    consumer: &BaseConsumer<MemberContext>,
    group: &str,
    topics: &std::sync::mpsc::Receiver<Vec<String>>,
    stop: &CancellationToken,
) {
    let mut subscribed: Vec<String> = Vec::new();
    let mut last_warning: Option<Instant> = None;
    while !stop.is_cancelled() {
        let mut latest = None;
        while let Ok(t) = topics.try_recv() {
            latest = Some(t);
        }
        if let Some(mut wanted) = latest {
            wanted.sort();
            wanted.dedup();
            if wanted != subscribed {
                let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
                match consumer.subscribe(&names) {
                    Ok(()) => subscribed = wanted,
                    Err(e) => tracing::warn!(
                        "scale-out: subscribing the group to {} topics: {e}",
                        names.len()
                    ),
                }
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            None | Some(Ok(_)) => {}
            Some(Err(e)) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(group, "scale-out group consumer: {e} (it needs Read on the group `{group}` and Describe on the flow's target topics, on the target cluster)");
                }
            }
        }
    }
    // Leaving the group: the revoke callback sees `stop` and does not wait.
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::ZERO);
}

struct MemberContext {
    cluster: ClusterContext,
    events: mpsc::UnboundedSender<Event>,
    leader_topic: String,
    handover_timeout: Duration,
    leadership: Leadership,
    singleton_gauge: prometheus::Gauge,
    timed_out: prometheus::IntCounter,
    readiness: (Arc<crate::status::Connectivity>, String),
    stop: CancellationToken,
}

impl MemberContext {
    /// The data partitions of `tpl`, and whether it holds the leader partition.
    fn split(&self, tpl: &TopicPartitionList) -> (Vec<TargetPartition>, bool) {
        let mut data = Vec::new();
        let mut leader = false;
        for e in tpl.elements() {
            if e.topic() == self.leader_topic {
                leader |= e.partition() == 0;
            } else {
                data.push((e.topic().to_owned(), e.partition()));
            }
        }
        (data, leader)
    }

    fn lead(&self, leading: bool) {
        if self.leadership.is_leader() != leading {
            if leading {
                tracing::info!("scale-out: this replica now runs the flow's singleton jobs (heartbeats, topic config and ACL sync)");
            } else {
                tracing::info!("scale-out: this replica no longer runs the flow's singleton jobs");
            }
        }
        self.leadership.set(leading);
        self.singleton_gauge.set(if leading { 1.0 } else { 0.0 });
        self.readiness
            .0
            .update_role(&self.readiness.1, |r| r.leading = leading);
    }
}

impl ClientContext for MemberContext {
    fn stats_raw(&self, _statistics: &[u8]) {}

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.cluster.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cluster.error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let (data, leader) = self.split(tpl);
        if leader {
            self.lead(false);
        }
        if data.is_empty() || self.stop.is_cancelled() {
            return;
        }
        let count = data.len();
        let (done, answered) = std::sync::mpsc::channel();
        if self
            .events
            .send(Event::Revoked {
                partitions: data,
                done,
            })
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + self.handover_timeout;
        loop {
            match answered.recv_timeout(Duration::from_millis(100)) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.stop.is_cancelled() {
                        return;
                    }
                    if Instant::now() >= deadline {
                        self.timed_out.inc_by(count as u64);
                        tracing::warn!(partitions = count, "scale-out: partitions revoked by the group were not handed over within {}s (records still in flight): released anyway; their next owner may copy some records again", self.handover_timeout.as_secs());
                        return;
                    }
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        if self.stop.is_cancelled() {
            // Leaving: nothing it is given is copied.
            return;
        }
        // Never fetch: the replicator has its own consumer.
        if let Err(e) = consumer.pause(tpl) {
            tracing::warn!("scale-out: pausing the group's partitions: {e}");
        }
        let (data, leader) = self.split(tpl);
        if leader {
            self.lead(true);
        }
        // Joined: this replica owns what the group gave it (possibly nothing).
        self.readiness.0.set_group_waiting(&self.readiness.1, None);
        if !data.is_empty() {
            let _ = self.events.send(Event::Assigned(data));
        }
    }
}
