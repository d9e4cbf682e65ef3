//! The admin calls kmirror needs that rdkafka's safe API does not offer: IncrementalAlterConfigs
//! (KIP-339), DescribeAcls and CreateAcls, ListConsumerGroupOffsets for many groups on one
//! client, DescribeTopics with topic ids and the principal's authorized operations (KIP-430),
//! a probe of the right to create ACLs, and producing a copy of a fetched record
//! through a topic handle ([`TopicProducer`]). Each admin call is a thin, blocking wrapper over librdkafka's C
//! API (through `rdkafka::bindings`, the same library rdkafka links), run on the caller's
//! thread: call them from `spawn_blocking`, never from an async worker.
//!
//! Every librdkafka object is owned by a small guard that destroys it on drop, strings are
//! copied out of librdkafka's memory before the event that owns them is destroyed, and every
//! `unsafe` block says why it is sound.

mod produce;

pub use produce::TopicProducer;

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int};
use std::ptr;
use std::time::Duration;

use kmirror_core::acl::{AclOperation, AclPermission, PatternType, TopicAcl};
use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;

/// Time allowed beyond the request timeout for librdkafka to deliver the result.
const POLL_SLACK: Duration = Duration::from_secs(5);

/// A failed admin call or resource, with librdkafka's or the broker's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminError {
    /// The error code.
    pub code: RDKafkaErrorCode,
    /// The reason, as the broker or librdkafka gave it (may be empty).
    pub message: String,
}

impl AdminError {
    fn new(code: RDKafkaErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.message, self.code)
        }
    }
}

impl std::error::Error for AdminError {}

/// One IncrementalAlterConfigs operation on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlterOp {
    /// Set the key to this value.
    Set(String),
    /// Remove the topic's value (the broker default applies again).
    Delete,
}

/// Copies a C string owned by librdkafka.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid during the call.
unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_string_lossy().into_owned()
}

fn c_string(s: &str) -> Result<CString, AdminError> {
    CString::new(s).map_err(|_| {
        AdminError::new(
            RDKafkaErrorCode::InvalidArgument,
            format!("`{s}` contains a NUL byte"),
        )
    })
}

fn millis(d: Duration) -> c_int {
    c_int::try_from(d.as_millis()).unwrap_or(c_int::MAX)
}

fn errstr_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A result queue for one call.
struct Queue(*mut rd::rd_kafka_queue_t);

impl Queue {
    fn new(rk: *mut rd::rd_kafka_t) -> Result<Self, AdminError> {
        // SAFETY: `rk` is the handle of a client the caller borrows for the whole call.
        let q = unsafe { rd::rd_kafka_queue_new(rk) };
        if q.is_null() {
            return Err(AdminError::new(
                RDKafkaErrorCode::Fail,
                "librdkafka could not create a result queue",
            ));
        }
        Ok(Self(q))
    }

