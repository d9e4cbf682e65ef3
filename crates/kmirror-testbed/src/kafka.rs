//! Apache Kafka for the tests: KRaft clusters started from the Maven Central jars that
//! `scripts/kafka.sh` resolves (`KMIRROR_KAFKA_VERSION`, default 4.1.1).
//!
//! Every node is a combined broker and controller on random loopback ports with four listeners:
//! - `PLAINTEXT`: what the harness itself uses (principal `User:ANONYMOUS`, a super user);
//! - `SSL`: TLS with client certificates required, signed by the cluster's [`Pki`];
//! - `SASL_SSL`: SCRAM-SHA-512 over TLS, user [`Kafka::SCRAM_USER`];
//! - `INTERNAL`: between brokers.
//!
//! The `StandardAuthorizer` is on: principals other than the super user have only the ACLs a
//! test grants them ([`Kafka::grant`]).
//!
//! A node runs under a small bash watchdog that holds the read end of a pipe from the test
//! process: when the test process ends, however it ends (a killed `cargo test` included), the
//! pipe closes and the watchdog kills the broker and removes its data. Through the same pipe a
//! test stops, kills, freezes (`SIGSTOP`) and thaws a node.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kmirror_admin::AclResource;
use kmirror_core::acl::{AclOperation, AclPermission, PatternType, TopicAcl};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::certs::Pki;
use crate::{client, free_ports, rand_suffix};

/// Kills the node's process when told to, or when the test process is gone (stdin closes).
const WATCHDOG: &str = r#"
"$@" </dev/null &
pid=$!
while read -r cmd; do
  case "$cmd" in
    term) kill -TERM "$pid"; wait "$pid"; exit 0 ;;
    kill) kill -KILL "$pid"; wait "$pid"; exit 0 ;;
    stop) kill -STOP "$pid" ;;
    cont) kill -CONT "$pid" ;;
  esac
done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ -z "$KMIRROR_NODE_DIR" ] || rm -rf -- "$KMIRROR_NODE_DIR"
"#;

/// The folder holding the Kafka jars (`libs/`) and the log4j2 config.
pub fn kafka_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        if let Some(dir) = std::env::var_os("KMIRROR_KAFKA_HOME") {
            return PathBuf::from(dir);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: Apache Kafka could not be resolved from Maven Central",
            script.display()
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The Kafka version under test.
pub fn kafka_version() -> String {
    std::env::var("KMIRROR_KAFKA_VERSION").unwrap_or_else(|_| "4.1.1".into())
}

/// `java` with the Kafka jars on the class path and quiet logging.
pub fn java() -> Command {
    let home = kafka_home();
    let mut cmd = Command::new("java");
    cmd.arg(format!(
        "-Dlog4j2.configurationFile={}",
        home.join("log4j2.properties").display()
    ))
    .arg("-cp")
    .arg(format!("{}/libs/*", home.display()));
    cmd
}

/// Where the harness keeps cluster data: a folder per test process under the target dir.
fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::temp_dir().join("kmirror-kafka");
        // Folders of test processes that are gone (their watchdogs removed the node data).
        if let Ok(entries) = fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').next().unwrap_or_default();
                if !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("{}-{}", std::process::id(), rand_suffix()));
        fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// How a cluster is built.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// Nodes (each a broker and a controller).
    pub nodes: usize,
    /// The port advertised for each node's `PLAINTEXT` listener, if not its own (a proxy in
    /// front of it).
    pub advertise: Vec<Option<u16>>,
    /// Extra broker properties.
    pub properties: Vec<(String, String)>,
    /// Each node's maximum Java heap in MiB (thousands of partitions and hundreds of groups
    /// need more than the default).
    pub heap_mb: u32,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            nodes: 1,
            advertise: Vec::new(),
            properties: Vec::new(),
            heap_mb: 512,
        }
    }
}

struct Node {
    id: usize,
    plain: u16,
    controller: u16,
    ssl: u16,
    sasl: u16,
    internal: u16,
    dir: PathBuf,
    heap_mb: u32,
    process: Option<(Child, ChildStdin)>,
}

/// A running Apache Kafka cluster.
pub struct Kafka {
    /// Name in logs and paths.
    pub name: String,
    /// `PLAINTEXT` bootstrap (super user).
    pub bootstrap: String,
    /// `SSL` bootstrap (client certificate required).
    pub ssl_bootstrap: String,
    /// `SASL_SSL` bootstrap (SCRAM-SHA-512).
    pub sasl_bootstrap: String,
    /// The CA that signed the brokers' certificates and signs accepted client certificates.
    pub pki: Arc<Pki>,
    /// The password of [`Kafka::SCRAM_USER`].
    pub scram_password: String,
    /// `ca.crt` of [`Kafka::pki`], PEM.
    pub ca_file: PathBuf,
    nodes: Mutex<Vec<Node>>,
    dir: PathBuf,
}

