//! The codec of each topic's target batches: the source topic's `compression.type`, else the
//! codec of its newest batches (see [`crate::codec`]), unless the operator fixed the producer's.

use super::*;

/// The codec a source topic's `compression.type` names, if any.
pub(super) fn configured_codec(
    entries: Option<&[kmirror_core::topic_config::ConfigEntry]>,
) -> Option<Codec> {
    crate::codec::from_topic_config(
        entries?
            .iter()
            .find(|e| e.name == "compression.type")
            .and_then(|e| e.value.as_deref()),
    )
}

/// A topic's target codec: its `compression.type` where that names one, else the codec seen
/// in its newest batches, else none (no records to look at).
pub(super) fn choose_codec(
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

impl Flow {
    /// Whether the operator set the producer's codec (then every topic uses it).
    pub(super) fn codec_fixed(&self) -> bool {
        let cfg = self.producer_config();
        cfg.get("compression.type").is_some() || cfg.get("compression.codec").is_some()
    }

    /// The producer's `compression.level`, as logged beside each topic's codec.
    pub(super) fn compression_level(&self) -> String {
        self.producer_config()
            .get("compression.level")
            .filter(|l| l.trim() != "-1")
            .map_or_else(|| "the codec's default".to_owned(), str::to_owned)
    }

    /// The source configs of `topics` and the codecs of their newest batches (for the topics
    /// whose `compression.type` names no codec).
    pub(super) async fn probe_codecs(
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The answer comes before the probe's consumer is closed, which goes on meanwhile.
        let task = tokio::task::spawn_blocking(move || {
            crate::codec::probe_then(&config, &unknown, CODEC_PROBE_TIMEOUT, &stop, |a| {
                let _ = tx.send(a);
            });
        });
        let probed = match rx.await {
            Ok(answer) => {
                self.close_later(task);
                answer
            }
            // The task ended without an answer: it panicked.
            Err(_) => Err(match task.await {
                Err(e) => e.to_string(),
                Ok(()) => "no answer".to_owned(),
            }),
        };
        let probed = match probed {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot look at the source's batches ({e}): topics without a compression.type are written uncompressed");
                crate::codec::Probed {
                    codecs: HashMap::new(),
                    undetermined: unknown_names,
                }
            }
        };
        (configs, probed)
    }

    /// The codecs of the source topics the flow replicates, except those `known` (none when
    /// the operator fixed the producer's codec, or the source cannot be listed).
    pub(super) async fn replicated_codecs(
        &self,
        sync: &TopicSync,
        known: impl Fn(&str) -> bool,
        shutdown: &CancellationToken,
    ) -> HashMap<String, (Codec, CodecSource)> {
        if self.codec_fixed() {
            return HashMap::new();
        }
        let Ok(topics) = sync.replicated().await else {
            return HashMap::new();
        };
        let unknown: Vec<(String, i32)> = topics.into_iter().filter(|(t, _)| !known(t)).collect();
        self.decide_codecs(sync, &unknown, shutdown).await
    }

    /// The codec each of `topics` gets (see [`choose_codec`]).
    pub(super) async fn decide_codecs(
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
}