    fn poll(&self, timeout: Duration) -> Result<Event, AdminError> {
        // SAFETY: the queue is alive until `self` is dropped.
        let ev = unsafe { rd::rd_kafka_queue_poll(self.0, millis(timeout)) };
        if ev.is_null() {
            return Err(AdminError::new(
                RDKafkaErrorCode::OperationTimedOut,
                format!("no answer within {} ms", timeout.as_millis()),
            ));
        }
        Ok(Event(ev))
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new and destroyed only here. A request still in
        // flight holds its own reference to the queue.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

/// Admin options with the request timeout set.
struct Options(*mut rd::rd_kafka_AdminOptions_t);

impl Options {
    fn new(
        rk: *mut rd::rd_kafka_t,
        op: rd::rd_kafka_admin_op_t,
        timeout: Duration,
    ) -> Result<Self, AdminError> {
        // SAFETY: `rk` is a live client handle (see `Queue::new`).
        let o = unsafe { rd::rd_kafka_AdminOptions_new(rk, op) };
        if o.is_null() {
            return Err(AdminError::new(
                RDKafkaErrorCode::Fail,
                "librdkafka could not create admin options",
            ));
        }
        let options = Self(o);
        let mut errstr = [0 as c_char; 512];
        // SAFETY: the options are alive; `errstr` is writable for the length given.
        let err = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                millis(timeout),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(AdminError::new(err.into(), errstr_text(&errstr)));
        }
        Ok(options)
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new; librdkafka copies what it needs when a
        // request is made.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) }
    }
}

/// A result event; everything read from it is copied before it is dropped.
struct Event(*mut rd::rd_kafka_event_t);

impl Event {
    /// The request-level error, if any (timeouts, unsupported requests, ...).
    fn check(&self) -> Result<(), AdminError> {
        // SAFETY: the event is alive.
        let code = unsafe { rd::rd_kafka_event_error(self.0) };
        if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Ok(());
        }
        // SAFETY: the event is alive; the string it returns lives as long as the event.
        let message = unsafe { owned(rd::rd_kafka_event_error_string(self.0)) };
        Err(AdminError::new(code.into(), message))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: polled from a queue, destroyed only here.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// Config resources built for a request.
struct Resources(Vec<*mut rd::rd_kafka_ConfigResource_t>);

impl Drop for Resources {
    fn drop(&mut self) {
        for &r in &self.0 {
            // SAFETY: each was created by rd_kafka_ConfigResource_new and is destroyed once;
            // a request works on its own copies.
            unsafe { rd::rd_kafka_ConfigResource_destroy(r) }
        }
    }
}

/// An ACL binding or filter built for a request.
struct Binding(*mut rd::rd_kafka_AclBinding_t);

impl Drop for Binding {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AclBinding(Filter)_new, destroyed once; requests copy it.
        unsafe { rd::rd_kafka_AclBinding_destroy(self.0) }
    }
}

/// Turns a `rd_kafka_error_t` into an [`AdminError`] and frees it.
///
/// # Safety
/// `err` is a non-null error the caller owns.
unsafe fn take_error(err: *mut rd::rd_kafka_error_t) -> AdminError {
    // SAFETY: `err` is valid per the contract.
    let code = unsafe { rd::rd_kafka_error_code(err) };
    // SAFETY: as above; the string lives as long as `err`.
    let message = unsafe { owned(rd::rd_kafka_error_string(err)) };
    // SAFETY: owned by the caller, freed once here.
    unsafe { rd::rd_kafka_error_destroy(err) };
    AdminError::new(code.into(), message)
}

/// Each topic's outcome of an IncrementalAlterConfigs request.
pub type TopicOutcomes = Vec<(String, Result<(), AdminError>)>;

/// IncrementalAlterConfigs on topics: one resource per topic with its operations, in a single
/// request. Returns each topic's own outcome; `Err` only when the whole request failed
/// (unreachable cluster, unsupported by the broker, ...). Blocking.
pub fn incremental_alter_topic_configs<C: ClientContext>(
    client: &Client<C>,
    topics: &[(String, Vec<(String, AlterOp)>)],
    timeout: Duration,
) -> Result<TopicOutcomes, AdminError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let rk = client.native_ptr();
    let mut resources = Resources(Vec::with_capacity(topics.len()));
    for (topic, ops) in topics {
        let name = c_string(topic)?;
        // SAFETY: `name` is a valid C string; librdkafka copies it.
        let res = unsafe {
            rd::rd_kafka_ConfigResource_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            )
        };
        if res.is_null() {
            return Err(AdminError::new(
                RDKafkaErrorCode::InvalidArgument,
                format!("cannot describe topic `{topic}` as a config resource"),
            ));
        }
        resources.0.push(res);
        for (key, op) in ops {
            let key_c = c_string(key)?;
            let (op_type, value) = match op {
                AlterOp::Set(v) => (
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                    Some(c_string(v)?),
                ),
                AlterOp::Delete => (
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE,
                    None,
                ),
            };
            let value_ptr = value.as_ref().map_or(ptr::null(), |v| v.as_ptr());
            // SAFETY: `res` is alive (owned by `resources`); the strings are valid C strings
            // (or null for DELETE, which librdkafka allows) and are copied.
            let err = unsafe {
                rd::rd_kafka_ConfigResource_add_incremental_config(
                    res,
                    key_c.as_ptr(),
                    op_type,
                    value_ptr,
                )
            };
            if !err.is_null() {
                // SAFETY: a non-null error returned to us, which we own.
                return Err(unsafe { take_error(err) });
            }
        }
    }
    let queue = Queue::new(rk)?;
    let options = Options::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        timeout,
    )?;
    // SAFETY: every handle is alive for the call; librdkafka copies the resources and keeps a
    // reference to the queue until it has answered.
    unsafe {
        rd::rd_kafka_IncrementalAlterConfigs(
            rk,
            resources.0.as_mut_ptr(),
            resources.0.len(),
            options.0,
            queue.0,
        );
    }
    let event = queue.poll(timeout + POLL_SLACK)?;
    event.check()?;
    // SAFETY: the event is alive; the result is part of it.
    let result = unsafe { rd::rd_kafka_event_IncrementalAlterConfigs_result(event.0) };
    if result.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "unexpected event in place of the IncrementalAlterConfigs result",
        ));
    }
    let mut n = 0usize;
    // SAFETY: `result` belongs to the live event; `n` receives the count.
    let array = unsafe { rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n) };
    let answered: &[*const rd::rd_kafka_ConfigResource_t] = if array.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: librdkafka returns `n` valid pointers that live as long as the event.
        unsafe { std::slice::from_raw_parts(array, n) }
    };
    let mut out = Vec::with_capacity(answered.len());
    for &r in answered {
        // SAFETY: `r` is a resource of the live event.
        let name = unsafe { owned(rd::rd_kafka_ConfigResource_name(r)) };
        // SAFETY: as above.
        let code = unsafe { rd::rd_kafka_ConfigResource_error(r) };
        let outcome = if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            // SAFETY: as above; the string lives as long as the event.
            let message = unsafe { owned(rd::rd_kafka_ConfigResource_error_string(r)) };
            Err(AdminError::new(code.into(), message))
        };
        out.push((name, outcome));
    }
    Ok(out)
}

fn operation_from(op: rd::rd_kafka_AclOperation_t) -> AclOperation {
    use rd::rd_kafka_AclOperation_t as O;
    match op {
        O::RD_KAFKA_ACL_OPERATION_ANY => AclOperation::Any,
        O::RD_KAFKA_ACL_OPERATION_ALL => AclOperation::All,
        O::RD_KAFKA_ACL_OPERATION_READ => AclOperation::Read,
        O::RD_KAFKA_ACL_OPERATION_WRITE => AclOperation::Write,
        O::RD_KAFKA_ACL_OPERATION_CREATE => AclOperation::Create,
        O::RD_KAFKA_ACL_OPERATION_DELETE => AclOperation::Delete,
        O::RD_KAFKA_ACL_OPERATION_ALTER => AclOperation::Alter,
        O::RD_KAFKA_ACL_OPERATION_DESCRIBE => AclOperation::Describe,
        O::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION => AclOperation::ClusterAction,
        O::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS => AclOperation::DescribeConfigs,
        O::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS => AclOperation::AlterConfigs,
        O::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE => AclOperation::IdempotentWrite,
        _ => AclOperation::Unknown,
    }
}

