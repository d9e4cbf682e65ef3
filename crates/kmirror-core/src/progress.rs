//! Replication progress records, in the format of MM2's Connect offsets topic (MM2-COMPAT §1.4).
//!
//! kmirror stores "where replication of a source partition has got to" in a compacted topic on
//! the target cluster, `mm2-offsets.<source>.internal` by default, using exactly the records the
//! Kafka Connect worker writes for MirrorSourceConnector:
//!
//! - key `["MirrorSourceConnector",{"cluster":"<S>","partition":<p>,"topic":"<t>"}]`
//! - value `{"offset":<last replicated source offset>}`, or a tombstone
//! - partition `murmur2(key) % partitions`, as Kafka's default partitioner chooses it.
//!
//! Because the records are the same, an operator can switch from Java MM2 to kmirror (or back)
//! without copying anything twice.
//!
//! kmirror adds the ids (KIP-516) of the source and target topics to its values,
//! `{"offset":41,"sourceTopicId":"…","targetTopicId":"…"}`: a topic deleted and created again
//! under the same name has a new id, so a stored position is never applied to a topic it was
//! not taken on. MM2 reads only `offset` and ignores the other fields; values MM2 wrote carry
//! no ids and are trusted as they are.

use serde::{Deserialize, Serialize};

use crate::types::{Offset, TopicPartition};

/// The connector name MM2 uses in dedicated mode for source offsets.
pub const SOURCE_CONNECTOR: &str = "MirrorSourceConnector";
/// The "connector" name of kmirror's offset-translation maps in the same topic (Connect and
/// MM2 ignore keys of connectors they do not run).
pub const MAP_CONNECTOR: &str = "KmirrorOffsetMap";

/// Encodes the key of a partition's translation map.
pub fn encode_map_key(cluster: &str, tp: &TopicPartition) -> Vec<u8> {
    serde_json::json!([MAP_CONNECTOR, {"cluster": cluster, "partition": tp.partition, "topic": &*tp.topic}])
        .to_string()
        .into_bytes()
}

/// The ids (KIP-516, base64) of a replicated topic on the source and the target when a record
/// was written; `None` where unknown (written by MM2, or a broker that reports no ids).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TopicIds {
    /// The source topic's id.
    #[serde(
        rename = "sourceTopicId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<String>,
    /// The target topic's id.
    #[serde(
        rename = "targetTopicId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target: Option<String>,
}

/// Which side's topic is not the one a record was written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recreated {
    /// The source topic was deleted and created again.
    Source,
    /// The target topic was deleted (and created again).
    Target,
}

impl Recreated {
    /// `source` or `target`, for logs and metric labels.
    pub fn side(self) -> &'static str {
        match self {
            Recreated::Source => "source",
            Recreated::Target => "target",
        }
    }
}

impl TopicIds {
    /// Ids on both sides.
    pub fn new(source: Option<String>, target: Option<String>) -> Self {
        Self { source, target }
    }

    /// Whether the topics `self` was written for are not the `current` ones: a side whose two
    /// ids are both known and differ. The source is named first when both differ. Unknown ids
    /// never conflict.
    pub fn recreated(&self, current: &TopicIds) -> Option<Recreated> {
        let differs =
            |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a != b);
        if differs(&self.source, &current.source) {
            Some(Recreated::Source)
        } else if differs(&self.target, &current.target) {
            Some(Recreated::Target)
        } else {
            None
        }
    }

    /// Both ids, where the other has one that `self` lacks.
    #[must_use]
    pub fn or(self, other: &TopicIds) -> TopicIds {
        TopicIds {
            source: self.source.or_else(|| other.source.clone()),
            target: self.target.or_else(|| other.target.clone()),
        }
    }

    fn is_empty(&self) -> bool {
        self.source.is_none() && self.target.is_none()
    }
}

#[derive(Serialize, Deserialize)]
struct MapValue {
    #[serde(flatten)]
    map: crate::translate::OffsetMap,
    #[serde(flatten)]
    ids: TopicIds,
}

