//! Offset syncs: MM2's records, on the cluster `offset-syncs.topic.location` names, each one
//! pointing a source record at the same record on the target.

use std::time::Duration;

use kmirror_core::mm2::OffsetSync;

use crate::support::*;

fn run(location: Option<&str>) {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("syncs-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    let records: Vec<(i32, TestRecord)> = (0..1_000)
        .map(|i: i32| {
            (
                i % 2,
                TestRecord {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(vec![1]),
                    headers: Vec::new(),
                    timestamp: 1_000 + i64::from(i),
                },
            )
        })
        .collect();
    produce(&source.bootstrap, &topic, &records);
    let extra = location
        .map(|l| format!("        offset-syncs.topic.location: {l}\n"))
        .unwrap_or_default();
    let config = env.config(&topic, &extra);
    let mut kmirror = Kmirror::start(&config, &[]);
    let copied = consume(
        &target.bootstrap,
        &topic,
        2,
        records.len(),
        Duration::from_secs(30),
    );
    assert_eq!(copied.values().map(Vec::len).sum::<usize>(), records.len());
    assert_eq!(
        kmirror.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        kmirror.logs()
    );

    let (holder, other, name) = match location {
        Some("target") => (
            target,
            source,
            format!("mm2-offset-syncs.{}.internal", env.src),
        ),
        _ => (
            source,
            target,
            format!("mm2-offset-syncs.{}.internal", env.tgt),
        ),
    };
    assert_eq!(
        topics(&holder.bootstrap).get(&name),
        Some(&1),
        "{name} (1 partition) on the right cluster"
    );
    assert!(
        !topics(&other.bootstrap)
            .keys()
            .any(|t| t.starts_with("mm2-offset-syncs")
                && (t.contains(&env.src) || t.contains(&env.tgt))),
        "no offset-syncs topic of this flow on the other cluster"
    );

    let source_records = consume_until_quiet(&source.bootstrap, &topic, 2, Duration::from_secs(2));
    let syncs = consume_until_quiet(&holder.bootstrap, &name, 1, Duration::from_secs(2));
    let mut last = [-1i64; 2];
    for r in &syncs[&0] {
        let s = OffsetSync::decode(r.key.as_deref().unwrap(), r.value.as_deref().unwrap())
            .expect("an MM2 offset sync");
        assert_eq!(s.topic, topic);
        let p = usize::try_from(s.partition).unwrap();
        let (u, d) = (
            usize::try_from(s.upstream).unwrap(),
            usize::try_from(s.downstream).unwrap(),
        );
        assert_eq!(
            copied[&s.partition][d].key, source_records[&s.partition][u].key,
            "sync {s} points at another record"
        );
        last[p] = last[p].max(s.upstream);
    }
    for (p, l) in last.iter().enumerate() {
        assert_eq!(*l, 499, "partition {p}: the tail (offset 499) is synced");
    }
}

#[test]
fn offset_syncs_on_the_source_by_default() {
    run(None);
}

#[test]
fn offset_syncs_topic_location_target() {
    run(Some("target"));
}