fn operation_to(op: AclOperation) -> Option<rd::rd_kafka_AclOperation_t> {
    use rd::rd_kafka_AclOperation_t as O;
    Some(match op {
        AclOperation::Unknown => return None,
        AclOperation::Any => O::RD_KAFKA_ACL_OPERATION_ANY,
        AclOperation::All => O::RD_KAFKA_ACL_OPERATION_ALL,
        AclOperation::Read => O::RD_KAFKA_ACL_OPERATION_READ,
        AclOperation::Write => O::RD_KAFKA_ACL_OPERATION_WRITE,
        AclOperation::Create => O::RD_KAFKA_ACL_OPERATION_CREATE,
        AclOperation::Delete => O::RD_KAFKA_ACL_OPERATION_DELETE,
        AclOperation::Alter => O::RD_KAFKA_ACL_OPERATION_ALTER,
        AclOperation::Describe => O::RD_KAFKA_ACL_OPERATION_DESCRIBE,
        AclOperation::ClusterAction => O::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION,
        AclOperation::DescribeConfigs => O::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
        AclOperation::AlterConfigs => O::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS,
        AclOperation::IdempotentWrite => O::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE,
    })
}

fn permission_from(p: rd::rd_kafka_AclPermissionType_t) -> AclPermission {
    use rd::rd_kafka_AclPermissionType_t as P;
    match p {
        P::RD_KAFKA_ACL_PERMISSION_TYPE_ANY => AclPermission::Any,
        P::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => AclPermission::Deny,
        P::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => AclPermission::Allow,
        _ => AclPermission::Unknown,
    }
}

fn permission_to(p: AclPermission) -> Option<rd::rd_kafka_AclPermissionType_t> {
    use rd::rd_kafka_AclPermissionType_t as P;
    match p {
        AclPermission::Any => Some(P::RD_KAFKA_ACL_PERMISSION_TYPE_ANY),
        AclPermission::Deny => Some(P::RD_KAFKA_ACL_PERMISSION_TYPE_DENY),
        AclPermission::Allow => Some(P::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW),
        AclPermission::Unknown => None,
    }
}

fn pattern_from(p: rd::rd_kafka_ResourcePatternType_t) -> PatternType {
    use rd::rd_kafka_ResourcePatternType_t as R;
    match p {
        R::RD_KAFKA_RESOURCE_PATTERN_LITERAL => PatternType::Literal,
        R::RD_KAFKA_RESOURCE_PATTERN_PREFIXED => PatternType::Prefixed,
        _ => PatternType::Unknown,
    }
}

/// The principal the ACL probe names; nothing is created for it.
const PROBE_PRINCIPAL: &str = "User:kmirror-permission-probe";

/// Whether the client's principal may create ACLs (ALTER on the cluster), asked with a
/// CreateAcls request that no broker can carry out: one binding on a topic with an empty name,
/// which a broker refuses as an invalid request after it checked the right to create ACLs, and
/// refuses with a cluster authorization error before that. Nothing is created either way.
/// `Err` when the broker could not say (a cluster without an authorizer answers
/// [`RDKafkaErrorCode::SecurityDisabled`]), or did not refuse the binding.
///
/// Not DescribeCluster's authorized operations (KIP-430): librdkafka (2.12) aborts the process
/// on a DescribeCluster answer listing no broker, which every broker sends while the
/// controller has it fenced (see [`count_brokers`]), and no check made beforehand closes that
/// race. The right to describe the cluster (reading ACLs) has no such probe: librdkafka drops
/// DescribeAcls' request-level error, and DescribeUserScramCredentials frees memory it does
/// not own when it parses one. Blocking.
pub fn may_create_acls<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<bool, AdminError> {
    let probe = TopicAcl {
        topic: String::new(),
        pattern: PatternType::Literal,
        principal: PROBE_PRINCIPAL.to_owned(),
        host: "*".to_owned(),
        operation: AclOperation::Describe,
        permission: AclPermission::Allow,
    };
    let outcome = create_acls(client, &[(AclResource::Topic, &probe)], timeout)?
        .into_iter()
        .next()
        .unwrap_or_else(|| {
            Err(AdminError::new(
                RDKafkaErrorCode::Fail,
                "no outcome for the probe binding",
            ))
        });
    match outcome {
        Err(e) if e.code == RDKafkaErrorCode::ClusterAuthorizationFailed => Ok(false),
        Err(e) if e.code == RDKafkaErrorCode::InvalidRequest => Ok(true),
        Err(e) => Err(e),
        Ok(()) => Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            format!("the broker accepted the ACL probe binding (a topic with an empty name, for {PROBE_PRINCIPAL}); delete it"),
        )),
    }
}

