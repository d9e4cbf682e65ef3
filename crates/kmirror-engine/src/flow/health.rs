//! Whether the flow's clusters answer: the start-up check (with certificates and passwords
//! read again before each retry), and the probes behind `/readyz` and `kmirror_cluster_up`.

use super::*;

impl Flow {
    /// Waits until both clusters answer. Unreachable clusters, and TLS or authentication
    /// failures, are reported (log line, `/readyz`, metrics) and retried; before each retry the
    /// certificates, keys and passwords are read again, so that Secrets fixed or rotated in place
    /// are picked up without a restart. Returns `false` on shutdown.
    pub(super) async fn preflight(&mut self, shutdown: &CancellationToken) -> Result<bool> {
        // Both clusters are asked at once; a side that does not answer is reported and asked
        // again after each pause, the source first. (The target's first answer is used only
        // if the source answered at once: otherwise it may be old news.)
        let (source_first, target_first) =
            tokio::join!(self.probe_side(true).1, self.probe_side(false).1);
        let mut firsts = [Some(source_first), Some(target_first)];
        let mut retried = false;
        for (source_side, first) in [true, false].into_iter().zip(&mut firsts) {
            let mut reported: Option<(String, tokio::time::Instant)> = None;
            if retried {
                *first = None;
            }
            loop {
                let (factory, outcome) = match first.take() {
                    Some(outcome) => (
                        if source_side {
                            self.source.clone()
                        } else {
                            self.target.clone()
                        },
                        outcome,
                    ),
                    None => {
                        let (factory, probed) = self.probe_side(source_side);
                        (factory, probed.await)
                    }
                };
                let alias = factory.cluster().alias.clone();
                let outcome = outcome.map_err(|e| Error::Internal(format!("probe: {e}")))?;
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
                retried = true;
            }
        }
        Ok(true)
    }

    /// The factory of one side and a probe of its cluster with its admin settings (started
    /// at once, on the blocking pool).
    #[allow(clippy::type_complexity)]
    fn probe_side(
        &self,
        source_side: bool,
    ) -> (
        ClientFactory,
        impl std::future::Future<
            Output = std::result::Result<
                std::result::Result<(), (String, Option<crate::client::Diagnosis>)>,
                tokio::task::JoinError,
            >,
        >,
    ) {
        let (factory, cfg) = self.admin_side(source_side);
        let f = factory.clone();
        (
            factory,
            tokio::task::spawn_blocking(move || probe(&f, &cfg, PREFLIGHT_TIMEOUT)),
        )
    }

    /// The factory of one side and its admin client's settings.
    fn admin_side(&self, source_side: bool) -> (ClientFactory, rdkafka::ClientConfig) {
        let c = &self.mirror.clients;
        if source_side {
            let cfg = self
                .source
                .config(Role::Admin, &[&c.source_all, &c.source_admin]);
            (self.source.clone(), cfg)
        } else {
            let cfg = self
                .target
                .config(Role::Admin, &[&c.target_all, &c.target_admin]);
            (self.target.clone(), cfg)
        }
    }

    /// Reads a cluster's certificates, keys and password files again.
    pub(super) fn reload_security(&mut self, source_side: bool) {
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

    pub(super) fn set_health(&self, alias: &str, outcome: std::result::Result<(), String>) {
        let up = outcome.is_ok();
        self.options.connectivity.set(alias, outcome);
        self.options
            .metrics
            .cluster_up
            .with_label_values(&[alias])
            .set(if up { 1.0 } else { 0.0 });
    }

    /// Probes both clusters every [`HEALTH_INTERVAL`] until `stop`.
    pub(super) async fn health_loop(&self, source: Admin, target: Admin, stop: CancellationToken) {
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

    /// Whether both clusters answer new clients.
    pub(super) async fn clusters_answer(&self) -> bool {
        let (s, t) = tokio::join!(
            self.confirm_down(true, false),
            self.confirm_down(false, false)
        );
        s && t
    }

    /// Whether a cluster whose admin probe said `up` is up: a failed probe is tried again
    /// with a new client (a new connection).
    pub(super) async fn confirm_down(&self, source_side: bool, up: bool) -> bool {
        if up {
            return true;
        }
        let (factory, cfg) = self.admin_side(source_side);
        tokio::task::spawn_blocking(move || probe(&factory, &cfg, HEALTH_INTERVAL).is_ok())
            .await
            .unwrap_or(false)
    }
}
