//! `kmirror-bench scale`: many topics, partitions and consumer groups on one instance.
//!
//! Builds a source with `topics × partitions` partitions holding `records` records each and
//! `groups` consumer groups, each committed on every partition of `topics_per_group` topics,
//! then runs each replicator into a fresh target and measures: start to every record copied,
//! start to every group checkpointed on the target, a new commit on the source to its
//! checkpoint on the target (p50/p99 over every group partition), CPU once idle, peak RSS and
//! threads.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kmirror_core::mm2::Checkpoint;
use kmirror_testbed::kafka::{JavaProcess, Kafka, KafkaOptions};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{
    cpu_seconds, peak_rss_mb, produce, warm_up, write_kmirror_config, write_mm2_properties,
    Replicator, Running,
};

/// The scale benchmark's options.
#[derive(clap::Args, Clone)]
pub struct ScaleArgs {
    /// Topics on the source.
    #[arg(long, default_value_t = 200)]
    topics: usize,
    /// Partitions per topic.
    #[arg(long, default_value_t = 10)]
    partitions: i32,
    /// Consumer groups on the source.
    #[arg(long, default_value_t = 200)]
    groups: usize,
    /// Topics each group has committed on (every partition of them).
    #[arg(long, default_value_t = 5)]
    topics_per_group: usize,
    /// Records per partition.
    #[arg(long, default_value_t = 20)]
    records: usize,
    /// `emit.checkpoints.interval.seconds` (both replicators).
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Seconds CPU is sampled for once everything is checkpointed and nothing changes.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Replicators to run.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Replicator::Kmirror, Replicator::Mm2])]
    only: Vec<Replicator>,
    /// The kmirror binary (default: next to this one).
    #[arg(long)]
    kmirror: Option<PathBuf>,
    /// Each broker's Java heap in MiB (a broker of 10,000 partitions and 1,000 groups needs
    /// more than the test bed's 512).
    #[arg(long, default_value_t = 2048)]
    broker_heap_mb: u32,
    /// Keep each replicator's log in this directory.
    #[arg(long)]
    logs: Option<PathBuf>,
    /// Further arguments of `kmirror run` (e.g. `--kmirror-arg=--producers=4`).
    #[arg(long = "kmirror-arg", value_name = "ARG", allow_hyphen_values = true)]
    kmirror_args: Vec<String>,
    /// The target's topics: `fresh` (the replicator creates them) or `existing` (created, and
    /// every partition ready, before the replicator starts: a restart, or a move from another
    /// replicator, where the copy is not held up by the target broker creating partitions).
    #[arg(long, value_enum, default_value_t = TargetTopics::Fresh)]
    target_topics: TargetTopics,
}

/// Whether the target's topics exist when the replicator starts.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum TargetTopics {
    Fresh,
    Existing,
}

/// What one replicator did.
#[derive(Default)]
struct ScaleMeasure {
    copied: Option<f64>,
    checkpointed: Option<f64>,
    latency_p50: Option<f64>,
    latency_p99: Option<f64>,
    idle_cpu_percent: f64,
    rss_mb: f64,
    threads: u64,
}

/// How long a phase may take before the benchmark gives up on it (and says so in the table).
const PHASE_LIMIT: Duration = Duration::from_secs(600);

impl ScaleArgs {
    fn kafka_options(&self) -> KafkaOptions {
        KafkaOptions {
            heap_mb: self.broker_heap_mb,
            ..KafkaOptions::default()
        }
    }

    fn topic(&self, i: usize) -> String {
        format!("scale-t{i:05}")
    }

    fn group(&self, g: usize) -> String {
        format!("scale-g{g:05}")
    }

    /// The topics group `g` committed on.
    fn group_topics(&self, g: usize) -> Vec<String> {
        (0..self.topics_per_group.min(self.topics))
            .map(|j| self.topic((g * self.topics_per_group + j) % self.topics))
            .collect()
    }

    /// The offset group `g` commits in `round` (0: before the start, 1: while running).
    fn committed(&self, g: usize, round: usize) -> i64 {
        let records = i64::try_from(self.records).unwrap_or(i64::MAX);
        let base = i64::try_from(g % 5).unwrap_or(0) + 1;
        (base + i64::try_from(round * 5).unwrap_or(0)).min(records)
    }

