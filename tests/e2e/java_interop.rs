//! Java interoperability: MirrorMaker 2's own classes read what kmirror wrote, with the exact
//! offsets and fields. `RemoteClusterUtils.translateOffsets` and `MirrorClient` run in a small
//! program compiled here with `javac` against the Kafka jars; the checkpoint, heartbeat and
//! offset-sync records go through Kafka's console consumer with MM2's formatters.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::kafka::{console_consume_formatted, interop_classes, run_java};
use crate::support::*;

const DEFAULT_POLICY: &str = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy";

#[test]
fn mm2_java_classes_read_what_kmirror_wrote() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("jinterop-{}", rand_suffix());
    // DefaultReplicationPolicy: the remote topic is `<src>.<topic>`, as MirrorClient expects.
    let remote = format!("{}.{topic}", env.src);
    create_topic(&source.bootstrap, &topic, 2);
    create_topic(&target.bootstrap, &remote, 2);
    // Target offsets run ahead of source offsets: 30 in partition 0, 70 in partition 1.
    let shift = |p: i32| if p == 0 { 30 } else { 70 };
    let filler = shift_offsets(&target.bootstrap, &remote, 2, shift);
    let records = spread(500, 2);
    produce(&source.bootstrap, &topic, &records);
    let config = env.config(
        &topic,
        "        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n        offset.lag.max: 50\n",
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("IdentityReplicationPolicy", "DefaultReplicationPolicy");
    std::fs::write(&config, text).unwrap();
    let mut kmirror = Kmirror::start(&config, &[]);
    let copied = consume(
        &target.bootstrap,
        &remote,
        2,
        records.len() + filler,
        Duration::from_secs(30),
    );
    assert_eq!(
        copied.values().map(Vec::len).sum::<usize>(),
        records.len() + filler
    );
    let group = format!("{topic}-g");
    commit(&source.bootstrap, &group, &topic, &[(0, 100), (1, 250)]);
    wait_for("kmirror's checkpoints", Duration::from_secs(20), || {
        let cps = checkpoints(&env, &group, &remote);
        if cps.get(&0) == Some(&(100, 130)) && cps.get(&1) == Some(&(250, 320)) {
            Ok(())
        } else {
            Err(format!("{cps:?}"))
        }
    });
    // Stop first, so that the offset syncs' tail is written and nothing moves while Java reads.
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    // RemoteClusterUtils.translateOffsets, as a consumer failing over to the target would.
    let classes = interop_classes();
    let out = run_java(
        Some(classes),
        "KmirrorInterop",
        &[
            "translate",
            &target.bootstrap,
            DEFAULT_POLICY,
            &env.src,
            &group,
        ],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("translated {remote} 0 130"),
            format!("translated {remote} 1 320")
        ],
        "translateOffsets"
    );

    // MirrorClient sees the heartbeats topic, the checkpoints topic and the remote topic.
    let out = run_java(
        Some(classes),
        "KmirrorInterop",
        &["client", &target.bootstrap, DEFAULT_POLICY],
    );
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "heartbeats heartbeats".to_owned(),
        format!("checkpoints {}", env.checkpoints_topic()),
        format!("remote {remote}"),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "missing `{want}` in:\n{out}"
        );
    }

    // MM2's formatters decode every record kmirror wrote.
    let cps = console_consume_formatted(
        &target.bootstrap,
        &env.checkpoints_topic(),
        "CheckpointFormatter",
    );
    let ours: Vec<&String> = cps
        .iter()
        .filter(|l| l.contains(&format!("consumerGroupId={group},")))
        .collect();
    for (p, u, d) in [(0, 100, 130), (1, 250, 320)] {
        let want = format!(
            "Checkpoint{{consumerGroupId={group}, topicPartition={remote}-{p}, upstreamOffset={u}, downstreamOffset={d}, metadata=}}"
        );
        assert_eq!(
            ours.iter()
                .rfind(|l| l.contains(&format!("topicPartition={remote}-{p},")))
                .map(|s| s.as_str()),
            Some(want.as_str()),
            "CheckpointFormatter:\n{cps:?}"
        );
    }

    let heartbeats =
        console_consume_formatted(&target.bootstrap, "heartbeats", "HeartbeatFormatter");
    let prefix = format!(
        "Heartbeat{{sourceClusterAlias={}, targetClusterAlias={}, timestamp=",
        env.src, env.tgt
    );
    let ours: Vec<i64> = heartbeats
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix)?.strip_suffix('}')?.parse().ok())
        .collect();
    // kmirror ran a few seconds: one heartbeat a second, at least one.
    assert!(
        !ours.is_empty(),
        "HeartbeatFormatter shows kmirror's heartbeats:\n{heartbeats:?}"
    );
    assert!(
        ours.windows(2).all(|w| w[0] < w[1]) && ours[0] > 1_600_000_000_000,
        "heartbeat timestamps are epoch milliseconds, increasing: {ours:?}"
    );

    let syncs_topic = format!("mm2-offset-syncs.{}.internal", env.tgt);
    let syncs = console_consume_formatted(&source.bootstrap, &syncs_topic, "OffsetSyncFormatter");
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for line in &syncs {
        let Some(rest) = line.strip_prefix(&format!("OffsetSync{{topicPartition={topic}-")) else {
            continue;
        };
        let fields: Vec<i64> = rest
            .trim_end_matches('}')
            .split(", ")
            .map(|f| f.rsplit('=').next().unwrap().parse().unwrap())
            .collect();
        let (p, u, d) = (i32::try_from(fields[0]).unwrap(), fields[1], fields[2]);
        assert_eq!(
            d,
            u + shift(p),
            "OffsetSyncFormatter: {line} points at another record"
        );
        last.insert(p, u);
    }
    assert_eq!(
        last,
        BTreeMap::from([(0, 249), (1, 249)]),
        "every partition's tail is synced:\n{syncs:?}"
    );
}