/// Encodes a translation map, with the ids of the topics it maps between.
pub fn encode_map_value(map: &crate::translate::OffsetMap, ids: &TopicIds) -> Vec<u8> {
    serde_json::to_vec(&MapValue {
        map: map.clone(),
        ids: ids.clone(),
    })
    .unwrap_or_default()
}

/// A decoded translation-map record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMap {
    /// The source cluster alias.
    pub cluster: String,
    /// The source partition.
    pub partition: TopicPartition,
    /// Where its records landed.
    pub map: crate::translate::OffsetMap,
    /// The topics it maps between.
    pub ids: TopicIds,
}

/// Decodes a translation-map record, or `None` for other records.
pub fn decode_map(key: &[u8], value: Option<&[u8]>) -> Option<StoredMap> {
    let (connector, map): (String, serde_json::Value) = serde_json::from_slice(key).ok()?;
    if connector != MAP_CONNECTOR {
        return None;
    }
    let k: KeyMap = serde_json::from_value(map).ok()?;
    let v: MapValue = serde_json::from_slice(value?).ok()?;
    Some(StoredMap {
        cluster: k.cluster,
        partition: TopicPartition::new(k.topic, k.partition),
        map: v.map,
        ids: v.ids,
    })
}

/// Where replication of one source partition has got to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceProgress {
    /// The source cluster alias (`cluster` in the key).
    pub cluster: String,
    /// The source topic and partition.
    pub partition: TopicPartition,
    /// The next source offset to copy; everything before it is acknowledged on the target.
    pub next: Offset,
    /// Written under kmirror's (and dedicated-mode MM2's) own key, rather than by MM2 on a
    /// Connect cluster.
    pub own: bool,
    /// The topics it was taken on (kmirror's records only).
    pub ids: TopicIds,
}

/// Encodes the record key. Field order matches Java's HashMap iteration order for this key set.
pub fn encode_key(cluster: &str, tp: &TopicPartition) -> Vec<u8> {
    let key = serde_json::json!([
        SOURCE_CONNECTOR,
        {"cluster": cluster, "partition": tp.partition, "topic": &*tp.topic}
    ]);
    // serde_json's map keeps keys sorted, which is the Java order here: cluster, partition, topic.
    key.to_string().into_bytes()
}

/// Encodes the record value for progress `next` (MM2 stores the last copied offset, `next - 1`),
/// with the ids of the topics it was taken on. Without ids the bytes are MM2's own.
pub fn encode_value(next: Offset, ids: &TopicIds) -> Vec<u8> {
    if ids.is_empty() {
        return format!("{{\"offset\":{}}}", next.0 - 1).into_bytes();
    }
    serde_json::to_vec(&ValueMap {
        offset: next.0 - 1,
        ids: ids.clone(),
    })
    .unwrap_or_default()
}

/// The next offset to copy in a progress value (as [`encode_value`] writes it), or `None`.
pub fn decode_value(value: &[u8]) -> Option<Offset> {
    let v: ValueMap = serde_json::from_slice(value).ok()?;
    (v.offset >= -1).then_some(Offset(v.offset + 1))
}

/// Why a record of the progress topic was not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not the JSON shape Connect writes.
    #[error("not a Connect source-offset record: {0}")]
    Shape(String),
}

#[derive(Deserialize)]
struct KeyMap {
    cluster: String,
    partition: i32,
    topic: String,
}

#[derive(Serialize, Deserialize)]
struct ValueMap {
    offset: i64,
    #[serde(flatten)]
    ids: TopicIds,
}

