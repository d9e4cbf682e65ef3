//! End-to-end benchmark: kmirror against a bare librdkafka consume→produce loop.
//!
//! Starts two tansu brokers on loopback, preloads N records into a topic on the source, then
//! (1) copies them with a minimal librdkafka loop using the same client settings as kmirror and
//! no bookkeeping, and (2) copies them with the kmirror binary. Prints records/s, MB/s, CPU
//! seconds, the kmirror/baseline ratios and kmirror's peak RSS.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod produce;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

#[derive(Parser)]
#[command(
    about = "Benchmark kmirror against a bare librdkafka consume→produce loop on two local tansu brokers"
)]
struct Args {
    /// Records to copy.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// The tansu binary (default: $KMIRROR_TANSU_BIN).
    #[arg(long)]
    tansu: Option<PathBuf>,
    /// Runs of each (interleaved, each into a fresh target broker); the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The kmirror binary (default: next to this one).
    #[arg(long)]
    kmirror: Option<PathBuf>,
}

struct Broker {
    bootstrap: String,
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_broker(tansu: &PathBuf, name: &str) -> Result<Broker> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args([
            "--storage-engine",
            &format!("memory://{name}/"),
            "--cluster-id",
            name,
            "--silent",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", tansu.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("tansu did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Broker {
        bootstrap: format!("127.0.0.1:{port}"),
        child,
    })
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for r in rt.block_on(admin.create_topics(
        &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    Ok(())
}

fn preload(bootstrap: &str, topic: &str, args: &Args) -> Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.kbytes", "262144")
        .create()?;
    let value = vec![b'v'; args.value_size];
    let parts = usize::try_from(args.partitions)?;
    for i in 0..args.records {
        let key = format!("{i:010}");
        let rec = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key.as_bytes())
            .payload(&value)
            .partition(i32::try_from(i % parts)?);
        produce::send(&producer, rec)?;
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(())
}

/// The same client settings kmirror uses by default.
fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "baseline")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.max.bytes", "16777216")
        .set("fetch.wait.max.ms", "100")
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

/// The baseline: consume from the beginning and produce to the same partition, nothing else.
fn baseline(
    source: &str,
    target: &str,
    topic: &str,
    out: &str,
    args: &Args,
) -> Result<(Duration, f64)> {
    // Timed from client creation, as kmirror is timed from its process start.
    let cpu0 = cpu_seconds("self")?;
    let start = Instant::now();
    let consumer: BaseConsumer = consumer_config(source).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let producer: BaseProducer<Counter> =
        producer_config(target).create_with_context(Counter(0.into()))?;
    let mut sent = 0;
    while sent < args.records {
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
        if let Some(ts) = msg.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        produce::send(&producer, rec)?;
        producer.poll(Duration::ZERO);
        sent += 1;
    }
    producer.flush(Duration::from_secs(300))?;
    let elapsed = start.elapsed();
    let acked = producer
        .context()
        .0
        .load(std::sync::atomic::Ordering::Relaxed);
    if acked != args.records {
        bail!("baseline: {acked} of {} acknowledged", args.records);
    }
    Ok((elapsed, cpu_seconds("self")? - cpu0))
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str) -> Result<f64> {
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

/// Follows kmirror's progress topic and sums the stored next offsets of one topic.
struct ProgressTail {
    consumer: BaseConsumer,
    needle: String,
    latest: std::collections::HashMap<Vec<u8>, i64>,
}

impl ProgressTail {
    fn new(target: &str, progress_topic: &str, topic: &str) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", target)
            .set("group.id", "bench-progress")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(progress_topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        Ok(Self {
            consumer,
            needle: format!("\"topic\":\"{topic}\""),
            latest: std::collections::HashMap::new(),
        })
    }

    /// Reads what arrives within `wait`; returns the sum of stored next offsets.
    fn poll(&mut self, wait: Duration) -> i64 {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(5)) {
                let key = m.key().unwrap_or_default();
                if String::from_utf8_lossy(key).contains(&self.needle) {
                    let value =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    let last: i64 = value
                        .trim_start_matches("{\"offset\":")
                        .trim_end_matches('}')
                        .parse()
                        .unwrap_or(-1);
                    self.latest.insert(key.to_vec(), last + 1);
                }
            }
        }
        self.latest.values().sum()
    }
}

