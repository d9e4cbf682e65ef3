//! Checkpoints and group offset sync translate committed offsets exactly.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::support::*;

const PARTITIONS: i32 = 4;
const PER_PARTITION: i64 = 5_000;

#[test]
#[allow(clippy::needless_range_loop)] // rounds index four partition sequences at once
fn checkpoints_and_synced_group_offsets_are_exact() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("cp-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, PARTITIONS);
    // Target offsets differ from source offsets: the target topic already holds 100·(p+1) records.
    create_topic(&target.bootstrap, &topic, PARTITIONS);
    let shift = |p: i32| 100 * i64::from(p + 1);
    let filler = shift_offsets(&target.bootstrap, &topic, PARTITIONS, shift);
    let records: Vec<(i32, TestRecord)> = (0..PER_PARTITION * i64::from(PARTITIONS))
        .map(|i| {
            (
                i32::try_from(i % i64::from(PARTITIONS)).unwrap(),
                TestRecord {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(vec![1]),
                    headers: Vec::new(),
                    timestamp: 2_000 + i,
                },
            )
        })
        .collect();
    produce(&source.bootstrap, &topic, &records);

    let extra = "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n        sync.group.offsets.enabled: true\n        sync.group.offsets.interval.seconds: 1\n";
    let config = env.config(&topic, extra);
    let mut kmirror = Kmirror::start(&config, &[]);
    let total = records.len() + filler;
    let copied = consume(
        &target.bootstrap,
        &topic,
        PARTITIONS,
        total,
        Duration::from_secs(60),
    );
    assert_eq!(copied.values().map(Vec::len).sum::<usize>(), total);

    // 50 rounds of increasing commits per partition: 0 first, the log end last.
    let group = format!("{topic}-orders-app");
    let mut state = 0x9e37_79b9_u64;
    let mut rounds: Vec<Vec<i64>> = (0..PARTITIONS)
        .map(|_| {
            let mut v: Vec<i64> = (0..48)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    i64::try_from((state >> 33) % u64::try_from(PER_PARTITION).unwrap()).unwrap()
                })
                .collect();
            v.push(0);
            v.push(PER_PARTITION);
            v.sort_unstable();
            v
        })
        .collect();
    for round in 0..50 {
        if round == 25 {
            assert_eq!(
                kmirror.terminate(Duration::from_secs(30)),
                Some(0),
                "{}",
                kmirror.logs()
            );
            kmirror = Kmirror::start(&config, &[]);
        }
        let offsets: Vec<(i32, i64)> = (0..PARTITIONS)
            .map(|p| (p, rounds[usize::try_from(p).unwrap()][round]))
            .collect();
        commit(&source.bootstrap, &group, &topic, &offsets);
        wait_for(
            &format!("round {round}: checkpoints"),
            Duration::from_secs(15),
            || {
                let cps = checkpoints(&env, &group, &topic);
                for (p, u) in &offsets {
                    let want = (*u, shift(*p) + u);
                    if cps.get(p) != Some(&want) {
                        return Err(format!(
                            "partition {p}: checkpoint {:?}, want {want:?}",
                            cps.get(p)
                        ));
                    }
                }
                Ok(())
            },
        );
        wait_for(
            &format!("round {round}: target group"),
            Duration::from_secs(15),
            || {
                let on_target = committed(&target.bootstrap, &group, &topic);
                for (p, u) in &offsets {
                    if on_target.get(p) != Some(&(shift(*p) + u)) {
                        return Err(format!(
                            "partition {p}: target group at {:?}, want {}",
                            on_target.get(p),
                            shift(*p) + u
                        ));
                    }
                }
                Ok(())
            },
        );
        // A consumer resuming there on the target reads exactly what the source group had not.
        for (p, u) in &offsets {
            let d = usize::try_from(shift(*p) + u).unwrap();
            let next_on_target = copied[p].get(d).map(|r| r.key.clone());
            let next_on_source = records
                .iter()
                .filter(|(rp, _)| rp == p)
                .nth(usize::try_from(*u).unwrap())
                .map(|(_, r)| r.key.clone());
            assert_eq!(
                next_on_target, next_on_source,
                "round {round}, partition {p}"
            );
        }
    }
    rounds.clear();

    // A target group ahead of the translation is never moved back.
    let ahead = format!("{topic}-ahead");
    commit(&target.bootstrap, &ahead, &topic, &[(0, shift(0) + 4_000)]);
    commit(&source.bootstrap, &ahead, &topic, &[(0, 100)]);
    wait_for(
        "checkpoint for the group ahead",
        Duration::from_secs(15),
        || {
            (checkpoints(&env, &ahead, &topic).get(&0) == Some(&(100, shift(0) + 100)))
                .then_some(())
                .ok_or_else(|| "no checkpoint yet".into())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        committed(&target.bootstrap, &ahead, &topic).get(&0),
        Some(&(shift(0) + 4_000)),
        "the target group was moved back"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// A round reads only the groups whose partition of `__consumer_offsets` moved: idle groups
/// cost nothing, and a new commit is checkpointed at the next round (not at the next read of
/// every group, once a minute).
#[test]
fn a_commit_is_checkpointed_at_the_next_round_while_idle_groups_are_not_read() {
    const GROUPS: usize = 30;
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("cpw-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    create_topic(&target.bootstrap, &topic, 2);
    let records: Vec<(i32, TestRecord)> = (0..200)
        .map(|i| {
            (
                i % 2,
                TestRecord {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(vec![1]),
                    headers: Vec::new(),
                    timestamp: 2_000 + i64::from(i),
                },
            )
        })
        .collect();
    produce(&source.bootstrap, &topic, &records);
    let group = |g: usize| format!("{topic}-g{g:02}");
    for g in 0..GROUPS {
        commit(&source.bootstrap, &group(g), &topic, &[(0, 10), (1, 10)]);
    }
    let config = env.config(&topic, "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 600\n");
    let mut kmirror = Kmirror::start_logging(&config, &[], "info,kmirror_engine::checkpoint=debug");
    for g in 0..GROUPS {
        wait_for("every group checkpointed", Duration::from_secs(60), || {
            (checkpoints(&env, &group(g), &topic).get(&1) == Some(&(10, 10)))
                .then_some(())
                .ok_or_else(|| format!("group {g}: no checkpoint yet"))
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    // Three commits, one at a time, each checkpointed well within the minute between reads of
    // every group.
    for (i, g) in [7, 19, 7].into_iter().enumerate() {
        let offset = 20 + 10 * i64::try_from(i).unwrap();
        let committed_at = Instant::now();
        commit(&source.bootstrap, &group(g), &topic, &[(1, offset)]);
        wait_for(
            "the new commit checkpointed",
            Duration::from_secs(20),
            || {
                (checkpoints(&env, &group(g), &topic).get(&1) == Some(&(offset, offset)))
                    .then_some(())
                    .ok_or_else(|| format!("group {g}: not at {offset} yet"))
            },
        );
        assert!(
            committed_at.elapsed() < Duration::from_secs(20),
            "checkpointed {:?} after the commit",
            committed_at.elapsed()
        );
    }
    // The others were never read again since the full read (rounds read only the groups of
    // moved partitions; other tests' commits move some).
    let logs = kmirror.logs();
    assert!(
        !logs.contains("places commits unlike Apache Kafka"),
        "{logs}"
    );
    assert!(!logs.contains("cannot list the end offsets"), "{logs}");
    let partial: Vec<usize> = logs
        .lines()
        .filter(|l| l.contains("group offsets") && l.contains("full=false"))
        .filter_map(|l| {
            l.split("read=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        partial.iter().any(|&read| read < GROUPS),
        "no round read fewer than every group: {partial:?}\n{logs}"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// Group offset sync as operators need it: the target group follows the source group exactly,
/// rewinds included (a reprocessing job); a group with members on the target is never touched;
/// a commit someone else made on the target is never overwritten (counted instead).
///
/// The waits are generous: a checkpoint round still opens one client per group (12 here) and
/// takes several seconds on this 2-core machine while other tests run.
#[test]
fn group_offset_sync_follows_rewinds_and_leaves_others_commits_alone() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("rewind-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    produce(&source.bootstrap, &topic, &spread(10_000, 2));
    let extra = "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n        sync.group.offsets.enabled: true\n        sync.group.offsets.interval.seconds: 1\n";
    let config = env.config(&topic, extra);
    let port = free_port();
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let _ = consume(
        &target.bootstrap,
        &topic,
        2,
        10_000,
        Duration::from_secs(60),
    );

    // Ten groups far ahead, then rewound (identity offsets: the target topic is new).
    let groups: Vec<String> = (0..10).map(|i| format!("{topic}-g{i}")).collect();
    let follow = |at: i64| {
        for g in &groups {
            commit(&source.bootstrap, g, &topic, &[(0, at), (1, at)]);
        }
        for g in &groups {
            wait_for(
                &format!("{g} at {at} on the target"),
                Duration::from_secs(60),
                || {
                    let on_target = committed(&target.bootstrap, g, &topic);
                    if on_target.get(&0) == Some(&at) && on_target.get(&1) == Some(&at) {
                        Ok(())
                    } else {
                        Err(format!("{on_target:?}"))
                    }
                },
            );
        }
    };
    follow(4_000);
    follow(1_000);
    follow(2_500);

    // A group with a member on the target is never touched, and follows once it is idle.
    let member: BaseConsumer = client(&target.bootstrap)
        .set("group.id", &groups[0])
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    member.subscribe(&[&topic]).unwrap();
    wait_for("the member joined", Duration::from_secs(30), || {
        let _ = member.poll(Duration::from_millis(100));
        (member.assignment().map(|a| a.count()).unwrap_or(0) == 2)
            .then_some(())
            .ok_or_else(|| "no assignment yet".into())
    });
    commit(&source.bootstrap, &groups[0], &topic, &[(0, 500), (1, 500)]);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let _ = member.poll(Duration::from_millis(100));
    }
    assert_eq!(
        committed(&target.bootstrap, &groups[0], &topic).get(&0),
        Some(&2_500),
        "an active group on the target is never touched"
    );
    drop(member);
    wait_for(
        "the group follows once idle",
        Duration::from_secs(60),
        || {
            let on_target = committed(&target.bootstrap, &groups[0], &topic);
            (on_target.get(&0) == Some(&500))
                .then_some(())
                .ok_or_else(|| format!("{on_target:?}"))
        },
    );

    // Someone commits on the target (an application that failed over): left alone.
    let app = format!("{topic}-app");
    commit(&source.bootstrap, &app, &topic, &[(0, 3_000)]);
    wait_for(
        "the app group on the target",
        Duration::from_secs(60),
        || {
            (committed(&target.bootstrap, &app, &topic).get(&0) == Some(&3_000))
                .then_some(())
                .ok_or_else(|| "not yet".into())
        },
    );
    commit(&target.bootstrap, &app, &topic, &[(0, 3_500)]);
    commit(&source.bootstrap, &app, &topic, &[(0, 100)]);
    wait_for(
        "the app group's checkpoint",
        Duration::from_secs(60),
        || {
            (checkpoints(&env, &app, &topic).get(&0) == Some(&(100, 100)))
                .then_some(())
                .ok_or_else(|| "not yet".into())
        },
    );
    wait_for("the skip counted", Duration::from_secs(60), || {
        let metrics = crate::operations::get(port, "/metrics").1;
        let skipped = crate::operations::series(
            &metrics,
            "kmirror_group_sync_skipped_total",
            &[
                ("source", env.src.as_str()),
                ("target", env.tgt.as_str()),
                ("kind", "foreign_commit"),
            ],
        );
        (skipped.unwrap_or(0.0) >= 1.0).then_some(()).ok_or(metrics)
    });
    assert_eq!(
        committed(&target.bootstrap, &app, &topic).get(&0),
        Some(&3_500),
        "a commit made on the target by someone else is never overwritten"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    assert!(
        kmirror
            .logs()
            .contains("committed by someone other than kmirror"),
        "{}",
        kmirror.logs()
    );
}
