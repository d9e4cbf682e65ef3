//! Data fidelity: what arrives on the target is what was written to the source.

use std::time::{Duration, Instant};

use crate::support::*;

/// 50,000 records of mixed shapes over topics of 1, 4 and 12 partitions.
fn mixed_records(partitions: i32, count: usize, seed: u64) -> Vec<(i32, TestRecord)> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    (0..count)
        .map(|i| {
            let shape = next() % 10;
            let partition = i32::try_from(next() % u64::try_from(partitions).unwrap()).unwrap();
            let key = match shape {
                0 => None,
                _ => Some(format!("key-{i}").into_bytes()),
            };
            let value = match shape {
                1 => None,                                        // tombstone
                2 => Some(Vec::new()),                            // empty value
                3 if i % 50 == 0 => Some(vec![b'x'; 100 * 1024]), // 100 KiB
                _ => Some(format!("value-{i}-{}", next()).into_bytes()),
            };
            let headers = match shape {
                4 => vec![
                    ("h".into(), Some(b"1".to_vec())),
                    ("h".into(), Some(b"2".to_vec())),
                ], // duplicate keys
                5 => vec![
                    ("nullable".into(), None),
                    ("after".into(), Some(Vec::new())),
                ], // null and empty values
                _ => Vec::new(),
            };
            let timestamp = 1_600_000_000_000 + i64::try_from(i).unwrap() * 7;
            (
                partition,
                TestRecord {
                    key,
                    value,
                    headers,
                    timestamp,
                },
            )
        })
        .collect()
}

#[test]
fn mixed_records_arrive_identical_per_partition_and_in_order() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let prefix = format!("fidelity-{}", rand_suffix());
    let layout = [(1, 5_000), (4, 15_000), (12, 30_000)];
    let mut expected = Vec::new();
    for (i, (partitions, count)) in layout.iter().enumerate() {
        let topic = format!("{prefix}-{partitions}");
        create_topic(&source.bootstrap, &topic, *partitions);
        let records = mixed_records(*partitions, *count, i as u64 + 1);
        produce(&source.bootstrap, &topic, &records);
        expected.push((
            topic,
            *partitions,
            by_partition(&records, *partitions),
            *count,
        ));
    }
    let config = env.config(&format!("{prefix}-.*"), "");
    let mut kmirror = Kmirror::start(&config, &[]);
    let started = Instant::now();
    for (topic, partitions, want, count) in &expected {
        let got = consume(
            &target.bootstrap,
            topic,
            *partitions,
            *count,
            Duration::from_secs(60),
        );
        assert_same(want, &got, topic);
    }
    eprintln!(
        "all {} records verified after {:?}",
        50_000,
        started.elapsed()
    );
    assert_eq!(
        kmirror.terminate(Duration::from_secs(30)),
        Some(0),
        "clean exit\n{}",
        kmirror.logs()
    );
}
