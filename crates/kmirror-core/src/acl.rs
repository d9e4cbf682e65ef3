//! Which source ACLs are copied to the target, and how (MM2's ACL sync, MM2-COMPAT §4.4).
//!
//! Only literal TOPIC bindings are copied. ALLOW WRITE is dropped (only the replicator writes
//! to a mirror), ALLOW ALL becomes ALLOW READ, everything else (DENY included) is copied with
//! the resource renamed by the replication policy. Nothing is ever deleted.

use serde::Serialize;

/// Kafka's ACL operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclOperation {
    /// Unknown to this client.
    Unknown,
    /// Matches any (filters only).
    Any,
    /// Every operation.
    All,
    /// Read.
    Read,
    /// Write.
    Write,
    /// Create.
    Create,
    /// Delete.
    Delete,
    /// Alter.
    Alter,
    /// Describe.
    Describe,
    /// Cluster action.
    ClusterAction,
    /// Describe configs.
    DescribeConfigs,
    /// Alter configs.
    AlterConfigs,
    /// Idempotent write.
    IdempotentWrite,
}

/// ALLOW or DENY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclPermission {
    /// Unknown to this client.
    Unknown,
    /// Matches any (filters only).
    Any,
    /// Deny.
    Deny,
    /// Allow.
    Allow,
}

/// How the resource name is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatternType {
    /// Unknown to this client.
    Unknown,
    /// The exact name (`*` is every topic).
    Literal,
    /// Every name starting with it.
    Prefixed,
}

/// A TOPIC ACL binding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TopicAcl {
    /// Topic name (or pattern).
    pub topic: String,
    /// Name matching.
    pub pattern: PatternType,
    /// `User:alice`.
    pub principal: String,
    /// Host (`*` for any).
    pub host: String,
    /// Operation.
    pub operation: AclOperation,
    /// ALLOW or DENY.
    pub permission: AclPermission,
}

impl std::fmt::Display for TopicAcl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {} {:?} on topic {} ({:?}) from host {}",
            self.permission, self.principal, self.operation, self.topic, self.pattern, self.host
        )
    }
}

/// The target binding MM2 would create for a source binding, or `None` if it is not copied.
/// `should_replicate` is MM2's `shouldReplicateTopic`; `remote` is the policy's
/// `formatRemoteTopic`.
pub fn translate(
    acl: &TopicAcl,
    should_replicate: impl Fn(&str) -> bool,
    remote: impl Fn(&str) -> String,
) -> Option<TopicAcl> {
    if acl.pattern != PatternType::Literal
        || (acl.permission == AclPermission::Allow && acl.operation == AclOperation::Write)
        || !should_replicate(&acl.topic)
    {
        return None;
    }
    let operation = if acl.permission == AclPermission::Allow && acl.operation == AclOperation::All
    {
        AclOperation::Read
    } else {
        acl.operation
    };
    Some(TopicAcl {
        topic: remote(&acl.topic),
        pattern: PatternType::Literal,
        principal: acl.principal.clone(),
        host: acl.host.clone(),
        operation,
        permission: acl.permission,
    })
}

/// The bindings to create on the target: the translations of `source` that `target` does not
/// have yet, without duplicates, in a stable order.
pub fn to_create(
    source: &[TopicAcl],
    target: &[TopicAcl],
    should_replicate: impl Fn(&str) -> bool,
    remote: impl Fn(&str) -> String,
) -> Vec<TopicAcl> {
    let mut out: Vec<TopicAcl> = source
        .iter()
        .filter_map(|a| translate(a, &should_replicate, &remote))
        .filter(|a| !target.contains(a))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(topic: &str, pattern: PatternType, op: AclOperation, perm: AclPermission) -> TopicAcl {
        TopicAcl {
            topic: topic.into(),
            pattern,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn translate_default(a: &TopicAcl) -> Option<TopicAcl> {
        translate(a, |t| !t.starts_with("__"), |t| format!("src.{t}"))
    }

    // MM2-COMPAT §4.4.
    #[test]
    fn mm2_rules() {
        use AclOperation::{All, Describe, Read, Write};
        use AclPermission::{Allow, Deny};
        use PatternType::{Literal, Prefixed};
        // ALLOW READ and DESCRIBE are copied, renamed.
        assert_eq!(
            translate_default(&acl("orders", Literal, Read, Allow)),
            Some(acl("src.orders", Literal, Read, Allow))
        );
        assert_eq!(
            translate_default(&acl("orders", Literal, Describe, Allow)),
            Some(acl("src.orders", Literal, Describe, Allow))
        );
        // ALLOW WRITE is dropped; DENY WRITE is copied unchanged.
        assert_eq!(
            translate_default(&acl("orders", Literal, Write, Allow)),
            None
        );
        assert_eq!(
            translate_default(&acl("orders", Literal, Write, Deny)),
            Some(acl("src.orders", Literal, Write, Deny))
        );
        // ALLOW ALL is downgraded to READ; DENY ALL stays ALL.
        assert_eq!(
            translate_default(&acl("orders", Literal, All, Allow)),
            Some(acl("src.orders", Literal, Read, Allow))
        );
        assert_eq!(
            translate_default(&acl("orders", Literal, All, Deny)),
            Some(acl("src.orders", Literal, All, Deny))
        );
        // PREFIXED is never copied; topics outside the filter are not either.
        assert_eq!(translate_default(&acl("ord", Prefixed, Read, Allow)), None);
        assert_eq!(
            translate_default(&acl("__consumer_offsets", Literal, Read, Allow)),
            None
        );
        // MM2's quirk: a literal `*` becomes a literal ACL on `<source>.*`.
        assert_eq!(
            translate_default(&acl("*", Literal, Read, Allow)),
            Some(acl("src.*", Literal, Read, Allow))
        );
        // Principal and host are kept.
        let mut hosted = acl("orders", Literal, Read, Allow);
        hosted.principal = "User:CN=bob".into();
        hosted.host = "10.0.0.1".into();
        let out = translate_default(&hosted).expect("copied");
        assert_eq!(
            (out.principal.as_str(), out.host.as_str()),
            ("User:CN=bob", "10.0.0.1")
        );
    }

    #[test]
    fn only_missing_bindings_are_created_once() {
        use AclOperation::{All, Read};
        use AclPermission::Allow;
        use PatternType::Literal;
        let source = vec![
            acl("a", Literal, Read, Allow),
            acl("a", Literal, All, Allow),
            acl("b", Literal, Read, Allow),
        ];
        let target = vec![acl("src.b", Literal, Read, Allow)];
        let created = to_create(&source, &target, |_| true, |t| format!("src.{t}"));
        assert_eq!(created, vec![acl("src.a", Literal, Read, Allow)]);
    }
}
