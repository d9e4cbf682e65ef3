//! New source topics are mirrored within seconds.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn topic_created_while_running_is_mirrored_within_ten_seconds() {
    let source = Broker::start("source", "KMIRROR_TEST_SOURCE_BOOTSTRAP");
    let target = Broker::start("target", "KMIRROR_TEST_TARGET_BOOTSTRAP");
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("late-{}", rand_suffix());
    let config = write_config(
        dir.path(),
        &source.bootstrap,
        &target.bootstrap,
        &format!("{prefix}.*"),
        "",
    );
    let mut kmirror = Kmirror::start(&config, &[]);
    std::thread::sleep(Duration::from_secs(2));

    let topic = format!("{prefix}-new");
    create_topic(&source.bootstrap, &topic, 3);
    let records: Vec<(i32, TestRecord)> = (0..300)
        .map(|i| {
            let r = TestRecord {
                key: Some(vec![u8::try_from(i % 256).unwrap()]),
                value: Some(format!("v{i}").into_bytes()),
                headers: Vec::new(),
                timestamp: 1_000 + i64::from(i),
            };
            (i % 3, r)
        })
        .collect();
    let created = Instant::now();
    produce(&source.bootstrap, &topic, &records);
    let got = consume(
        &target.bootstrap,
        &topic,
        3,
        records.len(),
        Duration::from_secs(10),
    );
    let elapsed = created.elapsed();
    let mut want = std::collections::BTreeMap::new();
    for (p, r) in &records {
        want.entry(*p).or_insert_with(Vec::new).push(r.clone());
    }
    assert_same(&want, &got, &topic);
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert_eq!(
        topics(&target.bootstrap).get(&topic),
        Some(&3),
        "same partition count on the target"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}
