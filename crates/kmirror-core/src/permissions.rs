//! What kmirror's principal must be allowed to do on each cluster of a flow, and which of those
//! permissions the brokers say it lacks (KIP-430 authorized operations).
//!
//! The check is advisory: kmirror copies what it may and waits on the rest. Its purpose is an
//! error line an operator can act on ("grant ALLOW READ on TOPIC orders"), rather than a
//! partition that does not move.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::acl::AclOperation;

/// Which side of a flow a cluster is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The cluster records are copied from.
    Source,
    /// The cluster records are copied to.
    Target,
}

/// A Kafka resource an ACL can name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", content = "name", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resource {
    /// A topic by name.
    Topic(String),
    /// The cluster itself (ACL resource name `kafka-cluster`).
    Cluster,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Topic(t) => write!(f, "TOPIC {t}"),
            Resource::Cluster => f.write_str("CLUSTER kafka-cluster"),
        }
    }
}

/// One permission kmirror needs, and why.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Need {
    /// The cluster's side.
    pub side: Side,
    /// The resource.
    pub resource: Resource,
    /// The operation.
    pub operation: AclOperation,
    /// What kmirror uses it for, for the error message.
    pub purpose: &'static str,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not authorized to {} {} ({}); grant ALLOW {} on {} to kmirror's principal",
            operation_name(self.operation),
            self.resource,
            self.purpose,
            operation_name(self.operation),
            self.resource
        )
    }
}

/// The operation as Kafka's ACL tools spell it.
pub fn operation_name(op: AclOperation) -> &'static str {
    match op {
        AclOperation::Unknown => "UNKNOWN",
        AclOperation::Any => "ANY",
        AclOperation::All => "ALL",
        AclOperation::Read => "READ",
        AclOperation::Write => "WRITE",
        AclOperation::Create => "CREATE",
        AclOperation::Delete => "DELETE",
        AclOperation::Alter => "ALTER",
        AclOperation::Describe => "DESCRIBE",
        AclOperation::ClusterAction => "CLUSTER_ACTION",
        AclOperation::DescribeConfigs => "DESCRIBE_CONFIGS",
        AclOperation::AlterConfigs => "ALTER_CONFIGS",
        AclOperation::IdempotentWrite => "IDEMPOTENT_WRITE",
    }
}

/// What a flow does, as far as permissions go.
#[derive(Clone, Debug, Default)]
pub struct FlowNeeds {
    /// Source topics copied, with their remote names; `true` if the remote topic exists.
    pub topics: Vec<(String, String, bool)>,
    /// Internal topics written on the target (progress, checkpoints, heartbeats, offset syncs
    /// when kept there), with whether they are read back too.
    pub target_internal: Vec<(String, bool)>,
    /// Internal topics written on the source (offset syncs at their default location).
    pub source_internal: Vec<String>,
    /// Topic configs are synced.
    pub config_sync: bool,
    /// ACLs are synced.
    pub acl_sync: bool,
}

impl FlowNeeds {
    /// Every permission the flow needs.
    pub fn needs(&self) -> Vec<Need> {
        use AclOperation as Op;
        let mut out = Vec::new();
        let mut need = |side, resource: Resource, operation, purpose| {
            out.push(Need {
                side,
                resource,
                operation,
                purpose,
            });
        };
        for (source, remote, exists) in &self.topics {
            need(
                Side::Source,
                Resource::Topic(source.clone()),
                Op::Read,
                "reading the records to copy",
            );
            if self.config_sync {
                need(
                    Side::Source,
                    Resource::Topic(source.clone()),
                    Op::DescribeConfigs,
                    "syncing topic configs",
                );
            }
            if *exists {
                need(
                    Side::Target,
                    Resource::Topic(remote.clone()),
                    Op::Write,
                    "writing the copied records",
                );
                if self.config_sync {
                    need(
                        Side::Target,
                        Resource::Topic(remote.clone()),
                        Op::DescribeConfigs,
                        "syncing topic configs",
                    );
                    need(
                        Side::Target,
                        Resource::Topic(remote.clone()),
                        Op::AlterConfigs,
                        "syncing topic configs",
                    );
                }
            }
        }
        for (topic, read) in &self.target_internal {
            need(
                Side::Target,
                Resource::Topic(topic.clone()),
                Op::Write,
                "writing kmirror's internal records",
            );
            if *read {
                need(
                    Side::Target,
                    Resource::Topic(topic.clone()),
                    Op::Read,
                    "reading kmirror's stored progress",
                );
            }
        }
        for topic in &self.source_internal {
            need(
                Side::Source,
                Resource::Topic(topic.clone()),
                Op::Write,
                "writing offset syncs",
            );
        }
        if self.acl_sync {
            need(
                Side::Source,
                Resource::Cluster,
                Op::Describe,
                "reading the source's ACLs",
            );
            need(
                Side::Target,
                Resource::Cluster,
                Op::Alter,
                "creating ACLs on the target",
            );
        }
        out.sort();
        out.dedup();
        out
    }
}

