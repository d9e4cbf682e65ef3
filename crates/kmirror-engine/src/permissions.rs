//! Missing permissions, named: every [`CHECK_INTERVAL`] the brokers are asked what kmirror's
//! principal may do on the topics and clusters of a flow (KIP-430 authorized operations), and
//! what it lacks is logged once (cluster, operation, resource, what for), shown on `/readyz` and
//! exported as `kmirror_missing_permission`. Partitions that cannot be read or written wait and
//! continue where they stopped once the ACL is granted; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kmirror_admin::TopicDescription;
use kmirror_core::config::{Mirror, SyncLocation};
use kmirror_core::permissions::{
    missing, operation_name, Allowed, FlowNeeds, Need, Resource, Side,
};
use rdkafka::error::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;

use crate::client::ClusterContext;
use crate::metrics::Metrics;
use crate::status::Connectivity;
use crate::topics::{list_topics, should_replicate, Admin, LIST_TIMEOUT};

/// How often permissions are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Topics per DescribeTopics request.
const BATCH: usize = 1000;

/// Checks the flow's permissions after the first topic sync, then every [`CHECK_INTERVAL`],
/// until `stop`.
pub async fn run(
    mirror: Arc<Mirror>,
    source: Admin,
    target: Admin,
    metrics: Arc<Metrics>,
    connectivity: Arc<Connectivity>,
    topics_synced: CancellationToken,
    stop: CancellationToken,
) {
    tokio::select! {
        () = stop.cancelled() => return,
        () = topics_synced.cancelled() => {}
    }
    let mut reported: BTreeSet<Need> = BTreeSet::new();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let found = tokio::select! {
            () = stop.cancelled() => return,
            found = check(&mirror, &source, &target) => found,
        };
        let Some(found) = found else { continue };
        let now: BTreeSet<Need> = found.into_iter().collect();
        let alias = |side: Side| match side {
            Side::Source => mirror.source.as_str(),
            Side::Target => mirror.target.as_str(),
        };
        for n in now.difference(&reported) {
            tracing::error!(cluster = alias(n.side), operation = operation_name(n.operation), resource = %n.resource,
                "cluster {}: {n}; what needs it waits until it is granted", alias(n.side));
            metrics.error(
                mirror.source.as_str(),
                mirror.target.as_str(),
                "authorization",
            );
            metrics
                .missing_permission
                .with_label_values(&[
                    alias(n.side),
                    &n.resource.to_string(),
                    operation_name(n.operation),
                ])
                .set(1.0);
        }
        for n in reported.difference(&now) {
            tracing::info!(
                cluster = alias(n.side),
                "cluster {}: {} on {} is allowed now",
                alias(n.side),
                operation_name(n.operation),
                n.resource
            );
            let _ = metrics.missing_permission.remove_label_values(&[
                alias(n.side),
                &n.resource.to_string(),
                operation_name(n.operation),
            ]);
        }
        connectivity.set_missing_permissions(
            &mirror.name(),
            now.iter()
                .map(|n| format!("cluster {}: {n}", alias(n.side)))
                .collect(),
        );
        reported = now;
    }
}

/// What the principal may do on the target cluster, as far as ACL sync needs it: ALTER, to
/// create ACLs, asked with a CreateAcls request that changes nothing (see
/// [`kmirror_admin::may_create_acls`], which says why not DescribeCluster).
/// [`Allowed::Unknown`] when the broker could not say (no authorizer, unreachable). DESCRIBE
/// on either cluster, to read ACLs, cannot be asked safely through librdkafka, so it is not
/// checked. Blocking.
fn target_cluster_rights(
    admin: &rdkafka::client::Client<ClusterContext>,
    timeout: Duration,
) -> Allowed {
    match kmirror_admin::may_create_acls(admin, timeout) {
        Ok(true) => Allowed::Operations(vec![kmirror_core::acl::AclOperation::Alter]),
        Ok(false) => Allowed::Operations(Vec::new()),
        Err(e) => {
            tracing::debug!("cannot check the right to create ACLs: {e}");
            Allowed::Unknown
        }
    }
}

