//! Crash safety: SIGKILL loses nothing, SIGTERM duplicates nothing.

use std::collections::{BTreeMap, HashMap};
use std::thread;
use std::time::Duration;

use crate::support::*;

fn record(seq: usize) -> TestRecord {
    TestRecord {
        key: Some(format!("{seq:08}").into_bytes()),
        value: Some(format!("payload-{seq}-{}", "x".repeat(seq % 200)).into_bytes()),
        headers: Vec::new(),
        timestamp: 1_700_000_000_000 + i64::try_from(seq).unwrap(),
    }
}

/// Every source offset translates, through the maps kmirror stored, to the target offset of
/// the same record (the newest copy after a replay), or to the target end past the last one.
fn check_translation(
    env: &Env,
    topic: &str,
    source: &BTreeMap<i32, Vec<TestRecord>>,
    copied: &BTreeMap<i32, Vec<TestRecord>>,
) {
    let stored = consume_until_quiet(
        &env.target.bootstrap,
        &env.progress_topic(),
        3,
        Duration::from_secs(2),
    );
    let mut maps = BTreeMap::new();
    for r in stored.values().flatten() {
        if let Some(m) = kmirror_core::progress::decode_map(
            r.key.as_deref().unwrap_or_default(),
            r.value.as_deref(),
        ) {
            if m.cluster == env.src && &*m.partition.topic == topic {
                maps.insert(m.partition.partition, m.map);
            }
        }
    }
    for (p, records) in source {
        let map = maps
            .get(p)
            .unwrap_or_else(|| panic!("no translation map stored for partition {p}"));
        let on_target = &copied[p];
        let newest: HashMap<&TestRecord, usize> =
            on_target.iter().enumerate().map(|(i, r)| (r, i)).collect();
        for (u, record) in records.iter().enumerate() {
            let d = usize::try_from(map.translate(i64::try_from(u).unwrap()).unwrap()).unwrap();
            assert_eq!(
                &on_target[d], record,
                "partition {p}: source offset {u} translates to target offset {d}, another record"
            );
            assert_eq!(
                newest[record], d,
                "partition {p}: offset {u} translates to an older copy"
            );
        }
        let end = map
            .translate(i64::try_from(records.len()).unwrap())
            .unwrap();
        assert_eq!(
            usize::try_from(end).unwrap(),
            on_target.len(),
            "partition {p}: a group at the end resumes at the target end"
        );
    }
}

#[test]
fn sigkill_loses_nothing_and_sigterm_copies_nothing_twice() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("crash-{}", rand_suffix());
    let partitions = 4;
    create_topic(&source.bootstrap, &topic, partitions);
    let total = 100_000;
    let all: Vec<(i32, TestRecord)> = (0..total)
        .map(|i| (i32::try_from(i % 4).unwrap(), record(i)))
        .collect();
    let mut want: BTreeMap<i32, Vec<TestRecord>> = BTreeMap::new();
    for (p, r) in &all {
        want.entry(*p).or_default().push(r.clone());
    }

    // A stream: 20 batches of 5,000 written over a few seconds while kmirror runs and dies.
    let bootstrap = source.bootstrap.clone();
    let stream_topic = topic.clone();
    let batches: Vec<Vec<(i32, TestRecord)>> = all.chunks(5_000).map(<[_]>::to_vec).collect();
    let writer = thread::spawn(move || {
        for batch in batches {
            produce(&bootstrap, &stream_topic, &batch);
            thread::sleep(Duration::from_millis(150));
        }
    });
    let config = env.config(&topic, "");
    let mut first = Kmirror::start(&config, &[]);
    thread::sleep(Duration::from_millis(1_800));
    assert!(
        !writer.is_finished(),
        "the stream ended before the kill; the test must kill mid-stream"
    );
    first.kill();
    let mut second = Kmirror::start(&config, &[]);
    writer.join().unwrap();

    // Wait for at least `total` records, then read everything: replays after the kill make
    // the target hold more than `total`, and the last unique records may come after them.
    let _ = consume(
        &target.bootstrap,
        &topic,
        partitions,
        total,
        Duration::from_secs(60),
    );
    let got = consume_until_quiet(
        &target.bootstrap,
        &topic,
        partitions,
        Duration::from_secs(3),
    );
    let mut duplicates = 0;
    for (p, records) in &want {
        duplicates += check_no_loss_in_order(records, &got[p], *p);
    }
    eprintln!(
        "after SIGKILL: all {total} records arrived in order; {duplicates} were copied twice"
    );

    assert_eq!(
        second.terminate(Duration::from_secs(30)),
        Some(0),
        "SIGTERM exits 0\n{}",
        second.logs()
    );
    let before = consume_until_quiet(
        &target.bootstrap,
        &topic,
        partitions,
        Duration::from_secs(2),
    );
    check_translation(&env, &topic, &want, &before);
    let before_count: usize = before.values().map(Vec::len).sum();

    // After a clean stop, a restart copies only the new records.
    let mut third = Kmirror::start(&config, &[]);
    let more: Vec<(i32, TestRecord)> = (total..total + 1_000)
        .map(|i| (i32::try_from(i % 4).unwrap(), record(i)))
        .collect();
    produce(&source.bootstrap, &topic, &more);
    let after = consume(
        &target.bootstrap,
        &topic,
        partitions,
        before_count + 1_000,
        Duration::from_secs(30),
    );
    assert_eq!(third.terminate(Duration::from_secs(30)), Some(0));
    let after_quiet = consume_until_quiet(
        &target.bootstrap,
        &topic,
        partitions,
        Duration::from_secs(2),
    );
    let after_count: usize = after_quiet.values().map(Vec::len).sum();
    assert_eq!(
        after_count,
        before_count + 1_000,
        "a restart after SIGTERM copied records twice"
    );
    for (p, records) in &after {
        let new: Vec<&TestRecord> = records.iter().skip(before[p].len()).collect();
        let expected: Vec<&TestRecord> = more
            .iter()
            .filter(|(mp, _)| mp == p)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            new, expected,
            "partition {p}: new records after the clean restart"
        );
    }
}