/// Every TOPIC ACL binding of the cluster (any name, any pattern type). A principal without
/// DESCRIBE on the cluster, and a cluster without an authorizer, get an empty list: librdkafka
/// (2.12) drops the request-level error of a DescribeAcls answer. Blocking.
pub fn describe_topic_acls<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<Vec<TopicAcl>, AdminError> {
    let rk = client.native_ptr();
    let mut errstr = [0 as c_char; 512];
    // SAFETY: null name, principal and host mean "any"; `errstr` is writable for its length.
    let raw = unsafe {
        rd::rd_kafka_AclBindingFilter_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            ptr::null(),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_ANY,
            ptr::null(),
            ptr::null(),
            rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if raw.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::InvalidArgument,
            errstr_text(&errstr),
        ));
    }
    let filter = Binding(raw);
    let queue = Queue::new(rk)?;
    let options = Options::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS,
        timeout,
    )?;
    // SAFETY: every handle is alive for the call; librdkafka copies the filter.
    unsafe { rd::rd_kafka_DescribeAcls(rk, filter.0, options.0, queue.0) };
    let event = queue.poll(timeout + POLL_SLACK)?;
    event.check()?;
    // SAFETY: the event is alive; the result is part of it.
    let result = unsafe { rd::rd_kafka_event_DescribeAcls_result(event.0) };
    if result.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "unexpected event in place of the DescribeAcls result",
        ));
    }
    let mut n = 0usize;
    // SAFETY: `result` belongs to the live event; `n` receives the count.
    let array = unsafe { rd::rd_kafka_DescribeAcls_result_acls(result, &mut n) };
    let bindings: &[*const rd::rd_kafka_AclBinding_t] = if array.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: librdkafka returns `n` valid pointers that live as long as the event.
        unsafe { std::slice::from_raw_parts(array, n) }
    };
    let mut out = Vec::with_capacity(bindings.len());
    for &b in bindings {
        // SAFETY: `b` is a binding of the live event (as in the reads below, whose strings
        // live as long as the event and are copied at once).
        let restype = unsafe { rd::rd_kafka_AclBinding_restype(b) };
        if restype != rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC {
            continue;
        }
        // SAFETY: see above.
        let topic = unsafe { owned(rd::rd_kafka_AclBinding_name(b)) };
        // SAFETY: see above.
        let principal = unsafe { owned(rd::rd_kafka_AclBinding_principal(b)) };
        // SAFETY: see above.
        let host = unsafe { owned(rd::rd_kafka_AclBinding_host(b)) };
        // SAFETY: see above.
        let operation = operation_from(unsafe { rd::rd_kafka_AclBinding_operation(b) });
        // SAFETY: see above.
        let permission = permission_from(unsafe { rd::rd_kafka_AclBinding_permission_type(b) });
        // SAFETY: see above.
        let pattern = pattern_from(unsafe { rd::rd_kafka_AclBinding_resource_pattern_type(b) });
        out.push(TopicAcl {
            topic,
            pattern,
            principal,
            host,
            operation,
            permission,
        });
    }
    Ok(out)
}

/// The kind of resource an ACL binding names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclResource {
    /// A topic (the binding's `topic` is its name or prefix).
    Topic,
    /// A consumer group.
    Group,
    /// The cluster (the name is `kafka-cluster`).
    Cluster,
    /// A transactional id.
    TransactionalId,
}

impl AclResource {
    fn to_rd(self) -> rd::rd_kafka_ResourceType_t {
        use rd::rd_kafka_ResourceType_t as R;
        match self {
            AclResource::Topic => R::RD_KAFKA_RESOURCE_TOPIC,
            AclResource::Group => R::RD_KAFKA_RESOURCE_GROUP,
            AclResource::Cluster => R::RD_KAFKA_RESOURCE_BROKER,
            AclResource::TransactionalId => R::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
        }
    }
}

/// CreateAcls for TOPIC bindings, in one request. Returns each binding's own outcome, in
/// order; `Err` only when the whole request failed. Blocking.
pub fn create_topic_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[TopicAcl],
    timeout: Duration,
) -> Result<Vec<Result<(), AdminError>>, AdminError> {
    let bindings: Vec<(AclResource, &TopicAcl)> =
        acls.iter().map(|a| (AclResource::Topic, a)).collect();
    create_acls(client, &bindings, timeout)
}

/// CreateAcls for bindings on any resource kind (the binding's `topic` names the resource),
/// in one request. Returns each binding's own outcome, in order; `Err` only when the whole
/// request failed. Blocking.
pub fn create_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[(AclResource, &TopicAcl)],
    timeout: Duration,
) -> Result<Vec<Result<(), AdminError>>, AdminError> {
    if acls.is_empty() {
        return Ok(Vec::new());
    }
    let rk = client.native_ptr();
    let mut owned_bindings = Vec::with_capacity(acls.len());
    for &(resource, acl) in acls {
        let invalid = |what: &str| {
            AdminError::new(
                RDKafkaErrorCode::InvalidArgument,
                format!("cannot create an ACL with {what}: {acl}"),
            )
        };
        let pattern = match acl.pattern {
            PatternType::Literal => {
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL
            }
            PatternType::Prefixed => {
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED
            }
            PatternType::Unknown => return Err(invalid("an unknown pattern type")),
        };
        let operation =
            operation_to(acl.operation).ok_or_else(|| invalid("an unknown operation"))?;
        let permission =
            permission_to(acl.permission).ok_or_else(|| invalid("an unknown permission"))?;
        let (name, principal, host) = (
            c_string(&acl.topic)?,
            c_string(&acl.principal)?,
            c_string(&acl.host)?,
        );
        let mut errstr = [0 as c_char; 512];
        // SAFETY: valid C strings (copied by librdkafka); `errstr` writable for its length.
        let raw = unsafe {
            rd::rd_kafka_AclBinding_new(
                resource.to_rd(),
                name.as_ptr(),
                pattern,
                principal.as_ptr(),
                host.as_ptr(),
                operation,
                permission,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if raw.is_null() {
            return Err(AdminError::new(
                RDKafkaErrorCode::InvalidArgument,
                format!("{}: {acl}", errstr_text(&errstr)),
            ));
        }
        owned_bindings.push(Binding(raw));
    }
    let mut raw: Vec<*mut rd::rd_kafka_AclBinding_t> = owned_bindings.iter().map(|b| b.0).collect();
    let queue = Queue::new(rk)?;
    let options = Options::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS,
        timeout,
    )?;
    // SAFETY: every handle is alive for the call; librdkafka copies the bindings.
    unsafe { rd::rd_kafka_CreateAcls(rk, raw.as_mut_ptr(), raw.len(), options.0, queue.0) };
    let event = queue.poll(timeout + POLL_SLACK)?;
    event.check()?;
    // SAFETY: the event is alive; the result is part of it.
    let result = unsafe { rd::rd_kafka_event_CreateAcls_result(event.0) };
    if result.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "unexpected event in place of the CreateAcls result",
        ));
    }
    let mut n = 0usize;
    // SAFETY: `result` belongs to the live event; `n` receives the count.
    let array = unsafe { rd::rd_kafka_CreateAcls_result_acls(result, &mut n) };
    let results: &[*const rd::rd_kafka_acl_result_t] = if array.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: librdkafka returns `n` valid pointers that live as long as the event.
        unsafe { std::slice::from_raw_parts(array, n) }
    };
    let mut out = Vec::with_capacity(results.len());
    for &r in results {
        // SAFETY: `r` is a result of the live event; the error it returns lives as long.
        let err = unsafe { rd::rd_kafka_acl_result_error(r) };
        if err.is_null() {
            out.push(Ok(()));
            continue;
        }
        // SAFETY: `err` is valid while the event lives; it is not ours to free.
        let code = unsafe { rd::rd_kafka_error_code(err) };
        // SAFETY: as above.
        let message = unsafe { owned(rd::rd_kafka_error_string(err)) };
        out.push(Err(AdminError::new(code.into(), message)));
    }
    Ok(out)
}

