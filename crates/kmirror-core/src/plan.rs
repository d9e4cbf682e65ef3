//! What the next sync of a flow would do on the target: topics to create, partitions to add,
//! configs to set or delete, ACLs to create, and the consumer groups to checkpoint. `kmirror
//! plan` prints it (text or JSON) and `kmirror run` logs it at start-up.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::acl::TopicAcl;
use crate::topic_config::ConfigChange;

/// A target topic to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicCreation {
    /// Source topic.
    pub topic: String,
    /// Name on the target.
    pub target_topic: String,
    /// Partitions (the source's count).
    pub partitions: i32,
    /// Replication factor (`None`: the target broker's default).
    pub replication_factor: Option<i32>,
    /// Configs it is created with.
    pub configs: BTreeMap<String, String>,
}

/// A target topic to grow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionGrowth {
    /// Source topic.
    pub topic: String,
    /// Name on the target.
    pub target_topic: String,
    /// The target's count now.
    pub from: i32,
    /// The source's count.
    pub to: i32,
}

/// Config changes for one existing target topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicConfigChanges {
    /// Source topic.
    pub topic: String,
    /// Name on the target.
    pub target_topic: String,
    /// What is sent (IncrementalAlterConfigs).
    pub changes: Vec<ConfigChange>,
}

/// A consumer group the checkpoint emitter would translate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupCheckpoint {
    /// Group id.
    pub group: String,
    /// Mirrored partitions the group has committed offsets for.
    pub partitions: usize,
}

/// The codec the target batches of one topic use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicCompression {
    /// Source topic.
    pub topic: String,
    /// Codec name (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub codec: String,
    /// The producer's `compression.level`, or the codec's default.
    pub level: String,
    /// Where the codec comes from.
    pub from: String,
}

/// The plan for one flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowPlan {
    /// `S->T`.
    pub flow: String,
    /// Missing remote topics.
    pub topics_to_create: Vec<TopicCreation>,
    /// Remote topics with fewer partitions than the source.
    pub partitions_to_add: Vec<PartitionGrowth>,
    /// Configs that differ from the source's.
    pub configs_to_change: Vec<TopicConfigChanges>,
    /// ACLs the target lacks.
    pub acls_to_create: Vec<TopicAcl>,
    /// Groups with committed offsets on mirrored topics.
    pub groups_to_checkpoint: Vec<GroupCheckpoint>,
    /// The codec of each replicated topic's target batches (empty when the operator set one
    /// for all: see `notes`).
    pub compression: Vec<TopicCompression>,
    /// What was not looked at, and why (a sync that is disabled, a cluster without an
    /// authorizer, a request that failed).
    pub notes: Vec<String>,
}

impl FlowPlan {
    /// An empty plan for `flow`.
    pub fn new(flow: impl Into<String>) -> Self {
        Self {
            flow: flow.into(),
            ..Self::default()
        }
    }

    /// Whether the next sync would change nothing on the target.
    pub fn changes_nothing(&self) -> bool {
        self.topics_to_create.is_empty()
            && self.partitions_to_add.is_empty()
            && self.configs_to_change.is_empty()
            && self.acls_to_create.is_empty()
    }

    /// One line per item, for logs and the text output.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.topics_to_create {
            let rf = t
                .replication_factor
                .map_or_else(|| "broker default".to_owned(), |n| n.to_string());
            let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(format!(
                "create topic {}{}: {} partitions, replication factor {rf}{}",
                t.target_topic,
                renamed(&t.topic, &t.target_topic),
                t.partitions,
                if configs.is_empty() {
                    String::new()
                } else {
                    format!(", {}", configs.join(", "))
                }
            ));
        }
        for p in &self.partitions_to_add {
            out.push(format!(
                "add partitions to {}{}: {} -> {}",
                p.target_topic,
                renamed(&p.topic, &p.target_topic),
                p.from,
                p.to
            ));
        }
        for t in &self.configs_to_change {
            for c in &t.changes {
                out.push(format!("change config of {}: {c}", t.target_topic));
            }
        }
        for a in &self.acls_to_create {
            out.push(format!("create ACL: {a}"));
        }
        for g in &self.groups_to_checkpoint {
            out.push(format!(
                "checkpoint group {} ({} partition{})",
                g.group,
                g.partitions,
                if g.partitions == 1 { "" } else { "s" }
            ));
        }
        for n in &self.notes {
            out.push(format!("note: {n}"));
        }
        out
    }
}

