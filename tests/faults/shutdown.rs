//! SIGTERM always finishes within `--shutdown-timeout`, whatever the target does: stopped
//! (connections refused) or frozen (connections open, nothing answers). What could not be stored
//! is logged and the exit code says so; after a restart nothing is lost or reordered.

use std::time::{Duration, Instant};

use crate::support::*;

const PARTITIONS: i32 = 4;

fn batch(from: usize, to: usize) -> Vec<(i32, TestRecord)> {
    numbered_batch(from, to, PARTITIONS, 1024)
}

#[derive(Clone, Copy, Debug)]
enum Outage {
    /// The target broker is stopped: connections are refused.
    Stopped,
    /// The target broker is frozen (SIGSTOP): connections stay open and nothing answers.
    Frozen,
}

fn sigterm_during_target_outage(outage: Outage, extra_connector: &str) {
    let env = Env::dedicated();
    let topic = format!("stop-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let mut sent = batch(0, 20_000);
    produce(&env.source.bootstrap, &topic, &sent);
    let config = env.config(&topic, extra_connector);
    let port = free_port();
    let mut kmirror = Kmirror::start(
        &config,
        &[
            "--shutdown-timeout",
            "5s",
            "--stall-after",
            "2s",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let _ = consume(
        &env.target.bootstrap,
        &topic,
        PARTITIONS,
        20_000,
        Duration::from_secs(60),
    );

    match outage {
        Outage::Stopped => env.target.stop_node(0),
        Outage::Frozen => env.target.freeze_node(0),
    }
    // More than the producer's queue holds (32 MiB): kmirror is waiting for room when told to stop.
    let more = batch(20_000, 70_000);
    produce(&env.source.bootstrap, &topic, &more);
    sent.extend(more);
    // The partitions say they wait for the target, with offsets, in /readyz, the state metric
    // and the log.
    wait_for("partitions reported stuck", Duration::from_secs(20), || {
        let (code, body) = http_get(port, "/readyz");
        let metrics = http_get(port, "/metrics").1;
        let waiting = series(
            &metrics,
            "kmirror_partition_state",
            &[("topic", topic.as_str()), ("state", "waiting_for_target")],
        );
        if code == 503
            && body.contains(&format!("partition {topic}"))
            && body.contains("waiting_for_target")
            && waiting == Some(1.0)
            && kmirror.logs().contains("partition not moving")
        {
            Ok(())
        } else {
            Err(format!("{code} {body}"))
        }
    });

    let (took, logs) = sigterm(
        &mut kmirror,
        outage,
        3,
        "exit code 3 says progress could not all be stored",
    );
    assert!(
        logs.contains("could not be stored") || logs.contains("shutdown timeout"),
        "{outage:?}: the log says what was not stored:\n{logs}"
    );
    eprintln!("{outage:?}: exited {took:?} after SIGTERM with code 3");

    end_outage(&env.target, outage);
    let duplicates = copy_again(&env, &config, &topic, &sent);
    eprintln!(
        "{outage:?}: all {} records arrived in order after the restart; {duplicates} copied twice",
        sent.len()
    );
}

fn end_outage(cluster: &kafka::Kafka, outage: Outage) {
    match outage {
        Outage::Stopped => {
            cluster.restart_node(0);
            cluster.wait_ready(1, Duration::from_secs(60));
        }
        Outage::Frozen => cluster.thaw_node(0),
    }
}

/// Starts kmirror again and checks that everything sent arrives in order; returns how many
/// records were copied twice.
fn copy_again(
    env: &Env,
    config: &std::path::Path,
    topic: &str,
    sent: &[(i32, TestRecord)],
) -> usize {
    let mut kmirror = Kmirror::start(config, &[]);
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        topic,
        sent,
        PARTITIONS,
        Duration::from_secs(120),
    );
    assert_eq!(
        kmirror.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        kmirror.logs()
    );
    duplicates
}

/// Sends SIGTERM and checks that kmirror exits within 6.5 s (`--shutdown-timeout 5s`) with
/// `want` as its exit code; returns how long it took and the log.
fn sigterm(kmirror: &mut Kmirror, outage: Outage, want: i32, why: &str) -> (Duration, String) {
    let signalled = Instant::now();
    let code = kmirror.terminate(Duration::from_secs(20));
    let took = signalled.elapsed();
    let logs = kmirror.logs();
    assert!(
        took < Duration::from_millis(6_500),
        "{outage:?}: SIGTERM took {took:?} with --shutdown-timeout 5s (exit code {code:?})\n{logs}"
    );
    assert_eq!(code, Some(want), "{outage:?}: {why}\n{logs}");
    (took, logs)
}

#[test]
fn sigterm_while_the_target_is_stopped_exits_within_the_timeout_and_loses_nothing() {
    sigterm_during_target_outage(Outage::Stopped, "");
}

#[test]
fn sigterm_while_the_target_is_frozen_exits_within_the_timeout_and_loses_nothing() {
    sigterm_during_target_outage(Outage::Frozen, "");
}

/// The same with scale-out: the group lives on the frozen target, so the replica also loses
/// its partitions there (the session times out) while it waits; it still exits in time.
#[test]
fn sigterm_while_the_target_is_frozen_exits_within_the_timeout_with_scale_out() {
    sigterm_during_target_outage(
        Outage::Frozen,
        "        scale.out.enabled: true\n        scale.out.session.timeout.ms: 6000\n",
    );
}

/// SIGTERM while the source is stopped or frozen (the target is fine): every acknowledged
/// record's progress is stored and kmirror exits cleanly, within the timeout; nothing waits on
/// the source.
fn sigterm_during_source_outage(outage: Outage) {
    let env = Env::dedicated();
    let topic = format!("stop-src-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let mut sent = batch(0, 10_000);
    produce(&env.source.bootstrap, &topic, &sent);
    let config = env.config(&topic, "");
    let mut kmirror = Kmirror::start(&config, &["--shutdown-timeout", "5s"]);
    let _ = consume(
        &env.target.bootstrap,
        &topic,
        PARTITIONS,
        10_000,
        Duration::from_secs(60),
    );
    let more = batch(10_000, 30_000);
    produce(&env.source.bootstrap, &topic, &more);
    sent.extend(more);
    match outage {
        Outage::Stopped => env.source.stop_node(0),
        Outage::Frozen => env.source.freeze_node(0),
    }
    // Long enough for every request to the source in flight to be waiting on it.
    std::thread::sleep(Duration::from_secs(3));

    let (took, _) = sigterm(
        &mut kmirror,
        outage,
        0,
        "the target acknowledged everything it got, so all progress is stored",
    );
    eprintln!("source {outage:?}: exited {took:?} after SIGTERM with code 0");

    end_outage(&env.source, outage);
    let duplicates = copy_again(&env, &config, &topic, &sent);
    eprintln!(
        "source {outage:?}: all {} records arrived in order after the restart; {duplicates} copied twice",
        sent.len()
    );
}

#[test]
fn sigterm_while_the_source_is_stopped_exits_cleanly_within_the_timeout() {
    sigterm_during_source_outage(Outage::Stopped);
}

#[test]
fn sigterm_while_the_source_is_frozen_exits_cleanly_within_the_timeout() {
    sigterm_during_source_outage(Outage::Frozen);
}