/// A topic as DescribeTopics (KIP-516 ids, KIP-430 authorized operations) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic id (base64), which changes when a topic is deleted and created again.
    pub id: String,
    /// Number of partitions.
    pub partitions: usize,
    /// What the client's principal may do on the topic, if asked for and reported.
    pub authorized: Option<Vec<AclOperation>>,
}

impl Options {
    /// Asks the broker for the principal's authorized operations (KIP-430).
    fn include_authorized_operations(&self) -> Result<(), AdminError> {
        // SAFETY: the options are alive; the returned error, if any, is ours to destroy.
        let err = unsafe { rd::rd_kafka_AdminOptions_set_include_authorized_operations(self.0, 1) };
        if err.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null error we own.
        Err(unsafe { take_error(err) })
    }
}

/// Copies an array of operations owned by a live event.
///
/// # Safety
/// `ops` is null or points to `n` operations that stay valid during the call.
unsafe fn operations(
    ops: *const rd::rd_kafka_AclOperation_t,
    n: usize,
) -> Option<Vec<AclOperation>> {
    if ops.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    let slice = unsafe { std::slice::from_raw_parts(ops, n) };
    Some(slice.iter().map(|&o| operation_from(o)).collect())
}

/// Each topic's outcome of a DescribeTopics request, in order.
pub type TopicDescriptions = Vec<(String, Result<TopicDescription, AdminError>)>;

/// DescribeTopics: id, partition count and (with `authorized`) the operations the client's
/// principal may perform, for each topic in `topics`, in order, each with its own outcome (a
/// topic the principal may not describe answers `TopicAuthorizationFailed`). `Err` only when
/// the whole request failed. Blocking.
pub fn describe_topics<C: ClientContext>(
    client: &Client<C>,
    topics: &[String],
    authorized: bool,
    timeout: Duration,
) -> Result<TopicDescriptions, AdminError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let rk = client.native_ptr();
    let names: Vec<CString> = topics
        .iter()
        .map(|t| c_string(t))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    // SAFETY: `ptrs` holds `ptrs.len()` valid C strings; librdkafka copies them.
    let collection =
        unsafe { rd::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len()) };
    if collection.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "librdkafka could not build a topic collection",
        ));
    }
    struct Collection(*mut rd::rd_kafka_TopicCollection_t);
    impl Drop for Collection {
        fn drop(&mut self) {
            // SAFETY: created above and destroyed once; a request works on its own copy.
            unsafe { rd::rd_kafka_TopicCollection_destroy(self.0) }
        }
    }
    let collection = Collection(collection);
    let queue = Queue::new(rk)?;
    let options = Options::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        timeout,
    )?;
    if authorized {
        options.include_authorized_operations()?;
    }
    // SAFETY: every handle is alive for the call.
    unsafe { rd::rd_kafka_DescribeTopics(rk, collection.0, options.0, queue.0) };
    let event = queue.poll(timeout + POLL_SLACK)?;
    event.check()?;
    // SAFETY: the event is alive; the result is part of it.
    let result = unsafe { rd::rd_kafka_event_DescribeTopics_result(event.0) };
    if result.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "unexpected event in place of the DescribeTopics result",
        ));
    }
    let mut n = 0usize;
    // SAFETY: `result` belongs to the live event; `n` receives the count.
    let array = unsafe { rd::rd_kafka_DescribeTopics_result_topics(result, &mut n) };
    let described: &[*const rd::rd_kafka_TopicDescription_t] = if array.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: librdkafka returns `n` valid pointers that live as long as the event.
        unsafe { std::slice::from_raw_parts(array, n) }
    };
    let mut out = Vec::with_capacity(described.len());
    for &d in described {
        // SAFETY: `d` is a description of the live event; everything read from it is copied
        // at once (as in the reads below).
        let name = unsafe { owned(rd::rd_kafka_TopicDescription_name(d)) };
        // SAFETY: see above.
        let err = unsafe { rd::rd_kafka_TopicDescription_error(d) };
        if !err.is_null() {
            // SAFETY: the error belongs to the event; it is read, not destroyed.
            let (code, message) = unsafe {
                (
                    rd::rd_kafka_error_code(err),
                    owned(rd::rd_kafka_error_string(err)),
                )
            };
            if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                out.push((name, Err(AdminError::new(code.into(), message))));
                continue;
            }
        }
        let mut parts = 0usize;
        // SAFETY: see above; only the count is used.
        unsafe { rd::rd_kafka_TopicDescription_partitions(d, &mut parts) };
        // SAFETY: see above.
        let id = unsafe {
            owned(rd::rd_kafka_Uuid_base64str(
                rd::rd_kafka_TopicDescription_topic_id(d),
            ))
        };
        let mut ops_n = 0usize;
        // SAFETY: see above; the array lives as long as the event and is copied at once.
        let authorized = unsafe {
            operations(
                rd::rd_kafka_TopicDescription_authorized_operations(d, &mut ops_n),
                ops_n,
            )
        };
        out.push((
            name,
            Ok(TopicDescription {
                id,
                partitions: parts,
                authorized,
            }),
        ));
    }
    Ok(out)
}

