//! Producing a copy of a fetched record through a topic handle.
//!
//! rdkafka's `BaseProducer::send` names the topic by string: every record allocates a C string,
//! and librdkafka then looks the topic up under its client's write lock by walking the list of
//! every topic the client knows, comparing names. With hundreds of target topics that walk is
//! the dearest part of producing a record. [`TopicProducer`] keeps one librdkafka topic handle
//! per target topic and produces with it (`RD_KAFKA_VTYPE_RKT`): no allocation, no client-wide
//! write lock, no walk. It also copies the source record's headers inside librdkafka, adding
//! one header if asked, without building them through rdkafka's owned types.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::hash::BuildHasher;
use std::os::raw::{c_char, c_void};
use std::ptr::{self, NonNull};

use rdkafka::bindings as rd;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// A librdkafka topic handle of one producer (`rd_kafka_topic_t`), released on drop.
struct Topic(NonNull<rd::rd_kafka_topic_t>);

// SAFETY: librdkafka topic handles are reference-counted objects that librdkafka itself uses
// from every thread of the client; the handle is only read by `rd_kafka_produceva`.
unsafe impl Send for Topic {}

impl Drop for Topic {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is released once, here; the
        // client it belongs to is still alive ([`TopicProducer`] drops its handles first).
        unsafe { rd::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}

/// A producer that keeps a topic handle per topic it wrote to. Everything else of the
/// producer is reached through [`Self::producer`].
pub struct TopicProducer<
    C: ProducerContext<DeliveryOpaque = usize>,
    S = std::collections::hash_map::RandomState,
> {
    // Declared before `producer`, so dropped before it: librdkafka requires every topic handle
    // to be released before its client is destroyed.
    topics: RefCell<HashMap<Box<str>, Topic, S>>,
    producer: BaseProducer<C>,
}

impl<C, S> TopicProducer<C, S>
where
    C: ProducerContext<DeliveryOpaque = usize>,
    S: BuildHasher + Default,
{
    /// Wraps `producer`.
    pub fn new(producer: BaseProducer<C>) -> Self {
        Self {
            topics: RefCell::new(HashMap::default()),
            producer,
        }
    }

    /// The producer.
    pub fn producer(&self) -> &BaseProducer<C> {
        &self.producer
    }

    /// Makes `topic`'s handle now, before its first record: librdkafka then asks for the
    /// metadata of a topic new to it at once, and the first record need not wait for it.
    pub fn prepare(&self, topic: &str) -> Result<(), KafkaError> {
        self.topic(topic).map(|_| ())
    }

    /// The handle of `topic`, made on first use.
    fn topic(&self, topic: &str) -> Result<*mut rd::rd_kafka_topic_t, KafkaError> {
        if let Some(t) = self.topics.borrow().get(topic) {
            return Ok(t.0.as_ptr());
        }
        let name = CString::new(topic).map_err(KafkaError::from)?;
        // SAFETY: the client pointer is valid for the borrow of `self.producer`; `name` is a
        // NUL-terminated string that outlives the call; a NULL config means the client's
        // default topic config. The returned reference is owned by the `Topic` guard.
        let raw = unsafe {
            rd::rd_kafka_topic_new(
                self.producer.client().native_ptr(),
                name.as_ptr(),
                ptr::null_mut(),
            )
        };
        let handle = NonNull::new(raw).ok_or(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidArgument,
        ))?;
        self.topics.borrow_mut().insert(topic.into(), Topic(handle));
        Ok(raw)
    }

