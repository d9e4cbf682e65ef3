//! Two flows in opposite directions with identical topic names (IdentityReplicationPolicy):
//! every record written on either cluster reaches the other once, marked with its origin, and
//! none is copied back where it came from; and the failover/failback round trip, consumer
//! group included.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};

use crate::support::*;

const PARTITIONS: i32 = 2;

/// One config with both flows, `src -> tgt` and `tgt -> src`, copying `topic` only.
fn two_way_config(env: &Env, topic: &str) -> PathBuf {
    let (a, b) = (&env.src, &env.tgt);
    let (a_servers, b_servers) = (&env.source.bootstrap, &env.target.bootstrap);
    let connector = format!("{TEST_CONNECTOR}\n        sync.topic.acls.enabled: false");
    let text = format!(
        r#"clusters:
  - alias: {a}
    bootstrapServers: {a_servers}
    config:
      offset.storage.partitions: 3
      offset.flush.interval.ms: 500
  - alias: {b}
    bootstrapServers: {b_servers}
    config:
      offset.storage.partitions: 3
      offset.flush.interval.ms: 500
mirrors:
  - sourceCluster: {a}
    targetCluster: {b}
    topicsPattern: "{topic}"
    groupsPattern: "{topic}-g.*"
{connector}
  - sourceCluster: {b}
    targetCluster: {a}
    topicsPattern: "{topic}"
    groupsPattern: "{topic}-g.*"
{connector}
"#
    );
    let path = env.dir.path().join("two-way.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `n` records keyed `<side><i>` (so that each record's writer shows in its key).
fn written(side: &str, from: i32, n: i32) -> Vec<(i32, TestRecord)> {
    (from..from + n)
        .map(|i| {
            (
                i % PARTITIONS,
                TestRecord {
                    key: Some(format!("{side}{i:05}").into_bytes()),
                    value: Some(format!("value {i} written on {side}").into_bytes()),
                    headers: vec![("app".into(), Some(b"x".to_vec()))],
                    timestamp: 1_700_000_000_000 + i64::from(i),
                },
            )
        })
        .collect()
}

/// Key and origin header of each record of `topic`, by partition, once `want` records are
/// there and nothing more arrived for three seconds.
fn read_all(
    bootstrap: &str,
    topic: &str,
    want: usize,
) -> BTreeMap<i32, Vec<(String, Option<String>)>> {
    let consumer = reader_from_start(bootstrap, topic, PARTITIONS);
    let mut out: BTreeMap<i32, Vec<(String, Option<String>)>> =
        (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    while Instant::now() < deadline && (total < want || last.elapsed() < Duration::from_secs(3)) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let origin = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == ORIGIN_HEADER)
                    .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
            });
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            out.entry(m.partition()).or_default().push((key, origin));
            total += 1;
            last = Instant::now();
        }
    }
    out
}

/// Checks one cluster: it holds exactly what was written on it and what was written on the
/// other, each once, in the order written per partition; copies name their origin, and what
/// was written here carries no origin header.
fn check_cluster(
    name: &str,
    got: &BTreeMap<i32, Vec<(String, Option<String>)>>,
    local: (&str, &[(i32, TestRecord)]),
    remote: (&str, &str, &[(i32, TestRecord)]),
) {
    let keys = |records: &[(i32, TestRecord)], p: i32| -> Vec<String> {
        records
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, r)| String::from_utf8_lossy(r.key.as_deref().unwrap()).into_owned())
            .collect()
    };
    let (local_side, local_records) = local;
    let (remote_side, remote_alias, remote_records) = remote;
    for p in 0..PARTITIONS {
        let records = &got[&p];
        assert_eq!(
            records.len(),
            keys(local_records, p).len() + keys(remote_records, p).len(),
            "{name} partition {p}: every record once, nothing copied back: {records:?}"
        );
        let of = |side: &str| -> Vec<(String, Option<String>)> {
            records
                .iter()
                .filter(|(k, _)| k.starts_with(side))
                .cloned()
                .collect()
        };
        let mine = of(local_side);
        assert_eq!(
            mine.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            keys(local_records, p),
            "{name} partition {p}: its own records, in order"
        );
        assert!(
            mine.iter().all(|(_, origin)| origin.is_none()),
            "{name} partition {p}: records written here carry no origin: {mine:?}"
        );
        let copies = of(remote_side);
        assert_eq!(
            copies.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            keys(remote_records, p),
            "{name} partition {p}: the other cluster's records, once each, in order"
        );
        assert!(
            copies
                .iter()
                .all(|(_, origin)| origin.as_deref() == Some(remote_alias)),
            "{name} partition {p}: copies name their origin {remote_alias}: {copies:?}"
        );
    }
}

