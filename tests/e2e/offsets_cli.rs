//! `kmirror offsets`: the failover report and commit.

use std::time::Duration;

use crate::support::*;

fn offsets(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["offsets", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    kmirror_command(&all)
}

#[test]
fn offsets_commit_after_stopping_kmirror_resumes_exactly() {
    // The test stops the source: clusters of its own.
    let env = Env::dedicated();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("failover-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    create_topic(&target.bootstrap, &topic, 2);
    // Target offsets run 50 ahead of source offsets in partition 0, 70 in partition 1.
    let shift = |p: i32| if p == 0 { 50 } else { 70 };
    let filler = shift_offsets(&target.bootstrap, &topic, 2, shift);
    let records: Vec<(i32, TestRecord)> = (0..1_000)
        .map(|i: i32| {
            (
                i % 2,
                TestRecord {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(vec![2]),
                    headers: Vec::new(),
                    timestamp: 5 + i64::from(i),
                },
            )
        })
        .collect();
    produce(&source.bootstrap, &topic, &records);
    let extra = "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n";
    let config = env.config(&topic, extra);
    let port = free_port();
    let mut kmirror = Kmirror::start(
        &config,
        &[
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--per-partition-checkpoint-metrics",
        ],
    );
    let copied = consume(
        &target.bootstrap,
        &topic,
        2,
        records.len() + filler,
        Duration::from_secs(30),
    );
    let group = format!("{topic}-billing");
    commit(&source.bootstrap, &group, &topic, &[(0, 123), (1, 456)]);
    wait_for("checkpoints", Duration::from_secs(15), || {
        let cps = checkpoints(&env, &group, &topic);
        (cps.len() == 2)
            .then_some(())
            .ok_or_else(|| format!("{cps:?}"))
    });
    // The checkpoint and heartbeat metrics moved.
    let metrics = crate::operations::get(port, "/metrics").1;
    for name in ["", "_min", "_max", "_avg"] {
        let series =
            format!("kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms{name}{{");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&series) && l.contains(&format!("group=\"{group}\""))),
            "missing {series}"
        );
    }
    let counter = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        counter("kmirror_checkpoints_emitted_total") >= 2.0,
        "{metrics}"
    );
    assert!(counter("kmirror_heartbeats_emitted_total") >= 1.0);
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    let (code, stdout, stderr) = offsets(&config, &["--group", &group, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["basis"], "source");
    let rows = report[0]["partitions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let p = i32::try_from(row["partition"].as_i64().unwrap()).unwrap();
        let u = row["source_offset"].as_i64().unwrap();
        assert_eq!(
            row["target_offset"].as_i64().unwrap(),
            shift(p) + u,
            "{row}"
        );
    }

    let (code, _, stderr) = offsets(&config, &["--group", &group, "--commit", "--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        committed(&target.bootstrap, &group, &topic).is_empty(),
        "--dry-run committed something"
    );

    let (code, _, stderr) = offsets(&config, &["--group", &group, "--commit"]);
    assert_eq!(code, Some(0), "{stderr}");
    let on_target = committed(&target.bootstrap, &group, &topic);
    assert_eq!(on_target.get(&0), Some(&(shift(0) + 123)));
    assert_eq!(on_target.get(&1), Some(&(shift(1) + 456)));
    // Resuming there reads exactly the records the source group had not read.
    let source_p0: Vec<&TestRecord> = records
        .iter()
        .filter(|(p, _)| *p == 0)
        .map(|(_, r)| r)
        .collect();
    let d = usize::try_from(shift(0) + 123).unwrap();
    assert_eq!(
        copied[&0][d..].iter().collect::<Vec<_>>(),
        source_p0[123..].to_vec()
    );

    // The source is lost: the report comes from the checkpoints on the target.
    source.stop_node(0);
    let (code, stdout, stderr) = offsets(&config, &["--group", &group, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["basis"], "checkpoints", "{stdout}");
    let p1 = report[0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 1)
        .unwrap()
        .clone();
    assert_eq!(p1["target_offset"].as_i64(), Some(shift(1) + 456));
}