impl Kafka {
    /// The SCRAM-SHA-512 user created with every cluster.
    pub const SCRAM_USER: &'static str = "kmirror";

    /// Formats and starts a cluster; returns once every node answers metadata requests. A
    /// cluster that does not come up (another process took one of its ports between the
    /// harness choosing it and the broker binding it) is started again on new ports.
    pub fn start(name: &str, options: &KafkaOptions) -> Kafka {
        let mut why = String::new();
        for attempt in 1..=3 {
            let kafka = Kafka::launch(name, options);
            match kafka.ready(options.nodes, Duration::from_secs(90)) {
                Ok(()) => return kafka,
                Err(e) => {
                    eprintln!(
                        "{name}: did not start (attempt {attempt}): {}; starting it again on new ports",
                        e.lines().next().unwrap_or_default()
                    );
                    why = e;
                }
            }
        }
        panic!("{name}: not ready after 3 attempts:\n{why}");
    }

    fn launch(name: &str, options: &KafkaOptions) -> Kafka {
        let dir = run_dir().join(format!("{name}-{}", rand_suffix()));
        fs::create_dir_all(&dir).unwrap();
        let pki = Arc::new(Pki::new(&format!("{name} cluster CA")));
        let ca_file = dir.join("ca.crt");
        fs::write(&ca_file, &pki.ca_pem).unwrap();
        let leaf = pki.leaf("broker", &["127.0.0.1", "localhost"], false);
        let keystore = dir.join("broker.pem");
        fs::write(&keystore, format!("{}{}", leaf.key_pem, leaf.cert_pem)).unwrap();
        let scram_password = format!("scram-{}", rand_suffix());

        // Five listeners per node, every port of the cluster distinct.
        let ports = free_ports(5 * options.nodes);
        let mut nodes: Vec<Node> = (0..options.nodes)
            .zip(ports.chunks(5))
            .map(|(i, p)| Node {
                id: i + 1,
                plain: p[0],
                controller: p[1],
                ssl: p[2],
                sasl: p[3],
                internal: p[4],
                dir: dir.join(format!("node-{}", i + 1)),
                heap_mb: options.heap_mb,
                process: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller))
            .collect::<Vec<_>>()
            .join(",");
        let replication = options.nodes.min(3);
        let cluster_id = cluster_id();
        for (i, n) in nodes.iter().enumerate() {
            fs::create_dir_all(&n.dir).unwrap();
            let advertised_plain = options
                .advertise
                .get(i)
                .copied()
                .flatten()
                .unwrap_or(n.plain);
            let mut props = vec![
                ("process.roles".to_owned(), "broker,controller".to_owned()),
                ("node.id".into(), n.id.to_string()),
                ("controller.quorum.voters".into(), voters.clone()),
                (
                    "listeners".into(),
                    format!(
                        "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{},SSL://127.0.0.1:{},SASL_SSL://127.0.0.1:{},INTERNAL://127.0.0.1:{}",
                        n.plain, n.controller, n.ssl, n.sasl, n.internal
                    ),
                ),
                (
                    "advertised.listeners".into(),
                    format!(
                        "PLAINTEXT://127.0.0.1:{advertised_plain},SSL://127.0.0.1:{},SASL_SSL://127.0.0.1:{},INTERNAL://127.0.0.1:{}",
                        n.ssl, n.sasl, n.internal
                    ),
                ),
                ("controller.listener.names".into(), "CONTROLLER".into()),
                ("inter.broker.listener.name".into(), "INTERNAL".into()),
                (
                    "listener.security.protocol.map".into(),
                    "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL".into(),
                ),
                ("log.dirs".into(), n.dir.join("data").display().to_string()),
                ("offsets.topic.replication.factor".into(), replication.to_string()),
                ("offsets.topic.num.partitions".into(), "5".into()),
                ("transaction.state.log.replication.factor".into(), replication.to_string()),
                ("transaction.state.log.min.isr".into(), "1".into()),
                ("transaction.state.log.num.partitions".into(), "5".into()),
                ("default.replication.factor".into(), replication.to_string()),
                ("min.insync.replicas".into(), "1".into()),
                ("group.initial.rebalance.delay.ms".into(), "0".into()),
                ("auto.create.topics.enable".into(), "false".into()),
                ("num.network.threads".into(), "2".into()),
                ("num.io.threads".into(), "4".into()),
                ("log.segment.bytes".into(), "104857600".into()),
                // Compacted-topic tests wait for the cleaner: look for work every second.
                ("log.cleaner.backoff.ms".into(), "1000".into()),
                // Test records carry timestamps from 1970 on: time-based retention would delete
                // them at the first retention check. Tests that need deletion use DeleteRecords.
                ("log.retention.ms".into(), "-1".into()),
                ("ssl.keystore.type".into(), "PEM".into()),
                ("ssl.keystore.location".into(), keystore.display().to_string()),
                ("ssl.truststore.type".into(), "PEM".into()),
                ("ssl.truststore.location".into(), ca_file.display().to_string()),
                ("listener.name.ssl.ssl.client.auth".into(), "required".into()),
                ("sasl.enabled.mechanisms".into(), "SCRAM-SHA-512".into()),
                ("listener.name.sasl_ssl.sasl.enabled.mechanisms".into(), "SCRAM-SHA-512".into()),
                (
                    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config".into(),
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
                ),
                (
                    "authorizer.class.name".into(),
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
                ),
                ("super.users".into(), "User:ANONYMOUS".into()),
            ];
            props.extend(options.properties.iter().cloned());
            let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            fs::write(n.dir.join("server.properties"), text).unwrap();
        }
        // Format every node's storage (the JVMs start in parallel).
        let formats: Vec<_> = nodes
            .iter()
            .map(|n| {
                java()
                    .arg("-Xmx256m")
                    .arg("kafka.tools.StorageTool")
                    .args(["format", "-t", &cluster_id, "-c"])
                    .arg(n.dir.join("server.properties"))
                    .arg("--add-scram")
                    .arg(format!(
                        "SCRAM-SHA-512=[name={},password={scram_password}]",
                        Kafka::SCRAM_USER
                    ))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start Kafka's StorageTool (is Java 17 installed?)")
            })
            .collect();
        for f in formats {
            let out = f.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "formatting {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for n in &mut nodes {
            spawn_node(n);
        }
        Kafka {
            name: name.to_owned(),
            bootstrap: join(&nodes, |n| n.plain, &options.advertise),
            ssl_bootstrap: join(&nodes, |n| n.ssl, &[]),
            sasl_bootstrap: join(&nodes, |n| n.sasl, &[]),
            pki,
            scram_password,
            ca_file,
            nodes: Mutex::new(nodes),
            dir,
        }
    }

