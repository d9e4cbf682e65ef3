//! Exactly-once mode: the copied records and their progress committed together.
//!
//! In this mode transactional producers carry every record of the flow, and the progress and
//! translation-map records of the partitions they copied, in transactions committed every
//! commit interval: one with `transactional.id` = `kmirror-<source>-<target>`, and one per codec
//! the source topics use (`<id>-<codec>`, see [`crate::lanes`]). A `read_committed`
//! consumer on the target sees each source record once: a crash, a kill or a fenced instance
//! leaves open transactions that the next instance's `init_transactions` abort (fencing the
//! old one: every id it may use is fenced before the progress is read), and the progress it
//! then reads (`read_committed` too) names exactly the records committed. Offset syncs, published translation maps and so checkpoints follow commits only:
//! they never name a record that was aborted.
//!
//! A transaction that fails (a record refused, the target unreachable beyond the transaction
//! timeout) is aborted and the replicator restarted from the committed progress. A record the
//! target refuses for good (too large, invalid) is remembered in [`Poisoned`] across those
//! restarts: its partition copies up to it and stops there, loudly, as in at-least-once mode,
//! while the other partitions go on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmirror_core::{Offset, TopicPartition};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// librdkafka's (and Kafka's) default `transaction.timeout.ms`.
const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 60_000;
/// `message.timeout.ms` is kept this far below the transaction timeout, so that a record the
/// target does not take fails (and the transaction is aborted by kmirror) before the broker
/// aborts the transaction on its own.
const MESSAGE_TIMEOUT_MARGIN_MS: u64 = 5_000;
/// Longest single wait of a transactional call; longer waits are repeated, watching for
/// shutdown in between.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit may be retried (the target answering slowly) before the transaction is
/// aborted and the replicator restarted.
pub(crate) const COMMIT_PATIENCE: Duration = Duration::from_secs(30);

/// Records the target refused for good, per source partition: the first such offset and why.
/// Shared by the replicators of one flow across restarts (an abort restarts the replicator).
pub type Poisoned = Arc<Mutex<HashMap<TopicPartition, (Offset, String)>>>;

/// What a replicator needs for exactly-once mode.
#[derive(Clone)]
pub struct Transactions {
    /// The producer's `transactional.id` (for logs; set in its config).
    pub transactional_id: String,
    /// How often the open transaction is committed.
    pub commit_interval: Duration,
    /// Records refused for good in earlier runs.
    pub poisoned: Poisoned,
}

/// Makes a replication producer config transactional: `transactional.id`, and a
/// `message.timeout.ms` below the transaction timeout (librdkafka refuses one above it; kmirror's
/// at-least-once default is "never").
pub fn producer_config(config: &mut ClientConfig, transactional_id: &str) {
    let timeout = config
        .get("transaction.timeout.ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_TRANSACTION_TIMEOUT_MS);
    let bound = timeout
        .saturating_sub(MESSAGE_TIMEOUT_MARGIN_MS)
        .max(timeout / 2)
        .max(1);
    let message_timeout = config
        .get("message.timeout.ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0 && *ms <= bound)
        .unwrap_or(bound);
    config
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", timeout.to_string())
        .set("message.timeout.ms", message_timeout.to_string());
}

/// Runs a transactional call of at most [`CALL_TIMEOUT`] (and at most what is left of
/// `patience`) until it succeeds, fails for good, `patience` passes or `shutdown` is cancelled
/// (then the last error is returned).
pub(crate) fn with_retries(
    what: &str,
    patience: Duration,
    shutdown: &CancellationToken,
    mut call: impl FnMut(Duration) -> std::result::Result<(), KafkaError>,
) -> std::result::Result<(), KafkaError> {
    let until = Instant::now() + patience;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match call(CALL_TIMEOUT.min(left.max(Duration::from_millis(100)))) {
            Ok(()) => return Ok(()),
            Err(e) if retriable(&e) && Instant::now() < until && !shutdown.is_cancelled() => {
                tracing::debug!("{what}: {e}; trying again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a transactional call may be repeated as it is (a timeout).
pub(crate) fn retriable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_retriable(),
        KafkaError::Flush(code) => *code == RDKafkaErrorCode::OperationTimedOut,
        _ => false,
    }
}

/// Whether the producer can do nothing more: fenced by a newer instance with the same
/// `transactional.id`, or failed for good.
pub(crate) fn fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal() || fenced_code(t.code()),
        // After a fatal error librdkafka fails every queued record with `_FATAL`.
        other => other
            .rdkafka_error_code()
            .is_some_and(|c| fenced_code(c) || c == RDKafkaErrorCode::Fatal),
    }
}

/// Whether `code` says that a newer instance with the same `transactional.id` took over.
pub(crate) fn fenced_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Whether a failed send means the transaction cannot go on (it is in an abortable state, or
/// the producer failed for good), rather than a refusal of this one record before it was
/// queued (too large for the producer, an unknown partition), which leaves the transaction
/// as it was.
pub(crate) fn ends_transaction(e: &KafkaError) -> bool {
    fatal(e)
        || matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::State | RDKafkaErrorCode::Fatal)
        )
}

/// Whether the target refused a record for what it is (its size, its content): copying it
/// again fails again, whatever the transaction.
pub(crate) fn refused_for_good(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::InvalidTimestamp
                | C::MessageBatchTooLarge
                | C::PolicyViolation
        )
    )
}

