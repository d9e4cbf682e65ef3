//! Clusters that go away while the source is written, and come back: the source killed (-9)
//! and restarted with its data, the target frozen (connections open, nothing answers) and
//! thawed. kmirror rides through each without a restart, says which partitions wait while it
//! lasts, and afterwards the target holds every record, in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

const PARTITIONS: i32 = 3;

/// Writes batches of 500 records (numbered from `from`) to the source until stopped.
fn writer(
    env: &Env,
    topic: &str,
    from: usize,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(i32, TestRecord)>> {
    let (bootstrap, topic, stop) = (
        env.source.bootstrap.clone(),
        topic.to_owned(),
        Arc::clone(stop),
    );
    std::thread::spawn(move || {
        let mut sent = Vec::new();
        let mut next = from;
        while !stop.load(Ordering::Relaxed) {
            let b = numbered_batch(next, next + 500, PARTITIONS, 200);
            produce(&bootstrap, &topic, &b);
            sent.extend(b);
            next += 500;
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    })
}

#[test]
fn source_killed_and_target_frozen_while_writing_lose_nothing() {
    let env = Env::dedicated();
    let topic = format!("outage-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let config = env.config(&topic, "");
    let port = free_port();
    let mut kmirror = Kmirror::start(
        &config,
        &[
            "--stall-after",
            "3s",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );

    // 1. The target freezes for 15 s while the source is written.
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&env, &topic, 0, &stop);
    std::thread::sleep(Duration::from_secs(3));
    env.target.freeze_node(0);
    let frozen = Instant::now();
    let mut reported = false;
    while frozen.elapsed() < Duration::from_secs(15) {
        let (code, body) = http_get(port, "/readyz");
        reported |= code == 503 && body.contains(&format!("partition {topic}"));
        std::thread::sleep(Duration::from_millis(500));
    }
    env.target.thaw_node(0);
    assert!(
        reported,
        "/readyz named the waiting partitions while the target was frozen"
    );
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut sent = w.join().unwrap();

    // 2. The source is killed (-9) and restarted with its data, then written again.
    env.source.kill_node(0);
    std::thread::sleep(Duration::from_secs(5));
    env.source.restart_node(0);
    env.source.wait_ready(1, Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&env, &topic, sent.len(), &stop);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    sent.extend(w.join().unwrap());

    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(120),
    );
    assert_eq!(
        kmirror.exit_code(),
        None,
        "kmirror rode through both outages:\n{}",
        kmirror.logs()
    );
    wait_for("/readyz after the outages", Duration::from_secs(30), || {
        let (code, body) = http_get(port, "/readyz");
        if code == 200 {
            Ok(())
        } else {
            Err(body)
        }
    });
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    eprintln!(
        "target frozen 15 s, source killed and restarted: all {} records in order, {duplicates} copied twice",
        sent.len()
    );
}

/// A three-broker source (replication factor 3, `min.insync.replicas=2`): the broker leading
/// partition 0 is killed (-9) while records are written, so leadership moves, and later
/// restarted on its data; then a preferred leader election moves leadership back to it
/// without a kill. Nothing is lost or reordered.
#[test]
fn a_source_leader_killed_under_replication_factor_three_loses_nothing() {
    let source = Arc::new(Kafka::start(
        "source3",
        &kafka::KafkaOptions {
            nodes: 3,
            ..Default::default()
        },
    ));
    let (_, target) = kafka::shared();
    let env = Env::on(Arc::clone(&source), target);
    let topic = format!("leader-{}", rand_suffix());
    let new = rdkafka::admin::NewTopic::new(
        &topic,
        PARTITIONS,
        rdkafka::admin::TopicReplication::Fixed(3),
    )
    .set("min.insync.replicas", "2");
    for r in block_on(
        admin(&source.bootstrap).create_topics(&[new], &rdkafka::admin::AdminOptions::new()),
    )
    .unwrap()
    {
        r.unwrap();
    }
    let config = env.config(&topic, "");
    let mut kmirror = Kmirror::start(&config, &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&env, &topic, 0, &stop);
    std::thread::sleep(Duration::from_secs(3));
    let leader = leader_of(&source.bootstrap, &topic, 0);
    source.kill_node(leader);
    std::thread::sleep(Duration::from_secs(10));
    source.restart_node(leader);
    source.wait_ready(3, Duration::from_secs(60));
    // Then leadership moves without a kill: once the restarted broker is back in sync, a
    // preferred leader election hands partition 0 back to it while records are written.
    wait_for(
        "the restarted broker back in sync",
        Duration::from_secs(60),
        || {
            let isr = in_sync(&source.bootstrap, &topic, 0);
            if isr.contains(&leader) {
                Ok(())
            } else {
                Err(format!("in sync: {isr:?}"))
            }
        },
    );
    let moved_from = leader_of(&source.bootstrap, &topic, 0);
    kafka::run_java(
        None,
        "org.apache.kafka.tools.LeaderElectionCommand",
        &[
            "--bootstrap-server",
            &source.bootstrap,
            "--election-type",
            "PREFERRED",
            "--all-topic-partitions",
        ],
    );
    assert_eq!(
        leader_of(&source.bootstrap, &topic, 0),
        leader,
        "the preferred leader leads again"
    );
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let sent = w.join().unwrap();

    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(120),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    eprintln!(
        "leader of partition 0 (node {}) killed and restarted, then moved back from node {} by a preferred election: all {} records in order, {duplicates} copied twice",
        leader + 1,
        moved_from + 1,
        sent.len()
    );
}

/// The indexes (0-based) of the nodes in sync for `topic`'s `partition`.
fn in_sync(bootstrap: &str, topic: &str, partition: i32) -> Vec<usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = client(bootstrap).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .unwrap()
        .isr()
        .iter()
        .map(|&n| usize::try_from(n - 1).unwrap())
        .collect()
}

/// The index (0-based) of the node leading `topic`'s `partition`.
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = client(bootstrap).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let leader = md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .unwrap()
        .leader();
    usize::try_from(leader - 1).unwrap()
}

