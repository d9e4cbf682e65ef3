//! A record the target refuses stops its partition loudly; nothing after it is skipped, the
//! other partitions go on, and a fixed restart continues at the refused record.

use std::time::Duration;

use crate::support::*;

fn rec(i: i32, size: usize) -> TestRecord {
    TestRecord {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(vec![b'v'; size]),
        headers: Vec::new(),
        timestamp: 10_000 + i64::from(i),
    }
}

/// How the target comes to refuse the large record, and how that is fixed.
enum Refusal {
    /// kmirror's producer accepts at most 100 KB per record (`producer.message.max.bytes`).
    Producer,
    /// The target topic accepts at most 100 KB per batch (`max.message.bytes`, not synced).
    TargetTopic,
}

#[test]
fn refused_record_stops_only_its_partition_and_loses_nothing() {
    refused_then_fixed(Refusal::Producer);
}

/// The broker would refuse the record: it is never sent, so that the records after it, already
/// fetched, cannot reach the target before it.
#[test]
fn a_record_above_the_target_topic_limit_stops_its_partition_before_anything_after_it_lands() {
    refused_then_fixed(Refusal::TargetTopic);
}

fn refused_then_fixed(how: Refusal) {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("refused-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    // Partition 0: 50 small records, one of 200 KB at offset 50, then 50 more. Partition 1: 100 small.
    let mut records: Vec<(i32, TestRecord)> = (0..100).map(|i| (1, rec(i, 100))).collect();
    records.extend((0..101).map(|i| (0, rec(1000 + i, if i == 50 { 200_000 } else { 100 }))));
    produce(&source.bootstrap, &topic, &records);

    let refusing = match how {
        Refusal::Producer => env.config(&topic, "        producer.message.max.bytes: 100000\n"),
        Refusal::TargetTopic => {
            create_topic_with(
                &target.bootstrap,
                &topic,
                2,
                &[("max.message.bytes", "100000")],
            );
            env.config(
                &topic,
                "        config.properties.exclude: \"max\\\\.message\\\\.bytes\"\n",
            )
        }
    };
    let port = free_port();
    let mut kmirror = Kmirror::start(&refusing, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let got = consume(&target.bootstrap, &topic, 2, 150, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let got_after = consume(&target.bootstrap, &topic, 2, 151, Duration::from_secs(2));
    assert_eq!(got[&1].len(), 100, "the other partition goes on");
    assert_eq!(
        got_after[&0].len(),
        50,
        "partition 0 stops right before the refused record, and nothing after it lands"
    );
    let logs = kmirror.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("partition stopped"))
        .unwrap_or_else(|| panic!("no error line:\n{logs}"));
    assert!(
        line.contains(&topic)
            && line.contains("partition=0")
            && line.contains("offset=50")
            && line.contains("MessageSizeTooLarge"),
        "{line}"
    );
    let (_, metrics) = crate::operations::get(port, "/metrics");
    assert_eq!(
        crate::operations::series(
            &metrics,
            "kmirror_partition_state",
            &[
                ("topic", topic.as_str()),
                ("partition", "0"),
                ("state", "failed")
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    // Fixed and restarted: it continues at the refused record, in order.
    let fixed = match how {
        Refusal::Producer => env.config(&topic, ""),
        Refusal::TargetTopic => {
            alter_topic_config(&target.bootstrap, &topic, "max.message.bytes", "1000000");
            refusing
        }
    };
    let mut kmirror = Kmirror::start(&fixed, &[]);
    let got = consume(&target.bootstrap, &topic, 2, 201, Duration::from_secs(30));
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let want: Vec<TestRecord> = records
        .iter()
        .filter(|(p, _)| *p == 0)
        .map(|(_, r)| r.clone())
        .collect();
    let keys = |v: &[TestRecord]| {
        v.iter()
            .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&got[&0]),
        keys(&want),
        "partition 0 complete and in order after the fix"
    );
    assert_eq!(got[&0], want, "partition 0 records identical");
}

/// A topic whose `max.message.bytes` is smaller than the producer's batches (64 KiB here, its
/// configs synced to the target): every record fits, so every record is copied, however many
/// the producer would put in one batch.
#[test]
fn a_topic_with_a_small_max_message_bytes_is_copied_whole() {
    use rdkafka::producer::Producer;
    let env = Env::shared();
    let topic = format!("small-batches-{}", rand_suffix());
    create_topic_with(
        &env.source.bootstrap,
        &topic,
        2,
        &[("max.message.bytes", "65536")],
    );
    let sent = numbered_batch(0, 20_000, 2, 1_000);
    // The source's own producer keeps its batches under the limit.
    let producer: rdkafka::producer::BaseProducer = client(&env.source.bootstrap)
        .set("enable.idempotence", "true")
        .set("batch.size", "60000")
        .create()
        .unwrap();
    for (p, r) in &sent {
        send_record(&producer, &topic, *p, r);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(
        source_count(&env.source.bootstrap, &topic),
        20_000,
        "the source holds every record"
    );
    let config = env.config(&topic, "");
    let mut kmirror = Kmirror::start(&config, &[]);
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        2,
        Duration::from_secs(60),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(duplicates, 0);
    assert!(
        !kmirror.logs().contains("partition stopped"),
        "{}",
        kmirror.logs()
    );
}

/// Records in `topic` (its high watermarks summed; no transactions here).
fn source_count(bootstrap: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = client(bootstrap).create().unwrap();
    (0..2)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}