    /// Produces a copy of `source` (key, value and, with `copy_headers`, its headers) to
    /// `partition` of `topic` with `timestamp` (`None`: now), `header` added to its headers if
    /// given, and `opaque` as its delivery opaque. librdkafka copies what it needs: `source`
    /// may be dropped once this returns. Errors as `BaseProducer::send` reports them
    /// (`MessageProduction(QueueFull)` when the queue is full); nothing is queued then.
    #[allow(clippy::too_many_arguments)]
    pub fn send_copy(
        &self,
        topic: &str,
        partition: i32,
        source: &BorrowedMessage<'_>,
        copy_headers: bool,
        header: Option<(&str, &[u8])>,
        timestamp: Option<i64>,
        opaque: usize,
    ) -> Result<(), KafkaError> {
        use rdkafka::message::Message;
        let headers = Headers::copy(source, copy_headers, header);
        self.produce(
            topic,
            partition,
            source.key(),
            source.payload(),
            headers,
            timestamp,
            opaque,
        )
    }

    /// Produces `key` and `value` (copied) to `partition` of `topic`, without headers; as
    /// [`Self::send_copy`] otherwise.
    pub fn send(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: Option<i64>,
        opaque: usize,
    ) -> Result<(), KafkaError> {
        let none = Headers(ptr::null_mut());
        self.produce(topic, partition, key, value, none, timestamp, opaque)
    }

    #[allow(clippy::too_many_arguments)]
    fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Headers,
        timestamp: Option<i64>,
        opaque: usize,
    ) -> Result<(), KafkaError> {
        let rkt = self.topic(topic)?;
        let bytes = |b: Option<&[u8]>| rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            ptr: b.map_or(ptr::null_mut(), |b| b.as_ptr().cast_mut().cast::<c_void>()),
            size: b.map_or(0, <[u8]>::len),
        };
        let vus = [
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_RKT,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { rkt },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: partition },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    i: rd::RD_KAFKA_MSG_F_COPY,
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { mem: bytes(value) },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { mem: bytes(key) },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_OPAQUE,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    ptr: opaque as *mut c_void,
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TIMESTAMP,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    i64_: timestamp.unwrap_or(0),
                },
            },
            rd::rd_kafka_vu_t {
                vtype: rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADERS,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { headers: headers.0 },
            },
        ];
        let count = if headers.0.is_null() {
            vus.len() - 1
        } else {
            vus.len()
        };
        // SAFETY: the client pointer is valid for the borrow of `self.producer`; `rkt` is a
        // live handle of that client (held in `self.topics`); every pointer in `vus` (key,
        // value, the headers list) is valid for the call, and with
        // RD_KAFKA_MSG_F_COPY librdkafka copies key and value before returning.
        let error = unsafe {
            rd::rd_kafka_produceva(self.producer.client().native_ptr(), vus.as_ptr(), count)
        };
        if error.is_null() {
            // librdkafka owns the headers now.
            std::mem::forget(headers);
            return Ok(());
        }
        // SAFETY: `error` is a non-NULL error object returned to us; it is read, then destroyed
        // once. On failure the headers stay ours (dropped with `headers`).
        let (code, fatal) = unsafe {
            let code = rd::rd_kafka_error_code(error);
            let fatal = rd::rd_kafka_error_is_fatal(error) != 0;
            rd::rd_kafka_error_destroy(error);
            (code, fatal)
        };
        if fatal {
            // `rd_kafka_producev` (rdkafka's `send`) says `__FATAL` once the producer has a
            // fatal error; `rd_kafka_produceva` gives the underlying cause instead. Callers
            // recognise a dead producer by `Fatal`.
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fatal));
        }
        Err(KafkaError::MessageProduction(code.into()))
    }
}

/// A librdkafka header list we own until a produce call takes it (NULL: none).
struct Headers(*mut rd::rd_kafka_headers_t);

