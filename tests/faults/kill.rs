//! kill -9 of kmirror, 20 times, while the source is written at a steady rate: nothing is lost
//! or reordered, and the records copied twice (acknowledged by the target but not yet in the
//! stored progress when the process died) are counted and reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

const PARTITIONS: i32 = 4;
const KILLS: usize = 20;

#[test]
fn kill_minus_nine_twenty_times_while_writing_loses_nothing() {
    let env = Env::shared();
    let topic = format!("killed-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let config = env.config(&topic, "");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&env.source.bootstrap, &topic, PARTITIONS, &stop);
    kill_repeatedly(&config, KILLS);
    stop.store(true, Ordering::Relaxed);
    let (sent, writing) = writer.join().unwrap();

    let mut kmirror = Kmirror::start(&config, &[]);
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(180),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    #[allow(clippy::cast_precision_loss)]
    let share = duplicates as f64 * 100.0 / sent.len() as f64;
    eprintln!(
        "kill -9 x{KILLS} while writing {} records at {:.0}/s: 0 lost, 0 reordered, {duplicates} copied twice ({share:.2} % of the records, {} per kill)",
        sent.len(),
        sent.len() as f64 / writing.as_secs_f64(),
        duplicates / KILLS
    );
    // Each start finds on the target what the killed process copied without storing progress.
    assert!(
        share <= 1.0,
        "{duplicates} records copied twice ({share:.2} %): more than 1 %"
    );
}

/// Records on the target that are not copies of the source's next records (someone wrote to
/// the target while kmirror was stopped) are never taken for copies: nothing is skipped.
#[test]
fn foreign_records_on_the_target_are_never_taken_for_copies() {
    let env = Env::shared();
    let topic = format!("foreign-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let config = env.config(&topic, "");
    let mut sent = numbered_batch(0, 2_000, PARTITIONS, 100);
    produce(&env.source.bootstrap, &topic, &sent);
    let mut kmirror = Kmirror::start(&config, &[]);
    assert_eq!(
        assert_all_in_order(
            &env.target.bootstrap,
            &topic,
            &sent,
            PARTITIONS,
            Duration::from_secs(60)
        ),
        0
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    // While kmirror is stopped: someone writes to the target, and the source goes on.
    let foreign: Vec<(i32, TestRecord)> = (0..200)
        .map(|i| {
            let mut r = numbered(i, 100);
            r.key = Some(format!("foreign-{i:05}").into_bytes());
            (i32::try_from(i).unwrap() % PARTITIONS, r)
        })
        .collect();
    produce(&env.target.bootstrap, &topic, &foreign);
    let more = numbered_batch(2_000, 4_000, PARTITIONS, 100);
    produce(&env.source.bootstrap, &topic, &more);
    sent.extend(more);

    let mut kmirror = Kmirror::start(&config, &[]);
    let want = by_partition(&sent, PARTITIONS);
    let got = consume_until_complete(
        &env.target.bootstrap,
        &topic,
        &want,
        Duration::from_secs(60),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    for (p, records) in &want {
        let copies: Vec<TestRecord> = got[p]
            .iter()
            .filter(|r| !r.key.as_deref().is_some_and(|k| k.starts_with(b"foreign-")))
            .cloned()
            .collect();
        assert_eq!(
            check_no_loss_in_order(records, &copies, *p),
            0,
            "partition {p}: copied twice"
        );
    }
    assert!(
        !kmirror.logs().contains("already on the target"),
        "foreign records taken for copies:\n{}",
        kmirror.logs()
    );
}

/// What a crash leaves behind, made on purpose: copies of source records beyond the stored
/// progress, already on the target. The next start finds them, says so, and copies each
/// record once.
#[test]
fn copies_beyond_the_stored_progress_are_found_and_not_copied_again() {
    let env = Env::shared();
    let topic = format!("found-{}", rand_suffix());
    create_topic(&env.source.bootstrap, &topic, PARTITIONS);
    let config = env.config(&topic, "");
    let mut sent = numbered_batch(0, 2_000, PARTITIONS, 100);
    produce(&env.source.bootstrap, &topic, &sent);
    let mut kmirror = Kmirror::start(&config, &[]);
    assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(60),
    );
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    // Records 2,000..3,000 reach the source, and their copies the target, as if a kmirror had
    // copied them and died before storing its progress.
    let copied = numbered_batch(2_000, 3_000, PARTITIONS, 100);
    produce(&env.source.bootstrap, &topic, &copied);
    produce(&env.target.bootstrap, &topic, &copied);
    sent.extend(copied);
    let more = numbered_batch(3_000, 4_000, PARTITIONS, 100);
    produce(&env.source.bootstrap, &topic, &more);
    sent.extend(more);

    let port = free_port();
    let mut kmirror = Kmirror::start(&config, &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let duplicates = assert_all_in_order(
        &env.target.bootstrap,
        &topic,
        &sent,
        PARTITIONS,
        Duration::from_secs(60),
    );
    let (_, metrics) = http_get(port, "/metrics");
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(duplicates, 0, "copied twice:\n{}", kmirror.logs());
    assert_eq!(
        series(
            &metrics,
            "kmirror_records_found_on_target_total",
            &env.flow_labels()
        ),
        Some(1_000.0)
    );
    assert!(kmirror.logs().contains("were already on the target"));
}
