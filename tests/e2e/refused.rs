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

#[test]
fn refused_record_stops_only_its_partition_and_loses_nothing() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("refused-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    // Partition 0: 50 small records, one of 200 KB at offset 50, then 50 more. Partition 1: 100 small.
    let mut records: Vec<(i32, TestRecord)> = (0..100).map(|i| (1, rec(i, 100))).collect();
    records.extend((0..101).map(|i| (0, rec(1000 + i, if i == 50 { 200_000 } else { 100 }))));
    produce(&source.bootstrap, &topic, &records);

    // The producer accepts at most 100 KB per record: the big one is refused.
    let small = env.config(&topic, "        producer.message.max.bytes: 100000\n");
    let port = free_port();
    let mut kmirror = Kmirror::start(&small, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let got = consume(&target.bootstrap, &topic, 2, 150, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(got[&1].len(), 100, "the other partition goes on");
    assert_eq!(
        got[&0].len(),
        50,
        "partition 0 stops right before the refused record"
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

    // Fixed (default limits) and restarted: it continues at the refused record, in order.
    let fixed = env.config(&topic, "");
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