/// Decodes a record of the progress topic. Returns `Ok(None)` for records that belong to other
/// connectors (checkpoint and heartbeat connectors share the topic in MM2), and for tombstones
/// (`value == None`), which mean "no progress stored".
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<SourceProgress>, DecodeError> {
    let (connector, map): (String, serde_json::Value) =
        serde_json::from_slice(key).map_err(|e| DecodeError::Shape(e.to_string()))?;
    // Dedicated-mode MM2 names the connector `MirrorSourceConnector`; MM2 on a Connect cluster
    // (Strimzi) names it `<source>-><target>.MirrorSourceConnector`. Both record positions the
    // same way.
    if connector != SOURCE_CONNECTOR && !connector.ends_with(&format!(".{SOURCE_CONNECTOR}")) {
        return Ok(None);
    }
    let map: KeyMap = serde_json::from_value(map).map_err(|e| DecodeError::Shape(e.to_string()))?;
    let Some(value) = value else {
        return Ok(None);
    };
    let value: ValueMap =
        serde_json::from_slice(value).map_err(|e| DecodeError::Shape(e.to_string()))?;
    if value.offset < -1 || map.partition < 0 {
        return Err(DecodeError::Shape(format!(
            "negative offset {} or partition {}",
            value.offset, map.partition
        )));
    }
    Ok(Some(SourceProgress {
        cluster: map.cluster,
        partition: TopicPartition::new(map.topic, map.partition),
        next: Offset(value.offset + 1),
        own: connector == SOURCE_CONNECTOR,
        ids: value.ids,
    }))
}

/// Keeps, per source partition, the newest of the values read from the progress topic.
///
/// Records of one key are in one partition of the progress topic, in the order they were
/// written, so there the later one wins. The same source partition can also appear in two
/// partitions of the progress topic (its partition count changed, or MM2 on Connect and kmirror
/// wrote under different keys): then the record written last, by timestamp, wins, whatever
/// order the partitions are read in.
#[derive(Clone, Debug)]
pub struct Newest<T> {
    entries: std::collections::BTreeMap<TopicPartition, (Option<T>, i32, i64)>,
}

impl<T> Default for Newest<T> {
    fn default() -> Self {
        Self {
            entries: std::collections::BTreeMap::new(),
        }
    }
}

impl<T> Newest<T> {
    /// Offers `value` (`None`: a tombstone) for `tp`, read from progress-topic partition
    /// `partition` with record timestamp `timestamp`.
    pub fn offer(&mut self, tp: TopicPartition, value: Option<T>, partition: i32, timestamp: i64) {
        let newer = self
            .entries
            .get(&tp)
            .is_none_or(|(_, p, ts)| *p == partition || timestamp > *ts);
        if newer {
            self.entries.insert(tp, (value, partition, timestamp));
        }
    }

    /// The newest value of every source partition that has one.
    pub fn into_values(self) -> std::collections::BTreeMap<TopicPartition, T> {
        self.entries
            .into_iter()
            .filter_map(|(tp, (v, _, _))| v.map(|v| (tp, v)))
            .collect()
    }
}

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka truncates the length to an int; keys here are far smaller than 2 GiB.
    let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h: u32 = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h.cast_signed()
}

