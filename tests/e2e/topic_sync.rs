//! Topic configs, partition counts and the plan, against real brokers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kmirror_admin::AlterOp;
use rdkafka::admin::{AdminOptions, NewPartitions};

use crate::operations::{get, series};
use crate::support::*;

fn alter(bootstrap: &str, topic: &str, ops: &[(&str, AlterOp)]) {
    let admin = admin(bootstrap);
    let request = vec![(
        topic.to_owned(),
        ops.iter()
            .map(|(k, op)| ((*k).to_owned(), op.clone()))
            .collect(),
    )];
    let outcomes = kmirror_admin::incremental_alter_topic_configs(
        admin.inner(),
        &request,
        Duration::from_secs(10),
    )
    .unwrap();
    for (_, outcome) in outcomes {
        outcome.unwrap();
    }
}

fn set(v: &str) -> AlterOp {
    AlterOp::Set(v.to_owned())
}

const SYNC_FAST: &str = "        sync.topic.configs.interval.seconds: 2\n";

#[test]
fn topic_configs_follow_the_source_and_excluded_keys_are_left_alone() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let prefix = format!("cfg-{}", rand_suffix());
    let created = format!("{prefix}-created");
    let existing = format!("{prefix}-existing");
    create_topic_with(
        &source.bootstrap,
        &created,
        2,
        &[
            ("cleanup.policy", "compact"),
            ("retention.ms", "3600000"),
            ("max.message.bytes", "200000"),
            ("min.insync.replicas", "1"),
        ],
    );
    // An existing remote topic whose configs differ, with an excluded key set on the target.
    create_topic_with(
        &source.bootstrap,
        &existing,
        1,
        &[("retention.ms", "86400000")],
    );
    create_topic_with(
        &target.bootstrap,
        &existing,
        1,
        &[("retention.ms", "1000"), ("min.insync.replicas", "2")],
    );
    let config = env.config(&format!("{prefix}.*"), SYNC_FAST);
    let port = free_port();
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);

    // Created with the source's configs, except the excluded min.insync.replicas.
    wait_for(
        "the created topic's configs",
        Duration::from_secs(15),
        || {
            let got = configs(&target.bootstrap, &created);
            let want: BTreeMap<String, String> = [
                ("cleanup.policy", "compact"),
                ("max.message.bytes", "200000"),
                ("retention.ms", "3600000"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    // The existing topic is brought in step; the target's excluded key stays.
    wait_for(
        "the existing topic's retention",
        Duration::from_secs(15),
        || {
            let got = configs(&target.bootstrap, &existing);
            match got.get("retention.ms").map(String::as_str) {
                Some("86400000") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );

    // Excluded keys set on the target are left alone, also on the topic kmirror created.
    alter(
        &target.bootstrap,
        &created,
        &[("min.insync.replicas", set("2"))],
    );
    // A change on the source reaches the target within one interval (2 s; polled for 6 s).
    alter(
        &source.bootstrap,
        &created,
        &[("retention.ms", set("7200000"))],
    );
    let changed = Instant::now();
    wait_for(
        "the changed retention.ms",
        Duration::from_secs(6),
        || match configs(&target.bootstrap, &created)
            .get("retention.ms")
            .map(String::as_str)
        {
            Some("7200000") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    eprintln!(
        "retention.ms reached the target after {:?}",
        changed.elapsed()
    );
    // Two more intervals: the excluded key is still the target's own.
    std::thread::sleep(Duration::from_secs(5));
    for topic in [&created, &existing] {
        assert_eq!(
            configs(&target.bootstrap, topic)
                .get("min.insync.replicas")
                .map(String::as_str),
            Some("2"),
            "{topic}: min.insync.replicas is excluded and must be left alone"
        );
    }
    // Both retention changes are counted.
    let (_, metrics) = get(port, "/metrics");
    assert_eq!(
        series(
            &metrics,
            "kmirror_topic_configs_changed_total",
            &env.flow_labels()
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let logs = kmirror.logs();
    assert!(
        logs.contains(&format!(
            "changed target topic config: {created} retention.ms: 3600000 -> 7200000"
        )),
        "each change is logged with its old and new value:\n{logs}"
    );
    assert!(
        logs.contains(&format!(
            "changed target topic config: {existing} retention.ms: 1000 -> 86400000"
        )),
        "{logs}"
    );
    assert!(
        !logs.contains("min.insync.replicas: "),
        "excluded key touched:\n{logs}"
    );
}

#[test]
fn a_short_target_topic_is_grown_before_its_new_partitions_are_copied() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("grow-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 3);
    create_topic(&target.bootstrap, &topic, 1);
    let sent = spread(300, 3);
    produce(&source.bootstrap, &topic, &sent);
    let config = env.config(&topic, "");
    let mut kmirror = Kmirror::start(&config, &[]);
    let got = consume(
        &target.bootstrap,
        &topic,
        3,
        sent.len(),
        Duration::from_secs(20),
    );
    assert_same(&by_partition(&sent, 3), &got, &topic);
    assert_eq!(topics(&target.bootstrap).get(&topic), Some(&3));
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let logs = kmirror.logs();
    assert!(
        logs.contains("added partitions to the target topic"),
        "{logs}"
    );
}

/// Regression: partitions added to a source topic while kmirror runs were assigned, and then
/// not one of their records was copied (the consumer did not know the new partitions).
#[test]
fn partitions_added_on_the_source_while_running_are_copied_within_ten_seconds() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("grown-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 3);
    let before = spread(300, 3);
    produce(&source.bootstrap, &topic, &before);
    let config = env.config(&topic, "");
    let mut kmirror = Kmirror::start(&config, &[]);
    let got = consume(
        &target.bootstrap,
        &topic,
        3,
        before.len(),
        Duration::from_secs(20),
    );
    assert_same(&by_partition(&before, 3), &got, &topic);

    let grown = block_on(
        admin(&source.bootstrap)
            .create_partitions(&[NewPartitions::new(&topic, 5)], &AdminOptions::new()),
    )
    .unwrap();
    for r in grown {
        r.unwrap();
    }
    let appeared = Instant::now();
    // 100 records into each of the two new partitions, and more into the old ones.
    let new: Vec<(i32, TestRecord)> = (0..200)
        .map(|i: i32| {
            (
                3 + i % 2,
                TestRecord {
                    key: Some(format!("new-{i}").into_bytes()),
                    value: Some(vec![3; 10]),
                    headers: Vec::new(),
                    timestamp: 50_000 + i64::from(i),
                },
            )
        })
        .collect();
    produce(&source.bootstrap, &topic, &new);
    let mut all = before.clone();
    all.extend(new.iter().cloned());
    let got = consume(
        &target.bootstrap,
        &topic,
        5,
        all.len(),
        Duration::from_secs(10),
    );
    let elapsed = appeared.elapsed();
    assert_same(&by_partition(&all, 5), &got, &topic);
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    eprintln!("records in the new partitions arrived {elapsed:?} after they appeared");
    assert_eq!(topics(&target.bootstrap).get(&topic), Some(&5));
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

fn plan(config: &Path, json: bool) -> (Option<i32>, String, String) {
    let mut args = vec!["plan", "--config", config.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    kmirror_command(&args)
}

#[test]
fn plan_shows_the_next_sync_and_changes_nothing() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let p = format!("plan-{}", rand_suffix());
    let (new, drifted, short, excluded) = (
        format!("{p}-new"),
        format!("{p}-drifted"),
        format!("{p}-short"),
        format!("{p}-x.internal"),
    );
    create_topic_with(&source.bootstrap, &new, 2, &[("cleanup.policy", "compact")]);
    create_topic_with(&source.bootstrap, &drifted, 1, &[("retention.ms", "5000")]);
    create_topic_with(&target.bootstrap, &drifted, 1, &[("retention.ms", "9000")]);
    create_topic(&source.bootstrap, &short, 3);
    create_topic(&target.bootstrap, &short, 1);
    create_topic(&source.bootstrap, &excluded, 1);
    let group = format!("{p}-billing");
    commit(&source.bootstrap, &group, &drifted, &[(0, 0)]);
    commit(&source.bootstrap, &group, &short, &[(0, 0), (2, 0)]);
    let config = env.config(&format!("{p}.*"), SYNC_FAST);
    // The target is shared with tests running beside this one: compare this test's topics.
    let ours = |all: BTreeMap<String, usize>| -> BTreeMap<String, usize> {
        all.into_iter().filter(|(t, _)| t.starts_with(&p)).collect()
    };
    let before = ours(topics(&target.bootstrap));

    let (code, stdout, stderr) = plan(&config, false);
    assert_eq!(code, Some(0), "{stderr}");
    let expected = format!(
        "flow {src}->{tgt}
  topics to create (1):
    {new}: 2 partitions, replication factor broker default
      cleanup.policy=compact
  partitions to add (1):
    {short}: 1 -> 3
  configs to change (1):
    {drifted}: retention.ms: 9000 -> 5000
  ACLs to create: none
  groups to checkpoint (1):
    {group} (3 partitions with committed offsets)
  target compression (3):
    {drifted}: none (level: the codec's default; the source topic holds no records to look at)
    {new}: none (level: the codec's default; the source topic holds no records to look at)
    {short}: none (level: the codec's default; the source topic holds no records to look at)
",
        src = env.src,
        tgt = env.tgt,
    );
    assert_eq!(stdout, expected, "stderr:\n{stderr}");

    let (code, stdout, stderr) = plan(&config, true);
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let flow = &json[0];
    assert_eq!(flow["flow"], format!("{}->{}", env.src, env.tgt));
    assert_eq!(
        flow["topics_to_create"],
        serde_json::json!([{"topic": new, "target_topic": new, "partitions": 2,
            "replication_factor": null, "configs": {"cleanup.policy": "compact"}}])
    );
    assert_eq!(
        flow["partitions_to_add"],
        serde_json::json!([{"topic": short, "target_topic": short, "from": 1, "to": 3}])
    );
    assert_eq!(
        flow["configs_to_change"],
        serde_json::json!([{"topic": drifted, "target_topic": drifted, "changes": [
            {"name": "retention.ms", "op": "set", "value": "5000", "old": "9000"}]}])
    );
    assert_eq!(flow["acls_to_create"], serde_json::json!([]));
    assert_eq!(
        flow["groups_to_checkpoint"],
        serde_json::json!([{"group": group, "partitions": 3}])
    );

    // Nothing changed on the target.
    assert_eq!(ours(topics(&target.bootstrap)), before);
    assert_eq!(
        configs(&target.bootstrap, &drifted)
            .get("retention.ms")
            .map(String::as_str),
        Some("9000")
    );

    // `run` logs the same plan at start-up.
    let mut kmirror = Kmirror::start(&config, &[]);
    wait_for(
        "the start-up plan in the log",
        Duration::from_secs(15),
        || {
            let logs = kmirror.logs();
            if logs.contains(&format!(
                "start-up plan: change config of {drifted}: retention.ms: 9000 -> 5000"
            )) && logs.contains(&format!(
                "start-up plan: checkpoint group {group} (3 partitions)"
            )) {
                Ok(())
            } else {
                Err(logs)
            }
        },
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

#[test]
fn plan_against_an_unreachable_cluster_exits_1_with_one_line() {
    let env = Env::shared();
    let dead = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        env.dir.path(),
        (&env.src, &env.source.bootstrap),
        (&env.tgt, &dead),
        ".*",
        "",
    );
    let (code, stdout, stderr) = plan(&config, false);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 1, "one line, no client chatter: {stderr}");
    assert!(
        errors[0].starts_with(&format!("error: flow {}->{}: ", env.src, env.tgt)),
        "{stderr}"
    );
    assert!(
        errors[0].contains(&format!("cannot reach {}", env.tgt)) && errors[0].contains(&dead),
        "{stderr}"
    );
}
