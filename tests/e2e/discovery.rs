//! New source topics are mirrored within seconds.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn topic_created_while_running_is_mirrored_within_ten_seconds() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let prefix = format!("late-{}", rand_suffix());
    let config = env.config(&format!("{prefix}.*"), "");
    let mut kmirror = Kmirror::start(&config, &[]);
    std::thread::sleep(Duration::from_secs(2));

    let topic = format!("{prefix}-new");
    create_topic(&source.bootstrap, &topic, 3);
    let records = spread(300, 3);
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
    assert_same(&by_partition(&records, 3), &got, &topic);
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert_eq!(
        topics(&target.bootstrap).get(&topic),
        Some(&3),
        "same partition count on the target"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// With `auto.offset.reset=latest`, history present at the first start is skipped, but a topic
/// created while kmirror runs is copied from its first record: records written before the
/// next refresh found it are new data, not history.
#[test]
fn a_topic_created_while_running_is_copied_whole_even_with_latest() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let prefix = format!("latest-{}", rand_suffix());
    let old = format!("{prefix}-old");
    create_topic(&source.bootstrap, &old, 1);
    produce(&source.bootstrap, &old, &spread(50, 1));
    let config = env.config(&format!("{prefix}.*"), "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "refresh.topics.interval.seconds: 1",
        "refresh.topics.interval.seconds: 5\n        consumer.auto.offset.reset: latest",
    );
    std::fs::write(&config, text).unwrap();
    let mut kmirror = Kmirror::start(&config, &[]);
    std::thread::sleep(Duration::from_secs(2));

    // Created and filled between two refreshes (5 s apart).
    let new = format!("{prefix}-new");
    create_topic(&source.bootstrap, &new, 2);
    let records = spread(200, 2);
    produce(&source.bootstrap, &new, &records);
    let got = consume(
        &target.bootstrap,
        &new,
        2,
        records.len(),
        Duration::from_secs(15),
    );
    assert_same(&by_partition(&records, 2), &got, &new);
    // The old topic's history was skipped: its target topic exists and holds nothing.
    assert_eq!(topics(&target.bootstrap).get(&old), Some(&1));
    let history = consume_until_quiet(&target.bootstrap, &old, 1, Duration::from_secs(2));
    assert!(
        history[&0].is_empty(),
        "history copied with latest: {history:?}"
    );
    // What is written to it now is copied.
    let later = spread(20, 1);
    produce(&source.bootstrap, &old, &later);
    let got = consume(
        &target.bootstrap,
        &old,
        1,
        later.len(),
        Duration::from_secs(15),
    );
    assert_same(&by_partition(&later, 1), &got, &old);
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// With `auto.offset.reset=latest`, the end of the source at the first start is stored as the
/// position even before any record is copied: what is written while kmirror is stopped is
/// copied at the next start, not skipped by starting at the end again.
#[test]
fn the_latest_position_is_stored_before_the_first_record() {
    let env = Env::shared();
    let topic = format!("latest-kept-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 2);
    produce(&env.source.bootstrap, &topic, &spread(50, 2));
    let config = env.config(&topic, "        consumer.auto.offset.reset: latest");
    let mut kmirror = Kmirror::start(&config, &[]);
    wait_for("the position stored", Duration::from_secs(30), || {
        if kmirror.logs().matches("storing the position").count() == 2 {
            Ok(())
        } else {
            Err(kmirror.logs())
        }
    });
    // Stored before the stop: kill -9 leaves nothing else to rely on.
    std::thread::sleep(Duration::from_secs(2));
    kmirror.kill();

    let written_while_stopped: Vec<(i32, TestRecord)> =
        spread(80, 2).into_iter().skip(50).collect();
    produce(&env.source.bootstrap, &topic, &written_while_stopped);
    let mut kmirror = Kmirror::start(&config, &[]);
    let got = consume(
        &env.target.bootstrap,
        &topic,
        2,
        written_while_stopped.len(),
        Duration::from_secs(30),
    );
    assert_same(&by_partition(&written_while_stopped, 2), &got, &topic);
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}