/// The partition Kafka's default partitioner picks for a non-null key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_match_connect_bytes() {
        let tp = TopicPartition::new("orders", 3);
        assert_eq!(
            String::from_utf8(encode_key("primary", &tp)).expect("utf8"),
            r#"["MirrorSourceConnector",{"cluster":"primary","partition":3,"topic":"orders"}]"#
        );
        assert_eq!(
            encode_value(Offset(42), &TopicIds::default()),
            br#"{"offset":41}"#.to_vec()
        );
    }

    #[test]
    fn values_carry_topic_ids_that_mm2_ignores() {
        let tp = TopicPartition::new("orders", 3);
        let ids = TopicIds::new(Some("src-id".into()), Some("dst-id".into()));
        let value = encode_value(Offset(42), &ids);
        assert_eq!(
            value,
            br#"{"offset":41,"sourceTopicId":"src-id","targetTopicId":"dst-id"}"#.to_vec()
        );
        assert_eq!(decode_value(&value), Some(Offset(42)));
        let got = decode(&encode_key("primary", &tp), Some(&value))
            .expect("decodes")
            .expect("a position");
        assert_eq!((got.next, got.ids), (Offset(42), ids.clone()));
        // MM2's values have no ids: they never conflict.
        assert_eq!(TopicIds::default().recreated(&ids), None);
        assert_eq!(ids.recreated(&TopicIds::new(None, None)), None);
        assert_eq!(ids.recreated(&ids), None);
        let new_source = TopicIds::new(Some("other".into()), Some("dst-id".into()));
        assert_eq!(ids.recreated(&new_source), Some(Recreated::Source));
        let new_target = TopicIds::new(Some("src-id".into()), Some("other".into()));
        assert_eq!(ids.recreated(&new_target), Some(Recreated::Target));
    }

    #[test]
    fn decode_round_trips_and_skips_other_connectors() {
        let tp = TopicPartition::new("orders", 3);
        let key = encode_key("primary", &tp);
        let got =
            decode(&key, Some(&encode_value(Offset(42), &TopicIds::default()))).expect("decodes");
        assert_eq!(
            got,
            Some(SourceProgress {
                cluster: "primary".into(),
                partition: tp,
                next: Offset(42),
                own: true,
                ids: TopicIds::default(),
            })
        );
        assert_eq!(decode(&key, None), Ok(None));
        let other = br#"["MirrorCheckpointConnector",{"partition":3,"topic":"primary.orders","group":"g1"}]"#;
        assert_eq!(decode(other, Some(br#"{"offset":0}"#)), Ok(None));
        assert!(decode(b"not json", Some(b"{}")).is_err());
        let strimzi = br#"["source->dest.MirrorSourceConnector",{"cluster":"source","partition":0,"topic":"orders"}]"#;
        let got = decode(strimzi, Some(br#"{"offset":9}"#))
            .expect("decodes")
            .expect("a source position");
        assert_eq!(got.next, Offset(10));
        assert!(decode(&key, Some(br#"{"offset":-5}"#)).is_err());
    }

    #[test]
    fn maps_round_trip_and_are_not_positions() {
        let tp = TopicPartition::new("orders", 1);
        let mut m = crate::translate::OffsetMap::default();
        m.record(5, 9);
        let key = encode_map_key("primary", &tp);
        let ids = TopicIds::new(Some("a".into()), None);
        let value = encode_map_value(&m, &ids);
        assert_eq!(
            decode_map(&key, Some(&value)),
            Some(StoredMap {
                cluster: "primary".into(),
                partition: tp.clone(),
                map: m.clone(),
                ids
            })
        );
        // Maps written before ids were stored.
        let old = serde_json::to_vec(&m).expect("serializes");
        assert_eq!(
            decode_map(&key, Some(&old)).map(|s| (s.map, s.ids)),
            Some((m, TopicIds::default()))
        );
        assert_eq!(
            decode(&key, Some(&value)),
            Ok(None),
            "a map is not a position"
        );
        assert_eq!(decode_map(&encode_key("primary", &tp), Some(b"{}")), None);
    }

    #[test]
    fn the_newest_record_wins_whatever_order_the_partitions_are_read_in() {
        let tp = TopicPartition::new("orders", 0);
        // Same progress-topic partition: log order, whatever the timestamps say.
        let mut n = Newest::default();
        n.offer(tp.clone(), Some(10), 1, 500);
        n.offer(tp.clone(), Some(20), 1, 400);
        assert_eq!(n.into_values().get(&tp), Some(&20));
        // Two partitions (a changed partition count): the later write wins, read either way.
        for order in [[(2, 100, 30), (7, 200, 40)], [(7, 200, 40), (2, 100, 30)]] {
            let mut n = Newest::default();
            for (partition, ts, value) in order {
                n.offer(tp.clone(), Some(value), partition, ts);
            }
            assert_eq!(n.into_values().get(&tp), Some(&40), "{order:?}");
        }
        // A newer tombstone clears; an older one elsewhere does not.
        let mut n = Newest::default();
        n.offer(tp.clone(), Some(5), 0, 100);
        n.offer(tp.clone(), None, 3, 50);
        assert_eq!(n.clone().into_values().get(&tp), Some(&5));
        n.offer(tp.clone(), None, 3, 150);
        assert_eq!(n.into_values().get(&tp), None);
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 5] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        assert!((0..25).contains(&partition_for_key(b"x", 25)));
    }
}