    fn total_records(&self) -> i64 {
        i64::try_from(self.topics * self.records).unwrap_or(i64::MAX) * i64::from(self.partitions)
    }
}

/// Waits until every partition of the benchmark's topics on `bootstrap` answers ListOffsets
/// (its log exists on its leader: a topic in the metadata may not take records yet), asking
/// 100 topics to a request, each until it has answered.
fn wait_ready(bootstrap: &str, args: &ScaleArgs) -> Result<()> {
    let client: BaseConsumer = kmirror_testbed::client(bootstrap)
        .set(
            "group.id",
            format!("scale-ready-{}", kmirror_testbed::rand_suffix()),
        )
        .create()?;
    let mut waiting: Vec<String> = (0..args.topics).map(|i| args.topic(i)).collect();
    let started = Instant::now();
    let mut said = Instant::now();
    while !waiting.is_empty() {
        // A full listing first: librdkafka looks the leaders up in its metadata cache, which
        // keeps a topic it asked for before the broker knew it as missing for minutes.
        if let Err(e) = client.fetch_metadata(None, Duration::from_secs(10)) {
            eprintln!("  cannot list the target's topics: {e}");
        }
        let mut still = Vec::new();
        let mut why = None;
        for chunk in waiting.chunks(100) {
            let topics: Vec<(&str, i32)> = chunk
                .iter()
                .map(|t| (t.as_str(), args.partitions))
                .collect();
            match kmirror_admin::end_offsets_of(client.client(), &topics, Duration::from_secs(5)) {
                Ok(answers) => {
                    for (topic, answers) in chunk.iter().zip(answers) {
                        if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
                            why.get_or_insert_with(|| format!("{topic}: {e}"));
                            still.push(topic.clone());
                        }
                    }
                }
                Err(e) => {
                    why.get_or_insert_with(|| e.to_string());
                    still.extend(chunk.iter().cloned());
                }
            }
        }
        waiting = still;
        if started.elapsed() > PHASE_LIMIT {
            bail!(
                "{} of the target's topics were not ready within {} s",
                waiting.len(),
                PHASE_LIMIT.as_secs()
            );
        }
        if said.elapsed() > Duration::from_secs(10) {
            said = Instant::now();
            eprintln!(
                "  {} target topics not ready yet ({})",
                waiting.len(),
                why.unwrap_or_default()
            );
        }
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

fn create_topics(bootstrap: &str, args: &ScaleArgs) -> Result<()> {
    let admin = kmirror_testbed::admin(bootstrap);
    let names: Vec<String> = (0..args.topics).map(|i| args.topic(i)).collect();
    for chunk in names.chunks(200) {
        let new: Vec<NewTopic> = chunk
            .iter()
            .map(|t| NewTopic::new(t, args.partitions, TopicReplication::Fixed(1)))
            .collect();
        for r in kmirror_testbed::block_on(admin.create_topics(&new, &AdminOptions::new()))? {
            r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
        }
    }
    Ok(())
}

/// Keeps the records the source refused, to send them again.
#[derive(Default)]
struct Refused {
    records: Mutex<Vec<(String, i32, Vec<u8>)>>,
    first_error: Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Refused {}
impl rdkafka::producer::ProducerContext for Refused {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, (): ()) {
        if let Err((e, m)) = r {
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
            if let Ok(mut records) = self.records.lock() {
                records.push((
                    m.topic().to_owned(),
                    m.partition(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
    }
}

/// Writes every record, and again those the source refused (a broker that has just created
/// hundreds of partitions refuses some of their first records): the benchmark waits for every
/// record on the target, so one lost here would leave it waiting for nothing.
fn fill(bootstrap: &str, args: &ScaleArgs) -> Result<()> {
    let producer: BaseProducer<Refused> = kmirror_testbed::client(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(Refused::default())?;
    for i in 0..args.topics {
        let topic = args.topic(i);
        for p in 0..args.partitions {
            for r in 0..args.records {
                let value = format!("{topic}/{p}/{r:04}");
                produce::send(
                    &producer,
                    BaseRecord::<[u8], [u8]>::to(&topic)
                        .partition(p)
                        .payload(value.as_bytes()),
                )?;
            }
        }
    }
    for round in 1.. {
        producer.flush(Duration::from_secs(300))?;
        let refused = std::mem::take(&mut *lock(&producer.context().records)?);
        if refused.is_empty() {
            return Ok(());
        }
        let error = lock(&producer.context().first_error)?.take();
        if round == 5 {
            bail!(
                "the source refused {} records five times, e.g.: {}",
                refused.len(),
                error.unwrap_or_default()
            );
        }
        println!(
            "  the source refused {} records ({}); sending them again",
            refused.len(),
            error.unwrap_or_default()
        );
        std::thread::sleep(Duration::from_secs(1));
        // After the broker's refusal librdkafka may hold the topic as unknown and refuse the
        // record itself: a full listing refreshes what it knows, and a record refused here
        // waits for the next round like one the broker refused.
        if let Err(e) = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(30))
        {
            println!("  cannot list the source's topics before sending again: {e}");
        }
        for (topic, partition, value) in refused {
            let sent = produce::send(
                &producer,
                BaseRecord::<[u8], [u8]>::to(&topic)
                    .partition(partition)
                    .payload(&value),
            );
            if let Err(e) = sent {
                lock(&producer.context().first_error)?.get_or_insert_with(|| e.to_string());
                lock(&producer.context().records)?.push((topic, partition, value));
            }
        }
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| anyhow::anyhow!("a delivery report panicked"))
}

/// Commits every group's `round` offsets, a few groups at a time; returns when each group's
/// commit was acknowledged.
fn commit_groups(bootstrap: &str, args: &ScaleArgs, round: usize) -> Result<Vec<Instant>> {
    let done: Mutex<Vec<Option<Instant>>> = Mutex::new(vec![None; args.groups]);
    let workers = 8;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let done = &done;
                s.spawn(move || -> Result<()> {
                    for g in (w..args.groups).step_by(workers) {
                        let consumer: BaseConsumer = kmirror_testbed::client(bootstrap)
                            .set("group.id", args.group(g))
                            .set("enable.auto.commit", "false")
                            .create()?;
                        let mut tpl = TopicPartitionList::new();
                        for topic in args.group_topics(g) {
                            for p in 0..args.partitions {
                                tpl.add_partition_offset(
                                    &topic,
                                    p,
                                    Offset::Offset(args.committed(g, round)),
                                )?;
                            }
                        }
                        consumer.commit(&tpl, CommitMode::Sync)?;
                        if let Ok(mut d) = done.lock() {
                            d[g] = Some(Instant::now());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a committing thread panicked"))??;
        }
        Ok(())
    })?;
    let done = done.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
    done.into_iter()
        .enumerate()
        .map(|(g, at)| at.with_context(|| format!("group {g} not committed")))
        .collect()
}

/// Counts the records on the target by its partitions' end offsets (ListOffsets), asked ten
/// topics to a request for the topics listed with a leader for every partition and not yet
/// complete: a request naming a partition whose leader is not known yet fails as a whole, and
/// fails only those ten. A partition that cannot be asked keeps its last count. Like any end
/// offset, it counts a record written twice as two. (Reading every record to count it, as
/// before, fell 10 to 30 s behind the copy at 10,000 partitions.)
struct TargetCount {
    client: BaseConsumer,
    /// Topics whose partitions all had a leader, with their partition counts.
    ready: Vec<(String, i32)>,
    ends: HashMap<String, Vec<i64>>,
}

impl TargetCount {
    fn new(bootstrap: &str) -> Result<Self> {
        let client: BaseConsumer = kmirror_testbed::client(bootstrap)
            .set(
                "group.id",
                format!("scale-count-{}", kmirror_testbed::rand_suffix()),
            )
            .create()?;
        Ok(Self {
            client,
            ready: Vec::new(),
            ends: HashMap::new(),
        })
    }

    /// Counts again, taking at least `budget`; the records on the target so far.
    fn advance(&mut self, args: &ScaleArgs, budget: Duration) -> i64 {
        let deadline = Instant::now() + budget;
        if self.ready.len() < args.topics {
            // Listed until every topic is ready (a full listing names every partition).
            self.ready = self
                .client
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|md| {
                    md.topics()
                        .iter()
                        .filter(|t| t.name().starts_with("scale-t"))
                        .filter(|t| !t.partitions().is_empty())
                        .filter(|t| t.partitions().iter().all(|p| p.leader() >= 0))
                        .map(|t| {
                            let n = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
                            (t.name().to_owned(), n)
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
        // Records beyond a partition's count do not make up for another partition's missing
        // ones.
        let per_partition = i64::try_from(args.records).unwrap_or(i64::MAX);
        let complete = |ends: Option<&Vec<i64>>, n: i32| {
            ends.is_some_and(|e| {
                e.len() == usize::try_from(n).unwrap_or(0) && e.iter().all(|v| *v >= per_partition)
            })
        };
        // Topics not complete yet, ten to a request: one whose partitions are not all ready
        // fails its own request only.
        let pending: Vec<(&str, i32)> = self
            .ready
            .iter()
            .filter(|(t, n)| !complete(self.ends.get(t), *n))
            .map(|(t, n)| (t.as_str(), *n))
            .collect();
        for chunk in pending.chunks(10) {
            let Ok(answers) =
                kmirror_admin::end_offsets_of(self.client.client(), chunk, Duration::from_secs(2))
            else {
                continue;
            };
            for ((topic, _), answers) in chunk.iter().zip(answers) {
                let ends = self.ends.entry((*topic).to_owned()).or_default();
                ends.resize(answers.len().max(ends.len()), 0);
                for (end, answer) in ends.iter_mut().zip(answers) {
                    if let Ok(v) = answer {
                        *end = (*end).max(v);
                    }
                }
            }
        }
        let counted = self
            .ends
            .values()
            .flatten()
            .map(|e| (*e).min(per_partition))
            .sum();
        if counted < args.total_records() {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
        counted
    }
}

/// (group, topic, partition) → (upstream offset, when it was read), the latest of each key.
type Seen = Arc<Mutex<HashMap<(String, String, i32), (i64, Instant)>>>;

/// Reads the checkpoints topic on the target from the beginning until `stop`.
fn watch_checkpoints(
    bootstrap: String,
    topic: String,
    seen: Seen,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    let consumer: BaseConsumer = kmirror_testbed::client(&bootstrap)
        .set(
            "group.id",
            format!("scale-watch-{}", kmirror_testbed::rand_suffix()),
        )
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            if let (Some(k), Some(v)) = (m.key(), m.payload()) {
                if let Ok(cp) = Checkpoint::decode(k, v) {
                    // When a key's upstream offset first appeared, not its re-emissions.
                    if let Ok(mut s) = seen.lock() {
                        let key = (cp.group, cp.topic, cp.partition);
                        if s.get(&key).is_none_or(|(up, _)| *up != cp.upstream) {
                            s.insert(key, (cp.upstream, Instant::now()));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Waits until every group partition's checkpoint names its `round` offset; returns when
/// each arrived, or `None` after [`PHASE_LIMIT`].
fn wait_checkpointed(seen: &Seen, args: &ScaleArgs, round: usize) -> Option<Vec<(usize, Instant)>> {
    let deadline = Instant::now() + PHASE_LIMIT;
    loop {
        let mut arrivals = Vec::new();
        let mut missing = 0usize;
        if let Ok(s) = seen.lock() {
            for g in 0..args.groups {
                let group = args.group(g);
                for topic in args.group_topics(g) {
                    for p in 0..args.partitions {
                        match s.get(&(group.clone(), topic.clone(), p)) {
                            Some((up, at)) if *up == args.committed(g, round) => {
                                arrivals.push((g, *at));
                            }
                            _ => missing += 1,
                        }
                    }
                }
            }
        }
        if missing == 0 {
            return Some(arrivals);
        }
        if Instant::now() > deadline {
            eprintln!(
                "  {missing} group partitions still without their checkpoint after {} s",
                PHASE_LIMIT.as_secs()
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn threads(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn run_one(who: Replicator, source: &Kafka, args: &ScaleArgs, dir: &Path) -> Result<ScaleMeasure> {
    let target = Kafka::start("scale-target", &args.kafka_options());
    warm_up(&target.bootstrap)?;
    if args.target_topics == TargetTopics::Existing {
        let t = Instant::now();
        create_topics(&target.bootstrap, args)?;
        wait_ready(&target.bootstrap, args)?;
        eprintln!(
            "  the target's topics created and every partition ready in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    // Every group holds its first-round offsets again, so each replicator starts alike.
    commit_groups(&source.bootstrap, args, 0)?;
    let seen: Seen = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher_thread = {
        let (b, s, st) = (
            target.bootstrap.clone(),
            Arc::clone(&seen),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            watch_checkpoints(b, "source.checkpoints.internal".into(), s, st)
        })
    };
    let started = Instant::now();
    let mut running = match who {
        Replicator::KmirrorEos | Replicator::Kmirror2 | Replicator::Kmirror3 => {
            anyhow::bail!("the scale benchmark runs one kmirror in its default mode; exactly-once mode and replicas are measured by the throughput benchmark")
        }
        Replicator::Kmirror => {
            let config = write_kmirror_config(
                dir,
                "kmirror-scale.yaml",
                (&source.bootstrap, &target.bootstrap),
                "    topicsPattern: \"scale-t.*\"\n    groupsPattern: \"scale-g.*\"\n",
                &format!(
                    "        emit.checkpoints.interval.seconds: {}\n",
                    args.interval
                ),
            )?;
            let kmirror = match &args.kmirror {
                Some(p) => p.clone(),
                None => std::env::current_exe()?.with_file_name("kmirror"),
            };
            let log = match &args.logs {
                Some(d) => {
                    fs::create_dir_all(d)?;
                    Stdio::from(fs::File::create(d.join("kmirror-scale.log"))?)
                }
                None => Stdio::null(),
            };
            Running::Processes(vec![Command::new(&kmirror)
                .args(["run", "--config", config.to_str().context("path")?])
                .args(&args.kmirror_args)
                .env(
                    "RUST_LOG",
                    if args.logs.is_some() { "info" } else { "warn" },
                )
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", kmirror.display()))?])
        }
        Replicator::Mm2 => {
            let props = write_mm2_properties(
                dir,
                "mm2-scale.properties",
                (&source.bootstrap, &target.bootstrap),
                "scale-t.*",
                &format!(
                    "source->target.groups = scale-g.*\nsource->target.emit.checkpoints.interval.seconds = {}\n",
                    args.interval
                ),
            )?;
            Running::Java(JavaProcess::mirror_maker(&props))
        }
        Replicator::Loop => bail!("the scale benchmark runs kmirror and MM2 only"),
    };
    let pid = running.pids().first().copied();
    let mut m = ScaleMeasure::default();
    let result = (|| -> Result<()> {
        let mut count = TargetCount::new(&target.bootstrap)?;
        let total = args.total_records();
        let mut n = 0;
        let mut shown = 0;
        while started.elapsed() < PHASE_LIMIT {
            n = count.advance(args, Duration::from_millis(250));
            if n >= total {
                m.copied = Some(started.elapsed().as_secs_f64());
                break;
            }
            if let Some(status) = running.exited() {
                bail!("the replicator exited ({status}) with {n} of {total} records on the target (its log: --logs DIR)");
            }
            // With --logs, how the copy went, second by second.
            let second = started.elapsed().as_secs();
            if args.logs.is_some() && second > shown {
                shown = second;
                eprintln!("  {second} s: {n} of {total} records on the target");
            }
        }
        // Its fetches would load the brokers through the checkpoint and idle phases.
        drop(count);
        if m.copied.is_none() {
            eprintln!("  {n} of {total} records on the target");
        }
        eprintln!("  every record copied: {:?}", m.copied);
        m.checkpointed = wait_checkpointed(&seen, args, 0).map(|arrivals| {
            arrivals
                .iter()
                .map(|(_, at)| at.duration_since(started).as_secs_f64())
                .fold(0.0, f64::max)
        });
        eprintln!("  every group checkpointed: {:?}", m.checkpointed);
        // Without every first checkpoint, the second round would wait as long again.
        let committed = commit_groups(&source.bootstrap, args, 1)?;
        let second = if m.checkpointed.is_some() {
            wait_checkpointed(&seen, args, 1)
        } else {
            None
        };
        if let Some(arrivals) = second {
            let mut latencies: Vec<f64> = arrivals
                .iter()
                .map(|(g, at)| at.saturating_duration_since(committed[*g]).as_secs_f64())
                .collect();
            latencies.sort_by(f64::total_cmp);
            m.latency_p50 = percentile(&latencies, 0.50);
            m.latency_p99 = percentile(&latencies, 0.99);
        }
        eprintln!("  commit to checkpoint p99: {:?}", m.latency_p99);
        if let Some(pid) = pid {
            // Let the last round's work settle, then sample.
            std::thread::sleep(Duration::from_secs(args.interval + 2));
            let c0 = cpu_seconds(pid)?;
            std::thread::sleep(Duration::from_secs(args.idle_seconds));
            let c1 = cpu_seconds(pid)?;
            #[allow(clippy::cast_precision_loss)]
            let idle = (c1 - c0) / args.idle_seconds as f64 * 100.0;
            m.idle_cpu_percent = idle;
            m.rss_mb = peak_rss_mb(pid)?;
            m.threads = threads(pid);
        }
        Ok(())
    })();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher_thread.join();
    if let (Some(logs), Running::Java(j)) = (&args.logs, &running) {
        let _ = fs::create_dir_all(logs);
        let _ = fs::write(logs.join("mm2-scale.log"), j.logs());
    }
    running.stop();
    result?;
    Ok(m)
}

/// Runs the scale benchmark and prints its table.
pub fn run(args: &ScaleArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("kmirror-scale-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    eprintln!(
        "starting the source cluster (Apache Kafka {})...",
        kmirror_testbed::kafka::kafka_version()
    );
    let source = Kafka::start("scale-source", &args.kafka_options());
    warm_up(&source.bootstrap)?;
    let partitions = args.topics * usize::try_from(args.partitions)?;
    eprintln!(
        "creating {} topics × {} partitions ({partitions} partitions), {} records each, {} groups on {} topics each...",
        args.topics, args.partitions, args.records, args.groups, args.topics_per_group
    );
    let t = Instant::now();
    create_topics(&source.bootstrap, args)?;
    fill(&source.bootstrap, args)?;
    // What a copy into a fresh target is held to on this machine: the broker creating as
    // many new partitions and taking their first records from one idempotent producer.
    let floor = t.elapsed().as_secs_f64();
    eprintln!(
        "  topics created and every record written by a bare idempotent producer in {floor:.1} s"
    );
    let mut rows = Vec::new();
    for &who in &args.only {
        eprintln!("{}...", who.name());
        rows.push((who, run_one(who, &source, args, &dir)?));
    }
    let _ = fs::remove_dir_all(&dir);
    let secs =
        |v: Option<f64>| v.map_or_else(|| "not within 600 s".into(), |s| format!("{s:.1} s"));
    println!(
        "| {partitions} partitions, {} groups ({} group partitions), interval {} s{} | {} |",
        args.groups,
        args.groups * args.topics_per_group.min(args.topics) * usize::try_from(args.partitions)?,
        args.interval,
        match args.target_topics {
            TargetTopics::Fresh => "",
            TargetTopics::Existing => ", target topics existing",
        },
        rows.iter()
            .map(|(w, _)| w.name())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(rows.len()));
    let line = |name: &str, f: &dyn Fn(&ScaleMeasure) -> String| {
        println!(
            "| {name} | {} |",
            rows.iter()
                .map(|(_, m)| f(m))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    };
    line("start to every record copied", &|m| secs(m.copied));
    line("start to every group checkpointed", &|m| {
        secs(m.checkpointed)
    });
    line("commit to checkpoint, p50 / p99", &|m| {
        format!("{} / {}", secs(m.latency_p50), secs(m.latency_p99))
    });
    line("idle CPU (share of one core)", &|m| {
        format!("{:.1} %", m.idle_cpu_percent)
    });
    line("peak RSS", &|m| format!("{:.0} MB", m.rss_mb));
    line("threads", &|m| m.threads.to_string());
    println!(
        "\n(the source broker, alone on the machine, created these topics and took every record from a bare idempotent producer in {floor:.1} s)"
    );
    Ok(())
}
