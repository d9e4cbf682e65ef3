//! Scale-out: replicas of one config share the partitions through a consumer group on the
//! target, hand them over on a rebalance, and take over those of a replica killed with -9.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kmirror_core::mm2::Heartbeat;

use crate::support::*;

const SESSION_TIMEOUT_MS: u64 = 6_000;

fn scale_out_config(env: &Env, topic: &str, protocol: &str) -> std::path::PathBuf {
    env.config(
        topic,
        &format!(
            "        scale.out.enabled: true\n        scale.out.group.id: kmirror-test-{}\n        scale.out.group.protocol: {protocol}\n        scale.out.session.timeout.ms: {SESSION_TIMEOUT_MS}\n        emit.checkpoints.interval.seconds: 1\n        refresh.groups.interval.seconds: 1\n",
            rand_suffix()
        ),
    )
}

/// A replica and its metrics port.
struct Replica {
    kmirror: Kmirror,
    port: u16,
}

impl Replica {
    fn start(config: &std::path::Path) -> Replica {
        let port = free_port();
        let kmirror = Kmirror::start(config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
        Replica { kmirror, port }
    }

    /// (partitions owned, singleton jobs owned, handovers with stored progress).
    fn ownership(&self, env: &Env) -> (f64, f64, f64) {
        let (_, text) = http_get(self.port, "/metrics");
        let labels = env.flow_labels();
        let mut stored = labels.to_vec();
        stored.push(("outcome", "stored"));
        (
            series(&text, "kmirror_owned_partitions", &labels).unwrap_or(0.0),
            series(&text, "kmirror_singleton_jobs_owner", &labels).unwrap_or(0.0),
            series(&text, "kmirror_partition_handovers_total", &stored).unwrap_or(0.0),
        )
    }
}

/// Waits until the running `replicas` own `partitions` in all, each some, and one leads.
fn wait_for_shares(env: &Env, replicas: &[&Replica], partitions: f64, timeout: Duration) {
    wait_for("partitions shared by the replicas", timeout, || {
        let shares: Vec<(f64, f64, f64)> = replicas.iter().map(|r| r.ownership(env)).collect();
        let owned: f64 = shares.iter().map(|s| s.0).sum();
        let leaders: f64 = shares.iter().map(|s| s.1).sum();
        if owned == partitions && leaders == 1.0 && shares.iter().all(|s| s.0 > 0.0) {
            Ok(())
        } else {
            Err(format!(
                "(owned, leader, handed over) per replica: {shares:?}"
            ))
        }
    });
}

/// Heartbeats of `env`'s flow written in `[from, to)`.
fn heartbeats_between(env: &Env, from: i64, to: i64) -> usize {
    let records = consume_until_quiet(
        &env.target.bootstrap,
        "heartbeats",
        1,
        Duration::from_secs(2),
    );
    records[&0]
        .iter()
        .filter_map(|r| Heartbeat::decode(r.key.as_deref()?, r.value.as_deref()?).ok())
        .filter(|hb| {
            (hb.source.as_str(), hb.target.as_str()) == (env.src.as_str(), env.tgt.as_str())
        })
        .filter(|hb| (from..to).contains(&hb.timestamp))
        .count()
}

/// Three replicas copy 24 partitions while the source is written; the one running the
/// singleton jobs is killed with -9: its partitions and its jobs move to the other two within
/// the session timeout + 10 s, every record arrives in order, and heartbeats stay at one per
/// second in total.
#[test]
fn three_replicas_share_the_work_and_survive_a_kill() {
    let env = Env::shared();
    let topic = format!("scale-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 24);
    let config = scale_out_config(&env, &topic, "classic");
    let text = std::fs::read_to_string(&config).unwrap()
        + "        sync.group.offsets.enabled: true\n        sync.group.offsets.interval.seconds: 1\n";
    std::fs::write(&config, text).unwrap();
    let mut replicas: Vec<Replica> = (0..3).map(|_| Replica::start(&config)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&env.source.bootstrap, &topic, 24, &stop);
    wait_for_shares(
        &env,
        &replicas.iter().collect::<Vec<_>>(),
        24.0,
        Duration::from_secs(60),
    );

    // Each replica's /readyz says what it does; one runs the singleton jobs.
    let bodies: Vec<String> = replicas
        .iter()
        .map(|r| http_get(r.port, "/readyz").1)
        .collect();
    assert_eq!(
        bodies
            .iter()
            .filter(|b| b.contains("runs the singleton jobs"))
            .count(),
        1,
        "{bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .all(|b| b.starts_with("ready\n") && b.contains(" partitions")),
        "{bodies:?}"
    );

    // A group committed on the source while the three copy: its offsets reach the target group
    // (each replica commits the partitions it copies).
    let group = format!("{topic}-g");
    let early: Vec<(i32, i64)> = (0..24).map(|p| (p, 100)).collect();
    commit(&env.source.bootstrap, &group, &topic, &early);
    wait_for(
        "the group synced to the target",
        Duration::from_secs(60),
        || {
            let got = committed(&env.target.bootstrap, &group, &topic);
            let at = got.values().filter(|o| **o == 100).count();
            if at == 24 {
                Ok(())
            } else {
                Err(format!("{at} of 24 partitions at 100: {got:?}"))
            }
        },
    );

    // The replica that runs the singleton jobs is the one killed.
    let leader = replicas
        .iter()
        .position(|r| r.ownership(&env).1 == 1.0)
        .expect("a replica leads");
    let mut killed = replicas.remove(leader);
    killed.kmirror.kill();
    let killed_at = Instant::now();
    let survivors: Vec<&Replica> = replicas.iter().collect();
    wait_for_shares(
        &env,
        &survivors,
        24.0,
        Duration::from_millis(SESSION_TIMEOUT_MS) + Duration::from_secs(10),
    );
    eprintln!(
        "the killed replica's partitions and jobs moved after {:?}",
        killed_at.elapsed()
    );

    // One heartbeat per second in total, from whichever replica leads now.
    std::thread::sleep(Duration::from_secs(2));
    let from = now_ms();
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let (sent, took) = writer.join().unwrap();
    let to = from + 10_000;

    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        24,
        Duration::from_secs(120),
    );
    // Each survivor checkpoints the partitions it copies: together, every partition; and moves
    // the target group on, also where the killed replica committed it (kmirror's own commit,
    // not someone else's).
    let ends: Vec<(i32, i64)> = by_partition(&sent, 24)
        .iter()
        .map(|(p, records)| (*p, i64::try_from(records.len()).unwrap()))
        .collect();
    commit(&env.source.bootstrap, &group, &topic, &ends);
    let want: std::collections::BTreeMap<i32, (i64, i64)> =
        ends.iter().map(|(p, end)| (*p, (*end, *end))).collect();
    wait_for(
        "checkpoints of every partition",
        Duration::from_secs(60),
        || {
            let got = checkpoints(&env, &group, &topic);
            if got == want {
                Ok(())
            } else {
                let exact = got.iter().filter(|(p, v)| want.get(p) == Some(v)).count();
                let off: Vec<String> = want
                    .iter()
                    .filter(|(p, v)| got.get(p) != Some(v))
                    .map(|(p, v)| format!("{p}: {:?} (want {v:?})", got.get(p)))
                    .collect();
                Err(format!(
                    "{exact} of 24 partitions checkpointed exactly ({duplicates} copied twice); off: {}",
                    off.join(", ")
                ))
            }
        },
    );
    let want_committed: std::collections::BTreeMap<i32, i64> = ends.iter().copied().collect();
    wait_for(
        "the group synced to the end",
        Duration::from_secs(60),
        || {
            let got = committed(&env.target.bootstrap, &group, &topic);
            if got == want_committed {
                Ok(())
            } else {
                Err(format!("target group at {got:?}"))
            }
        },
    );
    for r in &mut replicas {
        assert_eq!(
            r.kmirror.terminate(Duration::from_secs(30)),
            Some(0),
            "{}",
            r.kmirror.logs()
        );
    }
    let heartbeats = heartbeats_between(&env, from, to);
    eprintln!(
        "{} records written in {took:?}; {duplicates} copied twice (the killed replica's records after its last stored progress); {heartbeats} heartbeats in 10 s",
        sent.len()
    );
    assert!(
        (8..=12).contains(&heartbeats),
        "{heartbeats} heartbeats in 10 s from two replicas"
    );
    // Records the killed replica copied after its last stored progress are found on the
    // target by their next owner; a partition copied by two replicas at once would show here.
    assert_eq!(duplicates, 0, "records copied twice");
}

/// One replica, then three, then one again, while the source is written (KIP-848's `consumer`
/// protocol): partitions are handed over with their final progress stored, nothing is lost,
/// and nothing is copied twice.
#[test]
fn scale_one_to_three_to_one_while_writing() {
    let env = Env::shared();
    let topic = format!("scale-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 12);
    let protocol = if std::env::var("KMIRROR_KAFKA_VERSION").is_ok_and(|v| v.starts_with('3')) {
        "classic"
    } else {
        "consumer"
    };
    let config = scale_out_config(&env, &topic, protocol);
    let first = Replica::start(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&env.source.bootstrap, &topic, 12, &stop);
    wait_for_shares(&env, &[&first], 12.0, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));

    let mut more: Vec<Replica> = (0..2).map(|_| Replica::start(&config)).collect();
    wait_for_shares(
        &env,
        &[&first, &more[0], &more[1]],
        12.0,
        Duration::from_secs(60),
    );
    for r in [&first, &more[0], &more[1]] {
        let (code, body) = http_get(r.port, "/readyz");
        assert_eq!(
            code, 200,
            "a replica that owns its partitions and copies them is ready: {body}"
        );
    }
    let handed = first.ownership(&env).2;
    assert!(
        handed > 0.0,
        "the first replica handed partitions over: {handed}"
    );
    std::thread::sleep(Duration::from_secs(3));

    for r in &mut more {
        assert_eq!(
            r.kmirror.terminate(Duration::from_secs(30)),
            Some(0),
            "{}",
            r.kmirror.logs()
        );
    }
    wait_for_shares(&env, &[&first], 12.0, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (sent, _) = writer.join().unwrap();
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        12,
        Duration::from_secs(120),
    );
    let mut first = first;
    assert_eq!(
        first.kmirror.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        first.kmirror.logs()
    );
    eprintln!("{} records, {handed} partitions handed over by the first replica, {duplicates} copied twice", sent.len());
    assert_eq!(
        duplicates, 0,
        "partitions handed over with their final progress are not copied twice"
    );
}

/// Exactly-once mode with two replicas: one copies every partition, the other stands by. The
/// one copying is killed with -9 while the source is written: the other takes over (its
/// transactional ids fence the dead one's open transaction), and, read with `read_committed`,
/// every record is on the target once, in order.
#[test]
fn exactly_once_standby_takes_over_after_a_kill() {
    let env = Env::shared();
    let topic = format!("scale-eos-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, 4);
    let config = env.exactly_once_config(
        &topic,
        &format!(
            "        scale.out.enabled: true\n        scale.out.group.id: kmirror-test-{}\n        scale.out.session.timeout.ms: {SESSION_TIMEOUT_MS}\n",
            rand_suffix()
        ),
    );
    let mut replicas: Vec<Replica> = (0..2).map(|_| Replica::start(&config)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&env.source.bootstrap, &topic, 4, &stop);
    let one_copies = |replicas: &[Replica]| {
        let shares: Vec<(f64, f64, f64)> = replicas.iter().map(|r| r.ownership(&env)).collect();
        let copying: Vec<usize> = (0..shares.len())
            .filter(|&i| shares[i].0 == 4.0 && shares[i].1 == 1.0)
            .collect();
        let idle = shares.iter().filter(|s| s.0 == 0.0 && s.1 == 0.0).count();
        match copying.as_slice() {
            [i] if idle == shares.len() - 1 => Ok(*i),
            _ => Err(format!(
                "(owned, leader, handed over) per replica: {shares:?}"
            )),
        }
    };
    // Both in the group (the lead may move once while the second joins), then one copying.
    let settled = |replicas: &[Replica]| {
        for r in replicas {
            let (code, body) = http_get(r.port, "/readyz");
            if code != 200 {
                return Err(format!("a replica is not ready: {body}"));
            }
        }
        one_copies(replicas)
    };
    wait_for(
        "one replica copying, one standing by",
        Duration::from_secs(60),
        || settled(&replicas).map(|_| ()),
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut leader = 0;
    wait_for("one replica copying", Duration::from_secs(30), || {
        leader = settled(&replicas)?;
        Ok(())
    });
    let standby = http_get(replicas[1 - leader].port, "/readyz").1;
    assert!(standby.contains("stands by"), "{standby}");
    let mut killed = replicas.remove(leader);
    killed.kmirror.kill();
    let killed_at = Instant::now();
    wait_for("the standby copying", Duration::from_secs(60), || {
        one_copies(&replicas).map(|_| ())
    });
    eprintln!("the standby took over after {:?}", killed_at.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (sent, _) = writer.join().unwrap();
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        4,
        Duration::from_secs(120),
    );
    let survivor = &mut replicas[0];
    assert_eq!(
        survivor.kmirror.terminate(Duration::from_secs(30)),
        Some(0),
        "{}",
        survivor.kmirror.logs()
    );
    eprintln!(
        "exactly-once standby: {} records, {duplicates} copied twice",
        sent.len()
    );
    assert_eq!(duplicates, 0, "records copied twice in exactly-once mode");
}