/// How many brokers the cluster reports, from a Metadata request naming no topic (a few bytes
/// whatever the number of topics, unlike a listing; topics this client holds handles for are
/// named too). Not DescribeCluster: librdkafka (2.12) aborts the process when a
/// DescribeCluster response holds no broker and no topic, which a KRaft broker that was just
/// fenced sends ("No brokers or topics in metadata": its parser then reports success without
/// a result and an assertion fails). The Metadata path returns that as an error. Blocking.
pub fn count_brokers<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<usize, AdminError> {
    let rk = client.native_ptr();
    let mut md: *const rd::rd_kafka_metadata_t = ptr::null();
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `rk` is alive for the call; `all_topics` 0 and no topic handle ask for the
    // brokers (and the topics this client knows); librdkafka fills `md` only on success.
    let err = unsafe { rd::rd_kafka_metadata(rk, 0, ptr::null_mut(), &mut md, ms) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(AdminError::new(RDKafkaErrorCode::from(err), ""));
    }
    if md.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "no metadata in the answer",
        ));
    }
    // SAFETY: `md` is the metadata librdkafka returned; it is read, then destroyed once.
    let brokers = unsafe { usize::try_from((*md).broker_cnt).unwrap_or(0) };
    // SAFETY: as above; not used after.
    unsafe { rd::rd_kafka_metadata_destroy(md) };
    if brokers == 0 {
        return Err(AdminError::new(
            RDKafkaErrorCode::BrokerNotAvailable,
            "the cluster reports no broker",
        ));
    }
    Ok(brokers)
}

/// The end offset (high watermark, transactions open or not) of partitions `0..partitions` of
/// `topic`, in one admin ListOffsets call (one request per partition leader); each partition's
/// own outcome, in partition order. Blocking.
pub fn end_offsets<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<Vec<Result<i64, AdminError>>, AdminError> {
    let mut answers = end_offsets_of(client, &[(topic, partitions)], timeout)?;
    Ok(answers.pop().unwrap_or_default())
}

/// [`end_offsets`] of several topics (name, partition count) in one admin ListOffsets call:
/// one request per leader for all of them. Each topic's outcomes, in the order given. The call
/// fails as a whole when a partition's leader is still unknown at `timeout`, and when a topic
/// is named twice.
pub fn end_offsets_of<C: ClientContext>(
    client: &Client<C>,
    topics: &[(&str, i32)],
    timeout: Duration,
) -> Result<Vec<Vec<Result<i64, AdminError>>>, AdminError> {
    struct List(*mut rd::rd_kafka_topic_partition_list_t);
    impl Drop for List {
        fn drop(&mut self) {
            // SAFETY: created by rd_kafka_topic_partition_list_new, destroyed once; the
            // request works on its own copy.
            unsafe { rd::rd_kafka_topic_partition_list_destroy(self.0) }
        }
    }
    let missing = || {
        Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "the partition is missing from the ListOffsets answer",
        ))
    };
    let mut out: Vec<Vec<Result<i64, AdminError>>> = topics
        .iter()
        .map(|(_, n)| (0..(*n).max(0)).map(|_| missing()).collect())
        .collect();
    let total: usize = topics
        .iter()
        .map(|(_, n)| usize::try_from(*n).unwrap_or(0))
        .sum();
    if total == 0 {
        return Ok(out);
    }
    let mut index = std::collections::HashMap::with_capacity(topics.len());
    for (i, &(topic, _)) in topics.iter().enumerate() {
        if index.insert(topic, i).is_some() {
            return Err(AdminError::new(
                RDKafkaErrorCode::InvalidArgument,
                format!("topic {topic} named twice"),
            ));
        }
    }
    let rk = client.native_ptr();
    // SAFETY: a plain allocation; checked for null below.
    let list = List(unsafe {
        rd::rd_kafka_topic_partition_list_new(c_int::try_from(total).unwrap_or(c_int::MAX))
    });
    if list.0.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "librdkafka could not build a partition list",
        ));
    }
    for &(topic, partitions) in topics {
        let name = c_string(topic)?;
        for p in 0..partitions {
            // SAFETY: the list and the name are alive; librdkafka copies the name and returns
            // the element it added, owned by the list.
            let element =
                unsafe { rd::rd_kafka_topic_partition_list_add(list.0, name.as_ptr(), p) };
            if element.is_null() {
                return Err(AdminError::new(
                    RDKafkaErrorCode::Fail,
                    "librdkafka could not add to a partition list",
                ));
            }
            // SAFETY: `element` belongs to the live list.
            unsafe {
                (*element).offset = rd::rd_kafka_OffsetSpec_t::RD_KAFKA_OFFSET_SPEC_LATEST as i64;
            }
        }
    }
    let queue = Queue::new(rk)?;
    let options = Options::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTOFFSETS,
        timeout,
    )?;
    // SAFETY: the options are alive. Read uncommitted: the high watermark, which moves with
    // every write, not the last stable offset, which an open transaction holds back.
    let err = unsafe {
        rd::rd_kafka_AdminOptions_set_isolation_level(
            options.0,
            rd::rd_kafka_IsolationLevel_t::RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED,
        )
    };
    if !err.is_null() {
        // SAFETY: a non-null error returned to us, which we own.
        return Err(unsafe { take_error(err) });
    }
    // SAFETY: every handle is alive for the call; librdkafka copies the list and the options
    // and keeps a reference to the queue until it has answered.
    unsafe { rd::rd_kafka_ListOffsets(rk, list.0, options.0, queue.0) };
    let event = queue.poll(timeout + POLL_SLACK)?;
    event.check()?;
    // SAFETY: the event is alive; the result is part of it.
    let result = unsafe { rd::rd_kafka_event_ListOffsets_result(event.0) };
    if result.is_null() {
        return Err(AdminError::new(
            RDKafkaErrorCode::Fail,
            "unexpected event in place of the ListOffsets result",
        ));
    }
    let mut n = 0usize;
    // SAFETY: `result` belongs to the live event; `n` receives the count.
    let array = unsafe { rd::rd_kafka_ListOffsets_result_infos(result, &mut n) };
    let infos: &[*const rd::rd_kafka_ListOffsetsResultInfo_t] = if array.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: librdkafka returns `n` valid pointers that live as long as the event.
        unsafe { std::slice::from_raw_parts(array, n) }
    };
    for &info in infos {
        // SAFETY: `info` belongs to the live event, and so does the partition it returns.
        let tp = unsafe { rd::rd_kafka_ListOffsetsResultInfo_topic_partition(info) };
        if tp.is_null() {
            continue;
        }
        // SAFETY: as above; read before the event is dropped.
        let (name, partition, offset, err) =
            unsafe { ((*tp).topic, (*tp).partition, (*tp).offset, (*tp).err) };
        if name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name owned by the live event.
        let name = unsafe { CStr::from_ptr(name) };
        let Some(&i) = name.to_str().ok().and_then(|n| index.get(n)) else {
            continue;
        };
        let Some(slot) = usize::try_from(partition)
            .ok()
            .and_then(|p| out.get_mut(i).and_then(|v| v.get_mut(p)))
        else {
            continue;
        };
        *slot = if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(AdminError::new(err.into(), ""))
        } else if offset < 0 {
            // librdkafka's placeholder for a partition whose leader's request failed or timed
            // out: it passes no error for it.
            Err(AdminError::new(
                RDKafkaErrorCode::RequestTimedOut,
                "no answer from the partition's leader",
            ))
        } else {
            Ok(offset)
        };
    }
    Ok(out)
}