fn run_kmirror(
    kmirror: &PathBuf,
    source: &str,
    target: &str,
    topic: &str,
    args: &Args,
) -> Result<(Duration, f64, f64)> {
    let dir = std::env::temp_dir().join(format!("kmirror-bench-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let config = dir.join("bench.yaml");
    fs::write(
        &config,
        format!(
            "clusters:\n  - alias: source\n    bootstrapServers: {source}\n  - alias: target\n    bootstrapServers: {target}\n    config:\n      offset.storage.partitions: 1\n      offset.flush.interval.ms: 100\nmirrors:\n  - sourceCluster: source\n    targetCluster: target\n    topicsPattern: \"{topic}\"\n    sourceConnector:\n      config:\n        replication.policy.class: IdentityReplicationPolicy\n        replication.factor: -1\n"
        ),
    )?;
    let start = Instant::now();
    let mut child = Command::new(kmirror)
        .args(["run", "--config", config.to_str().context("path")?])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let total = i64::try_from(args.records)?;
    let mut tail: Option<ProgressTail> = None;
    let (elapsed, cpu, rss) = loop {
        let stored = if let Some(t) = tail.as_mut() {
            t.poll(Duration::from_millis(20))
        } else {
            std::thread::sleep(Duration::from_millis(20));
            tail = ProgressTail::new(target, "mm2-offsets.source.internal", topic).ok();
            0
        };
        if stored >= total {
            let elapsed = start.elapsed();
            break (elapsed, cpu_seconds(&pid.to_string())?, peak_rss_mb(pid)?);
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            bail!("kmirror did not finish in 10 minutes");
        }
    };
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    child.wait()?;
    Ok((elapsed, cpu, rss))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tansu = args
        .tansu
        .clone()
        .or_else(|| std::env::var_os("KMIRROR_TANSU_BIN").map(PathBuf::from))
        .context("set KMIRROR_TANSU_BIN or pass --tansu (scripts/tansu.sh prints one)")?;
    let kmirror = match &args.kmirror {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("kmirror"),
    };
    let source = start_broker(&tansu, "bench-source")?;
    let topic = "bench";
    create_topic(&source.bootstrap, topic, args.partitions)?;
    eprintln!(
        "preloading {} records of {} bytes over {} partitions...",
        args.records, args.value_size, args.partitions
    );
    preload(&source.bootstrap, topic, &args)?;

    // Each run writes to a fresh, empty target broker; runs alternate to spread drift.
    let (mut b_times, mut b_cpus, mut k_times, mut k_cpus, mut k_rss_all) =
        (vec![], vec![], vec![], vec![], vec![]);
    for run in 1..=args.runs {
        eprintln!(
            "run {run}/{}: baseline (bare librdkafka consume→produce loop)...",
            args.runs
        );
        let target = start_broker(&tansu, &format!("bench-baseline-target-{run}"))?;
        create_topic(&target.bootstrap, "baseline-out", args.partitions)?;
        let (t, c) = baseline(
            &source.bootstrap,
            &target.bootstrap,
            topic,
            "baseline-out",
            &args,
        )?;
        drop(target);
        b_times.push(t.as_secs_f64());
        b_cpus.push(c);
        eprintln!("run {run}/{}: kmirror...", args.runs);
        let target = start_broker(&tansu, &format!("bench-kmirror-target-{run}"))?;
        let (t, c, r) = run_kmirror(&kmirror, &source.bootstrap, &target.bootstrap, topic, &args)?;
        drop(target);
        k_times.push(t.as_secs_f64());
        k_cpus.push(c);
        k_rss_all.push(r);
    }
    let (b_time, b_cpu) = (
        Duration::from_secs_f64(median(&mut b_times)),
        median(&mut b_cpus),
    );
    let (k_time, k_cpu) = (
        Duration::from_secs_f64(median(&mut k_times)),
        median(&mut k_cpus),
    );
    let k_rss = k_rss_all.iter().copied().fold(0.0, f64::max);

    #[allow(clippy::cast_precision_loss)]
    let n = args.records as f64;
    #[allow(clippy::cast_precision_loss)]
    let mb = n * args.value_size as f64 / 1_048_576.0;
    let b_rate = n / b_time.as_secs_f64();
    let k_rate = n / k_time.as_secs_f64();
    println!(
        "| {:<32} | {:>12} | {:>8} | {:>10} | {:>12} |",
        "run", "records/s", "MB/s", "CPU s", "peak RSS MB"
    );
    println!(
        "|{}|{}|{}|{}|{}|",
        "-".repeat(34),
        "-".repeat(14),
        "-".repeat(10),
        "-".repeat(12),
        "-".repeat(14)
    );
    println!(
        "| {:<32} | {:>12.0} | {:>8.1} | {:>10.2} | {:>12} |",
        "baseline (librdkafka loop)",
        b_rate,
        mb / b_time.as_secs_f64(),
        b_cpu,
        "-"
    );
    println!(
        "| {:<32} | {:>12.0} | {:>8.1} | {:>10.2} | {:>12.1} |",
        "kmirror",
        k_rate,
        mb / k_time.as_secs_f64(),
        k_cpu,
        k_rss
    );
    println!(
        "| {:<32} | {:>12.2} | {:>8} | {:>10.2} | {:>12} |",
        "kmirror / baseline",
        k_rate / b_rate,
        "",
        k_cpu / b_cpu,
        ""
    );
    println!(
        "\n{} records × {} B over {} partitions; medians of {} interleaved runs (peak RSS: the highest).\nBoth are timed from client or process start; kmirror to its last stored progress (stored every 100 ms).",
        args.records, args.value_size, args.partitions, args.runs
    );
    Ok(())
}
