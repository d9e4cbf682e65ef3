//! End-to-end benchmark on Apache Kafka: a bare librdkafka consume→produce loop, kmirror and
//! MirrorMaker 2 copy the same records, each into a fresh target, in one run.
//!
//! With no `--source`/`--target`, it starts its own single-node KRaft clusters from the Maven
//! Central jars (`scripts/kafka.sh`): one source, and a new target for every replicator. For
//! each source compression it preloads the records, then runs each replicator as its own
//! process and watches the target's high watermarks: start to first record, start to the last
//! one (records/s), the process's CPU seconds and peak RSS, and the bytes the target stores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod produce;
mod scale;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use kmirror_testbed::kafka::{JavaProcess, Kafka, KafkaOptions};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

#[derive(Parser)]
#[command(
    about = "Benchmark kmirror against a bare librdkafka loop and MirrorMaker 2 on Apache Kafka",
    long_about = "Copies the same records with a bare librdkafka consume→produce loop, kmirror and \
MirrorMaker 2 (dedicated mode), each into a fresh target, and prints records/s, CPU seconds, \
peak RSS, start to first record and the bytes the target stores, per source compression.\n\n\
Without --source/--target it starts its own Apache Kafka clusters (scripts/kafka.sh resolves \
the jars; KMIRROR_KAFKA_VERSION picks the version)."
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Records to copy.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Codec of the source's batches (the preloading producer's compression.type).
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Compression::None, Compression::Lz4, Compression::Zstd])]
    compression: Vec<Compression>,
    /// Replicators to run.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Replicator::Loop, Replicator::Kmirror, Replicator::Mm2])]
    only: Vec<Replicator>,
    /// An existing source cluster (default: start one).
    #[arg(long, requires = "target")]
    source: Option<String>,
    /// An existing target cluster (default: a fresh one per replicator). Each replicator then
    /// writes to a topic of its own, and target bytes are not measured.
    #[arg(long, requires = "source")]
    target: Option<String>,
    /// The kmirror binary (default: next to this one).
    #[arg(long)]
    kmirror: Option<PathBuf>,
    /// A connector key for kmirror's flow, as KEY=VALUE (repeatable), e.g.
    /// `--kmirror-key provenance.header.enabled=false` to measure without the origin header.
    #[arg(long = "kmirror-key", value_name = "KEY=VALUE")]
    kmirror_keys: Vec<String>,
    /// Keep kmirror's log (RUST_LOG=info) of each run in this directory, as
    /// `kmirror-<compression>.log`, to see where its time goes.
    #[arg(long)]
    logs: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Many topics, partitions and consumer groups on one instance: start to every record
    /// copied, start to every group checkpointed, a commit to its checkpoint (p50/p99), idle
    /// CPU, peak RSS and threads, for kmirror and MM2 on the same source.
    Scale(scale::ScaleArgs),
    /// The cost of one produce call that names its topic by string (rdkafka's `send`, what
    /// kmirror used before its topic handles) as the producer knows more topics: librdkafka
    /// finds the topic by walking every topic it knows under its client's write lock. No
    /// cluster needed: the records are queued for an unreachable broker, then purged.
    ProduceCall {
        /// Topics the producer knows (comma-separated counts).
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        topics: Vec<usize>,
        /// Calls timed per count.
        #[arg(long, default_value_t = 200_000)]
        calls: usize,
    },
    /// The bare loop, as its own process: consume every record of a topic from the beginning
    /// and produce it to the same partition of another, nothing else.
    Loop {
        #[arg(long)]
        source: String,
        #[arg(long)]
        target: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        out: String,
        #[arg(long)]
        partitions: i32,
        #[arg(long)]
        records: usize,
        /// The codec of the target's batches (the source's, as kmirror keeps it by default).
        #[arg(long, default_value = "none")]
        compression: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Replicator {
    /// The bare librdkafka loop.
    Loop,
    /// kmirror.
    Kmirror,
    /// kmirror in exactly-once mode (`exactly.once.source.support: enabled` on the target).
    KmirrorEos,
    /// Two kmirror replicas sharing the partitions (`scale.out.enabled`); CPU and RSS summed.
    Kmirror2,
    /// Three kmirror replicas sharing the partitions.
    Kmirror3,
    /// MirrorMaker 2 in dedicated mode.
    Mm2,
}

impl Replicator {
    fn name(self) -> &'static str {
        match self {
            Replicator::Loop => "bare loop",
            Replicator::Kmirror => "kmirror",
            Replicator::KmirrorEos => "kmirror exactly-once",
            Replicator::Kmirror2 => "kmirror, 2 replicas",
            Replicator::Kmirror3 => "kmirror, 3 replicas",
            Replicator::Mm2 => "MM2",
        }
    }
}

