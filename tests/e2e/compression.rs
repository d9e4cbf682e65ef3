//! Compressed topics stay compressed on the target: each target topic's batches use the source
//! topic's codec (its `compression.type`, else the codec of its batches), unless the operator
//! sets the producer's; every record still arrives as written.

use std::collections::HashMap;
use std::time::Duration;

use kmirror_engine::codec::{probe, Codec};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Values that compress as real payloads do (repeated field names, varying numbers).
fn payload(i: usize) -> Vec<u8> {
    let words = ["order", "customer", "amount", "currency", "EUR", "status"];
    let mut v = String::new();
    let mut j = i;
    while v.len() < 1000 {
        v.push_str(&format!("{}={} ", words[j % words.len()], j % 97));
        j = j.wrapping_mul(31).wrapping_add(7);
    }
    v.into_bytes()
}

fn records(n: usize, partitions: i32) -> Vec<(i32, TestRecord)> {
    (0..n)
        .map(|i| {
            (
                i32::try_from(i).unwrap() % partitions,
                TestRecord {
                    key: Some(format!("{i:06}").into_bytes()),
                    value: Some(payload(i)),
                    headers: vec![("h".into(), Some(b"x".to_vec()))],
                    timestamp: 1_700_000_000_000 + i64::try_from(i).unwrap(),
                },
            )
        })
        .collect()
}

/// The codec of the newest batches of `topics` on `bootstrap`, as librdkafka reports them.
fn codecs_on(bootstrap: &str, topics: &[&str]) -> HashMap<String, Codec> {
    let list: Vec<(String, i32)> = topics.iter().map(|t| ((*t).to_owned(), 2)).collect();
    let mut config = client(bootstrap);
    config.set("group.id", format!("codecs-{}", rand_suffix()));
    probe(
        &config,
        &list,
        Duration::from_secs(20),
        &CancellationToken::new(),
    )
    .unwrap()
    .codecs
}

#[test]
fn compressed_topics_stay_compressed_with_their_codec() {
    compressed_topics_stay_compressed(false);
}

/// The same in exactly-once mode: a transactional producer per codec.
#[test]
fn compressed_topics_stay_compressed_in_exactly_once_mode() {
    compressed_topics_stay_compressed(true);
}

fn compressed_topics_stay_compressed(exactly_once: bool) {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let id = rand_suffix();
    let name = |kind: &str| format!("zc{id}-{kind}");
    let (lz4, zstd, gzip_config, plain, empty) = (
        name("lz4"),
        name("zstd"),
        name("gzip"),
        name("plain"),
        name("empty"),
    );
    for t in [&lz4, &zstd, &plain, &empty] {
        create_topic(&source.bootstrap, t, 2);
    }
    // The broker compresses this one itself, whatever producers send.
    create_topic_with(
        &source.bootstrap,
        &gzip_config,
        2,
        &[("compression.type", "gzip")],
    );
    let n = 2000;
    let sent = records(n, 2);
    produce_with(
        &source.bootstrap,
        &lz4,
        &sent,
        &[("compression.type", "lz4")],
    );
    produce_with(
        &source.bootstrap,
        &zstd,
        &sent,
        &[("compression.type", "zstd")],
    );
    produce_with(&source.bootstrap, &gzip_config, &sent, &[]);
    produce_with(&source.bootstrap, &plain, &sent, &[]);

    // compression.type is not synced: the target topic keeps the broker's `producer`, so what
    // it stores is what kmirror sent (a synced gzip would make the broker recompress).
    let (topics, extra) = (
        format!("zc{id}-.*"),
        "        config.properties.exclude: \"compression\\\\.type\"\n",
    );
    let config = if exactly_once {
        env.exactly_once_config(&topics, extra)
    } else {
        env.config(&topics, extra)
    };
    let (code, plan, stderr) = kmirror_command(&["plan", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        format!(
            "{lz4}: lz4 (level: the codec's default; seen in the source topic's newest batches)"
        ),
        format!(
            "{gzip_config}: gzip (level: the codec's default; the source topic's compression.type)"
        ),
        format!(
            "{plain}: none (level: the codec's default; seen in the source topic's newest batches)"
        ),
    ] {
        assert!(plan.contains(&line), "plan lacks `{line}`:\n{plan}");
    }
    let mut kmirror = Kmirror::start(&config, &[]);
    let want = by_partition(&sent, 2);
    for t in [&lz4, &zstd, &gzip_config, &plain] {
        let got = consume(&target.bootstrap, t, 2, n, Duration::from_secs(60));
        assert_same(&want, &got, t);
    }
    let logs = kmirror.logs();
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));

    assert_eq!(
        configs(&target.bootstrap, &gzip_config).get("compression.type"),
        None,
        "the target topic leaves compression to its producers (the broker's default)"
    );
    let on_target = codecs_on(&target.bootstrap, &[&lz4, &zstd, &gzip_config, &plain]);
    assert_eq!(on_target.get(&lz4), Some(&Codec::Lz4), "{on_target:?}");
    assert_eq!(on_target.get(&zstd), Some(&Codec::Zstd), "{on_target:?}");
    assert_eq!(
        on_target.get(&gzip_config),
        Some(&Codec::Gzip),
        "{on_target:?}"
    );
    assert_eq!(on_target.get(&plain), Some(&Codec::None), "{on_target:?}");
    // What the target stores: no more than the source does (plus a tenth).
    for t in [&lz4, &zstd, &gzip_config, &plain] {
        let (s, d) = (source.topic_bytes(t), target.topic_bytes(t));
        assert!(
            d * 10 <= s * 11,
            "{t}: the target stores {d} bytes, the source {s}"
        );
    }
    for (t, codec, from) in [
        (&lz4, "lz4", "newest batches"),
        (&zstd, "zstd", "newest batches"),
        (&gzip_config, "gzip", "compression.type"),
        (&empty, "none", "holds no records"),
    ] {
        assert!(
            logs.lines().any(|l| l.contains("target batches of")
                && l.contains(&format!("topic={t} "))
                && l.contains(&format!("compression=\"{codec}\""))
                && l.contains(from)),
            "no start-up line for {t} ({codec}, {from}):\n{logs}"
        );
    }
}

/// An operator's `compression.type` for the producer wins over every source topic's codec.
#[test]
fn the_operators_producer_codec_wins() {
    let env = Env::shared();
    let (source, target) = (&env.source, &env.target);
    let topic = format!("zc-fixed-{}", rand_suffix());
    create_topic(&source.bootstrap, &topic, 2);
    let sent = records(500, 2);
    produce_with(
        &source.bootstrap,
        &topic,
        &sent,
        &[("compression.type", "zstd")],
    );
    let config = env.config(&topic, "        producer.override.compression.type: lz4\n");
    let mut kmirror = Kmirror::start(&config, &[]);
    let got = consume(&target.bootstrap, &topic, 2, 500, Duration::from_secs(60));
    assert_eq!(kmirror.terminate(Duration::from_secs(30)), Some(0));
    assert_same(&by_partition(&sent, 2), &got, &topic);
    let on_target = codecs_on(&target.bootstrap, &[&topic]);
    assert_eq!(on_target.get(&topic), Some(&Codec::Lz4), "{on_target:?}");
}
