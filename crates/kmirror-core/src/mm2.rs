//! MM2's internal records, byte for byte (MM2-COMPAT §2): OffsetSync, Checkpoint, Heartbeat.
//!
//! The encoding is Kafka's `protocol.types` Struct: fields in schema order, big-endian
//! integers, `STRING` as an INT16 byte length plus UTF-8 (non-nullable). Checkpoint and
//! Heartbeat values start with an INT16 version (0); OffsetSync values have none. Readers
//! ignore trailing bytes and treat any version as version 0, as Java does. Decoding never
//! panics: malformed input is a [`CodecError`].

use std::fmt;

/// Why bytes are not a valid MM2 record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The buffer ended inside a field.
    #[error("record too short: needed {needed} more bytes for {field}")]
    Short {
        /// The field being read.
        field: &'static str,
        /// Bytes missing.
        needed: usize,
    },
    /// A STRING with a negative length.
    #[error("negative length {0} for {1}")]
    NegativeLength(i16, &'static str),
    /// A STRING that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// A string too long for INT16 length (over 32767 bytes).
    #[error("{0} is longer than 32767 bytes")]
    TooLong(&'static str),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Short {
                field,
                needed: n - self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, CodecError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, CodecError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, CodecError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn string(&mut self, field: &'static str) -> Result<String, CodecError> {
        let len = self.i16(field)?;
        let n = usize::try_from(len).map_err(|_| CodecError::NegativeLength(len, field))?;
        let bytes = self.take(n, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::Utf8(field))
    }
}

fn put_string(out: &mut Vec<u8>, s: &str, field: &'static str) -> Result<(), CodecError> {
    let len = i16::try_from(s.len()).map_err(|_| CodecError::TooLong(field))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// The version written in Checkpoint and Heartbeat values.
pub const VERSION: i16 = 0;

/// "Source offset `upstream` of `topic`-`partition` is target offset `downstream`."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetSync {
    /// Source topic (not renamed).
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub upstream: i64,
    /// Target offset of the same record.
    pub downstream: i64,
}

impl OffsetSync {
    /// Record key.
    pub fn key(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(6 + self.topic.len());
        put_string(&mut out, &self.topic, "topic")?;
        out.extend_from_slice(&self.partition.to_be_bytes());
        Ok(out)
    }

    /// Record value.
    pub fn value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.upstream.to_be_bytes());
        out.extend_from_slice(&self.downstream.to_be_bytes());
        out
    }

    /// Decodes a record.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, CodecError> {
        let mut k = Reader { buf: key };
        let topic = k.string("topic")?;
        let partition = k.i32("partition")?;
        let mut v = Reader { buf: value };
        Ok(Self {
            topic,
            partition,
            upstream: v.i64("upstreamOffset")?,
            downstream: v.i64("offset")?,
        })
    }
}

/// A consumer group's position on the source, translated to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Consumer group.
    pub group: String,
    /// Topic on the target (renamed by the replication policy).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset on the source.
    pub upstream: i64,
    /// The translated offset on the target ("next to consume").
    pub downstream: i64,
    /// The group's commit metadata (empty if none).
    pub metadata: String,
}

impl Checkpoint {
    /// Record key.
    pub fn key(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(8 + self.group.len() + self.topic.len());
        put_string(&mut out, &self.group, "group")?;
        put_string(&mut out, &self.topic, "topic")?;
        out.extend_from_slice(&self.partition.to_be_bytes());
        Ok(out)
    }

    /// Record value.
    pub fn value(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(20 + self.metadata.len());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.upstream.to_be_bytes());
        out.extend_from_slice(&self.downstream.to_be_bytes());
        put_string(&mut out, &self.metadata, "metadata")?;
        Ok(out)
    }

    /// Decodes a record.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, CodecError> {
        let mut k = Reader { buf: key };
        let group = k.string("group")?;
        let topic = k.string("topic")?;
        let partition = k.i32("partition")?;
        let mut v = Reader { buf: value };
        let _version = v.i16("version")?;
        Ok(Self {
            group,
            topic,
            partition,
            upstream: v.i64("upstreamOffset")?,
            downstream: v.i64("offset")?,
            metadata: v.string("metadata")?,
        })
    }
}

/// "Cluster `source` replicates to `target`, alive at `timestamp`."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Source alias.
    pub source: String,
    /// Target alias.
    pub target: String,
    /// Emission time, epoch milliseconds.
    pub timestamp: i64,
}

impl Heartbeat {
    /// Record key.
    pub fn key(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(4 + self.source.len() + self.target.len());
        put_string(&mut out, &self.source, "sourceClusterAlias")?;
        put_string(&mut out, &self.target, "targetClusterAlias")?;
        Ok(out)
    }

