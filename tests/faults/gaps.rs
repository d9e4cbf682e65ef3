//! Offset gaps on the source: transaction markers and records deleted before they were copied.
//! A translated offset never skips a record; what cannot be copied is named, with its range.

use std::time::Duration;

use rdkafka::admin::AdminOptions;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::support::*;

/// Commits `group` at source offset `u` of `topic`'s partition 0 and returns the target offset
/// of the checkpoint kmirror emits for it.
fn translated(env: &Env, group: &str, topic: &str, u: i64) -> i64 {
    commit(&env.source.bootstrap, group, topic, &[(0, u)]);
    let mut got = None;
    wait_for(
        &format!("checkpoint at {u}"),
        Duration::from_secs(20),
        || {
            got = checkpoints(env, group, topic).get(&0).copied();
            got.map(|_| ()).ok_or_else(|| "none yet".into())
        },
    );
    let (upstream, d) = got.unwrap();
    assert_eq!(upstream, u);
    d
}

/// 5,000 one-record transactions: every other source offset is a commit marker, and the
/// partition's offset map has far more runs than it keeps. Groups at early, middle and late
/// offsets translate at or before the exact target offset (re-read, never skip); recent ones
/// exactly.
#[test]
fn five_thousand_transaction_markers_never_translate_into_a_skip() {
    let env = Env::shared();
    let topic = format!("txn-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 1);
    let producer: BaseProducer = client(&env.source.bootstrap)
        .set("transactional.id", format!("txn-{}", rand_suffix()))
        .set("linger.ms", "0")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    let n: i64 = 5_000;
    for i in 0..n {
        producer.begin_transaction().unwrap();
        let key = format!("{i:06}");
        producer
            .send(
                BaseRecord::<str, str>::to(&topic)
                    .partition(0)
                    .key(&key)
                    .payload(&key),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer
            .commit_transaction(Duration::from_secs(30))
            .unwrap();
    }
    // Record i is at source offset 2i (its commit marker at 2i + 1) and lands at target offset i.
    let config = env.config(
        &topic,
        "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n",
    );
    let port = free_port();
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let copied = consume(
        &env.target.bootstrap,
        &topic,
        1,
        5_000,
        Duration::from_secs(60),
    );
    assert_eq!(copied[&0].len(), 5_000);

    let mut degraded = 0;
    for (g, u) in [
        0, 1, 2, 501, 1_000, 2_001, 5_000, 9_000, 9_801, 9_998, 9_999, 10_000,
    ]
    .into_iter()
    .enumerate()
    {
        let exact = (u + 1) / 2;
        let d = translated(&env, &format!("{topic}-g{g}"), &topic, u);
        assert!(
            d <= exact,
            "source offset {u} translated to target offset {d}, after the exact {exact}: records skipped"
        );
        if d < exact {
            degraded += 1;
            assert!(
                u < 9_000,
                "recent offsets translate exactly: {u} -> {d}, exact {exact}"
            );
        }
        // Resuming at d on the target reads every record the group had not read.
        let next_key = format!("{exact:06}");
        if exact < 5_000 {
            assert!(
                copied[&0][usize::try_from(d).unwrap()..]
                    .iter()
                    .any(|r| r.key.as_deref() == Some(next_key.as_bytes())),
                "{u}: the next record to read is on the target after {d}"
            );
        }
    }
    assert!(
        degraded > 0,
        "the oldest offsets round back (the map is bounded)"
    );
    let metrics = http_get(port, "/metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kmirror_translation_degraded_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// Records deleted on the source (DeleteRecords) before kmirror copied them: an error line with
/// the exact range, a counter, and everything after them copied.
#[test]
fn records_deleted_before_they_were_copied_are_named_and_counted() {
    let env = Env::shared();
    let topic = format!("deleted-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 1);
    produce(&env.source.bootstrap, &topic, &spread(100, 1));
    let config = env.config(&topic, "");
    let port = free_port();
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let _ = consume(
        &env.target.bootstrap,
        &topic,
        1,
        100,
        Duration::from_secs(30),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    // While kmirror is stopped: 100 more records, and the first 150 deleted.
    let more: Vec<(i32, TestRecord)> = (100..300)
        .map(|i| {
            (
                0,
                TestRecord {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(vec![1]),
                    headers: Vec::new(),
                    timestamp: 1_000 + i64::from(i),
                },
            )
        })
        .collect();
    produce(&env.source.bootstrap, &topic, &more);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(150))
        .unwrap();
    block_on(admin(&env.source.bootstrap).delete_records(&tpl, &AdminOptions::new())).unwrap();

    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let got = consume(
        &env.target.bootstrap,
        &topic,
        1,
        250,
        Duration::from_secs(30),
    );
    let keys: Vec<String> = got[&0]
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap()).into_owned())
        .collect();
    assert_eq!(keys.len(), 250, "100 before, 150 after the deleted range");
    assert_eq!(keys[100], "k150", "continues at the new log start");
    assert_eq!(keys[249], "k299");
    let metrics = http_get(port, "/metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kmirror_source_records_deleted_total{")
                && l.contains(&format!("topic=\"{topic}\""))
                && l.ends_with(" 50")),
        "50 records counted as lost:\n{metrics}"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let logs = kmirror.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains(" ERROR ") && l.contains("records 100..149")),
        "{logs}"
    );
}

