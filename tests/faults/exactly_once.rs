//! Exactly-once mode (`exactly.once.source.support: enabled` on the target cluster): read with
//! `read_committed` on the target, every source record arrives once, in order, whatever
//! happens to kmirror: kill -9, SIGTERM, a second instance of the same flow, a record the target
//! refuses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::support::*;

const PARTITIONS: i32 = 4;
const KILLS: usize = 20;

#[test]
fn kill_minus_nine_twenty_times_copies_each_record_once() {
    let env = Env::shared();
    let topic = format!("eos-killed-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let config = env.exactly_once_config(&topic, "");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&env.source.bootstrap, &topic, PARTITIONS, &stop);

    kill_repeatedly(&config, KILLS);
    stop.store(true, Ordering::Relaxed);
    let (sent, writing) = writer.join().unwrap();

    // Then a clean stop and a restart with more records: still each once.
    let mut kmirror = Kmirror::start(&config, &[]);
    assert_eq!(
        assert_all_in_order(
            &env.target.bootstrap,
            &topic,
            &sent,
            PARTITIONS,
            Duration::from_secs(180)
        ),
        0,
        "records copied twice after {KILLS} kills"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    assert!(
        kmirror.logs().contains("exactly-once mode"),
        "{}",
        kmirror.logs()
    );
    let mut all = sent.clone();
    let more = numbered_batch(sent.len(), sent.len() + 2_000, PARTITIONS, 100);
    produce(&env.source.bootstrap, &topic, &more);
    all.extend(more);
    let mut kmirror = Kmirror::start(&config, &[]);
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &all,
        PARTITIONS,
        Duration::from_secs(60),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(duplicates, 0, "copied twice after SIGTERM and restart");
    #[allow(clippy::cast_precision_loss)]
    let rate = sent.len() as f64 / writing.as_secs_f64();
    eprintln!(
        "exactly-once: kill -9 x{KILLS} while writing {} records at {rate:.0}/s, then SIGTERM and restart: 0 lost, 0 reordered, 0 copied twice",
        sent.len()
    );
}

#[test]
fn a_second_instance_of_the_flow_fences_the_first_and_nothing_is_copied_twice() {
    let env = Env::shared();
    let topic = format!("eos-fenced-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let config = env.exactly_once_config(&topic, "");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&env.source.bootstrap, &topic, PARTITIONS, &stop);

    let mut first = Kmirror::start(&config, &[]);
    std::thread::sleep(Duration::from_secs(5));
    let mut second = Kmirror::start(&config, &[]);
    wait_for(
        "the first instance to stop, fenced",
        Duration::from_secs(60),
        || match first.exit_code() {
            Some(code) => {
                assert_eq!(code, 1, "{}", first.logs());
                Ok(())
            }
            None => Err("still running".into()),
        },
    );
    let logs = first.logs();
    assert!(logs.contains("took over"), "{logs}");
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (sent, _) = writer.join().unwrap();
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(120),
    );
    assert_eq!(second.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(duplicates, 0, "copied twice:\n{}", second.logs());
}

/// Transaction markers take offsets on the target: translation must still land on the copy
/// of the committed record, exactly.
#[test]
fn checkpoints_translate_exactly_in_exactly_once_mode() {
    let env = Env::shared();
    let topic = format!("eos-cp-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 1);
    let extra = "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n";
    let config = env.exactly_once_config(&topic, extra);
    let mut kmirror = Kmirror::start(&config, &[]);
    // Several transactions: a batch, a pause longer than the commit interval, and so on.
    let mut sent = Vec::new();
    for round in 0..5 {
        let batch = numbered_batch(round * 100, (round + 1) * 100, 1, 10);
        produce(&env.source.bootstrap, &topic, &batch);
        sent.extend(batch);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(
        assert_all_in_order(
            &env.target.bootstrap,
            &topic,
            &sent,
            1,
            Duration::from_secs(60)
        ),
        0
    );
    let group = format!("{topic}-app");
    for committed in [0_i64, 57, 100, 301, 499, 500] {
        commit(&env.source.bootstrap, &group, &topic, &[(0, committed)]);
        let mut downstream = -1;
        wait_for(
            "the checkpoint of the commit",
            Duration::from_secs(30),
            || match checkpoints(&env, &group, &topic).get(&0) {
                Some((up, down)) if *up == committed => {
                    downstream = *down;
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            },
        );
        // A read_committed consumer starting there reads the copy of source record
        // `committed` first (or nothing, at the end).
        let reader: BaseConsumer = client(&env.target.bootstrap)
            .set("group.id", format!("verify-{}", rand_suffix()))
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(downstream))
            .unwrap();
        reader.assign(&tpl).unwrap();
        let first = match reader.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => m.key().map(<[u8]>::to_vec),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => None,
            Some(Err(e)) => panic!("{e}"),
            None => panic!("nothing read at {downstream}"),
        };
        let want = sent
            .get(usize::try_from(committed).unwrap())
            .map(|(_, r)| r.key.clone().unwrap());
        assert_eq!(
            first, want,
            "a group committed at source offset {committed} resumes on the target at {downstream}"
        );
    }
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// A record the target refuses (larger than the target topic accepts, compressed so that only
/// the broker can tell) aborts a transaction once; then its partition copies up to it and
/// stops there, loudly, and the other partition copies everything, each record once.
#[test]
fn a_record_the_target_refuses_stops_only_its_partition() {
    let env = Env::shared();
    let topic = format!("eos-refused-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 2);
    create_topic_with(
        &env.target.bootstrap,
        &topic,
        2,
        &[("max.message.bytes", "100000")],
    );
    let rec = |i: i64, value: Vec<u8>| TestRecord {
        key: Some(format!("k{i}").into_bytes()),
        value: Some(value),
        headers: Vec::new(),
        timestamp: 10_000 + i,
    };
    // Incompressible: 200 KB of a pseudo-random sequence.
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let mut records: Vec<(i32, TestRecord)> =
        (0..100).map(|i| (1, rec(i, vec![b'v'; 100]))).collect();
    records.extend((0..101).map(|i| {
        let value = if i == 50 {
            noise.clone()
        } else {
            vec![b'v'; 100]
        };
        (0, rec(1000 + i, value))
    }));
    produce(&env.source.bootstrap, &topic, &records);
    let config = env.exactly_once_config(&topic,
        "        config.properties.exclude: \"max\\\\.message\\\\.bytes\"\n        producer.compression.type: lz4\n        producer.batch.size: 50000\n",
    );
    let mut kmirror = Kmirror::start(&config, &[]);
    wait_for(
        "partition 0 to stop at the refused record",
        Duration::from_secs(60),
        || {
            if kmirror.logs().contains("partition stopped") {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    );
    let got = consume(
        &env.target.bootstrap,
        &topic,
        2,
        150,
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(3));
    let got_after = consume(
        &env.target.bootstrap,
        &topic,
        2,
        151,
        Duration::from_secs(2),
    );
    let logs = kmirror.logs();
    assert_eq!(got[&1].len(), 100, "the other partition goes on:\n{logs}");
    assert_eq!(
        got_after[&0].len(),
        50,
        "partition 0 copies up to the refused record, once, and nothing after it:\n{logs}"
    );
    let want = by_partition(&records, 2);
    assert_eq!(got_after[&0], want[&0][..50], "partition 0");
    assert_eq!(got_after[&1], want[&1], "partition 1");
    assert!(
        logs.lines()
            .any(|l| l.contains("partition stopped") && l.contains("offset=50")),
        "{logs}"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// The target's only broker killed (-9) and restarted while transactions are open and the
/// source is written: what was in them is aborted or committed, never both, and copying goes
/// on afterwards. Then SIGTERM while the target is frozen: kmirror exits within the shutdown
/// timeout, saying the last transaction was not committed, and after a restart every record
/// is there once.
#[test]
fn target_broker_killed_or_frozen_mid_transaction_copies_each_record_once() {
    let env = Env::dedicated();
    let topic = format!("eos-broker-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let config = env.exactly_once_config(&topic, "");
    let mut kmirror = Kmirror::start(&config, &["--shutdown-timeout", "5s"]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&env.source.bootstrap, &topic, PARTITIONS, &stop);
    std::thread::sleep(Duration::from_secs(4));
    env.target.kill_node(0);
    std::thread::sleep(Duration::from_secs(5));
    env.target.restart_node(0);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let (mut sent, _) = writer.join().unwrap();
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(180),
    );
    assert_eq!(
        kmirror.exit_code(),
        None,
        "kmirror ended by itself:\n{}",
        kmirror.logs()
    );
    assert_eq!(duplicates, 0, "copied twice:\n{}", kmirror.logs());
    let restarts = kmirror.logs().matches("replication stopped").count();
    eprintln!(
        "exactly-once: target broker killed for 5 s while writing {} records: 0 lost, 0 copied twice; the replicator restarted {restarts} time(s)",
        sent.len()
    );

    // SIGTERM while the target is frozen and a transaction is open.
    env.target.freeze_node(0);
    let more = numbered_batch(sent.len(), sent.len() + 20_000, PARTITIONS, 100);
    produce(&env.source.bootstrap, &topic, &more);
    sent.extend(more);
    std::thread::sleep(Duration::from_secs(2));
    let asked = Instant::now();
    let code = kmirror.terminate(Duration::from_secs(20));
    let took = asked.elapsed();
    let logs = kmirror.logs();
    assert!(
        took < Duration::from_secs(7),
        "SIGTERM took {took:?} with a 5 s shutdown timeout:\n{logs}"
    );
    assert_eq!(
        code,
        Some(3),
        "the exit code says not everything was stored:\n{logs}"
    );
    assert!(
        logs.contains("was not committed") || logs.contains("shutdown timeout"),
        "{logs}"
    );
    env.target.thaw_node(0);
    let mut kmirror = Kmirror::start(&config, &[]);
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(120),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(
        duplicates,
        0,
        "copied twice after the restart:\n{}",
        kmirror.logs()
    );
    eprintln!("exactly-once: SIGTERM with the target frozen: exited in {took:?} with code 3; after the restart every record arrived once");
}