    /// Record value.
    pub fn value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out
    }

    /// Decodes a record.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, CodecError> {
        let mut k = Reader { buf: key };
        let source = k.string("sourceClusterAlias")?;
        let target = k.string("targetClusterAlias")?;
        let mut v = Reader { buf: value };
        let _version = v.i16("version")?;
        Ok(Self {
            source,
            target,
            timestamp: v.i64("timestamp")?,
        })
    }
}

impl fmt::Display for OffsetSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OffsetSync{{topicPartition={}-{}, upstreamOffset={}, downstreamOffset={}}}",
            self.topic, self.partition, self.upstream, self.downstream
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn fields(s: &str) -> std::collections::BTreeMap<&str, &str> {
        s.split(';').filter_map(|kv| kv.split_once('=')).collect()
    }

    /// Every line of the vectors produced by the real MM2 3.6 classes.
    #[test]
    fn mm2_vectors_encode_and_decode_byte_for_byte() {
        let text = include_str!("../testdata/mm2-vectors.tsv");
        let mut checked = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split('\t').collect();
            let (kind, f, key, value) = (cols[0], fields(cols[1]), unhex(cols[2]), unhex(cols[3]));
            let num = |k: &str| f[k].parse::<i64>().expect("number");
            match kind {
                "offset_sync" => {
                    let r = OffsetSync {
                        topic: f["topic"].into(),
                        partition: i32::try_from(num("partition")).expect("i32"),
                        upstream: num("upstream"),
                        downstream: num("downstream"),
                    };
                    assert_eq!(hex(&r.key().expect("key")), cols[2], "{line}");
                    assert_eq!(hex(&r.value()), cols[3], "{line}");
                    assert_eq!(OffsetSync::decode(&key, &value).expect("decodes"), r);
                }
                "checkpoint" => {
                    let r = Checkpoint {
                        group: f["group"].into(),
                        topic: f["topic"].into(),
                        partition: i32::try_from(num("partition")).expect("i32"),
                        upstream: num("upstream"),
                        downstream: num("downstream"),
                        metadata: f["metadata"].into(),
                    };
                    assert_eq!(hex(&r.key().expect("key")), cols[2], "{line}");
                    assert_eq!(hex(&r.value().expect("value")), cols[3], "{line}");
                    assert_eq!(Checkpoint::decode(&key, &value).expect("decodes"), r);
                }
                "heartbeat" => {
                    let r = Heartbeat {
                        source: f["source"].into(),
                        target: f["target"].into(),
                        timestamp: num("timestamp"),
                    };
                    assert_eq!(hex(&r.key().expect("key")), cols[2], "{line}");
                    assert_eq!(hex(&r.value()), cols[3], "{line}");
                    assert_eq!(Heartbeat::decode(&key, &value).expect("decodes"), r);
                }
                other => panic!("unknown kind {other}"),
            }
            checked += 1;
        }
        assert_eq!(checked, 12, "every vector line is checked");
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(
            OffsetSync::decode(&[0, 5, b'a'], &[]),
            Err(CodecError::Short { .. })
        ));
        assert!(matches!(
            Checkpoint::decode(&[0xff, 0xff], &[]),
            Err(CodecError::NegativeLength(-1, "group"))
        ));
        assert!(matches!(
            Heartbeat::decode(&[0, 1, 0xff, 0, 0], &[0; 10]),
            Err(CodecError::Utf8(_))
        ));
        let long = "x".repeat(40_000);
        assert!(OffsetSync {
            topic: long,
            partition: 0,
            upstream: 0,
            downstream: 0
        }
        .key()
        .is_err());
        // Trailing bytes are ignored, as in Java.
        let hb = Heartbeat {
            source: "a".into(),
            target: "b".into(),
            timestamp: 5,
        };
        let mut v = hb.value();
        v.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            Heartbeat::decode(&hb.key().expect("key"), &v).expect("decodes"),
            hb
        );
    }

    proptest! {
        #[test]
        fn decoders_never_panic(key in proptest::collection::vec(any::<u8>(), 0..64), value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = OffsetSync::decode(&key, &value);
            let _ = Checkpoint::decode(&key, &value);
            let _ = Heartbeat::decode(&key, &value);
        }

        #[test]
        fn checkpoints_round_trip(group in ".{0,20}", topic in ".{0,20}", partition in any::<i32>(), upstream in any::<i64>(), downstream in any::<i64>(), metadata in ".{0,20}") {
            let c = Checkpoint { group, topic, partition, upstream, downstream, metadata };
            prop_assert_eq!(Checkpoint::decode(&c.key().expect("key"), &c.value().expect("value")).expect("decodes"), c);
        }
    }
}
