//! Many partitions and groups on one instance, at a size the suite can afford (the scale
//! benchmark, `kmirror-bench scale`, measures the large ones): 500 partitions and 100 groups
//! committed on 50 partitions each. Every record arrives in order and every group partition is
//! checkpointed at its exact translation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kmirror_core::mm2::Checkpoint;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::support::*;

const TOPICS: usize = 50;
const PARTITIONS: i32 = 10;
const PER_PARTITION: i64 = 20;
const GROUPS: usize = 100;
const TOPICS_PER_GROUP: usize = 5;

/// The offset group `g` commits on partition `p`: every one from 1 to 19 occurs.
fn committed(g: usize, p: i32) -> i64 {
    1 + (i64::try_from(g).unwrap() + i64::from(p)) % (PER_PARTITION - 1)
}

#[test]
fn five_hundred_partitions_and_a_hundred_groups_are_copied_and_checkpointed_exactly() {
    let env = Env::shared();
    let prefix = format!("scale{}", rand_suffix());
    let topic = |i: usize| format!("{prefix}-t{i:02}");
    let group = |g: usize| format!("{prefix}-t-g{g:03}");
    let group_topics = |g: usize| -> Vec<String> {
        (0..TOPICS_PER_GROUP)
            .map(|j| topic((g * TOPICS_PER_GROUP + j) % TOPICS))
            .collect()
    };
    let mut written = HashMap::new();
    for i in 0..TOPICS {
        let name = topic(i);
        create_topic(&env.source.bootstrap, &name, PARTITIONS);
        let records: Vec<(i32, TestRecord)> = (0..PER_PARTITION * i64::from(PARTITIONS))
            .map(|n| {
                let p = i32::try_from(n % i64::from(PARTITIONS)).unwrap();
                (
                    p,
                    TestRecord {
                        key: Some(format!("{name}/{p}/{n}").into_bytes()),
                        value: Some(format!("v{n}").into_bytes()),
                        headers: Vec::new(),
                        timestamp: 1_700_000_000_000 + n,
                    },
                )
            })
            .collect();
        produce(&env.source.bootstrap, &name, &records);
        written.insert(name, by_partition(&records, PARTITIONS));
    }
    for g in 0..GROUPS {
        let c: BaseConsumer = client(&env.source.bootstrap)
            .set("group.id", group(g))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for t in group_topics(g) {
            for p in 0..PARTITIONS {
                tpl.add_partition_offset(&t, p, Offset::Offset(committed(g, p)))
                    .unwrap();
            }
        }
        c.commit(&tpl, CommitMode::Sync).unwrap();
    }

    let config = env.config(
        &format!("{prefix}-t.*"),
        "        emit.checkpoints.interval.seconds: 2\n",
    );
    let mut kmirror = Kmirror::start(&config, &[]);
    for (name, want) in &written {
        let got = consume(
            &env.target.bootstrap,
            name,
            PARTITIONS,
            usize::try_from(PER_PARTITION * i64::from(PARTITIONS)).unwrap(),
            Duration::from_secs(90),
        );
        assert_same(want, &got, name);
    }

    // The target offsets equal the source's here (a fresh target, no gaps): every group
    // partition's checkpoint names its committed offset on both sides.
    let reader: BaseConsumer = client(&env.target.bootstrap)
        .set("group.id", format!("cp-{}", rand_suffix()))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&env.checkpoints_topic(), 0, Offset::Beginning)
        .unwrap();
    reader.assign(&tpl).unwrap();
    let mut latest: HashMap<(String, String, i32), (i64, i64)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let wrong = loop {
        while let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let cp = Checkpoint::decode(m.key().unwrap(), m.payload().unwrap())
                .expect("an MM2 checkpoint");
            latest.insert(
                (cp.group, cp.topic, cp.partition),
                (cp.upstream, cp.downstream),
            );
        }
        let mut wrong = Vec::new();
        for g in 0..GROUPS {
            for t in group_topics(g) {
                for p in 0..PARTITIONS {
                    let want = (committed(g, p), committed(g, p));
                    let have = latest.get(&(group(g), t.clone(), p)).copied();
                    if have != Some(want) {
                        wrong.push(format!("{} {t}[{p}]: {have:?}, not {want:?}", group(g)));
                    }
                }
            }
        }
        if wrong.is_empty() || Instant::now() > deadline {
            break wrong;
        }
    };
    assert!(
        wrong.is_empty(),
        "{} of {} group partitions not checkpointed exactly within 60 s, e.g. {:?}",
        wrong.len(),
        GROUPS * TOPICS_PER_GROUP * usize::try_from(PARTITIONS).unwrap(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}
