//! Fault tests against librdkafka's in-process mock cluster: brokers fail, nothing is lost.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use kmirror_core::{ClusterAlias, TopicPartition};
use kmirror_engine::client::ClusterContext;
use kmirror_engine::replicator::{Assignment, Command, Replicator, ReplicatorSettings, Start};
use kmirror_engine::status::StatusBoard;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

fn produce(bootstrap: &str, topic: &str, partitions: i32, from: usize, to: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in from..to {
        let key = format!("{i:08}");
        let p = i32::try_from(i).unwrap() % partitions;
        let mut rec = BaseRecord::<str, str>::to(topic)
            .key(&key)
            .payload(&key)
            .partition(p);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "verify")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    let deadline = Instant::now() + timeout;
    while n < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.entry(m.partition())
                .or_default()
                .push(String::from_utf8_lossy(m.key().unwrap()).into_owned());
            n += 1;
        }
    }
    out
}

#[test]
fn target_leader_down_for_ten_seconds_loses_nothing_and_keeps_order() {
    let source = MockCluster::new(1).unwrap();
    let target = MockCluster::new(3).unwrap();
    let (topic, partitions, total) = ("orders", 2, 20_000);
    source.create_topic(topic, partitions, 1).unwrap();
    target.create_topic(topic, partitions, 3).unwrap();
    target.create_topic("progress", 1, 3).unwrap();
    target.partition_leader(topic, 0, Some(2)).unwrap();
    let (src, dst) = (source.bootstrap_servers(), target.bootstrap_servers());
    produce(&src, topic, partitions, 0, total / 2);

    let mut consumer = ClientConfig::new();
    consumer
        .set("bootstrap.servers", &src)
        .set("group.id", "kmirror-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error");
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", &dst)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0");
    let settings = ReplicatorSettings {
        source: ClusterAlias::new("source"),
        flow: "source->target".into(),
        progress_topic: "progress".into(),
        progress_partitions: 1,
        flush_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(30),
        target: ClusterAlias::new("target"),
        metrics: Arc::new(kmirror_engine::metrics::Metrics::new()),
        maps: Arc::default(),
    };
    let status = Arc::new(StatusBoard::default());
    let replicator = Replicator::build(
        settings,
        &consumer,
        &producer,
        ClusterContext::named("target"),
        Arc::clone(&status),
        None,
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let worker = std::thread::spawn(move || replicator.run(&rx, &token));
    let assignments = (0..partitions)
        .map(|p| Assignment {
            source: TopicPartition::new(topic, p),
            target_topic: topic.into(),
            start: Start::Earliest,
            map: Default::default(),
        })
        .collect();
    tx.send(Command::Assign(assignments)).unwrap();

    // Mid-stream, the leader of target partition 0 goes away for 10 s while more is written.
    std::thread::sleep(Duration::from_millis(500));
    target.broker_down(2).unwrap();
    produce(&src, topic, partitions, total / 2, total);
    std::thread::sleep(Duration::from_secs(10));
    target.broker_up(2).unwrap();

    let got = read_all(&dst, topic, partitions, total, Duration::from_secs(60));
    shutdown.cancel();
    let report = worker.join().unwrap().unwrap();
    assert!(report.clean, "clean shutdown");
    for p in 0..partitions {
        let want: Vec<String> = (0..total)
            .filter(|i| i32::try_from(*i).unwrap() % partitions == p)
            .map(|i| format!("{i:08}"))
            .collect();
        let have = got.get(&p).cloned().unwrap_or_default();
        assert_eq!(
            have.len(),
            want.len(),
            "partition {p}: {} of {} records arrived",
            have.len(),
            want.len()
        );
        assert_eq!(have, want, "partition {p}: order or content differs");
    }
}