impl Headers {
    /// `source`'s headers (if `copy`) with `extra` added; NULL when that is no header at all.
    fn copy(source: &BorrowedMessage<'_>, copy: bool, extra: Option<(&str, &[u8])>) -> Self {
        let mut list: *mut rd::rd_kafka_headers_t = ptr::null_mut();
        if copy {
            let mut theirs: *mut rd::rd_kafka_headers_t = ptr::null_mut();
            // SAFETY: the message pointer is valid for the borrow of `source`; librdkafka
            // writes the message's own (parsed, cached) header list to `theirs`, which stays
            // owned by the message and is only read by `rd_kafka_headers_copy`.
            unsafe {
                if rd::rd_kafka_message_headers(source.ptr(), &mut theirs)
                    == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                    && !theirs.is_null()
                {
                    list = rd::rd_kafka_headers_copy(theirs);
                }
            }
        }
        if let Some((name, value)) = extra {
            // SAFETY: `list` is NULL or a list we own; `name` and `value` are valid for the
            // lengths given (librdkafka copies both and NUL-terminates the name).
            unsafe {
                if list.is_null() {
                    list = rd::rd_kafka_headers_new(1);
                }
                #[allow(clippy::cast_possible_wrap)]
                rd::rd_kafka_header_add(
                    list,
                    name.as_ptr().cast::<c_char>(),
                    name.len() as isize,
                    value.as_ptr().cast::<c_void>(),
                    value.len() as isize,
                );
            }
        }
        Self(list)
    }
}

impl Drop for Headers {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a list we own (no produce call took it), destroyed once.
            unsafe { rd::rd_kafka_headers_destroy(self.0) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use rdkafka::client::ClientContext;
    use rdkafka::message::Message;
    use rdkafka::producer::{DeliveryResult, PurgeConfig};
    use rdkafka::ClientConfig;

    use super::*;

    type Report = (String, i32, Option<Vec<u8>>, Option<Vec<u8>>, usize);

    /// Records every delivery report.
    struct Seen(Mutex<Vec<Report>>);

    impl ClientContext for Seen {}

    impl ProducerContext for Seen {
        type DeliveryOpaque = usize;

        fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
            let msg = match result {
                Ok(m) | Err((_, m)) => m,
            };
            if let Ok(mut seen) = self.0.lock() {
                seen.push((
                    msg.topic().to_owned(),
                    msg.partition(),
                    msg.key().map(<[u8]>::to_vec),
                    msg.payload().map(<[u8]>::to_vec),
                    opaque,
                ));
            }
        }
    }

    #[test]
    fn records_go_through_one_handle_per_topic_with_their_key_value_partition_and_opaque() {
        // No broker answers there: the records stay queued until purged, which reports them.
        let producer: BaseProducer<Seen> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("message.timeout.ms", "0")
            .set("log_level", "0")
            .create_with_context(Seen(Mutex::new(Vec::new())))
            .expect("producer");
        let out: TopicProducer<Seen> = TopicProducer::new(producer);
        out.send("a", 2, Some(b"k1"), Some(b"v1"), Some(1_000), 7)
            .expect("first");
        out.send("b", 0, None, Some(b"v2"), None, 8)
            .expect("second");
        out.send("a", 1, Some(b"k3"), None, None, 9).expect("third");
        // (Not `in_flight_count`: it also counts the client's own events, such as the error
        // of the refused connection, so it is 3 or more.)
        assert_eq!(out.topics.borrow().len(), 2, "one handle per topic");

        out.producer().purge(PurgeConfig::default().queue());
        let until = Instant::now() + Duration::from_secs(10);
        let seen = || out.producer().context().0.lock().map_or(0, |s| s.len());
        while seen() < 3 && Instant::now() < until {
            out.producer().poll(Duration::from_millis(50));
        }
        let mut reports = out
            .producer()
            .context()
            .0
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        reports.sort_by_key(|r| r.4);
        assert_eq!(
            reports,
            vec![
                ("a".into(), 2, Some(b"k1".to_vec()), Some(b"v1".to_vec()), 7),
                ("b".into(), 0, None, Some(b"v2".to_vec()), 8),
                ("a".into(), 1, Some(b"k3".to_vec()), None, 9),
            ]
        );
        // The handles are released before the client (librdkafka requires it): dropping must
        // neither crash nor hang.
        drop(out);
    }
}