/// The permissions the flow lacks, or `None` if the clusters could not be asked.
async fn check(mirror: &Mirror, source: &Admin, target: &Admin) -> Option<Vec<Need>> {
    let timeout = mirror.admin_timeout.min(LIST_TIMEOUT);
    let source_topics = list_topics(source, timeout).await.ok()?;
    let target_topics = list_topics(target, timeout).await.ok()?;
    let mut needs = FlowNeeds {
        config_sync: mirror.sync_topic_configs.is_some(),
        acl_sync: mirror.sync_topic_acls.is_some(),
        ..FlowNeeds::default()
    };
    for topic in source_topics.keys().filter(|t| should_replicate(mirror, t)) {
        let remote = mirror.policy.format_remote_topic(&mirror.source, topic);
        let exists = target_topics.contains_key(&remote);
        needs.topics.push((topic.clone(), remote, exists));
    }
    needs
        .target_internal
        .push((mirror.progress.topic.clone(), true));
    if let Some(cp) = &mirror.checkpoints {
        needs.target_internal.push((cp.topic.clone(), true));
    }
    if mirror.heartbeats.is_some() {
        needs
            .target_internal
            .push((mirror.policy.heartbeats_topic().to_owned(), false));
    }
    if let Some(os) = &mirror.offset_syncs {
        match os.location {
            SyncLocation::Source => needs.source_internal.push(os.topic.clone()),
            SyncLocation::Target => needs.target_internal.push((os.topic.clone(), false)),
        }
    }
    // Internal topics not created yet cannot be described.
    needs
        .target_internal
        .retain(|(t, _)| target_topics.contains_key(t));
    needs
        .source_internal
        .retain(|t| source_topics.contains_key(t));

    let source_names: Vec<String> = needs
        .topics
        .iter()
        .map(|(s, _, _)| s.clone())
        .chain(needs.source_internal.iter().cloned())
        .collect();
    let target_names: Vec<String> = needs
        .topics
        .iter()
        .filter(|(_, _, exists)| *exists)
        .map(|(_, r, _)| r.clone())
        .chain(needs.target_internal.iter().map(|(t, _)| t.clone()))
        .collect();
    let acl_sync = needs.acl_sync;
    let mut allowed = BTreeMap::new();
    for (side, admin, names) in [
        (Side::Source, source, source_names),
        (Side::Target, target, target_names),
    ] {
        let admin = Arc::clone(admin);
        let acl_target = acl_sync && side == Side::Target;
        let answers =
            tokio::task::spawn_blocking(move || describe(&admin, &names, acl_target, timeout))
                .await
                .ok()?;
        for (resource, a) in answers {
            allowed.insert((side, resource), a);
        }
    }
    Some(missing(&needs.needs(), &allowed))
}

/// What `admin`'s principal may do on `topics` (and on the cluster, if `acl_target`: ACLs are
/// synced to it). Blocking.
fn describe(
    admin: &Admin,
    topics: &[String],
    acl_target: bool,
    timeout: Duration,
) -> Vec<(Resource, Allowed)> {
    let client = admin.inner();
    let mut out = Vec::new();
    for chunk in topics.chunks(BATCH) {
        match kmirror_admin::describe_topics(client, chunk, true, timeout) {
            Ok(answers) => {
                for (name, answer) in answers {
                    let allowed = match answer {
                        Ok(TopicDescription {
                            authorized: Some(ops),
                            ..
                        }) => Allowed::Operations(ops),
                        Err(e) if e.code == RDKafkaErrorCode::TopicAuthorizationFailed => {
                            Allowed::Nothing
                        }
                        _ => Allowed::Unknown,
                    };
                    out.push((Resource::Topic(name), allowed));
                }
            }
            Err(e) => tracing::debug!("cannot check topic permissions: {e}"),
        }
    }
    if acl_target {
        out.push((Resource::Cluster, target_cluster_rights(client, timeout)));
    }
    out
}
