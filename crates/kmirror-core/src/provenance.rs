//! Provenance: where a copied record was first written, so that two flows in opposite
//! directions with identical topic names never copy a record back where it came from.
//!
//! IdentityReplicationPolicy keeps topic names, so MM2's cycle rule (a topic named after the
//! target cluster is not copied there) cannot tell a copy from an original: with `A->B` and
//! `B->A` both running, every record would travel back and forth for ever. kmirror marks every
//! record it writes with a header naming the cluster the record was first written to (its
//! *origin*), and a flow never copies a record whose origin is its own target cluster:
//!
//! - a record without the header was written by a producer on the flow's source: it is copied
//!   with the header set to the source cluster's alias;
//! - a record with the header came from elsewhere through kmirror: it is copied with the
//!   header unchanged (so `A->B->C` still names `A`), unless its origin is the flow's target,
//!   where it is not copied at all (it is already there).
//!
//! The aliases are compared as written, so both directions' configurations must call each
//! cluster by the same alias. Heartbeats need no header: they are named after their source
//! (`A.heartbeats`), and MM2's cycle rule already stops them.

use crate::ClusterAlias;

/// The header kmirror writes unless configured otherwise (`provenance.header.name`).
pub const DEFAULT_HEADER: &str = "kmirror.origin";

/// The provenance rule of one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The header's name.
    pub header: String,
    /// The flow's source alias: the origin of records written there by producers.
    pub source: ClusterAlias,
    /// The flow's target alias: records from there are not copied back.
    pub target: ClusterAlias,
}

/// What a flow does with one source record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Written on the source: copy it with the header naming the source.
    CopyMarked,
    /// Came from another cluster through kmirror: copy it as it is.
    Copy,
    /// Came from the target: do not copy it back.
    Skip,
}

impl Provenance {
    /// The rule of the flow `source -> target`, with header `header`.
    pub fn new(header: impl Into<String>, source: ClusterAlias, target: ClusterAlias) -> Self {
        Self {
            header: header.into(),
            source,
            target,
        }
    }

    /// What to do with a record whose headers are `headers` (name and value, in order). The
    /// first header of the configured name counts.
    pub fn decide<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Decision {
        let origin = headers
            .into_iter()
            .find(|(name, _)| *name == self.header)
            .map(|(_, value)| value);
        match origin {
            None => Decision::CopyMarked,
            Some(Some(v)) if v == self.target.as_str().as_bytes() => Decision::Skip,
            Some(_) => Decision::Copy,
        }
    }

    /// Bytes the header adds to a record that gets it: name and value, each after its length
    /// as a zigzag varint (Kafka's record format).
    pub fn added_bytes(&self) -> usize {
        let field = |n: usize| n + zigzag_varint_len(n);
        field(self.header.len()) + field(self.source.as_str().len())
    }
}

/// Bytes of `n` as a zigzag varint (lengths are never negative: `2n`, 7 bits a byte).
fn zigzag_varint_len(n: usize) -> usize {
    let mut v = n.saturating_mul(2) >> 7;
    let mut len = 1;
    while v > 0 {
        v >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Provenance {
        Provenance::new(
            DEFAULT_HEADER,
            ClusterAlias::new("primary"),
            ClusterAlias::new("dr"),
        )
    }

    #[test]
    fn records_written_on_the_source_are_marked_with_it() {
        assert_eq!(rule().decide([]), Decision::CopyMarked);
        assert_eq!(
            rule().decide([("trace", Some(&b"dr"[..])), ("kmirror", None)]),
            Decision::CopyMarked,
            "only the configured header name counts"
        );
    }

    #[test]
    fn records_from_the_target_are_not_copied_back() {
        assert_eq!(
            rule().decide([("a", None), (DEFAULT_HEADER, Some(&b"dr"[..]))]),
            Decision::Skip
        );
    }

    #[test]
    fn records_from_a_third_cluster_keep_their_origin() {
        assert_eq!(
            rule().decide([(DEFAULT_HEADER, Some(&b"edge"[..]))]),
            Decision::Copy
        );
        // An origin naming the source itself (copied out and back by another path) or a header
        // without a value is kept as it is: never copied back to the target it names.
        assert_eq!(
            rule().decide([(DEFAULT_HEADER, Some(&b"primary"[..]))]),
            Decision::Copy
        );
        assert_eq!(rule().decide([(DEFAULT_HEADER, None)]), Decision::Copy);
    }

    #[test]
    fn the_first_header_of_the_name_decides() {
        assert_eq!(
            rule().decide([
                (DEFAULT_HEADER, Some(&b"edge"[..])),
                (DEFAULT_HEADER, Some(&b"dr"[..]))
            ]),
            Decision::Copy
        );
    }

    #[test]
    fn two_opposite_flows_never_loop() {
        let a_to_b = Provenance::new(
            DEFAULT_HEADER,
            ClusterAlias::new("a"),
            ClusterAlias::new("b"),
        );
        let b_to_a = Provenance::new(
            DEFAULT_HEADER,
            ClusterAlias::new("b"),
            ClusterAlias::new("a"),
        );
        // Written on a: copied to b marked "a"; b->a sees "a" and skips it.
        assert_eq!(a_to_b.decide([]), Decision::CopyMarked);
        assert_eq!(
            b_to_a.decide([(DEFAULT_HEADER, Some(&b"a"[..]))]),
            Decision::Skip
        );
        // Written on b: the same the other way.
        assert_eq!(b_to_a.decide([]), Decision::CopyMarked);
        assert_eq!(
            a_to_b.decide([(DEFAULT_HEADER, Some(&b"b"[..]))]),
            Decision::Skip
        );
    }

    #[test]
    fn the_header_adds_its_name_and_the_alias() {
        // "kmirror.origin" (14) + "primary" (7) + one length byte each.
        assert_eq!(rule().added_bytes(), 23);
        // Lengths from 64 take two bytes (zigzag: 2 × 64 = 128).
        let long = Provenance::new(
            "h".repeat(64),
            ClusterAlias::new("a".repeat(63).as_str()),
            ClusterAlias::new("dr"),
        );
        assert_eq!(long.added_bytes(), 64 + 2 + 63 + 1);
        assert_eq!(zigzag_varint_len(8191), 2);
        assert_eq!(zigzag_varint_len(8192), 3);
    }
}
