//! Topics deleted and created again under the same name, on either side, while kmirror runs and
//! while it is stopped: the new topic is copied from its beginning (its id tells it apart), in
//! order, and the event is logged and counted.

use std::time::Duration;

use crate::support::*;

const PARTITIONS: i32 = 3;

/// `n` records keyed `<tag>-<i>`, spread round-robin over the partitions.
fn keyed(tag: &str, n: usize) -> Vec<(i32, TestRecord)> {
    (0..n)
        .map(|i| {
            (
                i32::try_from(i).unwrap() % PARTITIONS,
                TestRecord {
                    key: Some(format!("{tag}-{i}").into_bytes()),
                    value: Some(format!("value {tag} {i}").into_bytes()),
                    headers: Vec::new(),
                    timestamp: 1_700_000_000_000 + i64::try_from(i).unwrap(),
                },
            )
        })
        .collect()
}

fn assert_in_order(env: &Env, topic: &str, sent: &[(i32, TestRecord)], what: &str) -> usize {
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        topic,
        sent,
        PARTITIONS,
        Duration::from_secs(90),
    );
    eprintln!(
        "{what}: all {} records on the target in order, {duplicates} copied twice",
        sent.len()
    );
    duplicates
}

fn recreated_count(port: u16, topic: &str, side: &str) -> f64 {
    let metrics = http_get(port, "/metrics").1;
    series(
        &metrics,
        "kmirror_topics_recreated_total",
        &[("topic", topic), ("kind", side)],
    )
    .unwrap_or(0.0)
}

#[test]
fn a_source_topic_deleted_and_created_again_is_copied_from_its_beginning() {
    let env = Env::shared();
    let topic = format!("recreated-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let mut sent = keyed("a", 3_000);
    produce(&env.source.bootstrap, &topic, &sent);
    let config = env.config(&topic, "");
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &metrics_addr]);
    assert_in_order(&env, &topic, &sent, "before");

    // While kmirror runs: the new topic's 500 records per partition sit below the old
    // position (1,000 per partition).
    recreate_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let second = keyed("b", 1_500);
    produce(&env.source.bootstrap, &topic, &second);
    sent.extend(second);
    assert_in_order(&env, &topic, &sent, "recreated while running");
    assert!(
        recreated_count(port, &topic, "source") >= 1.0,
        "the recreation is counted"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let logs = kmirror.logs();
    assert!(
        logs.lines().any(
            |l| l.contains(" WARN ") && l.contains("deleted and created again")
                || l.contains("no longer exists")
        ),
        "the recreation is logged:\n{logs}"
    );

    // While kmirror is stopped: the stored positions (500 per partition) belong to the old
    // topic; the new one holds 100 per partition.
    recreate_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let third = keyed("c", 300);
    produce(&env.source.bootstrap, &topic, &third);
    sent.extend(third);
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &metrics_addr]);
    assert_in_order(&env, &topic, &sent, "recreated while stopped");
    assert!(recreated_count(port, &topic, "source") >= 1.0);
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let logs = kmirror.logs();
    assert!(
        logs.contains("since its progress was stored"),
        "the stale progress is named:\n{logs}"
    );
}

#[test]
fn a_deleted_target_topic_is_created_again_and_filled_from_the_source() {
    let env = Env::shared();
    let topic = format!("target-gone-{}", rand_suffix());
    create_topic_with(
        &env.source.bootstrap,
        &topic,
        PARTITIONS,
        &[("max.message.bytes", "2097152")],
    );
    let mut sent = keyed("a", 1_500);
    produce(&env.source.bootstrap, &topic, &sent);
    let config = env.config(&topic, "");
    let port = free_port();
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    assert_in_order(&env, &topic, &sent, "before");

    delete_topic(&env.target.bootstrap, &topic);
    let more = keyed("b", 600);
    produce(&env.source.bootstrap, &topic, &more);
    sent.extend(more);
    // The new target topic holds the whole source topic again, in order, from its first record.
    let duplicates = assert_in_order(&env, &topic, &sent, "target recreated");
    assert!(
        duplicates < sent.len(),
        "{duplicates} copied twice into the new target topic"
    );
    let configs = configs(&env.target.bootstrap, &topic);
    assert_eq!(
        configs.get("max.message.bytes").map(String::as_str),
        Some("2097152"),
        "created again by kmirror with the source's configs, not auto-created"
    );
    assert!(recreated_count(port, &topic, "target") >= 1.0);
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let logs = kmirror.logs();
    assert!(
        logs.contains("the target topic was deleted"),
        "the deletion is logged:\n{logs}"
    );
}
