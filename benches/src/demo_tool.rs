//! A small helper for the demo: write numbered records to a topic, or count what a topic holds.

use std::time::Duration;

mod produce;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Parser)]
#[command(about = "Write records to a topic, or count them (kmirror demo helper)")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the topic if needed and write numbered records round-robin over its partitions.
    Produce {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 1000)]
        records: usize,
    },
    /// Count the records of every partition (reads until two quiet seconds).
    Count {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
}

fn main() -> Result<()> {
    match Args::parse().cmd {
        Cmd::Produce {
            bootstrap,
            topic,
            partitions,
            records,
        } => {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // An existing topic is fine.
            let _ = rt.block_on(admin.create_topics(
                &[NewTopic::new(
                    &topic,
                    partitions,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            ))?;
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("enable.idempotence", "true")
                .create()?;
            for i in 0..records {
                let key = format!("key-{i}");
                let value = format!("record {i} of {topic}");
                let p = i32::try_from(i)? % partitions;
                let rec = BaseRecord::<str, str>::to(&topic)
                    .key(&key)
                    .payload(&value)
                    .partition(p);
                produce::send(&producer, rec)?;
            }
            producer.flush(Duration::from_secs(60))?;
            println!("wrote {records} records to {topic}");
        }
        Cmd::Count {
            bootstrap,
            topic,
            partitions,
        } => {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "demo-count")
                .create()?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
            }
            consumer.assign(&tpl)?;
            let mut counts = vec![0usize; usize::try_from(partitions)?];
            let mut quiet = std::time::Instant::now();
            while quiet.elapsed() < Duration::from_secs(2) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    use rdkafka::Message;
                    counts[usize::try_from(m.partition())?] += 1;
                    quiet = std::time::Instant::now();
                }
            }
            println!(
                "target {topic}: {} records, per partition {counts:?}",
                counts.iter().sum::<usize>()
            );
        }
    }
    Ok(())
}
