//! MM2 heartbeats: about one per second on the target, decodable by MM2's format.

use std::time::Duration;

use kmirror_core::mm2::Heartbeat;

use crate::support::*;

#[test]
fn heartbeats_arrive_about_once_per_second_and_decode() {
    let env = Env::shared();
    let config = env.config(&format!("nothing-{}", rand_suffix()), "");
    let mut kmirror = Kmirror::start(&config, &[]);
    std::thread::sleep(Duration::from_secs(3));
    let from = now_ms();
    std::thread::sleep(Duration::from_secs(10));
    let to = from + 10_000;
    // Stop first: heartbeats never go quiet while kmirror runs.
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    let records = consume_until_quiet(
        &env.target.bootstrap,
        "heartbeats",
        1,
        Duration::from_secs(2),
    );

    let mut in_window = 0;
    for r in &records[&0] {
        let hb = Heartbeat::decode(r.key.as_deref().unwrap(), r.value.as_deref().unwrap())
            .expect("an MM2 heartbeat");
        if (hb.source.as_str(), hb.target.as_str()) != (env.src.as_str(), env.tgt.as_str()) {
            continue; // another test's flow
        }
        assert_eq!(
            r.timestamp, hb.timestamp,
            "record timestamp equals the payload timestamp"
        );
        if (from..to).contains(&hb.timestamp) {
            in_window += 1;
        }
    }
    assert!(
        (8..=12).contains(&in_window),
        "{in_window} heartbeats in 10 s"
    );
}