/// Caps glibc's malloc arenas at `arenas`, unless `MALLOC_ARENA_MAX` is set (then the
/// operator's value holds). glibc gives the threads up to eight arenas per core, and each keeps
/// the memory freed in it; librdkafka's threads allocate in many of them: at 10,000 partitions
/// the process peaked at 258 MB with glibc's default and 216 MB with four arenas. Call it
/// before any thread starts. Returns whether the cap was set (never on other C libraries).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas(arenas: usize) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    let arenas = c_int::try_from(arenas.max(1)).unwrap_or(c_int::MAX);
    // SAFETY: mallopt only sets one of the allocator's parameters, which glibc reads when it
    // next chooses an arena for a thread.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

/// Caps malloc arenas where the C library has them (glibc); here it has not.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas(_arenas: usize) -> bool {
    false
}

/// A committed offset of a group, as OffsetFetch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset.
    pub offset: i64,
    /// Its commit metadata.
    pub metadata: String,
}

/// The log start offset and high watermark of `topic`/`partition` that the client last saw in
/// a Fetch response (librdkafka keeps both per partition it fetches), without asking the
/// broker; `None` until a response carried them. Cheap and non-blocking: safe on any thread.
pub fn cached_watermarks<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client pointer is valid for the borrow of `client`; `topic` is a
    // NUL-terminated string that outlives the call; `low` and `high` are valid for writes.
    // librdkafka only reads its own partition state under its lock.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

/// Each group's outcome of [`list_group_offsets`], in the order asked.
pub type GroupOffsets = Vec<(String, Result<Vec<GroupOffset>, AdminError>)>;

