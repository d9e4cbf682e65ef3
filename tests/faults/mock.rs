//! Against librdkafka's in-process mock cluster: the target's leader fails, nothing is lost.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use kmirror_core::{ClusterAlias, TopicPartition};
use kmirror_engine::client::ClusterContext;
use kmirror_engine::replicator::{Assignment, Command, Replicator, ReplicatorSettings, Start};
use kmirror_engine::status::StatusBoard;
use rdkafka::mocking::MockCluster;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::support::{consume, produce, TestRecord};

fn record(i: usize) -> TestRecord {
    let key = format!("{i:08}").into_bytes();
    TestRecord {
        key: Some(key.clone()),
        value: Some(key),
        headers: Vec::new(),
        timestamp: 1_000 + i64::try_from(i).unwrap(),
    }
}

fn records(partitions: i32, from: usize, to: usize) -> Vec<(i32, TestRecord)> {
    (from..to)
        .map(|i| (i32::try_from(i).unwrap() % partitions, record(i)))
        .collect()
}

/// A replicator copying `topic` (`partitions` partitions, `total / 2` records written) from
/// a one-broker mock source to a three-broker mock target, where broker 2 leads partition 0.
struct Mocked {
    source: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    target: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    status: Arc<StatusBoard>,
    shutdown: CancellationToken,
    worker: std::thread::JoinHandle<kmirror_engine::Result<kmirror_engine::replicator::Report>>,
    _commands: mpsc::Sender<Command>,
}

fn mocked(topic: &str, partitions: i32, total: usize, wedged_after: Duration) -> Mocked {
    let source = MockCluster::new(1).unwrap();
    let target = MockCluster::new(3).unwrap();
    source.create_topic(topic, partitions, 1).unwrap();
    target.create_topic(topic, partitions, 3).unwrap();
    target.create_topic("progress", 1, 3).unwrap();
    target.partition_leader(topic, 0, Some(2)).unwrap();
    let (src, dst) = (source.bootstrap_servers(), target.bootstrap_servers());
    produce(&src, topic, &records(partitions, 0, total / 2));

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
        stall_after: Duration::from_secs(3),
        producers: 1,
        wedged_after,
        tails: None,
        provenance: None,
        transactions: None,
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
    let worker = std::thread::spawn(move || replicator.run(&rx, &token).0);
    let assignments = (0..partitions)
        .map(|p| Assignment {
            source: TopicPartition::new(topic, p),
            target_topic: topic.into(),
            start: Start::Earliest,
            map: Default::default(),
            ids: Default::default(),
            max_message_bytes: None,
            compression: None,
        })
        .collect();
    tx.send(Command::Assign(assignments)).unwrap();
    Mocked {
        source,
        target,
        status,
        shutdown,
        worker,
        _commands: tx,
    }
}

#[test]
fn target_leader_down_for_ten_seconds_loses_nothing_and_keeps_order() {
    let (topic, partitions, total) = ("orders", 2, 20_000);
    let Mocked {
        source,
        target,
        status,
        shutdown,
        worker,
        _commands,
    } = mocked(topic, partitions, total, Duration::from_secs(60));
    let (src, dst) = (source.bootstrap_servers(), target.bootstrap_servers());

    // Mid-stream, the leader of target partition 0 goes away for 10 s while more is written.
    std::thread::sleep(Duration::from_millis(500));
    target.broker_down(2).unwrap();
    produce(&src, topic, &records(partitions, total / 2, total));
    // Within the outage the partition is reported stuck (after `stall_after`), with a cause.
    let mut stuck = None;
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        if stuck.is_none() {
            stuck = status
                .snapshot()
                .into_iter()
                .find(|r| r.stuck && r.source.partition == 0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    target.broker_up(2).unwrap();
    let stuck = stuck.expect("partition 0 reported stuck during the outage");
    assert!(
        ["waiting_for_target", "retrying"].contains(&stuck.state) && stuck.error.is_some(),
        "{stuck:?}"
    );

    let got = consume(&dst, topic, partitions, total, Duration::from_secs(60));
    let recovered = std::time::Instant::now();
    while status.snapshot().iter().any(|r| r.stuck) {
        assert!(
            recovered.elapsed() < Duration::from_secs(10),
            "still reported stuck after recovering: {:?}",
            status.snapshot()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    shutdown.cancel();
    let report = worker.join().unwrap().unwrap();
    assert!(report.clean, "clean shutdown");
    for p in 0..partitions {
        let want: Vec<TestRecord> = (0..total)
            .filter(|i| i32::try_from(*i).unwrap() % partitions == p)
            .map(record)
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

/// A producer that acknowledges nothing for longer than `wedged_after` while the target names a
/// leader for its records is replaced: the replicator ends with a retriable error (the flow
/// starts a new one from the stored progress). Here the named leader is down for good.
#[test]
fn a_producer_silent_while_the_target_names_a_leader_is_replaced() {
    let (topic, partitions, total) = ("stuck", 2, 2_000);
    let m = mocked(topic, partitions, total, Duration::from_secs(4));
    let src = m.source.bootstrap_servers();
    std::thread::sleep(Duration::from_millis(500));
    m.target.broker_down(2).unwrap();
    produce(&src, topic, &records(partitions, total / 2, total));
    let started = std::time::Instant::now();
    while !m.worker.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replicator did not give up on a silent producer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcome = m.worker.join().unwrap();
    let Err(e) = outcome else {
        panic!("the replicator ended without an error: {outcome:?}");
    };
    let text = e.to_string();
    assert!(
        text.contains("acknowledged nothing")
            && text.contains("stuck[0]")
            && text.contains("broker 2"),
        "{text}"
    );
    assert!(
        matches!(e, kmirror_engine::Error::Retriable(_)),
        "the flow starts the replicator again: {text}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "not before wedged_after"
    );
    m.shutdown.cancel();
}