    /// A folder of this cluster's own, for files a test writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the cluster stores for `topic` (every node, every partition's log segments).
    pub fn topic_bytes(&self, topic: &str) -> u64 {
        let nodes = self.nodes.lock().unwrap();
        let mut total = 0;
        for n in nodes.iter() {
            let Ok(dirs) = fs::read_dir(n.dir.join("data")) else {
                continue;
            };
            for d in dirs.flatten() {
                let name = d.file_name().to_string_lossy().into_owned();
                let is_partition = name
                    .strip_prefix(topic)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|p| p.parse::<u32>().is_ok());
                if !is_partition {
                    continue;
                }
                for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                    if f.path().extension().is_some_and(|e| e == "log") {
                        total += f.metadata().map_or(0, |m| m.len());
                    }
                }
            }
        }
        total
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes.lock().unwrap().len()
    }

    /// The `PLAINTEXT` port node `i` (0-based) listens on.
    pub fn plain_port(&self, i: usize) -> u16 {
        self.nodes.lock().unwrap()[i].plain
    }

    /// Waits until `brokers` brokers answer metadata through the plaintext listener and every
    /// node's listeners accept connections.
    pub fn wait_ready(&self, brokers: usize, timeout: Duration) {
        if let Err(e) = self.ready(brokers, timeout) {
            panic!("{e}");
        }
    }

    /// [`Kafka::wait_ready`], returning why not instead of panicking; gives up early when a
    /// node could not bind its ports.
    fn ready(&self, brokers: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut checked_log = Instant::now();
        let mut gave_up = |what: &str| -> Option<String> {
            if Instant::now() > deadline {
                return Some(format!("{}: {what}:\n{}", self.name, self.log_tail()));
            }
            if checked_log.elapsed() > Duration::from_secs(2) {
                checked_log = Instant::now();
                let tail = self.log_tail();
                if tail.contains("Address already in use") {
                    return Some(format!("{}: a port was taken:\n{tail}", self.name));
                }
            }
            None
        };
        let ports: Vec<u16> = {
            let nodes = self.nodes.lock().unwrap();
            nodes
                .iter()
                .filter(|n| n.process.is_some())
                .flat_map(|n| [n.plain, n.ssl, n.sasl])
                .collect()
        };
        for port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(why) = gave_up(&format!("nothing listens on {port}")) {
                    return Err(why);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let consumer: BaseConsumer = client(&self.bootstrap).create().unwrap();
        loop {
            match consumer.fetch_metadata(None, Duration::from_secs(5)) {
                Ok(md) if md.brokers().len() >= brokers => return Ok(()),
                _ => {
                    if let Some(why) = gave_up("not ready") {
                        return Err(why);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn send(&self, node: usize, command: &str) {
        let mut nodes = self.nodes.lock().unwrap();
        let n = &mut nodes[node];
        let (_, stdin) = n
            .process
            .as_mut()
            .unwrap_or_else(|| panic!("{}: node {} is not running", self.name, n.id));
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    fn wait_exit(&self, node: usize) {
        let process = self.nodes.lock().unwrap()[node].process.take();
        if let Some((mut child, stdin)) = process {
            let status = child.wait().unwrap();
            drop(stdin);
            assert!(status.success(), "{}: watchdog of node {node}", self.name);
        }
    }

    /// Stops node `i` with SIGTERM (a controlled shutdown) and waits; its data is kept.
    pub fn stop_node(&self, i: usize) {
        self.send(i, "term");
        self.wait_exit(i);
    }

    /// Kills node `i` with SIGKILL and waits; its data is kept.
    pub fn kill_node(&self, i: usize) {
        self.send(i, "kill");
        self.wait_exit(i);
    }

    /// Starts a stopped node `i` again on the same ports and data.
    pub fn restart_node(&self, i: usize) {
        let mut nodes = self.nodes.lock().unwrap();
        assert!(nodes[i].process.is_none(), "node {i} is running");
        spawn_node(&mut nodes[i]);
    }

    /// Freezes node `i` (SIGSTOP): connections stay open and nothing answers.
    pub fn freeze_node(&self, i: usize) {
        self.send(i, "stop");
    }

    /// Thaws a frozen node.
    pub fn thaw_node(&self, i: usize) {
        self.send(i, "cont");
    }

    /// The last lines each node logged.
    pub fn log_tail(&self) -> String {
        let nodes = self.nodes.lock().unwrap();
        let mut out = String::new();
        for n in nodes.iter() {
            let text = fs::read_to_string(n.dir.join("broker.log")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(30);
            out.push_str(&format!("--- {} node {} ---\n", self.name, n.id));
            for l in &lines[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Grants `principal` (e.g. `User:CN=app` or `User:kmirror`) the operations on a resource.
    pub fn grant(
        &self,
        principal: &str,
        resource: AclResource,
        name: &str,
        pattern: PatternType,
        operations: &[AclOperation],
    ) {
        self.acl(
            principal,
            resource,
            name,
            pattern,
            operations,
            AclPermission::Allow,
        );
    }

    /// Denies `operations` on a resource to `principal` (a DENY binding wins over any ALLOW).
    pub fn deny(
        &self,
        principal: &str,
        resource: AclResource,
        name: &str,
        pattern: PatternType,
        operations: &[AclOperation],
    ) {
        self.acl(
            principal,
            resource,
            name,
            pattern,
            operations,
            AclPermission::Deny,
        );
    }

    fn acl(
        &self,
        principal: &str,
        resource: AclResource,
        name: &str,
        pattern: PatternType,
        operations: &[AclOperation],
        permission: AclPermission,
    ) {
        let acls: Vec<TopicAcl> = operations
            .iter()
            .map(|op| TopicAcl {
                topic: name.to_owned(),
                pattern,
                principal: principal.to_owned(),
                host: "*".into(),
                operation: *op,
                permission,
            })
            .collect();
        let bindings: Vec<(AclResource, &TopicAcl)> = acls.iter().map(|a| (resource, a)).collect();
        let admin = crate::admin(&self.bootstrap);
        let outcomes =
            kmirror_admin::create_acls(admin.inner(), &bindings, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{}: CreateAcls: {e}", self.name));
        for o in outcomes {
            o.unwrap_or_else(|e| panic!("{}: CreateAcls: {e}", self.name));
        }
    }

    /// Grants a replicator principal what kmirror needs on this cluster as the *source* of a
    /// flow whose topics (and consumer groups) start with `prefix` and whose target alias is
    /// `target`. No more: not super-user rights.
    pub fn grant_source(&self, principal: &str, prefix: &str, target: &str) {
        use AclOperation as Op;
        use PatternType::{Literal, Prefixed};
        self.grant(
            principal,
            AclResource::Topic,
            prefix,
            Prefixed,
            &[Op::Describe, Op::DescribeConfigs, Op::Read],
        );
        self.grant(
            principal,
            AclResource::Topic,
            &format!("mm2-offset-syncs.{target}.internal"),
            Literal,
            &[Op::Create, Op::Write, Op::Describe, Op::Read],
        );
        for group in [prefix, "kmirror|"] {
            self.grant(
                principal,
                AclResource::Group,
                group,
                Prefixed,
                &[Op::Describe, Op::Read],
            );
        }
        self.grant(
            principal,
            AclResource::Cluster,
            "kafka-cluster",
            Literal,
            &[Op::Describe],
        );
    }

    /// Grants a replicator principal what kmirror needs on this cluster as the *target* of a
    /// flow whose topics (and consumer groups) start with `prefix` and whose source alias is
    /// `source`. No more: not super-user rights.
    pub fn grant_target(&self, principal: &str, prefix: &str, source: &str) {
        use AclOperation as Op;
        use PatternType::{Literal, Prefixed};
        let topic_ops = [
            Op::Create,
            Op::Write,
            Op::Read,
            Op::Describe,
            Op::DescribeConfigs,
            Op::AlterConfigs,
        ];
        self.grant(principal, AclResource::Topic, prefix, Prefixed, &topic_ops);
        for internal in [
            format!("mm2-offsets.{source}.internal"),
            format!("{source}.checkpoints.internal"),
            format!("mm2-offset-syncs.{source}.internal"),
            "heartbeats".to_owned(),
        ] {
            self.grant(
                principal,
                AclResource::Topic,
                &internal,
                Literal,
                &topic_ops,
            );
        }
        for group in [prefix, "kmirror|"] {
            self.grant(
                principal,
                AclResource::Group,
                group,
                Prefixed,
                &[Op::Describe, Op::Read],
            );
        }
        self.grant(
            principal,
            AclResource::Cluster,
            "kafka-cluster",
            Literal,
            &[Op::Describe, Op::Alter],
        );
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut *self.nodes.lock().unwrap());
        for n in nodes {
            if let Some((mut child, stdin)) = n.process {
                // EOF: the watchdog kills the broker and removes its data.
                drop(stdin);
                let _ = child.wait();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn spawn_node(n: &mut Node) {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(n.dir.join("broker.log"))
        .unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("kafka-node")
        .arg("java")
        .arg("-Xms128m")
        .arg(format!("-Xmx{}m", n.heap_mb))
        .arg("-XX:+UseSerialGC")
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            kafka_home().join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(format!("{}/libs/*", kafka_home().display()))
        .arg("kafka.Kafka")
        .arg(n.dir.join("server.properties"))
        .env("KMIRROR_NODE_DIR", &n.dir)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start a Kafka node (bash and java are needed)");
    let stdin = child.stdin.take().unwrap();
    n.process = Some((child, stdin));
}

fn join(nodes: &[Node], port: impl Fn(&Node) -> u16, advertise: &[Option<u16>]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let p = advertise
                .get(i)
                .copied()
                .flatten()
                .unwrap_or_else(|| port(n));
            format!("127.0.0.1:{p}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// 16 random bytes in unpadded base64url, not starting with `-` (StorageTool would read it as
/// an option).
fn cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id()).rotate_left(32);
    loop {
        let mut bytes = [0u8; 16];
        for b in &mut bytes {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *b = (seed >> 56) as u8;
        }
        // 128 bits as 22 six-bit digits (the last one carries 2 bits, then zeros).
        let bits = u128::from_be_bytes(bytes);
        let id: String = (0..22i32)
            .map(|i| {
                let shift = 128 - 6 * (i + 1);
                let digit = if shift >= 0 {
                    (bits >> shift) & 0x3f
                } else {
                    (bits << -shift) & 0x3f
                };
                ALPHABET[digit as usize] as char
            })
            .collect();
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// The source and target clusters most tests share (each test uses its own topics, groups
/// and cluster aliases). Started on first use, in parallel.
pub fn shared() -> (Arc<Kafka>, Arc<Kafka>) {
    static PAIR: OnceLock<(Arc<Kafka>, Arc<Kafka>)> = OnceLock::new();
    let (s, t) = PAIR.get_or_init(start_pair);
    (Arc::clone(s), Arc::clone(t))
}

/// A fresh source and target of one node each, for a test that stops or breaks a cluster.
pub fn start_pair() -> (Arc<Kafka>, Arc<Kafka>) {
    std::thread::scope(|s| {
        let source = s.spawn(|| Kafka::start("source", &KafkaOptions::default()));
        let target = s.spawn(|| Kafka::start("target", &KafkaOptions::default()));
        (
            Arc::new(source.join().unwrap()),
            Arc::new(target.join().unwrap()),
        )
    })
}

/// Runs a Java class from the Kafka jars (plus `extra_classpath`) and returns its stdout;
/// panics with its stderr if it fails.
pub fn run_java(extra_classpath: Option<&Path>, class: &str, args: &[&str]) -> String {
    let home = kafka_home();
    let mut classpath = format!("{}/libs/*", home.display());
    if let Some(extra) = extra_classpath {
        classpath = format!("{}:{classpath}", extra.display());
    }
    let out = Command::new("java")
        .arg("-Xmx256m")
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            home.join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(classpath)
        .arg(class)
        .args(args)
        .output()
        .expect("run java");
    assert!(
        out.status.success(),
        "{class} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compiles `tests/java/KmirrorInterop.java` against the Kafka jars (once per test run) and
/// returns the folder of its classes.
pub fn interop_classes() -> &'static Path {
    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/java/KmirrorInterop.java");
        let out_dir = run_dir().join("java-classes");
        fs::create_dir_all(&out_dir).unwrap();
        let status = Command::new("javac")
            .arg("-cp")
            .arg(format!("{}/libs/*", kafka_home().display()))
            .arg("-d")
            .arg(&out_dir)
            .arg(&source)
            .status()
            .expect("javac (a JDK 17 is needed)");
        assert!(status.success(), "javac {} failed", source.display());
        out_dir
    })
}

/// Every record of `topic` through Kafka's console consumer with one of MM2's formatters
/// (`CheckpointFormatter`, `HeartbeatFormatter`, `OffsetSyncFormatter`), one line each.
pub fn console_consume_formatted(bootstrap: &str, topic: &str, formatter: &str) -> Vec<String> {
    let out = run_java(
        None,
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--timeout-ms",
            "5000",
            "--formatter",
            &format!("org.apache.kafka.connect.mirror.formatters.{formatter}"),
        ],
    );
    out.lines().map(str::to_owned).collect()
}

/// A Java process (MirrorMaker 2) under the same watchdog as the brokers: it never outlives
/// the test run.
pub struct JavaProcess {
    child: Option<(Child, ChildStdin)>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl JavaProcess {
    /// Starts `class` with `args`; output goes to `log`.
    pub fn start(class: &str, args: &[&str], log: PathBuf) -> JavaProcess {
        let file = fs::File::create(&log).unwrap();
        let home = kafka_home();
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("java-process")
            .arg("java")
            .arg("-Xmx512m")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                home.join("log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/libs/*", home.display()))
            .arg(class)
            .args(args)
            .env("KMIRROR_NODE_DIR", "")
            .stdin(Stdio::piped())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start java");
        let stdin = child.stdin.take().unwrap();
        JavaProcess {
            child: Some((child, stdin)),
            log,
        }
    }

    /// MirrorMaker 2 in dedicated mode with `properties`.
    pub fn mirror_maker(properties: &Path) -> JavaProcess {
        JavaProcess::start(
            "org.apache.kafka.connect.mirror.MirrorMaker",
            &[properties.to_str().unwrap()],
            properties.with_extension("log"),
        )
    }

    /// The process id of the JVM (the watchdog's child), once it runs.
    pub fn pid(&self) -> Option<u32> {
        let (child, _) = self.child.as_ref()?;
        let bash = child.id();
        let children = fs::read_to_string(format!("/proc/{bash}/task/{bash}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// SIGTERM (a graceful stop) and wait.
    pub fn stop(&mut self) {
        if let Some((mut child, mut stdin)) = self.child.take() {
            let _ = writeln!(stdin, "term");
            let _ = stdin.flush();
            let _ = child.wait();
        }
    }

    /// What it logged.
    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for JavaProcess {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(200).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "---- {} (tail) ----\n{}",
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}