/// Reads both clusters' copies of `topic` and checks each with [`check_cluster`].
fn check_both(
    env: &Env,
    topic: &str,
    on_a: &[(i32, TestRecord)],
    on_b: &[(i32, TestRecord)],
    when: &str,
) {
    let total = on_a.len() + on_b.len();
    check_cluster(
        &format!("cluster {}{when}", env.src),
        &read_all(&env.source.bootstrap, topic, total),
        ("a", on_a),
        ("b", &env.tgt, on_b),
    );
    check_cluster(
        &format!("cluster {}{when}", env.tgt),
        &read_all(&env.target.bootstrap, topic, total),
        ("b", on_b),
        ("a", &env.src, on_a),
    );
}

#[test]
fn two_opposite_flows_copy_every_record_once_and_never_back() {
    let env = Env::shared();
    let (a, b) = (env.source.bootstrap.clone(), env.target.bootstrap.clone());
    let topic = format!("two-way-{}", rand_suffix());
    create_topic(&a, &topic, PARTITIONS);
    create_topic(&b, &topic, PARTITIONS);
    let mut on_a = written("a", 0, 300);
    let mut on_b = written("b", 0, 300);
    produce(&a, &topic, &on_a);
    produce(&b, &topic, &on_b);

    let port = free_port();
    let config = two_way_config(&env, &topic);
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    // Both sides written while both flows run; then only the target, so that the source's
    // partitions end with copies that its flow must pass over and still count as done.
    let more_a = written("a", 300, 300);
    let more_b = written("b", 300, 300);
    produce(&a, &topic, &more_a);
    produce(&b, &topic, &more_b);
    on_a.extend(more_a);
    on_b.extend(more_b);
    let last_b = written("b", 600, 100);
    produce(&b, &topic, &last_b);
    on_b.extend(last_b);

    check_both(&env, &topic, &on_a, &on_b, "");

    // Each flow passed over exactly the records that came from its target, and its partitions
    // reached the source's end (the last records of the source's partitions were such copies).
    let flows = [
        (env.src.as_str(), env.tgt.as_str(), on_b.len()),
        (env.tgt.as_str(), env.src.as_str(), on_a.len()),
    ];
    wait_for("both flows caught up", Duration::from_secs(30), || {
        let (_, text) = http_get(port, "/metrics");
        for (source, target, skipped) in flows {
            let flow = [("source", source), ("target", target)];
            let got = series(&text, "kmirror_records_from_target_skipped_total", &flow);
            if got != Some(skipped as f64) {
                return Err(format!(
                    "{source}->{target} passed over {got:?}, not {skipped}"
                ));
            }
            for p in 0..PARTITIONS {
                let p = p.to_string();
                let part = [
                    ("source", source),
                    ("target", target),
                    ("partition", p.as_str()),
                ];
                let lag = series(&text, "kmirror_replication_lag_records", &part);
                if lag != Some(0.0) {
                    return Err(format!("{source}->{target} partition {p}: lag {lag:?}"));
                }
            }
        }
        Ok(())
    });
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    // A restart resumes after the records it passed over (stored as done, so not even read
    // again) and copies nothing again.
    let port = free_port();
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let again = written("a", 600, 10);
    produce(&a, &topic, &again);
    on_a.extend(again);
    check_both(&env, &topic, &on_a, &on_b, " after a restart");
    // The new records' copies on the target are the only ones passed over since the restart.
    let expected = [
        (env.src.as_str(), env.tgt.as_str(), 0.0),
        (env.tgt.as_str(), env.src.as_str(), 10.0),
    ];
    wait_for(
        "records passed over since the restart",
        Duration::from_secs(30),
        || {
            let (_, text) = http_get(port, "/metrics");
            for (source, target, want) in expected {
                let flow = [("source", source), ("target", target)];
                let got = series(&text, "kmirror_records_from_target_skipped_total", &flow);
                if got.unwrap_or(0.0) != want {
                    return Err(format!(
                        "{source}->{target} passed over {got:?}, not {want}"
                    ));
                }
            }
            Ok(())
        },
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
}

/// The output of `kmirror failback plan` for `flow` (`--json` with `json`), which must succeed.
fn plan_output(config: &std::path::Path, flow: &str, json: bool) -> String {
    let mut args = vec![
        "failback",
        "plan",
        "--config",
        config.to_str().unwrap(),
        "--flow",
        flow,
    ];
    if json {
        args.push("--json");
    }
    let (code, stdout, stderr) = kmirror_command(&args);
    assert_eq!(code, Some(0), "{stderr}");
    stdout
}

/// `kmirror failback plan --json`, as (at risk, reverse from, stored?, to copy, passed over,
/// complete) per partition, after checking the ends.
fn failback_plan(
    config: &std::path::Path,
    flow: &str,
    ends: (i64, i64, i64),
) -> Vec<(i64, i64, bool, i64, i64, bool)> {
    let stdout = plan_output(config, flow, true);
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = plan["partitions"].as_array().unwrap();
    assert_eq!(rows.len(), PARTITIONS as usize, "{stdout}");
    rows.iter()
        .enumerate()
        .map(|(p, r)| {
            assert_eq!(r["partition"].as_i64(), Some(p as i64), "{stdout}");
            let (primary_end, copied_until, dr_end) = ends;
            assert_eq!(r["primary_end"].as_i64(), Some(primary_end), "{stdout}");
            assert_eq!(r["copied_until"].as_i64(), Some(copied_until), "{stdout}");
            assert_eq!(r["dr_end"].as_i64(), Some(dr_end), "{stdout}");
            (
                r["at_risk"].as_i64().unwrap(),
                r["reverse_from"].as_i64().unwrap(),
                r["reverse_stored"].as_bool().unwrap(),
                r["to_copy"].as_i64().unwrap(),
                r["passed_over"].as_i64().unwrap(),
                r["complete"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Reads `n` records of each partition as a member of `group` would: from the group's committed
/// offset (the start without one), then commits after them. Returns their keys, by partition.
fn read_as_group(
    bootstrap: &str,
    topic: &str,
    group: &str,
    n: usize,
) -> BTreeMap<i32, Vec<String>> {
    let from = committed(bootstrap, group, topic);
    let consumer: rdkafka::consumer::BaseConsumer = client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let at = from
            .get(&p)
            .copied()
            .filter(|o| *o >= 0)
            .map_or(rdkafka::Offset::Beginning, rdkafka::Offset::Offset);
        tpl.add_partition_offset(topic, p, at).unwrap();
    }
    rdkafka::consumer::Consumer::assign(&consumer, &tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<String>> = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    let mut next = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.values().any(|keys| keys.len() < n) {
        assert!(Instant::now() < deadline, "{group} read only {out:?}");
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let keys = out.get_mut(&m.partition()).unwrap();
        if keys.len() < n {
            keys.push(String::from_utf8_lossy(m.key().unwrap()).into_owned());
            next.insert(m.partition(), m.offset() + 1);
        }
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, o) in next {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(o))
            .unwrap();
    }
    rdkafka::consumer::Consumer::commit(&consumer, &tpl, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    out
}

/// `kmirror offsets --flow FLOW --group GROUP --commit --json` with `config`: the report's
/// basis and (target offset, rereads, target-only unread) per partition.
fn move_group(config: &std::path::Path, flow: &str, group: &str) -> (String, Vec<(i64, i64, i64)>) {
    let (code, stdout, stderr) = kmirror_command(&[
        "offsets",
        "--config",
        config.to_str().unwrap(),
        "--flow",
        flow,
        "--group",
        group,
        "--commit",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let report = &reports[0];
    let rows = report["partitions"].as_array().unwrap();
    assert_eq!(rows.len(), PARTITIONS as usize, "{stdout}");
    let basis = report["basis"].as_str().unwrap().to_owned();
    let rows = rows
        .iter()
        .map(|r| {
            (
                r["target_offset"].as_i64().unwrap(),
                r["rereads"].as_i64().unwrap(),
                r["target_only_unread"].as_i64().unwrap(),
            )
        })
        .collect();
    (basis, rows)
}

#[test]
fn failback_plan_shows_the_exact_delta_and_the_reverse_flow_copies_only_it() {
    let round_trip = Instant::now();
    let env = Env::shared();
    let (a, b) = (env.source.bootstrap.clone(), env.target.bootstrap.clone());
    let topic = format!("failback-{}", rand_suffix());
    create_topic(&a, &topic, PARTITIONS);
    let flow = format!("{}->{}", env.src, env.tgt);

    // A consumer group reads the topic wherever it is, and moves with the producers.
    let group = format!("{topic}-g1");
    let mut read: Vec<BTreeMap<i32, Vec<String>>> = Vec::new();

    // 1. The primary is copied to the DR cluster; the group reads 100 records of each
    //    partition there, and its checkpoints reach the DR cluster.
    let mut on_a = written("a", 0, 300);
    produce(&a, &topic, &on_a);
    let forward_only = env.config(
        &topic,
        "        sync.topic.acls.enabled: false\n        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n",
    );
    let mut kmirror = Kmirror::start(&forward_only, &[]);
    let _ = consume(&b, &topic, PARTITIONS, on_a.len(), Duration::from_secs(60));
    read.push(read_as_group(&a, &topic, &group, 100));
    wait_for("the group's checkpoints", Duration::from_secs(30), || {
        let cps = checkpoints(&env, &group, &topic);
        (cps.values().filter(|(u, _)| *u == 100).count() == PARTITIONS as usize)
            .then_some(())
            .ok_or_else(|| format!("{cps:?}"))
    });
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    // 2. The primary is cut off: what it takes after the last copy never reaches the DR side.
    let lost = written("a", 300, 40);
    produce(&a, &topic, &lost);
    on_a.extend(lost);
    // 3. The group moves to the DR cluster with the primary unreachable (its address is dead):
    //    from the checkpoints, exactly after what it read. Producers move too; the group reads
    //    the rest of the primary's copies and 30 of each partition's new records.
    let text = std::fs::read_to_string(&forward_only).unwrap();
    let dead = text.replace(
        &format!("bootstrapServers: {a}\n"),
        &format!("bootstrapServers: 127.0.0.1:{}\n", free_port()),
    );
    assert_ne!(dead, text);
    let primary_lost = env.dir.path().join("primary-lost.yaml");
    std::fs::write(&primary_lost, dead).unwrap();
    let failover = Instant::now();
    assert_eq!(
        move_group(&primary_lost, &flow, &group),
        ("checkpoints".to_owned(), vec![(100, 0, 0); 2])
    );
    eprintln!("failover of the group took {:?}", failover.elapsed());
    let on_b = written("b", 0, 100);
    produce(&b, &topic, &on_b);
    read.push(read_as_group(&b, &topic, &group, 80));

    // 4. The primary is back: per partition, 150 copied, 20 at risk, and on the DR side 150
    //    copies of the primary's records (passed over) and 50 written there (to copy).
    let config = two_way_config(&env, &topic);
    assert_eq!(
        failback_plan(&config, &flow, (170, 150, 200)),
        [(20, 0, false, 50, 150, true); 2]
    );
    let text = plan_output(&config, &flow, false);
    assert!(
        text.contains(&format!(
            "40 records on {} never reached {}",
            env.src, env.tgt
        )) && text.contains(&format!(
            "100 records on {} are not on {}",
            env.tgt, env.src
        )) && text.contains(&format!(
            "at risk: {topic}[1] offsets 150..170 on {}",
            env.src
        )) && !text.contains("lost"),
        "{text}"
    );

    // 5. Both flows run: the reverse flow copies exactly what the primary lacks, the forward
    //    flow copies what was at risk; nothing else moves.
    let both = Instant::now();
    let mut kmirror = Kmirror::start(&config, &[]);
    check_both(&env, &topic, &on_a, &on_b, "");
    eprintln!(
        "both flows: every record on both clusters (and 3 s quiet) after {:?}",
        both.elapsed()
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    // 6. Round trip done: nothing at risk, nothing left to copy back.
    assert_eq!(
        failback_plan(&config, &flow, (220, 220, 220)),
        [(0, 220, true, 0, 0, true); 2]
    );

    // 7. The group moves back to the primary. Per partition it read A's 150 copied records
    //    and B's first 30; the primary holds A's 170 and then B's 50 copies (A 170..220). Its
    //    first unread record on the primary is A's first record at risk (A 150, which it never
    //    saw): it resumes there, reading those 20 and then all of B's copies, the 30 it read on
    //    B again (reported).
    let reverse = format!("{}->{}", env.tgt, env.src);
    let failback = Instant::now();
    assert_eq!(
        move_group(&config, &reverse, &group),
        ("source".to_owned(), vec![(150, 30, 0); 2])
    );
    eprintln!("failback of the group took {:?}", failback.elapsed());
    read.push(read_as_group(&a, &topic, &group, 70));
    // Across the round trip the group read every record written anywhere, in each cluster's
    // order, and the only records read twice are the ones the report said.
    for p in 0..PARTITIONS {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for keys in &read {
            for k in &keys[&p] {
                *counts.entry(k.as_str()).or_default() += 1;
            }
        }
        let written_keys: Vec<String> = on_a
            .iter()
            .chain(&on_b)
            .filter(|(q, _)| *q == p)
            .map(|(_, r)| String::from_utf8_lossy(r.key.as_deref().unwrap()).into_owned())
            .collect();
        assert_eq!(
            counts.len(),
            written_keys.len(),
            "partition {p}: {counts:?}"
        );
        let twice: Vec<&str> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| *k)
            .collect();
        let b_first_30: Vec<String> = written_keys
            .iter()
            .filter(|k| k.starts_with('b'))
            .take(30)
            .cloned()
            .collect();
        assert_eq!(twice, b_first_30, "partition {p}: read twice");
        assert!(
            counts.values().all(|n| *n <= 2),
            "partition {p}: {counts:?}"
        );
    }
    eprintln!("round trip took {:?}", round_trip.elapsed());
}

#[test]
fn failback_plan_names_what_cannot_come_back() {
    let env = Env::shared();
    let (a, b) = (env.source.bootstrap.clone(), env.target.bootstrap.clone());
    let topic = format!("failback-lost-{}", rand_suffix());
    create_topic(&a, &topic, PARTITIONS);
    let flow = format!("{}->{}", env.src, env.tgt);
    // 20 records of each partition copied to B, then 10 written on B.
    produce(&a, &topic, &written("a", 0, 40));
    let forward_only = env.config(&topic, "        sync.topic.acls.enabled: false\n");
    let mut kmirror = Kmirror::start(&forward_only, &[]);
    let _ = consume(&b, &topic, PARTITIONS, 40, Duration::from_secs(60));
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    produce(&b, &topic, &written("b", 0, 20));
    // Retention on B takes partition 0 up to offset 25: five of B's own records are gone
    // before the reverse flow ever copied them.
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(25))
        .unwrap();
    block_on(admin(&b).delete_records(&tpl, &rdkafka::admin::AdminOptions::new())).unwrap();
    // A comes back rebuilt: the topic is new and holds 5 records per partition.
    recreate_topic(&a, &topic, PARTITIONS);
    produce(&a, &topic, &written("a", 1000, 10));

    let config = two_way_config(&env, &topic);
    let stdout = plan_output(&config, &flow, true);
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows: Vec<_> = plan["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_i64().unwrap();
            (
                n("primary_end"),
                n("copied_until"),
                n("at_risk"),
                n("primary_lost"),
                n("dr_start"),
                n("deleted_on_dr"),
                n("reverse_from"),
                n("to_copy"),
                n("passed_over"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (5, 20, 0, 15, 25, 5, 25, 5, 0),
            (5, 20, 0, 15, 0, 0, 0, 10, 20)
        ],
        "{stdout}"
    );
    let text = plan_output(&config, &flow, false);
    for line in [
        format!(
            "lost: {topic}[0] offsets 20..25 on {} were deleted there",
            env.tgt
        ),
        format!("lost on {}: {topic}[0] offsets 5..20 were copied", env.src),
        format!("lost on {}: {topic}[1] offsets 5..20 were copied", env.src),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
}