/// What a broker said the principal may do on a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// These operations (KIP-430).
    Operations(Vec<AclOperation>),
    /// The resource could not even be described: nothing is allowed.
    Nothing,
    /// The broker did not say (old broker, or the request failed): assume allowed.
    Unknown,
}

/// The needs that the brokers' answers show to be missing. `allowed` maps each side and
/// resource to what its cluster said.
pub fn missing(needs: &[Need], allowed: &BTreeMap<(Side, Resource), Allowed>) -> Vec<Need> {
    needs
        .iter()
        .filter(|n| {
            match allowed.get(&(n.side, n.resource.clone())) {
                None | Some(Allowed::Unknown) => false,
                Some(Allowed::Nothing) => true,
                Some(Allowed::Operations(ops)) => {
                    // ALL covers everything; a principal with ALL gets the list spelled out,
                    // but be liberal in what is accepted.
                    !ops.contains(&n.operation) && !ops.contains(&AclOperation::All)
                }
            }
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AclOperation as Op;

    fn flow() -> FlowNeeds {
        FlowNeeds {
            topics: vec![
                ("orders".into(), "orders".into(), true),
                ("new".into(), "new".into(), false),
            ],
            target_internal: vec![("mm2-offsets.a.internal".into(), true)],
            source_internal: vec!["mm2-offset-syncs.b.internal".into()],
            config_sync: true,
            acl_sync: true,
        }
    }

    #[test]
    fn a_flow_needs_read_on_sources_write_on_existing_targets_and_cluster_rights_for_acls() {
        let needs = flow().needs();
        let has = |side, r: Resource, op| {
            needs
                .iter()
                .any(|n| n.side == side && n.resource == r && n.operation == op)
        };
        assert!(has(
            Side::Source,
            Resource::Topic("orders".into()),
            Op::Read
        ));
        assert!(has(Side::Source, Resource::Topic("new".into()), Op::Read));
        assert!(has(
            Side::Target,
            Resource::Topic("orders".into()),
            Op::Write
        ));
        assert!(
            !has(Side::Target, Resource::Topic("new".into()), Op::Write),
            "a topic not created yet cannot be described"
        );
        assert!(has(
            Side::Target,
            Resource::Topic("mm2-offsets.a.internal".into()),
            Op::Read
        ));
        assert!(has(
            Side::Source,
            Resource::Topic("mm2-offset-syncs.b.internal".into()),
            Op::Write
        ));
        assert!(has(Side::Source, Resource::Cluster, Op::Describe));
        assert!(has(Side::Target, Resource::Cluster, Op::Alter));
        let without = FlowNeeds {
            config_sync: false,
            acl_sync: false,
            ..flow()
        }
        .needs();
        assert!(!without
            .iter()
            .any(|n| n.operation == Op::AlterConfigs || n.resource == Resource::Cluster));
    }

    #[test]
    fn only_what_a_broker_denies_is_missing() {
        let needs = flow().needs();
        let mut allowed = BTreeMap::new();
        allowed.insert(
            (Side::Source, Resource::Topic("orders".into())),
            Allowed::Operations(vec![Op::Describe, Op::DescribeConfigs]),
        );
        allowed.insert(
            (Side::Source, Resource::Topic("new".into())),
            Allowed::Nothing,
        );
        allowed.insert(
            (Side::Target, Resource::Topic("orders".into())),
            Allowed::Operations(vec![Op::All]),
        );
        allowed.insert((Side::Target, Resource::Cluster), Allowed::Unknown);
        let missing = missing(&needs, &allowed);
        let shown: Vec<String> = missing.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "not authorized to READ TOPIC new (reading the records to copy); grant ALLOW READ on TOPIC new to kmirror's principal",
                "not authorized to DESCRIBE_CONFIGS TOPIC new (syncing topic configs); grant ALLOW DESCRIBE_CONFIGS on TOPIC new to kmirror's principal",
                "not authorized to READ TOPIC orders (reading the records to copy); grant ALLOW READ on TOPIC orders to kmirror's principal",
            ]
        );
    }
}