/// The source offsets of `topic`'s partition 0 that hold a record, with their keys, in order.
fn source_offsets(bootstrap: &str, topic: &str) -> Vec<(i64, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", format!("read-{}", rand_suffix()))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            _ => {}
        }
    }
    panic!("{topic} not read to its end in 30 s");
}

/// A compacted source topic, compacted before kmirror copies it: most early offsets hold no
/// record. Groups committed at offsets that hold a record and at offsets that were compacted
/// away translate exactly: the target offset before which the target holds copies of exactly
/// the records the group had read.
#[test]
fn a_compacted_source_topic_translates_exactly() {
    let env = Env::shared();
    let topic = format!("compacted-{}", rand_suffix());
    create_topic_with(
        &env.source.bootstrap,
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            // 1 MiB segments (the smallest Kafka 4 allows): about 500 records each.
            ("segment.bytes", "1048576"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
        ],
    );
    // 3,000 records of 2 KB over 100 keys: once the closed segments are compacted, they keep
    // one record per key.
    let records: Vec<(i32, TestRecord)> = (0..3_000)
        .map(|i| {
            (
                0,
                TestRecord {
                    key: Some(format!("k{:03}", i % 100).into_bytes()),
                    value: Some(format!("v{i:01999}").into_bytes()),
                    headers: Vec::new(),
                    timestamp: 1_700_000_000_000 + i64::from(i),
                },
            )
        })
        .collect();
    // Batches smaller than a segment (the broker refuses larger ones).
    produce_with(
        &env.source.bootstrap,
        &topic,
        &records,
        &[("batch.size", "262144")],
    );
    // The cleaner rewrites the closed segments group by group, so a reader may see some cleaned
    // and the next ones not yet. Once it is done, the closed segments keep one record per key
    // (100) and the active segment fewer than a segment's worth (about 500); while a closed
    // segment is still uncleaned, at least 100 + 500 + the active segment are left.
    let mut survivors = Vec::new();
    wait_for("the source compacted", Duration::from_secs(90), || {
        survivors = source_offsets(&env.source.bootstrap, &topic);
        if survivors.len() < 650 {
            Ok(())
        } else {
            std::thread::sleep(Duration::from_secs(2));
            Err(format!("{} records left", survivors.len()))
        }
    });

    // The target topic stays compacted but keeps the default (1 GiB) segments, so its cleaner
    // cannot remove copies before they are read back.
    let config = env.config(
        &topic,
        "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n        config.properties.exclude: \"segment\\\\.bytes,min\\\\.cleanable\\\\.dirty\\\\.ratio\"\n",
    );
    let mut kmirror = Kmirror::start(&config, &[]);
    let copied = consume(
        &env.target.bootstrap,
        &topic,
        1,
        survivors.len(),
        Duration::from_secs(60),
    );
    let copied_keys: Vec<String> = copied[&0]
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let surviving_keys: Vec<String> = survivors.iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(
        copied_keys, surviving_keys,
        "the target holds what survived, in order"
    );

    // Offsets that hold a record, offsets compacted away, the first, the end.
    let end = survivors.last().map_or(0, |(o, _)| o + 1);
    let mut probes: Vec<i64> = vec![0, 1, 7, 500, 1_234, 2_899, 2_900, 2_950, end - 1, end];
    probes.extend(survivors.iter().take(5).map(|(o, _)| *o));
    probes.extend(survivors.iter().take(5).map(|(o, _)| o + 1));
    probes.sort_unstable();
    probes.dedup();
    for (g, u) in probes.into_iter().enumerate() {
        // The group has read every record before `u`: it resumes at the first copy after them.
        let exact = i64::try_from(survivors.iter().filter(|(o, _)| *o < u).count()).unwrap();
        let d = translated(&env, &format!("{topic}-g{g}"), &topic, u);
        assert_eq!(
            d, exact,
            "source offset {u} translated to target offset {d}, not {exact}"
        );
    }
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    eprintln!(
        "compacted: {} of 3,000 records left at offsets up to {end}; every probe translated exactly",
        survivors.len()
    );
}