/// What one replicator did.
struct Measure {
    seconds: f64,
    first_record: f64,
    cpu: f64,
    rss_mb: f64,
    target_bytes: Option<u64>,
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let admin = kmirror_testbed::admin(bootstrap);
    for r in kmirror_testbed::block_on(admin.create_topics(
        &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    Ok(())
}

/// One idempotent write and its acknowledgement. A broker that just started answers its first
/// producer-id requests with COORDINATOR_LOAD_IN_PROGRESS for about a second, which a client
/// waits out; clusters in service are past that, so each fresh cluster is warmed before a
/// replicator is timed on it.
fn warm_up(bootstrap: &str) -> Result<()> {
    create_topic(bootstrap, "bench-warm-up", 1)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()?;
    produce::send(
        &producer,
        BaseRecord::<[u8], [u8]>::to("bench-warm-up").payload(b"warm"),
    )?;
    producer.flush(Duration::from_secs(60))?;
    // The transaction coordinator too: its topic is created at the first transactional
    // producer's request.
    let transactional: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", "bench-warm-up")
        .create()?;
    transactional.init_transactions(Duration::from_secs(60))?;
    transactional.begin_transaction()?;
    produce::send(
        &transactional,
        BaseRecord::<[u8], [u8]>::to("bench-warm-up").payload(b"warm"),
    )?;
    transactional.commit_transaction(Duration::from_secs(60))?;
    Ok(())
}

fn preload(bootstrap: &str, topic: &str, args: &Args, compression: Compression) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "50")
        .set("batch.size", "1000000")
        .set("compression.type", compression.name())
        .set("queue.buffering.max.kbytes", "262144")
        .create()?;
    // Values compress as real payloads do (repeated fields, some variety), not as one byte
    // repeated, so that codecs have a realistic ratio to work with.
    let words = [
        "order", "customer", "amount", "currency", "EUR", "status", "shipped", "address",
    ];
    let parts = usize::try_from(args.partitions)?;
    let mut value = String::with_capacity(args.value_size);
    for i in 0..args.records {
        value.clear();
        let mut j = i;
        while value.len() < args.value_size {
            let _ = write!(value, "{}={} ", words[j % words.len()], j % 997);
            j = j.wrapping_mul(31).wrapping_add(7);
        }
        value.truncate(args.value_size);
        let key = format!("{i:010}");
        let rec = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key.as_bytes())
            .payload(value.as_bytes())
            .partition(i32::try_from(i % parts)?);
        produce::send(&producer, rec)?;
    }
    producer.flush(Duration::from_secs(600))?;
    Ok(())
}

/// kmirror's default client settings, for the loop.
fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-loop")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        // kmirror's fetch size with its default memory budget.
        .set("fetch.max.bytes", "2097152")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.queue.backoff.ms", "20")
        .set("isolation.level", "read_committed");
    c
}

fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "32768")
        .set("queue.buffering.max.messages", "200000")
        .set("batch.size", "1000000")
        .set("message.timeout.ms", "0");
    c
}