fn renamed(source: &str, target: &str) -> String {
    if source == target {
        String::new()
    } else {
        format!(" (from {source})")
    }
}

impl fmt::Display for FlowPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "flow {}", self.flow)?;
        let section = |f: &mut fmt::Formatter<'_>, title: &str, items: Vec<String>| {
            if items.is_empty() {
                writeln!(f, "  {title}: none")
            } else {
                writeln!(f, "  {title} ({}):", items.len())?;
                items.iter().try_for_each(|i| writeln!(f, "    {i}"))
            }
        };
        section(
            f,
            "topics to create",
            self.topics_to_create
                .iter()
                .map(|t| {
                    let mut line = format!(
                        "{}{}: {} partitions, replication factor {}",
                        t.target_topic,
                        renamed(&t.topic, &t.target_topic),
                        t.partitions,
                        t.replication_factor
                            .map_or_else(|| "broker default".to_owned(), |n| n.to_string())
                    );
                    for (k, v) in &t.configs {
                        line.push_str(&format!("\n      {k}={v}"));
                    }
                    line
                })
                .collect(),
        )?;
        section(
            f,
            "partitions to add",
            self.partitions_to_add
                .iter()
                .map(|p| {
                    format!(
                        "{}{}: {} -> {}",
                        p.target_topic,
                        renamed(&p.topic, &p.target_topic),
                        p.from,
                        p.to
                    )
                })
                .collect(),
        )?;
        section(
            f,
            "configs to change",
            self.configs_to_change
                .iter()
                .flat_map(|t| t.changes.iter().map(|c| format!("{}: {c}", t.target_topic)))
                .collect(),
        )?;
        section(
            f,
            "ACLs to create",
            self.acls_to_create
                .iter()
                .map(ToString::to_string)
                .collect(),
        )?;
        section(
            f,
            "groups to checkpoint",
            self.groups_to_checkpoint
                .iter()
                .map(|g| {
                    format!(
                        "{} ({} partitions with committed offsets)",
                        g.group, g.partitions
                    )
                })
                .collect(),
        )?;
        if !self.compression.is_empty() {
            section(
                f,
                "target compression",
                self.compression
                    .iter()
                    .map(|c| format!("{}: {} (level: {}; {})", c.topic, c.codec, c.level, c.from))
                    .collect(),
            )?;
        }
        if !self.notes.is_empty() {
            section(f, "notes", self.notes.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_config::ConfigOp;

    #[test]
    fn text_lists_every_section() {
        let mut plan = FlowPlan::new("a->b");
        plan.topics_to_create.push(TopicCreation {
            topic: "orders".into(),
            target_topic: "a.orders".into(),
            partitions: 3,
            replication_factor: Some(3),
            configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
        });
        plan.configs_to_change.push(TopicConfigChanges {
            topic: "pay".into(),
            target_topic: "a.pay".into(),
            changes: vec![ConfigChange {
                name: "retention.ms".into(),
                op: ConfigOp::Set("10".into()),
                old: Some("20".into()),
            }],
        });
        plan.compression.push(TopicCompression {
            topic: "orders".into(),
            codec: "zstd".into(),
            level: "3".into(),
            from: "the source topic's compression.type".into(),
        });
        let text = plan.to_string();
        assert_eq!(
            text,
            "flow a->b\n  topics to create (1):\n    a.orders (from orders): 3 partitions, replication factor 3\n      cleanup.policy=compact\n  partitions to add: none\n  configs to change (1):\n    a.pay: retention.ms: 20 -> 10\n  ACLs to create: none\n  groups to checkpoint: none\n  target compression (1):\n    orders: zstd (level: 3; the source topic's compression.type)\n"
        );
        assert!(!plan.changes_nothing());
        let json = serde_json::to_value(&plan).expect("serializable");
        assert_eq!(
            json["configs_to_change"][0]["changes"][0],
            serde_json::json!({"name": "retention.ms", "op": "set", "value": "10", "old": "20"})
        );
    }
}
