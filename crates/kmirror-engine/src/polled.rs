//! A producer for the few records of the side jobs (checkpoints, heartbeats), each record's
//! outcome handed to a future.
//!
//! rdkafka's `FutureProducer` serves delivery reports from a thread that polls with a
//! 100 ms deadline; the deadline is handed to librdkafka in whole milliseconds, so the last
//! fraction of every millisecond-rounded wait is spent polling with a zero timeout in a loop:
//! about 1 % of a core per producer while nothing happens. This one serves its reports every
//! [`POLL_EVERY`] with non-blocking polls and sleeps in between.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tokio::sync::oneshot;

/// How often delivery reports are served.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The most events served in one round of the polling thread.
const SERVE_MAX: usize = 10_000;

/// Where a record landed: (partition, offset).
pub type Delivered = KafkaResult<(i32, i64)>;

/// The context of a [`PolledProducer`]: `C`'s logging and errors, and each delivery report
/// sent to the record's future.
pub struct Context<C> {
    inner: C,
    served: AtomicUsize,
}

impl<C: ClientContext> ClientContext for Context<C> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.inner.stats_raw(statistics);
    }
}

impl<C: ClientContext> ProducerContext for Context<C> {
    type DeliveryOpaque = Box<oneshot::Sender<Delivered>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        self.served.fetch_add(1, Ordering::Relaxed);
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The caller may have stopped waiting: nothing to tell then.
        let _ = tx.send(outcome);
    }
}

/// A producer whose delivery reports a thread of its own serves every [`POLL_EVERY`].
pub struct PolledProducer<C: ClientContext + 'static> {
    producer: Arc<BaseProducer<Context<C>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<C: ClientContext + 'static> PolledProducer<C> {
    /// A producer with `config` and `context`, and its polling thread.
    pub fn new(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let producer = Arc::new(BaseProducer::from_config_and_context(
            config,
            Context {
                inner: context,
                served: AtomicUsize::new(0),
            },
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let producer = Arc::clone(&producer);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kmirror-side-producer".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        serve(&producer);
                        std::thread::sleep(POLL_EVERY);
                    }
                })
                .map_err(|e| KafkaError::ClientCreation(format!("polling thread: {e}")))?
        };
        Ok(Self {
            producer,
            stop,
            thread: Some(thread),
        })
    }

    /// Queues a record for `partition` of `topic`; its outcome arrives on the returned
    /// receiver (a dropped sender means the producer went away).
    pub fn send(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        payload: &[u8],
        timestamp: i64,
    ) -> KafkaResult<oneshot::Receiver<Delivered>> {
        let (tx, rx) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(topic, Box::new(tx))
            .partition(partition)
            .key(key)
            .payload(payload)
            .timestamp(timestamp);
        self.producer.send(record).map(|()| rx).map_err(|(e, _)| e)
    }

    /// Waits up to `timeout` for every queued record to be delivered (blocking).
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}

/// Serves the queued events without waiting, until one poll serves no delivery report.
fn serve<C: ClientContext>(producer: &BaseProducer<Context<C>>) {
    for _ in 0..SERVE_MAX {
        let before = producer.context().served.load(Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if producer.context().served.load(Ordering::Relaxed) == before {
            break;
        }
    }
}

impl<C: ClientContext + 'static> Drop for PolledProducer<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