/// The permission check's requests (DescribeTopics with authorized operations, and the probe of
/// the right to create ACLs) asked over and over while a one-node cluster is frozen for
/// longer than its broker session, then thawed: the controller fences the broker, which answers
/// on its open connections, reporting no broker at all, until its next heartbeat. librdkafka
/// aborts the process on such an answer to DescribeCluster (this test did, when the check asked
/// that); every request the check sends gets an error instead, and answers once the broker is
/// back.
#[test]
fn permissions_checked_while_the_only_broker_is_fenced() {
    let kafka = Kafka::start("fenced", &kafka::KafkaOptions::default());
    let topic = format!("described-{}", rand_suffix());
    create_topic(&kafka.bootstrap, &topic, 1);
    let admin = admin(&kafka.bootstrap);
    let timeout = Duration::from_secs(2);
    let topics = [topic.clone()];
    let ask = || {
        let described = kmirror_admin::describe_topics(admin.inner(), &topics, true, timeout);
        let create = kmirror_admin::may_create_acls(admin.inner(), timeout);
        (described, create)
    };
    let before = ask();
    assert!(
        matches!(before, (Ok(_), Ok(true))),
        "before the freeze (the super user may do all): {before:?}"
    );

    let stop = AtomicBool::new(false);
    let (failed, answered) = std::thread::scope(|s| {
        let asker = s.spawn(|| {
            let (mut failed, mut answered) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                match ask() {
                    (Ok(_), Ok(_)) => answered += 1,
                    _ => failed += 1,
                }
            }
            (failed, answered)
        });
        kafka.freeze_node(0);
        std::thread::sleep(Duration::from_secs(15));
        kafka.thaw_node(0);
        // Asked through the broker's fencing and past it.
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        asker.join().unwrap()
    });
    assert!(failed > 0, "nothing was asked while the broker was away");
    assert!(
        answered > 0,
        "no answer once the broker was back ({failed} failed)"
    );
    let (described, create) = ask();
    let described = described.unwrap();
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].0, topic);
    assert!(described[0].1.is_ok(), "{:?}", described[0].1);
    assert_eq!(create, Ok(true));
    eprintln!("broker frozen 15 s: {failed} rounds failed, {answered} answered, none aborted");
}
