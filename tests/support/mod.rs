//! Test harness: real brokers on random loopback ports, the real kmirror binary, and helpers
//! that write records and read them back for record-by-record comparison.
//!
//! Brokers: Apache Kafka from Maven Central ([`kafka`]); most tests share one source and one
//! target cluster, each test with its own topic, group and cluster-alias names.

#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::missing_panics_doc
)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmirror_core::mm2::Checkpoint;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The header kmirror writes on every copied record by default (its origin cluster).
pub const ORIGIN_HEADER: &str = "kmirror.origin";

/// What one test works with: a source and a target cluster (shared with other tests unless
/// the test asked for its own), cluster aliases of its own (so that internal topics such as
/// `mm2-offsets.<alias>.internal` and the heartbeats' keys are the test's alone), and a folder
/// for its files.
pub struct Env {
    pub source: Arc<Kafka>,
    pub target: Arc<Kafka>,
    /// Alias of the source cluster in the test's kmirror config.
    pub src: String,
    /// Alias of the target cluster.
    pub tgt: String,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// The shared clusters.
    pub fn shared() -> Env {
        let (source, target) = kafka::shared();
        Env::on(source, target)
    }

    /// Clusters of the test's own, for a test that stops or breaks one.
    pub fn dedicated() -> Env {
        let (source, target) = kafka::start_pair();
        Env::on(source, target)
    }