struct Counter(std::sync::atomic::AtomicUsize);
impl ClientContext for Counter {}
impl ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, (): ()) {
        if r.is_ok() {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A producer context that ignores delivery reports (kmirror's opaque type).
struct Ignore;
impl ClientContext for Ignore {}
impl ProducerContext for Ignore {
    type DeliveryOpaque = usize;
    fn delivery(&self, _: &DeliveryResult<'_>, _: usize) {}
}

/// The bare loop (the `loop` subcommand).
fn bare_loop(
    source: &str,
    target: &str,
    topic: &str,
    out: &str,
    partitions: i32,
    records: usize,
    compression: &str,
) -> Result<()> {
    let consumer: BaseConsumer = consumer_config(source).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let producer: BaseProducer<Counter> = producer_config(target)
        .set("compression.type", compression)
        .create_with_context(Counter(0.into()))?;
    let mut sent = 0;
    while sent < records {
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg?;
        let mut rec = BaseRecord::<[u8], [u8]>::to(out).partition(msg.partition());
        if let Some(k) = msg.key() {
            rec = rec.key(k);
        }
        if let Some(v) = msg.payload() {
            rec = rec.payload(v);
        }
        // A replicator copies headers (the source's records here have none; looking costs
        // librdkafka a parse of each record's header block, as it costs kmirror).
        if let Some(h) = msg.headers() {
            rec = rec.headers(h.detach());
        }
        if let Some(ts) = msg.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        produce::send(&producer, rec)?;
        producer.poll(Duration::ZERO);
        sent += 1;
    }
    producer.flush(Duration::from_secs(600))?;
    let acked = producer
        .context()
        .0
        .load(std::sync::atomic::Ordering::Relaxed);
    if acked != records {
        bail!("loop: {acked} of {records} acknowledged");
    }
    Ok(())
}

/// The `produce-call` subcommand: ns per `BaseProducer::send` to the topic the producer
/// learnt last (the far end of librdkafka's topic list) and to the one it learnt first.
fn produce_call(counts: &[usize], calls: usize) -> Result<()> {
    println!(
        "| topics known | ns per send by name, topic learnt last | by name, learnt first | through a topic handle (kmirror) |"
    );
    println!("|---:|---:|---:|---:|");
    for &count in counts {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("queue.buffering.max.messages", "2147483647")
            .set("queue.buffering.max.kbytes", "2147483647")
            .set("message.timeout.ms", "0")
            .set("log_level", "0")
            .create()?;
        let names: Vec<String> = (0..count.max(1)).map(|i| format!("topic-{i:05}")).collect();
        let by_name = |name: &str| {
            produce::send(
                &producer,
                BaseRecord::<[u8], [u8]>::to(name)
                    .partition(0)
                    .payload(b"x"),
            )
        };
        for name in &names {
            by_name(name)?;
        }
        let mut per_call = Vec::new();
        for name in [&names[names.len() - 1], &names[0]] {
            let started = Instant::now();
            for _ in 0..calls {
                by_name(name)?;
            }
            #[allow(clippy::cast_precision_loss)]
            per_call.push(started.elapsed().as_nanos() as f64 / calls as f64);
            producer.purge(rdkafka::producer::PurgeConfig::default().queue());
            producer.poll(Duration::ZERO);
        }
        // kmirror's way: a topic handle per topic.
        let handles: kmirror_admin::TopicProducer<Ignore> = kmirror_admin::TopicProducer::new(
            producer_config("127.0.0.1:9")
                .set("queue.buffering.max.messages", "2147483647")
                .set("queue.buffering.max.kbytes", "2147483647")
                .set("log_level", "0")
                .create_with_context(Ignore)?,
        );
        for name in &names {
            handles.send(name, 0, None, Some(b"x"), None, 0)?;
        }
        let last = &names[names.len() - 1];
        let started = Instant::now();
        for _ in 0..calls {
            loop {
                match handles.send(last, 0, None, Some(b"x"), None, 0) {
                    Ok(()) => break,
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        handles.producer().poll(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        #[allow(clippy::cast_precision_loss)]
        per_call.push(started.elapsed().as_nanos() as f64 / calls as f64);
        handles
            .producer()
            .purge(rdkafka::producer::PurgeConfig::default().queue());
        println!(
            "| {count} | {:.0} | {:.0} | {:.0} |",
            per_call[0], per_call[1], per_call[2]
        );
    }
    Ok(())
}

/// utime + stime of a process (all its threads), in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).context("stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn peak_rss_mb(pid: u32) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("VmHWM")?;
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// Records on `topic` of the target (sum of high watermarks; 0 while it does not exist).
fn on_target(watcher: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            watcher
                .fetch_watermarks(topic, p, Duration::from_secs(2))
                .map_or(0, |(_, hi)| hi.max(0))
        })
        .sum()
}

/// The replicator processes being measured (several replicas of one kmirror config count as
/// one replicator: their CPU and peak RSS are summed).
enum Running {
    Processes(Vec<Child>),
    Java(JavaProcess),
}

impl Running {
    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Processes(c) => c.iter().map(Child::id).collect(),
            Running::Java(j) => j.pid().into_iter().collect(),
        }
    }

    /// CPU seconds and peak RSS in MB of every process, summed.
    fn usage(&self) -> Option<(f64, f64)> {
        let pids = self.pids();
        if pids.is_empty() {
            return None;
        }
        let (mut cpu, mut rss) = (0.0, 0.0);
        for pid in pids {
            let (Ok(c), Ok(r)) = (cpu_seconds(pid), peak_rss_mb(pid)) else {
                return None;
            };
            cpu += c;
            rss += r;
        }
        Some((cpu, rss))
    }

    /// How a process ended, if one did (a replicator that refused its configuration ends
    /// at once: waiting the whole phase for its records would only hide that).
    fn exited(&mut self) -> Option<String> {
        match self {
            Running::Processes(c) => c
                .iter_mut()
                .find_map(|c| c.try_wait().ok().flatten().map(|s| s.to_string())),
            Running::Java(_) => None,
        }
    }

    fn stop(self) {
        match self {
            Running::Processes(children) => {
                for c in &children {
                    let _ = Command::new("kill")
                        .args(["-TERM", &c.id().to_string()])
                        .status();
                }
                for mut c in children {
                    let _ = c.wait();
                }
            }
            Running::Java(mut j) => j.stop(),
        }
    }
}

/// Watches the target until `records` arrived; measures the process meanwhile.
/// How long the record count must stay unchanged, in exactly-once mode, to take the last change
/// for the end of the copy (transaction markers take offsets too, so the count reaches the
/// number of records up to one commit early).
const SETTLE: Duration = Duration::from_secs(2);

fn measure(
    running: Running,
    started: Instant,
    target: &str,
    topic: &str,
    args: &Args,
    settle: bool,
) -> Result<(Measure, Running)> {
    let watcher: BaseConsumer = kmirror_testbed::client(target).create()?;
    let total = i64::try_from(args.records)?;
    let mut first = None;
    // Read while it runs: a process that exits as soon as it is done (the loop) leaves no
    // figures behind.
    let (mut cpu, mut rss) = (0.0, 0.0);
    loop {
        let n = on_target(&watcher, topic, args.partitions);
        if let Some(usage) = running.usage() {
            (cpu, rss) = usage;
        }
        if n > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if n >= total {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            running.stop();
            bail!("{n} of {total} records after 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The watermarks read here are read_committed (the last stable offsets): in exactly-once
    // mode, the copy ends when they stop moving.
    let mut end = started.elapsed();
    if settle {
        let mut last = on_target(&watcher, topic, args.partitions);
        let mut changed = Instant::now();
        while changed.elapsed() < SETTLE {
            std::thread::sleep(Duration::from_millis(50));
            let n = on_target(&watcher, topic, args.partitions);
            if n != last {
                (last, changed, end) = (n, Instant::now(), started.elapsed());
                // CPU and memory as of the end of the copy, not of the wait after it.
                if let Some(usage) = running.usage() {
                    (cpu, rss) = usage;
                }
            }
        }
    }
    let seconds = end.as_secs_f64();
    if !settle {
        if let Some(usage) = running.usage() {
            (cpu, rss) = usage;
        }
    }
    if rss == 0.0 {
        bail!(
            "the replicator (pids {:?}) ended before its CPU and memory could be read",
            running.pids()
        );
    }
    let measure = Measure {
        seconds,
        first_record: first.map_or(seconds, |f| f.as_secs_f64()),
        cpu,
        rss_mb: rss,
        target_bytes: None,
    };
    Ok((measure, running))
}

/// A kmirror config from `source` to `target` (identity names, replication factors -1) in
/// `dir/file`; `patterns` are the mirror's `topicsPattern`/`groupsPattern` lines, `extra` more
/// connector keys (each line indented by eight spaces).
fn write_kmirror_config(
    dir: &Path,
    file: &str,
    (source, target): (&str, &str),
    patterns: &str,
    extra: &str,
) -> Result<PathBuf> {
    let config = dir.join(file);
    fs::write(
        &config,
        format!(
            "clusters:\n  - alias: source\n    bootstrapServers: {source}\n  - alias: target\n    bootstrapServers: {target}\nmirrors:\n  - sourceCluster: source\n    targetCluster: target\n{patterns}    sourceConnector:\n      config:\n        replication.policy.class: IdentityReplicationPolicy\n        replication.factor: -1\n        offset-syncs.topic.replication.factor: -1\n        heartbeats.topic.replication.factor: -1\n        checkpoints.topic.replication.factor: -1\n{extra}"
        ),
    )?;
    Ok(config)
}

/// MM2 dedicated-mode properties from `source` to `target` for the topics `topic` matches
/// (identity names, replication factors 1) in `dir/file`, with `extra` lines.
fn write_mm2_properties(
    dir: &Path,
    file: &str,
    (source, target): (&str, &str),
    topic: &str,
    extra: &str,
) -> Result<PathBuf> {
    let path = dir.join(file);
    fs::write(
        &path,
        format!(
            "clusters = source, target
source.bootstrap.servers = {source}
target.bootstrap.servers = {target}
source->target.enabled = true
target->source.enabled = false
target->source.emit.heartbeats.enabled = false
source->target.topics = {topic}
replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
sync.topic.acls.enabled = false
{extra}"
        ),
    )?;
    Ok(path)
}

/// Runs one replicator from `topic` on `source` into `out` on `target`.
#[allow(clippy::too_many_arguments)]
fn run_one(
    who: Replicator,
    kmirror: &Path,
    source: &str,
    target: &str,
    topic: &str,
    out: &str,
    args: &Args,
    dir: &Path,
    compression: Compression,
) -> Result<(Measure, Running)> {
    match who {
        Replicator::Loop => {
            create_topic(target, out, args.partitions)?;
            let started = Instant::now();
            let child = Command::new(std::env::current_exe()?)
                .args([
                    "loop",
                    "--source",
                    source,
                    "--target",
                    target,
                    "--topic",
                    topic,
                    "--out",
                    out,
                    "--partitions",
                    &args.partitions.to_string(),
                    "--records",
                    &args.records.to_string(),
                    "--compression",
                    compression.name(),
                ])
                .stdout(Stdio::null())
                .spawn()?;
            measure(
                Running::Processes(vec![child]),
                started,
                target,
                out,
                args,
                false,
            )
        }
        Replicator::Kmirror
        | Replicator::KmirrorEos
        | Replicator::Kmirror2
        | Replicator::Kmirror3 => {
            let replicas = match who {
                Replicator::Kmirror2 => 2,
                Replicator::Kmirror3 => 3,
                _ => 1,
            };
            let scale_out = if replicas > 1 {
                "        scale.out.enabled: \"true\"\n"
            } else {
                ""
            };
            // Identity naming: a fresh target topic needs a fresh target cluster, or a topic
            // name of its own on a given one.
            let config = write_kmirror_config(
                dir,
                "kmirror.yaml",
                (source, target),
                &format!("    topicsPattern: \"{topic}\"\n"),
                &(args
                    .kmirror_keys
                    .iter()
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        format!("        {k}: \"{v}\"\n")
                    })
                    .collect::<String>()
                    + scale_out),
            )?;
            if who == Replicator::KmirrorEos {
                let plain = fs::read_to_string(&config)?;
                let at = format!("    bootstrapServers: {target}\n");
                if !plain.contains(&at) {
                    bail!("the target cluster is missing from {}", config.display());
                }
                let text = plain.replace(
                    &at,
                    &format!("{at}    config:\n      exactly.once.source.support: enabled\n"),
                );
                fs::write(&config, text)?;
            }
            let (level, log) = match &args.logs {
                Some(logs) => {
                    fs::create_dir_all(logs)?;
                    let name = topic.split('-').nth(1).unwrap_or(topic);
                    let file = fs::File::create(logs.join(format!("kmirror-{name}.log")))?;
                    (
                        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                        Stdio::from(file),
                    )
                }
                None => ("warn".into(), Stdio::null()),
            };
            let started = Instant::now();
            let mut children = vec![Command::new(kmirror)
                .args(["run", "--config", config.to_str().context("path")?])
                .env("RUST_LOG", &level)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", kmirror.display()))?];
            for _ in 1..replicas {
                children.push(
                    Command::new(kmirror)
                        .args(["run", "--config", config.to_str().context("path")?])
                        .env("RUST_LOG", "warn")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .with_context(|| format!("starting {}", kmirror.display()))?,
                );
            }
            measure(
                Running::Processes(children),
                started,
                target,
                out,
                args,
                who == Replicator::KmirrorEos,
            )
        }
        Replicator::Mm2 => {
            let props = write_mm2_properties(dir, "mm2.properties", (source, target), topic, "")?;
            let started = Instant::now();
            let mm2 = JavaProcess::mirror_maker(&props);
            measure(Running::Java(mm2), started, target, out, args, false)
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Cmd::Scale(scale)) = &args.cmd {
        return scale::run(scale);
    }
    if let Some(Cmd::ProduceCall { topics, calls }) = &args.cmd {
        return produce_call(topics, *calls);
    }
    if let Some(Cmd::Loop {
        source,
        target,
        topic,
        out,
        partitions,
        records,
        compression,
    }) = &args.cmd
    {
        return bare_loop(
            source,
            target,
            topic,
            out,
            *partitions,
            *records,
            compression,
        );
    }
    let kmirror = match &args.kmirror {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("kmirror"),
    };
    let dir = std::env::temp_dir().join(format!("kmirror-bench-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let own_source = if args.source.is_none() {
        eprintln!(
            "starting the source cluster (Apache Kafka {})...",
            kmirror_testbed::kafka::kafka_version()
        );
        let kafka = Kafka::start("bench-source", &KafkaOptions::default());
        warm_up(&kafka.bootstrap)?;
        Some(Arc::new(kafka))
    } else {
        None
    };
    let source_bootstrap = args
        .source
        .clone()
        .or_else(|| own_source.as_ref().map(|k| k.bootstrap.clone()))
        .context("a source")?;
    let mut rows: BTreeMap<(usize, usize), Measure> = BTreeMap::new();
    let mut source_bytes: BTreeMap<usize, Option<u64>> = BTreeMap::new();
    for (ci, &compression) in args.compression.iter().enumerate() {
        let topic = format!(
            "bench-{}-{}",
            compression.name(),
            kmirror_testbed::rand_suffix()
        );
        create_topic(&source_bootstrap, &topic, args.partitions)?;
        eprintln!(
            "preloading {} records of {} bytes over {} partitions, compression {}...",
            args.records,
            args.value_size,
            args.partitions,
            compression.name()
        );
        preload(&source_bootstrap, &topic, &args, compression)?;
        source_bytes.insert(ci, own_source.as_ref().map(|k| k.topic_bytes(&topic)));
        for (ri, &who) in args.only.iter().enumerate() {
            eprintln!("{} ({})...", who.name(), compression.name());
            let (own_target, target_bootstrap) = match &args.target {
                Some(t) => (None, t.clone()),
                None => {
                    let k = Kafka::start(&format!("bench-target-{ri}"), &KafkaOptions::default());
                    warm_up(&k.bootstrap)?;
                    let b = k.bootstrap.clone();
                    (Some(k), b)
                }
            };
            // On a given target, the loop writes to a topic of its own; kmirror and MM2 keep
            // the source's name (identity), which is fresh per compression.
            let out = if who == Replicator::Loop {
                format!("{topic}-loop")
            } else {
                topic.clone()
            };
            let (mut m, running) = run_one(
                who,
                &kmirror,
                &source_bootstrap,
                &target_bootstrap,
                &topic,
                &out,
                &args,
                &dir,
                compression,
            )?;
            running.stop();
            m.target_bytes = own_target.as_ref().map(|k| k.topic_bytes(&out));
            rows.insert((ci, ri), m);
            drop(own_target);
        }
    }
    let _ = fs::remove_dir_all(&dir);
    print_table(&args, &rows, &source_bytes);
    Ok(())
}

fn mb(bytes: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    bytes.map_or_else(|| "-".into(), |b| format!("{:.0} MB", b as f64 / 1e6))
}

fn print_table(
    args: &Args,
    rows: &BTreeMap<(usize, usize), Measure>,
    source_bytes: &BTreeMap<usize, Option<u64>>,
) {
    #[allow(clippy::cast_precision_loss)]
    let n = args.records as f64;
    println!(
        "| source compression | replicator | records/s | CPU s | records per CPU s | peak RSS | target stores | first record |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (ci, compression) in args.compression.iter().enumerate() {
        let loop_rate = args
            .only
            .iter()
            .position(|r| *r == Replicator::Loop)
            .and_then(|ri| rows.get(&(ci, ri)))
            .map(|m| n / m.seconds);
        for (ri, who) in args.only.iter().enumerate() {
            let Some(m) = rows.get(&(ci, ri)) else {
                continue;
            };
            let rate = n / m.seconds;
            let ratio = match (who, loop_rate) {
                (Replicator::Loop, _) | (_, None) => String::new(),
                (_, Some(l)) => format!(" ({:.2}×)", rate / l),
            };
            let first_col = if ri == 0 {
                format!(
                    "{} (source {})",
                    compression.name(),
                    mb(source_bytes.get(&ci).copied().flatten())
                )
            } else {
                String::new()
            };
            println!(
                "| {first_col} | {} | {:.0}{ratio} | {:.1} | {:.0} | {:.0} MB | {} | {:.1} s |",
                who.name(),
                rate,
                m.cpu,
                n / m.cpu.max(0.01),
                m.rss_mb,
                mb(m.target_bytes),
                m.first_record
            );
        }
    }
    println!(
        "\n{} records × {} B over {} partitions; each replicator into a fresh target; timed from process start to the last record on the target.",
        args.records, args.value_size, args.partitions
    );
}
