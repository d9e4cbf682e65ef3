//! MM2's heartbeats: one record per interval to `heartbeats` on the target (MM2-COMPAT §6).
//!
//! Key (source alias, target alias), value the emission time, record timestamp equal to the
//! payload, partition 0. Java tools (`RemoteClusterUtils`, `HeartbeatFormatter`) read them,
//! and an MM2 or kmirror flow out of the target replicates them onward as `<alias>.heartbeats`.

use rdkafka::error::KafkaError;
use std::sync::Arc;

use kmirror_core::config::{HeartbeatSettings, Mirror};
use kmirror_core::mm2::Heartbeat;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::client::ClusterContext;
use crate::metrics::Metrics;
use crate::topics::{ensure_compacted_topic_retrying, Admin};

/// Emits heartbeats for `mirror` until `stop` is cancelled. Failures are logged, counted and
/// retried at the next tick; they never affect replication.
pub async fn run(
    mirror: Arc<Mirror>,
    settings: HeartbeatSettings,
    producer: ClientConfig,
    context: ClusterContext,
    admin: Admin,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let topic = mirror.policy.heartbeats_topic();
    let (source, target) = (mirror.source.to_string(), mirror.target.to_string());
    match ensure_compacted_topic_retrying(
        &admin,
        topic,
        1,
        settings.replication_factor,
        mirror.admin_timeout,
        &stop,
    )
    .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return,
        Err(e) => {
            tracing::error!(
                topic,
                "cannot prepare the heartbeats topic: {e}; no heartbeats are emitted"
            );
            metrics.error(&source, &target, "heartbeat");
            return;
        }
    }
    let producer = match crate::polled::PolledProducer::new(&producer, context) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("cannot create the heartbeat producer: {e}; no heartbeats are emitted");
            return;
        }
    };
    let emitted = metrics.heartbeats.with_label_values(&[&source, &target]);
    let mut tick = crate::every(settings.interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::now_millis();
        let heartbeat = Heartbeat {
            source: source.clone(),
            target: target.clone(),
            timestamp: now,
        };
        let Ok(key) = heartbeat.key() else {
            tracing::error!("cluster aliases too long for a heartbeat key");
            return;
        };
        let value = heartbeat.value();
        let delivered = match producer.send(topic, 0, &key, &value, now) {
            Ok(delivery) => tokio::select! {
                () = stop.cancelled() => return,
                d = delivery => d.map_err(|_| KafkaError::Canceled).and_then(|d| d),
            },
            Err(e) => Err(e),
        };
        match delivered {
            Ok(_) => emitted.inc(),
            Err(e) => {
                metrics.error(&source, &target, "heartbeat");
                tracing::warn!(topic, "heartbeat not delivered: {e}");
            }
        }
    }
}