    /// Given clusters.
    pub fn on(source: Arc<Kafka>, target: Arc<Kafka>) -> Env {
        let id = rand_suffix();
        Env {
            source,
            target,
            src: format!("src{id}"),
            tgt: format!("tgt{id}"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A plain config for the `src -> tgt` flow with identity naming (see [`write_config`]).
    pub fn config(&self, topics: &str, extra_connector: &str) -> PathBuf {
        write_config(
            self.dir.path(),
            (&self.src, &self.source.bootstrap),
            (&self.tgt, &self.target.bootstrap),
            topics,
            extra_connector,
        )
    }

    /// [`Env::config`] with exactly-once mode on (`exactly.once.source.support: enabled` in the
    /// target cluster's config).
    pub fn exactly_once_config(&self, topics: &str, extra_connector: &str) -> PathBuf {
        let path = self.config(topics, extra_connector);
        let text = fs::read_to_string(&path).unwrap().replace(
            "      offset.flush.interval.ms: 500\n",
            "      offset.flush.interval.ms: 500\n      exactly.once.source.support: enabled\n",
        );
        assert!(text.contains("exactly.once.source.support"));
        fs::write(&path, text).unwrap();
        path
    }

    /// The flow's metric labels.
    pub fn flow_labels(&self) -> [(&'static str, &str); 2] {
        [("source", self.src.as_str()), ("target", self.tgt.as_str())]
    }

    /// The progress topic on the target.
    pub fn progress_topic(&self) -> String {
        format!("mm2-offsets.{}.internal", self.src)
    }

    /// The checkpoints topic on the target.
    pub fn checkpoints_topic(&self) -> String {
        format!("{}.checkpoints.internal", self.src)
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A record as written and as read back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(bootstrap, name, partitions, &[]);
}

/// Creates a topic with topic configs (replication factor 1).
pub fn create_topic_with(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut new = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    for r in block_on(admin(bootstrap).create_topics(&[new], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
}

/// An idempotent producer for writing test records.
pub fn test_producer(bootstrap: &str) -> BaseProducer {
    test_producer_config(bootstrap).create().unwrap()
}

fn test_producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = client(bootstrap);
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("message.max.bytes", "2000000");
    config
}

/// Counts the records the cluster refused, so that a test never goes on with records it
/// believes written.
struct CountRefused(Arc<std::sync::atomic::AtomicUsize>);

impl rdkafka::client::ClientContext for CountRefused {}

impl rdkafka::producer::ProducerContext for CountRefused {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, (): ()) {
        if result.is_err() {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Hands one record to `producer` for `topic`'s `partition`, waiting for room in its queue.
pub fn send_record<C: rdkafka::producer::ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    topic: &str,
    partition: i32,
    r: &TestRecord,
) {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut rec = BaseRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .timestamp(r.timestamp);
    if let Some(k) = &r.key {
        rec = rec.key(k);
    }
    if let Some(v) = &r.value {
        rec = rec.payload(v);
    }
    if !r.headers.is_empty() {
        rec = rec.headers(headers);
    }
    loop {
        match producer.send(rec) {
            Ok(()) => break,
            Err((_, back)) => {
                rec = back;
                producer.poll(Duration::from_millis(5));
            }
        }
    }
    producer.poll(Duration::ZERO);
}

/// Writes records to one partition each, in order; waits for every acknowledgement, and
/// fails if the cluster refused any.
pub fn produce(bootstrap: &str, topic: &str, records: &[(i32, TestRecord)]) {
    produce_with(bootstrap, topic, records, &[]);
}

/// [`produce`] with producer settings of the test's own (e.g. a `batch.size` that fits the
/// topic's segments).
pub fn produce_with(
    bootstrap: &str,
    topic: &str,
    records: &[(i32, TestRecord)],
    settings: &[(&str, &str)],
) {
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut config = test_producer_config(bootstrap);
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer: BaseProducer<CountRefused> = config
        .create_with_context(CountRefused(Arc::clone(&refused)))
        .unwrap();
    for (partition, r) in records {
        send_record(&producer, topic, *partition, r);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        refused, 0,
        "{bootstrap} refused {refused} test records for {topic}"
    );
}

/// Reads every partition of `topic` from the beginning until `expected` records arrived in
/// total (or the timeout passes), returning them per partition in offset order.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<TestRecord>> {
    let mut config = client(bootstrap);
    config.set("group.id", format!("verify-{}", rand_suffix()));
    consume_with(config, topic, partitions, expected, timeout)
}

/// [`consume`] with a caller-made client config (e.g. TLS).
pub fn consume_with(
    mut config: ClientConfig,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<TestRecord>> {
    let consumer: BaseConsumer = config
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<TestRecord>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut total = 0;
    let deadline = Instant::now() + timeout;
    while total < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                // kmirror's origin header is left out: records are compared with what was
                // written to the source (tests/e2e/two_way.rs checks the header itself).
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .filter(|h| h.key != ORIGIN_HEADER)
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.entry(m.partition()).or_default().push(TestRecord {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                });
                total += 1;
            }
            Some(Err(e)) => eprintln!("verify consumer: {e}"),
            None => {}
        }
    }
    out
}

/// A consumer of partitions `0..partitions` of `topic`, from their first record (nothing
/// committed).
pub fn reader_from_start(bootstrap: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", format!("verify-{}", rand_suffix()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Reads what is there now (until `quiet` passes with no new record).
pub fn consume_until_quiet(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    quiet: Duration,
) -> BTreeMap<i32, Vec<TestRecord>> {
    let consumer = reader_from_start(bootstrap, topic, partitions);
    let mut out: BTreeMap<i32, Vec<TestRecord>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.entry(m.partition()).or_default().push(TestRecord {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: Vec::new(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
            });
            last = Instant::now();
        }
    }
    out
}

/// Lists topics on a cluster, with their partition counts.
pub fn topics(bootstrap: &str) -> BTreeMap<String, usize> {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap();
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    md.topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect()
}

/// Runs a one-shot kmirror command (`validate`, `plan`, `offsets`, ...) with its default log
/// filter, and returns its exit code, stdout and stderr.
pub fn kmirror_command(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kmirror"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running kmirror process.
pub struct Kmirror {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Kmirror {
    pub fn start(config: &Path, extra: &[&str]) -> Kmirror {
        let filter = std::env::var("KMIRROR_TEST_LOG").unwrap_or_else(|_| "info".into());
        Self::start_logging(config, extra, &filter)
    }

    /// [`Kmirror::start`] with the log filter `filter` (`RUST_LOG` syntax).
    pub fn start_logging(config: &Path, extra: &[&str], filter: &str) -> Kmirror {
        let log = config.with_extension(format!("log.{}", rand_suffix()));
        let file = fs::File::create(&log).unwrap();
        let mut args = vec!["run", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_kmirror"))
            .args(&args)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Kmirror {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The exit code if the process has ended.
    pub fn exit_code(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().unwrap()?;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kmirror {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- kmirror log ({}) ----\n{}",
                self.log.display(),
                self.logs()
            );
        }
    }
}

/// The connector block of the tests' flows (indented for a mirror of `mirrors:`): identity
/// names, broker-default replication factors, topics looked for every second.
pub const TEST_CONNECTOR: &str = "    sourceConnector:
      config:
        replication.policy.class: org.apache.kafka.connect.mirror.IdentityReplicationPolicy
        replication.factor: -1
        refresh.topics.interval.seconds: 1
        heartbeats.topic.replication.factor: -1
        checkpoints.topic.replication.factor: -1
        offset-syncs.topic.replication.factor: -1";

/// A plain kmirror config for a source → target flow with identity naming: `(alias,
/// bootstrap)` of each cluster, the topics pattern, and extra connector config lines. Only
/// consumer groups named after the topics (`<topics>.*`) are checkpointed, so that a test's
/// flow does not read the groups of the tests running beside it on the shared clusters.
pub fn write_config(
    dir: &Path,
    (src, source): (&str, &str),
    (tgt, target): (&str, &str),
    topics: &str,
    extra_connector: &str,
) -> PathBuf {
    let path = dir.join(format!("kmirror-{}.yaml", rand_suffix()));
    let text = format!(
        r#"clusters:
  - alias: {src}
    bootstrapServers: {source}
  - alias: {tgt}
    bootstrapServers: {target}
    config:
      offset.storage.partitions: 3
      offset.flush.interval.ms: 500
mirrors:
  - sourceCluster: {src}
    targetCluster: {tgt}
    topicsPattern: "{topics}"
    groupsPattern: "{topics}.*"
{TEST_CONNECTOR}
{extra_connector}"#
    );
    fs::write(&path, text).unwrap();
    path
}

/// `n` small distinct records spread round-robin over `partitions` (record `i` on `i % partitions`).
pub fn spread(n: i32, partitions: i32) -> Vec<(i32, TestRecord)> {
    (0..n)
        .map(|i| {
            let r = TestRecord {
                key: Some(i.to_be_bytes().to_vec()),
                value: Some(format!("v{i}").into_bytes()),
                headers: Vec::new(),
                timestamp: 1_000 + i64::from(i),
            };
            (i % partitions, r)
        })
        .collect()
}

/// Writes `shift(p)` filler records into each partition of a target topic, so that its offsets
/// run ahead of the source's and a test can tell translated offsets from copied ones. Returns
/// how many were written.
pub fn shift_offsets(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    shift: impl Fn(i32) -> i64,
) -> usize {
    let filler: Vec<(i32, TestRecord)> = (0..partitions)
        .flat_map(|p| {
            (0..shift(p)).map(move |i| {
                (
                    p,
                    TestRecord {
                        key: Some(format!("filler-{p}-{i}").into_bytes()),
                        value: None,
                        headers: Vec::new(),
                        timestamp: 1,
                    },
                )
            })
        })
        .collect();
    produce(bootstrap, topic, &filler);
    filler.len()
}

/// Records grouped by partition, with every partition of `0..partitions` present (an empty
/// one then asserts that the target's is empty too).
pub fn by_partition(
    records: &[(i32, TestRecord)],
    partitions: i32,
) -> BTreeMap<i32, Vec<TestRecord>> {
    let mut out: BTreeMap<i32, Vec<TestRecord>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    for (p, r) in records {
        out.get_mut(p).unwrap().push(r.clone());
    }
    out
}

/// Compares per partition; panics with the first difference.
pub fn assert_same(
    expected: &BTreeMap<i32, Vec<TestRecord>>,
    got: &BTreeMap<i32, Vec<TestRecord>>,
    what: &str,
) {
    for (p, want) in expected {
        let have = got.get(p).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            have.len(),
            want.len(),
            "{what}: partition {p}: {} records on the target, {} on the source",
            have.len(),
            want.len()
        );
        for (i, (a, b)) in want.iter().zip(have).enumerate() {
            assert_eq!(a, b, "{what}: partition {p}: record {i} differs");
        }
    }
}

/// Reads `topic` on `bootstrap` until every partition holds the last record `want` has for it
/// (replays after a crash make record counts useless for this), or `timeout` passes; returns
/// everything it read.
pub fn consume_until_complete(
    bootstrap: &str,
    topic: &str,
    want: &BTreeMap<i32, Vec<TestRecord>>,
    timeout: Duration,
) -> BTreeMap<i32, Vec<TestRecord>> {
    let partitions = i32::try_from(want.len()).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        let got = consume_until_quiet(bootstrap, topic, partitions, Duration::from_secs(2));
        let complete = want.iter().all(|(p, records)| {
            records
                .last()
                .is_none_or(|last| got[p].iter().any(|r| r.key == last.key))
        });
        if complete || Instant::now() > deadline {
            return got;
        }
    }
}

/// Record `i` of a numbered stream: key `i` (9 digits), a value of `value_len` bytes, and a
/// timestamp that grows with `i`.
pub fn numbered(i: usize, value_len: usize) -> TestRecord {
    TestRecord {
        key: Some(format!("{i:09}").into_bytes()),
        value: Some(vec![b'v'; value_len]),
        headers: Vec::new(),
        timestamp: 1_700_000_000_000 + i64::try_from(i).unwrap(),
    }
}

/// Records `from..to` of a numbered stream, record `i` on partition `i % partitions`.
pub fn numbered_batch(
    from: usize,
    to: usize,
    partitions: i32,
    value_len: usize,
) -> Vec<(i32, TestRecord)> {
    (from..to)
        .map(|i| {
            (
                i32::try_from(i).unwrap() % partitions,
                numbered(i, value_len),
            )
        })
        .collect()
}

/// Reads `topic` on the target until it holds the last record `sent` has for each partition,
/// then checks per partition that every record arrived in order (replays allowed); returns how
/// many were copied twice.
pub fn assert_all_in_order(
    bootstrap: &str,
    topic: &str,
    sent: &[(i32, TestRecord)],
    partitions: i32,
    timeout: Duration,
) -> usize {
    let want = by_partition(sent, partitions);
    let got = consume_until_complete(bootstrap, topic, &want, timeout);
    want.iter()
        .map(|(p, records)| check_no_loss_in_order(records, &got[p], *p))
        .sum()
}

/// Checks that `got` holds every record of `want` in order, allowing replays (a suffix of
/// already-copied records copied again after a crash). Returns how many were copied twice.
pub fn check_no_loss_in_order(want: &[TestRecord], got: &[TestRecord], partition: i32) -> usize {
    let index: HashMap<&TestRecord, usize> = want.iter().enumerate().map(|(i, r)| (r, i)).collect();
    let mut high: Option<usize> = None;
    let mut prev: Option<usize> = None;
    for (i, r) in got.iter().enumerate() {
        let pos = *index.get(r).unwrap_or_else(|| {
            panic!(
                "partition {partition}: record {i} on the target was never written to the source"
            )
        });
        match (prev, high) {
            (None, _) => assert_eq!(
                pos, 0,
                "partition {partition}: the target starts at source record {pos}"
            ),
            (Some(p), Some(h)) => {
                // Either the next record, or a replay that starts at or before the furthest copied one.
                assert!(pos == p + 1 || pos <= h, "partition {partition}: record {i} jumps from source record {p} to {pos}: records were skipped");
                if pos <= p {
                    assert!(
                        pos <= h,
                        "partition {partition}: replay starts after the copied data"
                    );
                    eprintln!(
                        "partition {partition}: target offset {i} copies source record {pos} again (after {p})"
                    );
                }
            }
            (Some(_), None) => unreachable!(),
        }
        prev = Some(pos);
        high = Some(high.map_or(pos, |h| h.max(pos)));
    }
    assert_eq!(
        high.map_or(0, |h| h + 1),
        want.len(),
        "partition {partition}: only {} of {} records arrived",
        high.map_or(0, |h| h + 1),
        want.len()
    );
    got.len() - want.len()
}

/// GET `path`; returns status code and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The configs set on a topic (not broker or built-in defaults).
pub fn configs(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let results = block_on(admin(bootstrap).describe_configs(
        &[rdkafka::admin::ResourceSpecifier::Topic(topic)],
        &rdkafka::admin::AdminOptions::new(),
    ))
    .unwrap();
    results
        .into_iter()
        .flat_map(|r| r.unwrap().entries)
        .filter(|e| e.source == rdkafka::admin::ConfigSource::DynamicTopic)
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect()
}

/// Sets one config of a topic (AlterConfigs, as `kafka-configs --alter` does).
pub fn alter_topic_config(bootstrap: &str, topic: &str, key: &str, value: &str) {
    let config = rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic))
        .set(key, value);
    let results = block_on(admin(bootstrap).alter_configs(&[config], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("altering {topic}: {e}"));
    for r in results {
        r.unwrap_or_else(|e| panic!("altering {topic}: {e:?}"));
    }
}

/// The value of the series `name{labels}` whose labels include every `want` pair.
pub fn series(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find_map(|l| {
            let (labels, value) = l[name.len()..].rsplit_once(' ')?;
            want.iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse().ok())?
        })
}

/// Commits `offsets` (partition, next offset) for `group` on a cluster.
pub fn commit(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

pub fn committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let partitions = topics(bootstrap).get(topic).copied().unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    for p in 0..i32::try_from(partitions).unwrap() {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The latest checkpoint per partition for `group` in the checkpoints topic of `env`'s flow
/// (read from the beginning, last wins).
pub fn checkpoints(env: &Env, group: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let c: BaseConsumer = client(&env.target.bootstrap)
        .set("group.id", format!("cp-{}", rand_suffix()))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&env.checkpoints_topic(), 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let cp = Checkpoint::decode(m.key().unwrap(), m.payload().unwrap())
                    .expect("an MM2 checkpoint");
                if cp.group == group && cp.topic == topic {
                    out.insert(cp.partition, (cp.upstream, cp.downstream));
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    out
}

/// Deletes `topic` and waits until the cluster no longer lists it.
pub fn delete_topic(bootstrap: &str, topic: &str) {
    let admin = admin(bootstrap);
    let results = block_on(admin.delete_topics(&[topic], &AdminOptions::new())).unwrap();
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("deleting {t}: {e}"));
    }
    wait_for("the topic to be deleted", Duration::from_secs(30), || {
        if topics(bootstrap).contains_key(topic) {
            Err(format!("{topic} is still listed"))
        } else {
            Ok(())
        }
    });
}

/// Deletes `topic` and creates it again with the same partition count (retrying while the
/// broker still finishes the deletion).
pub fn recreate_topic(bootstrap: &str, topic: &str, partitions: i32) {
    delete_topic(bootstrap, topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let admin = admin(bootstrap);
        let new = rdkafka::admin::NewTopic::new(
            topic,
            partitions,
            rdkafka::admin::TopicReplication::Fixed(1),
        );
        let result = block_on(admin.create_topics(&[new], &AdminOptions::new())).unwrap();
        match result.into_iter().next().unwrap() {
            Ok(_) => return,
            Err((_, e)) if Instant::now() < deadline => {
                eprintln!("creating {topic} again: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err((_, e)) => panic!("creating {topic} again: {e}"),
        }
    }
}

/// A source written at a steady rate: 100 numbered records every 5 ms (20,000 records/s)
/// spread over `partitions` of `topic`, until `stop`. Returns what it wrote and for how long.
pub fn steady_writer(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Vec<(i32, TestRecord)>, Duration)> {
    const STEP: usize = 100;
    let (stop, bootstrap, topic) = (Arc::clone(stop), bootstrap.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let producer = test_producer(&bootstrap);
        let mut sent = Vec::new();
        let started = Instant::now();
        let mut next = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for i in next..next + STEP {
                let partition = i32::try_from(i).unwrap() % partitions;
                let r = numbered(i, 100);
                send_record(&producer, &topic, partition, &r);
                sent.push((partition, r));
            }
            next += STEP;
            producer.poll(Duration::ZERO);
            let due = Duration::from_millis(5) * u32::try_from(next / STEP).unwrap();
            std::thread::sleep(due.saturating_sub(started.elapsed()));
        }
        producer.flush(Duration::from_secs(60)).unwrap();
        (sent, started.elapsed())
    })
}

/// Starts kmirror on `config` and kills it (-9) `kills` times, at varied moments (3 to 6 s
/// after each start: while catching up after the restart, and while keeping up).
pub fn kill_repeatedly(config: &Path, kills: usize) {
    let mut seed = u64::from(std::process::id());
    for _ in 0..kills {
        let mut kmirror = Kmirror::start(config, &[]);
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        std::thread::sleep(Duration::from_millis(3_000 + (seed >> 33) % 3_000));
        assert_eq!(
            kmirror.exit_code(),
            None,
            "kmirror ended by itself:\n{}",
            kmirror.logs()
        );
        kmirror.kill();
    }
}

/// Wall-clock time in epoch milliseconds (Kafka timestamps).
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

pub mod secure;

pub use kmirror_testbed::kafka::Kafka;
pub use kmirror_testbed::{admin, block_on, certs, client, free_port, kafka, rand_suffix};
