//! The `kmirror` command: flags, logging, signals and exit codes. Everything else lives in
//! `kmirror-core` (logic) and `kmirror-engine` (runtime).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use kmirror_core::config::{Config, Problem, Severity};
use kmirror_engine::flow::{Flow, FlowOptions};
use kmirror_engine::http::{serve, HttpState};
use kmirror_engine::metrics::Metrics;
use kmirror_engine::security::{check_cluster, ClusterSecurity};
use kmirror_engine::status::{Connectivity, StatusBoard};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Exit code for configuration problems.
const EXIT_CONFIG: u8 = 2;
/// Stopped at the shutdown timeout before all acknowledged progress was stored.
const EXIT_SHUTDOWN_TIMEOUT: u8 = 3;
/// A second SIGTERM/SIGINT: exited at once.
const EXIT_SECOND_SIGNAL: i32 = 130;

#[derive(Parser)]
#[command(
    name = "kmirror",
    version,
    about = "Mirror Kafka clusters: a native replacement for MirrorMaker 2.",
    long_about = "kmirror copies topics from a source Kafka cluster to a target cluster for disaster \
recovery: every record with its key, value, headers and timestamp, to the same partition, in \
order, with progress recorded only after the target acknowledged. It reads the Strimzi \
KafkaMirrorMaker2 resource as it is, keeps MirrorMaker 2's topic names and internal record \
formats, and keeps the target's topics, partitions, configs and ACLs in step within seconds.\n\n\
Exit codes: 0 success (for `run`: stopped with all acknowledged progress stored), 1 runtime \
failure, 2 configuration problem (one line per problem), 3 stopped at the shutdown timeout \
before all acknowledged progress was stored (nothing is lost: it is copied again at the next \
start), 130 a second SIGTERM or SIGINT."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replicate until stopped with SIGTERM or SIGINT.
    ///
    /// The configuration is validated first (as `kmirror validate` does). On the first signal
    /// kmirror stops fetching, waits for in-flight records to be acknowledged, stores progress
    /// and exits 0; a second signal exits at once (nothing is lost: unstored progress is copied
    /// again at the next start).
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Serve `/metrics` (Prometheus), `/healthz` (liveness) and `/readyz` (readiness: both
        /// clusters reachable and every partition running) on this address, e.g. 0.0.0.0:9404.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// How long a graceful stop may take (e.g. 30s, 1500ms).
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        shutdown_timeout: Duration,
        /// How long a partition may be neither copying nor caught up (waiting for the target,
        /// behind without moving, retrying, resetting) before `/readyz`, the
        /// `kmirror_partition_state` metric and an error line report it stuck. A failed
        /// partition is reported at once.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        stall_after: Duration,
        /// Memory for records in transit, shared by the flows: a quarter of each flow's share
        /// holds fetched records waiting to be copied, a half holds copied records waiting for
        /// the target's acknowledgement, and fetch responses are at most a thirty-second (compressed
        /// ones grow by their compression ratio as they are decompressed). Client properties
        /// set in the configuration (`queued.max.messages.kbytes`, `fetch.max.bytes`,
        /// `queue.buffering.max.kbytes`) take precedence. With the default the process stays
        /// near 100 MB copying uncompressed or lz4 topics, and peaked at 118 to 148 MB on zstd
        /// topics in the benchmark (48MiB: about 105 MB). Sizes like 64MiB, 100MB, 1GiB.
        #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
        memory: usize,
        /// Replication producers per flow (per codec and batch size), partitions spread over
        /// them by number; they share the memory above. librdkafka sends one request per
        /// partition and, with idempotence, at most 5 at a time per broker: with thousands of
        /// partitions moving at once, several producers copy them sooner, at the cost of about
        /// four threads each.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_PRODUCERS, value_parser = clap::value_parser!(u16).range(1..=16))]
        producers: u16,
        /// Keep MM2's checkpoint-latency gauges
        /// (`kafka_connect_mirror_mirrorcheckpointconnector_checkpoint_latency_ms{,_min,_max,_avg}`)
        /// for every checkpointed group, topic and partition: four series per group partition,
        /// which at thousands of them take most of the process's memory and of every scrape.
        /// Without it each group has `kmirror_checkpoint_age_seconds{group}`.
        #[arg(long)]
        per_partition_checkpoint_metrics: bool,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check the configuration without connecting to any cluster, then exit.
    ///
    /// Checks cluster aliases, mirrors, regular expressions, replication policies, every MM2
    /// key, client properties (against librdkafka), and certificate files: readable, valid
    /// PEM, not expired, keys matching their certificates. Prints one line per problem and
    /// exits 2 if there is any.
    Validate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Show what the next sync would change on the target, and change nothing.
    ///
    /// Connects to both clusters of every flow and prints: topics to create (with partitions,
    /// replication factor and the configs copied from the source), partitions to add, topic
    /// configs to set or delete (only those that differ from the target's), ACLs to create,
    /// and the consumer groups that would be checkpointed. `kmirror run` logs the same plan at
    /// start-up. Exits 1 if a cluster cannot be reached.
    Plan {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only this flow (`source->target`), when the config has several.
        #[arg(long)]
        flow: Option<String>,
        /// Print JSON (an array with one object per flow) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show where a consumer group resumes on the target, and commit it there for failover.
    ///
    /// Prints, per partition, the group's committed offset on the source, the exact target
    /// offset of the same record (from the offset maps kmirror stores), and how many source
    /// records are not replicated yet. If the source is unreachable, the latest checkpoints on
    /// the target are used. With --commit the target offsets are committed to the same group on
    /// the target (refused while the group has active members there): the one command to run
    /// when the source is lost.
    ///
    /// With flows both ways in the configuration (failback, two-way mirroring), both flows'
    /// offset maps are read: a group moving back from B to A resumes on A before any record it
    /// has not read, including A's records that never reached B; what it reads again is
    /// counted. --commit then needs --flow, the way the group moves.
    Offsets {
        #[command(flatten)]
        config: ConfigArgs,
        /// The consumer group.
        #[arg(long)]
        group: String,
        /// Only this flow (`source->target`), when the config has several.
        #[arg(long)]
        flow: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Commit the target offsets to the group on the target.
        #[arg(long)]
        commit: bool,
        /// With --commit: show what would be committed and commit nothing.
        #[arg(long, requires = "commit")]
        dry_run: bool,
    },
    /// Going back to the old primary after a failover: what it lacks and what is at risk.
    #[command(subcommand)]
    Failback(FailbackCmd),
    /// Convert an MM2 dedicated-mode properties file (connect-mirror-maker.sh's mm2.properties)
    /// into a kmirror configuration.
    ///
    /// Carries over clusters and their client settings (PEM and PKCS#12 TLS, SASL
    /// username/password), enabled flows (A->B.enabled) and their connector keys. Every key
    /// without an equivalent is named in a warning on stderr. Check the result with
    /// `kmirror validate`.
    Import {
        /// The MM2 properties file.
        #[arg(value_name = "MM2_PROPERTIES")]
        input: PathBuf,
        /// Write the configuration here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The configuration: a Strimzi KafkaMirrorMaker2 resource, or a file shaped like its
    /// `spec` (YAML, JSON or TOML). Environment variables KMIRROR_CONFIG__<PATH> override
    /// scalar values, with `__` between path segments in snake case (e.g.
    /// KMIRROR_CONFIG__SPEC__CONNECT_CLUSTER=dest sets spec.connectCluster).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Where Kubernetes Secrets are mounted: a Secret `secretName` key `k` is read from
    /// DIR/secretName/k.
    #[arg(long, value_name = "DIR")]
    secrets_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `--producers` by default.
const DEFAULT_PRODUCERS: u16 = 1;

/// The smallest `--memory`: below it, batches would not fit.
const MIN_MEMORY: usize = 8 << 20;

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{t}` is not a size like 64MiB or 100MB"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{t}`: unknown unit `{other}` (use KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| format!("`{t}` is too large"))?;
    if bytes < MIN_MEMORY {
        return Err(format!("`{t}` is below the smallest budget, 8MiB"));
    }
    Ok(bytes)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s or 1500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}`: use ms, s or m")),
    }
}

/// Default log filter of `run`.
const RUN_LOG: &str = "info,librdkafka=warn,rdkafka=warn";
/// Default log filter of one-shot commands: their result is the output, and a cluster problem
/// is the one error line they end with, so client chatter is left out.
const COMMAND_LOG: &str = "warn,librdkafka=off,rdkafka=off,kmirror_engine::client=off";

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Malloc arenas per core (glibc's default is eight): see [`kmirror_engine::limit_malloc_arenas`].
const ARENAS_PER_CORE: usize = 2;

fn main() -> ExitCode {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    kmirror_engine::limit_malloc_arenas((ARENAS_PER_CORE * cores).max(4));
    let cli = Cli::parse();
    match cli.command {
        Cmd::Validate { config } => match check(&config.config, config.secrets_dir.as_deref()) {
            Ok((cfg, _)) => {
                print_notices(&cfg);
                let flows: Vec<String> = cfg
                    .mirrors
                    .iter()
                    .map(kmirror_core::config::Mirror::name)
                    .collect();
                println!(
                    "configuration OK: {} flow(s): {}",
                    flows.len(),
                    flows.join(", ")
                );
                for m in &cfg.mirrors {
                    if let Some(s) = &m.scale_out {
                        let how = if m.exactly_once.is_some() {
                            "exactly-once: one replica copies, the others stand by to take over,"
                        } else {
                            "replicas share its partitions"
                        };
                        println!(
                            "{}: scale-out: {how} through the group `{}` on {} ({} protocol)",
                            m.name(),
                            s.group_id,
                            m.target,
                            s.protocol.name()
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(problems) => report(&problems),
        },
        Cmd::Import { input, output } => import(&input, output.as_deref()),
        Cmd::Plan { config, flow, json } => {
            init_logging(LogFormat::Text, COMMAND_LOG);
            plan(&config, flow.as_deref(), json)
        }
        Cmd::Failback(FailbackCmd::Plan {
            config,
            flow,
            read_for,
            json,
        }) => {
            init_logging(LogFormat::Text, COMMAND_LOG);
            failback_plan(&config, &flow, read_for, json)
        }
        Cmd::Offsets {
            config,
            group,
            flow,
            json,
            commit,
            dry_run,
        } => {
            init_logging(LogFormat::Text, COMMAND_LOG);
            offsets(&config, &group, flow.as_deref(), json, commit, dry_run)
        }
        Cmd::Run {
            config,
            metrics_addr,
            shutdown_timeout,
            stall_after,
            memory,
            producers,
            per_partition_checkpoint_metrics,
            log_format,
        } => {
            init_logging(log_format, RUN_LOG);
            let (cfg, security) = match check(&config.config, config.secrets_dir.as_deref()) {
                Ok(ok) => ok,
                Err(problems) => return report(&problems),
            };
            for n in &cfg.notices {
                match n.severity {
                    Severity::Warning => tracing::warn!(field = %n.field, "{}", n.message),
                    Severity::Info => tracing::info!(field = %n.field, "{}", n.message),
                }
            }
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let tuning = Tuning {
                shutdown_timeout,
                stall_after,
                memory,
                producers: usize::from(producers),
                per_partition_checkpoint_metrics,
            };
            let code = runtime.block_on(run(cfg, security, metrics_addr, tuning));
            // Every task has ended; a metadata request still waiting on an unreachable
            // cluster in a blocking thread must not hold the exit.
            runtime.shutdown_timeout(Duration::from_millis(500));
            code
        }
    }
}

#[derive(Subcommand)]
enum FailbackCmd {
    /// Show, per partition, what the old primary lacks and what it holds that never reached
    /// the DR cluster; change nothing.
    ///
    /// `--flow A->B` names the flow that copied the old primary A to the DR cluster B; the
    /// configuration must also hold the reverse flow `B->A` (the one that will copy B back to
    /// A). Connected to both clusters, it prints per partition: A's log end and how far A->B
    /// copied (the records between were written on A after the last copy: at risk, on A only;
    /// they stay, the reverse flow appends after them, and A->B copies them to B when it runs
    /// again); where B->A would read B from (its stored progress, or where it would start) and
    /// B's log end; and the records in between, by origin header: those written on B, which A
    /// lacks and B->A copies, and the copies of A's records, which it passes over. Exits 1 if
    /// a cluster cannot be reached.
    Plan {
        #[command(flatten)]
        config: ConfigArgs,
        /// The flow from the old primary to the DR cluster (`source->target`).
        #[arg(long)]
        flow: String,
        /// How long to read the DR cluster's records to count them by origin (counts are
        /// marked incomplete beyond it).
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        read_for: Duration,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn failback_plan(args: &ConfigArgs, flow: &str, read_for: Duration, json: bool) -> ExitCode {
    let (cfg, security) = match check(&args.config, args.secrets_dir.as_deref()) {
        Ok(ok) => ok,
        Err(problems) => return report(&problems),
    };
    let Some(forward) = cfg.mirrors.iter().find(|m| m.name() == flow) else {
        eprintln!("error: --flow {flow}: no such flow");
        return ExitCode::from(EXIT_CONFIG);
    };
    let Some(reverse) = cfg
        .mirrors
        .iter()
        .find(|m| m.source == forward.target && m.target == forward.source)
    else {
        eprintln!(
            "error: --flow {flow}: the configuration has no reverse flow {}->{}: add a mirror with sourceCluster: {} and targetCluster: {}",
            forward.target, forward.source, forward.target, forward.source
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let factory = |alias: &kmirror_core::ClusterAlias| {
        client_factory(&cfg, &security, alias, "kmirror|failback")
    };
    let (Some(primary), Some(dr)) = (factory(&forward.source), factory(&forward.target)) else {
        eprintln!("error: --flow {flow}: unknown cluster");
        return ExitCode::from(EXIT_CONFIG);
    };
    let plan = match kmirror_engine::failback::plan(forward, reverse, &primary, &dr, read_for) {
        Ok(p) => p,
        Err(e) => return fail(flow, &e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "failback from {dr} to {primary}: forward flow {}, reverse flow {}",
        plan.forward,
        plan.reverse,
        dr = plan.dr,
        primary = plan.primary
    );
    println!(
        "{:<32} {:>9} {:>12} {:>12} {:>10} {:>12} {:>12} {:>10} {:>11}",
        "topic",
        "partition",
        "primary end",
        "copied to",
        "at risk",
        "reverse from",
        "dr end",
        "to copy",
        "passed over"
    );
    for r in &plan.partitions {
        let from = if r.reverse_stored {
            r.reverse_from.to_string()
        } else {
            format!("({})", r.reverse_from)
        };
        let mark = if r.complete { "" } else { "+" };
        println!(
            "{:<32} {:>9} {:>12} {:>12} {:>10} {:>12} {:>12} {:>10} {:>11}",
            r.topic,
            r.partition,
            r.primary_end,
            r.copied_until,
            r.at_risk,
            from,
            r.dr_end,
            format!("{}{mark}", r.to_copy),
            format!("{}{mark}", r.passed_over)
        );
    }
    println!(
        "{} records on {} never reached {} (at risk: they stay on {}, and {} copies them when it runs again);",
        plan.at_risk(),
        plan.primary,
        plan.dr,
        plan.primary,
        plan.forward
    );
    match &plan.origin_header {
        Some(header) => println!(
            "{} records on {} are not on {} and {} copies them; {} copies of {}'s records are passed over (header {header}).",
            plan.to_copy(),
            plan.dr,
            plan.primary,
            plan.reverse,
            plan.passed_over(),
            plan.primary
        ),
        None => println!(
            "{} copies {} records, {}'s own records among them (provenance.header.enabled is false for it).",
            plan.reverse,
            plan.to_copy(),
            plan.primary
        ),
    }
    for r in &plan.partitions {
        if r.at_risk > 0 {
            println!(
                "at risk: {}[{}] offsets {}..{} on {}",
                r.topic, r.partition, r.copied_until, r.primary_end, plan.primary
            );
        }
        if r.deleted_on_dr > 0 {
            println!(
                "lost: {}[{}] offsets {}..{} on {} were deleted there (retention) before {} copied them; {} will not get them",
                r.dr_topic,
                r.partition,
                r.dr_start - r.deleted_on_dr,
                r.dr_start,
                plan.dr,
                plan.reverse,
                plan.primary
            );
        }
        if r.primary_lost > 0 {
            println!(
                "lost on {primary}: {}[{}] offsets {}..{} were copied to {} but {primary}'s log now ends at {}; {} passes their copies over (they are {primary}'s own records)",
                r.topic,
                r.partition,
                r.primary_end,
                r.copied_until,
                plan.dr,
                r.primary_end,
                plan.reverse,
                primary = plan.primary
            );
        }
    }
    if plan.partitions.iter().any(|r| !r.reverse_stored) {
        println!("(n): the reverse flow has no stored progress there and would start at n.");
    }
    if plan.partitions.iter().any(|r| !r.complete) {
        println!("n+: counted until --read-for ran out; there are more.");
    }
    ExitCode::SUCCESS
}

fn offsets(
    args: &ConfigArgs,
    group: &str,
    flow: Option<&str>,
    json: bool,
    commit: bool,
    dry_run: bool,
) -> ExitCode {
    let (cfg, security) = match check(&args.config, args.secrets_dir.as_deref()) {
        Ok(ok) => ok,
        Err(problems) => return report(&problems),
    };
    let mirrors = match select_flows(&cfg, flow) {
        Ok(m) => m,
        Err(code) => return code,
    };
    if commit
        && mirrors.iter().any(|m| {
            mirrors
                .iter()
                .any(|o| o.source == m.target && o.target == m.source)
        })
    {
        eprintln!(
            "error: this configuration mirrors both ways; say which way the group moves with --flow SOURCE->TARGET (it is committed on TARGET)"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let factory = |alias: &kmirror_core::ClusterAlias| {
        client_factory(&cfg, &security, alias, "kmirror|offsets")
    };
    let mut reports = Vec::new();
    for m in mirrors {
        let (Some(source), Some(target)) = (factory(&m.source), factory(&m.target)) else {
            continue;
        };
        let opposite = cfg
            .mirrors
            .iter()
            .find(|o| o.source == m.target && o.target == m.source);
        let r = match kmirror_engine::offsets::report(m, opposite, &source, &target, group) {
            Ok(r) => r,
            Err(e) => return fail(&m.name(), &e),
        };
        if commit && !dry_run {
            match kmirror_engine::offsets::commit(&target, &r) {
                Ok(n) => eprintln!(
                    "committed {n} partition offsets for group {group} on {}",
                    m.target
                ),
                Err(e) => return fail(&m.name(), &e),
            }
        } else if dry_run {
            eprintln!("dry run: nothing committed");
        }
        reports.push(r);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    } else {
        for r in &reports {
            println!("flow {}  group {}  (from {})", r.flow, r.group, r.basis);
            println!(
                "{:<32} {:>9} {:>14} {:>14} {:>14} {:>8}",
                "target topic",
                "partition",
                "source offset",
                "target offset",
                "unreplicated",
                "rereads"
            );
            for p in &r.partitions {
                let lag = p
                    .unreplicated
                    .map_or_else(|| "-".to_owned(), |l| l.to_string());
                println!(
                    "{:<32} {:>9} {:>14} {:>14} {:>14} {:>8}",
                    p.target_topic, p.partition, p.source_offset, p.target_offset, lag, p.rereads
                );
            }
            let unread: i64 = r.partitions.iter().map(|p| p.target_only_unread).sum();
            let rereads: i64 = r.partitions.iter().map(|p| p.rereads).sum();
            if unread > 0 {
                println!(
                    "{unread} records only the target has (written there after the last record copied from it) were never read by {}: it reads them first",
                    r.group
                );
            }
            if rereads > 0 {
                println!(
                    "{rereads} records {} read on the source come after records it has not read on the target: it reads them again",
                    r.group
                );
            }
        }
    }
    ExitCode::SUCCESS
}

fn plan(args: &ConfigArgs, flow: Option<&str>, json: bool) -> ExitCode {
    let (cfg, security) = match check(&args.config, args.secrets_dir.as_deref()) {
        Ok(ok) => ok,
        Err(problems) => return report(&problems),
    };
    let mirrors = match select_flows(&cfg, flow) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = FlowOptions {
        shutdown_timeout: Duration::from_secs(30),
        metrics: Arc::new(Metrics::new()),
        connectivity: Arc::new(Connectivity::default()),
        unclean_stop: Arc::default(),
        stall_after: Duration::from_secs(60),
        memory: None,
        producers: 1,
        per_partition_checkpoint_metrics: false,
    };
    let status = Arc::new(StatusBoard::default());
    let mut plans = Vec::new();
    for m in mirrors {
        let planned = Flow::build(&cfg, m, &security, Arc::clone(&status), options.clone())
            .map(|flow| runtime.block_on(flow.plan()));
        match planned {
            Ok(Ok(p)) => plans.push(p),
            Ok(Err(e)) | Err(e) => return fail(&m.name(), &e),
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plans).unwrap_or_default()
        );
    } else {
        for p in &plans {
            print!("{p}");
        }
    }
    ExitCode::SUCCESS
}

/// The flows a one-shot command works on: all, or the one `--flow` names.
fn select_flows<'c>(
    cfg: &'c Config,
    flow: Option<&str>,
) -> Result<Vec<&'c kmirror_core::config::Mirror>, ExitCode> {
    let mirrors: Vec<_> = cfg
        .mirrors
        .iter()
        .filter(|m| flow.is_none_or(|f| m.name() == f))
        .collect();
    if mirrors.is_empty() {
        eprintln!("error: --flow {}: no such flow", flow.unwrap_or_default());
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    Ok(mirrors)
}

/// The async runtime: two workers (blocking librdkafka calls get their own threads).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// One error line for a flow, and the exit code its kind calls for.
fn fail(flow: &str, e: &kmirror_engine::Error) -> ExitCode {
    eprintln!("error: flow {flow}: {e}");
    if e.is_user_error() {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

fn import(input: &Path, output: Option<&Path>) -> ExitCode {
    let text = match std::fs::read_to_string(input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: cannot read: {e}", input.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let props = kmirror_core::properties::parse(&text);
    let imported =
        match kmirror_core::import::convert(&props, &kmirror_engine::client::is_known_property) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: {}: {e}", input.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        };
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    match output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.yaml) {
                eprintln!("error: {}: cannot write: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!(
                "wrote {}; check it with: kmirror validate --config {}",
                path.display(),
                path.display()
            );
        }
        None => print!("{}", imported.yaml),
    }
    ExitCode::SUCCESS
}

fn print_notices(cfg: &Config) {
    for n in &cfg.notices {
        let level = match n.severity {
            Severity::Warning => "warning",
            Severity::Info => "note",
        };
        eprintln!("{level}: {n}");
    }
}

fn report(problems: &[Problem]) -> ExitCode {
    for p in problems {
        eprintln!("error: {p}");
    }
    ExitCode::from(EXIT_CONFIG)
}

type Checked = (
    Config,
    BTreeMap<kmirror_core::ClusterAlias, ClusterSecurity>,
);

/// Everything `validate` checks; `run` does the same first.
/// The clients of one cluster of a checked configuration, for a one-shot command.
fn client_factory(
    cfg: &Config,
    security: &BTreeMap<kmirror_core::ClusterAlias, ClusterSecurity>,
    alias: &kmirror_core::ClusterAlias,
    name: &str,
) -> Option<kmirror_engine::client::ClientFactory> {
    cfg.cluster(alias).map(|c| {
        kmirror_engine::client::ClientFactory::new(
            c.clone(),
            security.get(alias).cloned().unwrap_or_default(),
            name,
        )
    })
}

fn check(path: &Path, secrets_dir: Option<&Path>) -> Result<Checked, Vec<Problem>> {
    let cfg = kmirror_engine::load::load(path, secrets_dir)?;
    let mut problems = Vec::new();
    let mut security = BTreeMap::new();
    let now = SystemTime::now();
    let used: std::collections::BTreeSet<_> = cfg
        .mirrors
        .iter()
        .flat_map(|m| [m.source.clone(), m.target.clone()])
        .collect();
    for alias in &used {
        if let Some(cluster) = cfg.cluster(alias) {
            match check_cluster(cluster, now) {
                Ok(sec) => {
                    security.insert(alias.clone(), sec);
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
    }
    if problems.is_empty() {
        let status = Arc::new(StatusBoard::default());
        let options = FlowOptions {
            shutdown_timeout: Duration::from_secs(30),
            metrics: Arc::new(Metrics::new()),
            connectivity: Arc::new(Connectivity::default()),
            unclean_stop: Arc::default(),
            stall_after: Duration::from_secs(60),
            memory: None,
            producers: 1,
            per_partition_checkpoint_metrics: false,
        };
        for mirror in &cfg.mirrors {
            if let Err(e) = Flow::build(
                &cfg,
                mirror,
                &security,
                Arc::clone(&status),
                options.clone(),
            ) {
                problems.push(Problem::new(
                    format!("flow {}", mirror.name()),
                    e.to_string(),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok((cfg, security))
    } else {
        Err(problems)
    }
}

/// `kmirror run`'s settings beyond the configuration file.
struct Tuning {
    shutdown_timeout: Duration,
    stall_after: Duration,
    memory: usize,
    producers: usize,
    per_partition_checkpoint_metrics: bool,
}

async fn run(
    cfg: Config,
    security: BTreeMap<kmirror_core::ClusterAlias, ClusterSecurity>,
    metrics_addr: Option<std::net::SocketAddr>,
    tuning: Tuning,
) -> ExitCode {
    let Tuning {
        shutdown_timeout,
        stall_after,
        memory,
        producers,
        per_partition_checkpoint_metrics,
    } = tuning;
    let shutdown = CancellationToken::new();
    let status = Arc::new(StatusBoard::default());
    let mut tasks: JoinSet<(String, kmirror_engine::Result<()>)> = JoinSet::new();
    let metrics = Arc::new(Metrics::new());
    let connectivity = Arc::new(Connectivity::default());
    tracing::info!(config = %cfg.summary(), "effective configuration");
    if let Some(addr) = metrics_addr {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: --metrics-addr {addr}: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
        let used: std::collections::BTreeSet<_> = cfg
            .mirrors
            .iter()
            .flat_map(|m| [m.source.clone(), m.target.clone()])
            .collect();
        let state = Arc::new(HttpState {
            metrics: Arc::clone(&metrics),
            status: Arc::clone(&status),
            connectivity: Arc::clone(&connectivity),
            expected_clusters: used.len(),
        });
        let token = shutdown.clone();
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        tasks.spawn(async move {
            (
                "metrics endpoint".to_owned(),
                serve(listener, state, token).await,
            )
        });
    }
    let unclean_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = FlowOptions {
        shutdown_timeout,
        metrics,
        connectivity,
        unclean_stop: Arc::clone(&unclean_stop),
        stall_after,
        memory: Some(memory / cfg.mirrors.len().max(1)),
        producers,
        per_partition_checkpoint_metrics,
    };
    for mirror in &cfg.mirrors {
        let flow = match Flow::build(
            &cfg,
            mirror,
            &security,
            Arc::clone(&status),
            options.clone(),
        ) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: flow {}: {e}", mirror.name());
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let name = flow.name();
        let token = shutdown.clone();
        let span = tracing::info_span!("flow", flow = %name);
        tasks.spawn(async move { (name, flow.run(token).await) }.instrument(span));
    }
    tracing::info!(flows = cfg.mirrors.len(), "kmirror started");

    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut exit = ExitCode::SUCCESS;
    // Once stopping, the process exits at the shutdown timeout whatever the clusters do.
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if shutdown.is_cancelled() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + shutdown_timeout);
        }
        tokio::select! {
            () = signals.recv() => {
                if shutdown.is_cancelled() {
                    tracing::warn!("second signal: exiting now; records after the stored progress are copied again at the next start");
                    std::process::exit(EXIT_SECOND_SIGNAL);
                }
                tracing::info!(timeout_seconds = shutdown_timeout.as_secs_f64(), "signal received: stopping (send it again to exit at once)");
                shutdown.cancel();
            }
            () = sleep_until_deadline(deadline) => {
                tracing::error!(
                    "shutdown timeout ({}s) reached with {} flow(s) still stopping (a cluster does not answer): exiting; progress that was not stored is copied again at the next start, nothing is lost",
                    shutdown_timeout.as_secs_f64(),
                    tasks.len()
                );
                std::process::exit(i32::from(EXIT_SHUTDOWN_TIMEOUT));
            }
            joined = tasks.join_next() => {
                match joined {
                    None => break,
                    Some(Ok((name, Ok(())))) => tracing::info!(flow = %name, "flow stopped"),
                    Some(Ok((name, Err(e)))) => {
                        tracing::error!(flow = %name, "flow failed: {e}");
                        exit = if e.is_user_error() { ExitCode::from(EXIT_CONFIG) } else { ExitCode::FAILURE };
                        shutdown.cancel();
                    }
                    Some(Err(e)) => {
                        tracing::error!("flow task panicked: {e}");
                        exit = ExitCode::FAILURE;
                        shutdown.cancel();
                    }
                }
            }
        }
    }
    if exit == ExitCode::SUCCESS && unclean_stop.load(std::sync::atomic::Ordering::Relaxed) {
        return ExitCode::from(EXIT_SHUTDOWN_TIMEOUT);
    }
    exit
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_deadline(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM and SIGINT as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("16777216"), Ok(16 << 20));
        assert!(parse_size("1MiB")
            .expect_err("too small")
            .contains("smallest"));
        assert!(parse_size("64 furlongs")
            .expect_err("unit")
            .contains("unknown unit"));
        assert!(parse_size("lots")
            .expect_err("number")
            .contains("not a size"));
    }
}