/// The error of an instance whose transactions another instance of the flow took over: it
/// stops copying the flow rather than fence the other back.
pub(crate) fn fenced(transactional_id: &str, what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Fenced(format!(
        "{what}: {reason}: another kmirror with transactional.id `{transactional_id}` (the same flow) started and took over this flow's transactions; this instance stops copying it (run one instance per flow)"
    ))
}

/// The error a failed transaction ends the replicator with: [`Error::Fenced`] when another
/// instance took over, else retriable (restarted from the committed progress).
pub(crate) fn failure(transactional_id: &str, what: &str, e: &KafkaError) -> Error {
    let fenced = match e {
        KafkaError::Transaction(t) => fenced_code(t.code()),
        other => other.rdkafka_error_code().is_some_and(fenced_code),
    };
    if fenced {
        self::fenced(transactional_id, what, e)
    } else if fatal(e) {
        Error::Fatal(format!(
            "{what}: the transactional producer failed for good: {e}; nothing of the open transaction is visible to read_committed consumers, and copying resumes from the committed progress"
        ))
    } else {
        Error::Retriable(format!(
            "{what}: {e}; the transaction was aborted: nothing of it is visible to read_committed consumers, and copying resumes from the committed progress"
        ))
    }
}

fn failure_is_fenced(e: &KafkaError) -> bool {
    matches!(failure("", "", e), Error::Fenced(_))
}

/// How long fencing at start may wait for the target (retried after that by the flow).
pub(crate) const INIT_PATIENCE: Duration = Duration::from_secs(120);

/// Fences earlier instances with the same `transactional.id` (their open transaction is
/// aborted) and readies the producer. Blocking; gives up at shutdown.
pub fn init<C: rdkafka::producer::ProducerContext>(
    producer: &rdkafka::producer::BaseProducer<C>,
    transactional_id: &str,
    patience: Duration,
    shutdown: &CancellationToken,
) -> Result<()> {
    use rdkafka::producer::Producer;
    with_retries(
        "initializing transactions",
        patience,
        shutdown,
        |t| producer.init_transactions(t),
    )
    .map_err(|e| {
        if shutdown.is_cancelled() {
            Error::Retriable(format!("stopped while initializing transactions: {e}"))
        } else if fatal(&e) && !failure_is_fenced(&e) {
            Error::Retriable(format!(
                "the target refused transactions for `{transactional_id}`: {e} (kmirror's principal needs Write and Describe on TransactionalId `{transactional_id}` and, with compressed topics, `{transactional_id}-<codec>`: a prefixed ACL on `{transactional_id}`; transaction.timeout.ms must not exceed the broker's transaction.max.timeout.ms)"
            ))
        } else if fatal(&e) {
            failure(transactional_id, "initializing transactions", &e)
        } else {
            Error::Retriable(format!(
                "the target did not initialize transactions for `{transactional_id}`: {e} (does the target allow transactions: transaction.state.log.* settings, TransactionalId ACLs?)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_timeout_stays_below_the_transaction_timeout() {
        let mut c = ClientConfig::new();
        c.set("message.timeout.ms", "0");
        producer_config(&mut c, "kmirror-a-b");
        assert_eq!(c.get("transactional.id"), Some("kmirror-a-b"));
        assert_eq!(c.get("transaction.timeout.ms"), Some("60000"));
        assert_eq!(c.get("message.timeout.ms"), Some("55000"));

        let mut c = ClientConfig::new();
        c.set("transaction.timeout.ms", "20000")
            .set("message.timeout.ms", "10000");
        producer_config(&mut c, "t");
        assert_eq!(c.get("message.timeout.ms"), Some("10000"));

        let mut c = ClientConfig::new();
        c.set("transaction.timeout.ms", "4000")
            .set("message.timeout.ms", "90000");
        producer_config(&mut c, "t");
        assert_eq!(c.get("message.timeout.ms"), Some("2000"));
    }
}