/// OffsetFetch for many groups on one client: every partition each group committed (the broker
/// answers only what the group has, however many partitions the cluster holds). librdkafka takes
/// one group per ListConsumerGroupOffsets call, so up to `in_flight` calls share one result
/// queue and a new one starts as each answers. Partitions without a valid committed offset are
/// left out. A group that does not answer within `timeout` gets its own timeout error; the
/// remaining groups are not asked once `cancelled()` says so (they are left out of the answer).
/// Blocking.
pub fn list_group_offsets<C: ClientContext>(
    client: &Client<C>,
    groups: &[String],
    in_flight: usize,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<GroupOffsets, AdminError> {
    struct Request(*mut rd::rd_kafka_ListConsumerGroupOffsets_t);
    impl Drop for Request {
        fn drop(&mut self) {
            // SAFETY: created by rd_kafka_ListConsumerGroupOffsets_new and destroyed once; the
            // request works on its own copy.
            unsafe { rd::rd_kafka_ListConsumerGroupOffsets_destroy(self.0) }
        }
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let rk = client.native_ptr();
    let queue = Queue::new(rk)?;
    let names: Vec<CString> = groups
        .iter()
        .map(|g| c_string(g))
        .collect::<Result<_, _>>()?;
    let mut answers: std::collections::HashMap<String, Result<Vec<GroupOffset>, AdminError>> =
        std::collections::HashMap::with_capacity(groups.len());
    let (mut next, mut pending) = (0usize, 0usize);
    let in_flight = in_flight.max(1);
    loop {
        while pending < in_flight && next < names.len() && !cancelled() {
            // SAFETY: a valid C string; a null partition list asks for every partition.
            let raw = unsafe {
                rd::rd_kafka_ListConsumerGroupOffsets_new(names[next].as_ptr(), ptr::null())
            };
            if raw.is_null() {
                return Err(AdminError::new(
                    RDKafkaErrorCode::Fail,
                    "librdkafka could not build a ListConsumerGroupOffsets request",
                ));
            }
            let mut request = Request(raw);
            let options = Options::new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
                timeout,
            )?;
            // The opaque carries the group's index back with its result event (1-based: never
            // null).
            // SAFETY: the options are alive; the opaque is an integer, never dereferenced.
            unsafe {
                rd::rd_kafka_AdminOptions_set_opaque(
                    options.0,
                    ptr::without_provenance_mut::<std::ffi::c_void>(next + 1),
                );
            }
            // SAFETY: every handle is alive for the call; librdkafka copies the request and
            // the options.
            unsafe {
                rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut request.0, 1, options.0, queue.0);
            }
            next += 1;
            pending += 1;
        }
        if pending == 0 {
            break;
        }
        let event = match queue.poll(timeout + POLL_SLACK) {
            Ok(e) => e,
            // Nothing answered in time: the groups still pending, and those not asked yet,
            // time out together (none is left out of the answer unnamed).
            Err(e) => {
                for g in groups {
                    answers.entry(g.clone()).or_insert_with(|| Err(e.clone()));
                }
                break;
            }
        };
        pending -= 1;
        if let Err(e) = event.check() {
            // SAFETY: the event is alive; the opaque is the integer set above.
            let index = unsafe { rd::rd_kafka_event_opaque(event.0) }.addr();
            if let Some(g) = index.checked_sub(1).and_then(|i| groups.get(i)) {
                answers.insert(g.clone(), Err(e));
            }
            continue;
        }
        // SAFETY: the event is alive; the result is part of it.
        let result = unsafe { rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.0) };
        if result.is_null() {
            continue;
        }
        let mut n = 0usize;
        // SAFETY: `result` belongs to the live event; `n` receives the count.
        let array = unsafe { rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut n) };
        let results: &[*const rd::rd_kafka_group_result_t] = if array.is_null() || n == 0 {
            &[]
        } else {
            // SAFETY: librdkafka returns `n` valid pointers that live as long as the event.
            unsafe { std::slice::from_raw_parts(array, n) }
        };
        for &r in results {
            // SAFETY: `r` belongs to the live event; everything read is copied at once.
            let name = unsafe { owned(rd::rd_kafka_group_result_name(r)) };
            // SAFETY: see above.
            let err = unsafe { rd::rd_kafka_group_result_error(r) };
            if !err.is_null() {
                // SAFETY: the error belongs to the event; it is read, not destroyed.
                let (code, message) = unsafe {
                    (
                        rd::rd_kafka_error_code(err),
                        owned(rd::rd_kafka_error_string(err)),
                    )
                };
                if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    answers.insert(name, Err(AdminError::new(code.into(), message)));
                    continue;
                }
            }
            // SAFETY: see above.
            let list = unsafe { rd::rd_kafka_group_result_partitions(r) };
            let mut offsets = Vec::new();
            if !list.is_null() {
                // SAFETY: a partition list of the live event.
                let (elems, cnt) = unsafe { ((*list).elems, (*list).cnt) };
                let elems: &[rd::rd_kafka_topic_partition_t] = match usize::try_from(cnt) {
                    Ok(cnt) if cnt > 0 && !elems.is_null() => {
                        // SAFETY: `cnt` valid elements that live as long as the event.
                        unsafe { std::slice::from_raw_parts(elems, cnt) }
                    }
                    _ => &[],
                };
                for e in elems {
                    if e.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || e.offset < 0
                    {
                        continue;
                    }
                    let metadata = if e.metadata.is_null() || e.metadata_size == 0 {
                        String::new()
                    } else {
                        // SAFETY: `metadata_size` bytes owned by the live event, copied here.
                        let bytes = unsafe {
                            std::slice::from_raw_parts(e.metadata.cast::<u8>(), e.metadata_size)
                        };
                        String::from_utf8_lossy(bytes).into_owned()
                    };
                    offsets.push(GroupOffset {
                        // SAFETY: the topic name of a live element.
                        topic: unsafe { owned(e.topic) },
                        partition: e.partition,
                        offset: e.offset,
                        metadata,
                    });
                }
            }
            answers.insert(name, Ok(offsets));
        }
    }
    Ok(groups
        .iter()
        .filter_map(|g| answers.remove(g).map(|a| (g.clone(), a)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_enums_round_trip() {
        for op in [
            AclOperation::Any,
            AclOperation::All,
            AclOperation::Read,
            AclOperation::Write,
            AclOperation::Create,
            AclOperation::Delete,
            AclOperation::Alter,
            AclOperation::Describe,
            AclOperation::ClusterAction,
            AclOperation::DescribeConfigs,
            AclOperation::AlterConfigs,
            AclOperation::IdempotentWrite,
        ] {
            assert_eq!(operation_to(op).map(operation_from), Some(op));
        }
        for p in [
            AclPermission::Any,
            AclPermission::Deny,
            AclPermission::Allow,
        ] {
            assert_eq!(permission_to(p).map(permission_from), Some(p));
        }
        assert_eq!(operation_to(AclOperation::Unknown), None);
    }

    #[test]
    fn errstr_is_read_up_to_the_nul() {
        let mut buf = [0 as c_char; 8];
        for (i, b) in b"bad".iter().enumerate() {
            buf[i] = c_char::from_ne_bytes([*b]);
        }
        assert_eq!(errstr_text(&buf), "bad");
    }
}
