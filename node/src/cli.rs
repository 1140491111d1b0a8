//! The command line: clap types only. `main` parses them and hands them to `commands::run`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// fubar: a clustered MQTT broker built to be debugged.
#[derive(Debug, Parser)]
#[command(name = "fubar", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker node (MQTT on 0.0.0.0:1883 by default, state under ./data/).
    Node(NodeArgs),
    /// Run the monitor: it collects, keeps and indexes every node's log events (and serves
    /// MQTT too unless --no-mqtt).
    Monitor(MonitorArgs),
    /// Search the events the monitor collected, newest first.
    Search(SearchArgs),
    /// Control a running node through its admin socket.
    Ctl(CtlArgs),
    /// The monitor's web console.
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// Clear a node's preserved state (accounts, retained messages, sessions, settings).
    Reset(ResetArgs),
    /// Generate load against an MQTT broker and report what was measured.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Read log files directly (node running or not).
    #[command(subcommand)]
    Log(OfflineLogCommand),
    /// TLS certificates.
    #[command(subcommand)]
    Ssl(SslCommand),
    /// Settings files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Publish messages (as mosquitto_pub).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Pub(PubArgs),
    /// Subscribe and print messages (as mosquitto_sub).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Sub(SubArgs),
}

/// `fubar console ...`.
#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time sign-in URL for the monitor's web console (valid for
    /// console.sign_in_ttl_secs).
    Url {
        /// The monitor (its --name and --data-dir).
        #[command(flatten)]
        node: NodeLocation,
        /// How to reach it on another machine.
        #[command(flatten)]
        remote: RemoteAccess,
    },
}

/// `fubar config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a settings file (TOML) with every setting, its default and what it is for.
    Example,
}

/// `fubar ssl ...`.
#[derive(Debug, Subcommand)]
pub enum SslCommand {
    /// Make a CA and the server, client and node certificates it signs.
    ///
    /// The CA (cacert.pem, cacert.cer in DER, cakey.pem) is made on the first run and reused
    /// by later ones; the server certificate (cert.pem, key.pem) is made on the first run, or
    /// when --cn is given. Existing files are never overwritten without --force.
    NewCerts(NewCertsArgs),
}

/// Flags of `fubar ssl new-certs`.
#[derive(Debug, Args)]
pub struct NewCertsArgs {
    /// Directory the files go to (created if missing); never a folder holding a Cargo.toml.
    #[arg(long, value_name = "DIR", default_value = fubar_ssl::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Host name or IP address of the server certificate; repeat for more (the first is the
    /// CN) [default: localhost and 127.0.0.1].
    #[arg(long = "cn", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Also make a client certificate with CN=NAME (client-NAME.pem, client-NAME.key.pem).
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    /// Also make a cluster node certificate for NAME@HOST (node-NAME@HOST.pem and .key.pem).
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Also make an operator certificate for admin commands with CN=NAME
    /// (operator-NAME.pem, operator-NAME.key.pem), with the role of --role.
    #[arg(long = "operator", value_name = "NAME")]
    pub operators: Vec<String>,
    /// What the --operator certificates may do: read (status, search, lists, tail) or admin
    /// (every command).
    #[arg(long, value_name = "ROLE", default_value = "read", value_parser = ["read", "admin"])]
    pub role: String,
    /// Overwrite existing files, the CA included (certificates it signed stop working).
    #[arg(long)]
    pub force: bool,
    /// Validity of the server, client and node certificates, in days (the CA's is 10 years).
    #[arg(long, default_value_t = fubar_ssl::DEFAULT_DAYS)]
    pub days: u32,
}

/// `fubar log ...`.
#[derive(Debug, Subcommand)]
pub enum OfflineLogCommand {
    /// Follow the events reaching the monitor as they come, those matching QUERY.
    Tail {
        /// The monitor (its --name and --data-dir).
        #[command(flatten)]
        node: NodeLocation,
        /// How to reach it on another machine.
        #[command(flatten)]
        remote: RemoteAccess,
        /// Only this class.
        #[arg(long)]
        class: Option<String>,
        /// Query, as `fubar search` takes it (empty: every event).
        #[arg(default_value = "")]
        query: String,
    },
    /// Rebuild the monitor's search index from its log segments (with the monitor stopped).
    Reindex {
        /// The monitor (its --name and --data-dir).
        #[command(flatten)]
        node: NodeLocation,
    },
    /// Print a class's binary log as text (every class without one), oldest first.
    Dump {
        /// Log directory [default: the node's, from --data-dir and --name].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The node whose log directory is read when --dir is not given.
        #[command(flatten)]
        node: NodeLocation,
        /// Class name.
        class: Option<String>,
        /// Output file [default: stdout].
        file: Option<PathBuf>,
    },
}

/// `fubar bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    // `-V` is the protocol version here (as in `fubar pub`), not `--version`.
    /// Many publishers to one topic, one subscriber (messages/s in and out).
    #[command(disable_version_flag = true)]
    Fanin(FaninArgs),
    /// One publisher to one topic, many subscribers (deliveries/s).
    #[command(disable_version_flag = true)]
    Fanout(FanoutArgs),
    /// Clients connecting and disconnecting as fast as they can (TCP or TLS handshakes).
    #[command(disable_version_flag = true)]
    Handshakes(HandshakesArgs),
    /// Batch-start N clients (ids 0001…N), hold them, report the connect rate and memory.
    #[command(disable_version_flag = true)]
    Conns(ConnsArgs),
    /// Batch clients and a probe publishing to random ones by client id (or to a topic they
    /// all subscribe to): rates and latency percentiles.
    #[command(disable_version_flag = true)]
    Probe(ProbeArgs),
    /// Publish-to-delivery latency percentiles at a fixed rate.
    #[command(disable_version_flag = true)]
    Latency(LatencyArgs),
    /// Synthetic nodes ship events to a monitor through the real log link: events/s
    /// acknowledged (written to its segments).
    Ingest(IngestArgs),
}

/// Flags of `fubar bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The monitor, NAME@HOST[:PORT].
    #[arg(long, value_name = "NAME@HOST[:PORT]")]
    pub monitor: String,
    /// The cluster's own CA, if it uses one [default: none; the monitor proves the cookie].
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// The cluster cookie.
    #[arg(long, value_name = "FILE", default_value = "data/cookie")]
    pub cookie_file: PathBuf,
    /// Synthetic nodes (one link each).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Events per node.
    #[arg(long, default_value_t = 500_000)]
    pub events: u64,
    /// The monitor's process id (same machine): its CPU seconds and memory.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The broker a benchmark runs against, and how the result is printed.
#[derive(Debug, Clone, Args)]
pub struct BenchTarget {
    /// Broker host.
    #[arg(long, short = 'H', default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(long, short = 'p', default_value_t = 1883)]
    pub port: u16,
    /// The broker's process id (same machine): report its CPU seconds and memory.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Protocol every client speaks: mqttv31, mqttv311 or mqttv5 (or 3.1, 3.1.1, 5).
    #[arg(short = 'V', long = "protocol-version", default_value = "mqttv311")]
    pub protocol: String,
}

/// What fan-in and fan-out share.
#[derive(Debug, Args)]
pub struct FlowArgs {
    /// The broker.
    #[command(flatten)]
    pub target: BenchTarget,
    /// QoS of the publishes and subscriptions (0, 1, 2).
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Unacknowledged publishes per publisher (QoS 1/2).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Messages per second across all publishers [default: as fast as possible].
    #[arg(long)]
    pub rate: Option<u32>,
    /// Stop publishing after this many seconds, whatever the count.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Topic.
    #[arg(long, short = 't', default_value = "bench/flow")]
    pub topic: String,
    /// Connect the subscribers to this host (another member of the publishers' cluster)
    /// [default: --host]; publishing starts once their subscriptions are routable from
    /// the publishers' broker.
    #[arg(long)]
    pub sub_host: Option<String>,
    /// Connect the subscribers to this port [default: --port].
    #[arg(long)]
    pub sub_port: Option<u16>,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Flags of `fubar bench fanin`.
#[derive(Debug, Args)]
pub struct FaninArgs {
    /// Publishing connections.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Subscribing connections (0: publishes are only acknowledged).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// What fan-in and fan-out share.
    #[command(flatten)]
    pub flow: FlowArgs,
}

/// Flags of `fubar bench fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribing connections.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 5_000)]
    pub messages: u64,
    /// What fan-in and fan-out share.
    #[command(flatten)]
    pub flow: FlowArgs,
}

/// Flags of `fubar bench probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The broker.
    #[command(flatten)]
    pub target: BenchTarget,
    /// The batch of clients.
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Milliseconds between two probe messages (0: as fast as possible).
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// Seconds the probe publishes.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Publish to this topic, which every client subscribes to, instead of to client ids.
    #[arg(long, short = 't')]
    pub topic: Option<String>,
    /// QoS of the probe's messages (0, 1, 2).
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes (at least 8: the send time).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// A batch of clients with ids PREFIX0001…PREFIXN.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Clients to connect.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Client id prefix.
    #[arg(long, default_value = "")]
    pub id_prefix: String,
    /// Connections per second at most [default: as fast as possible].
    #[arg(long)]
    pub rate: Option<u32>,
    /// Connection attempts in progress at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Keep-alive the clients announce, seconds; held clients send PINGREQ at half of it
    /// (0: none, which some brokers refuse).
    #[arg(long, default_value_t = 60)]
    pub keep_alive: u16,
}

/// Flags of `fubar bench latency`.
#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// The broker.
    #[command(flatten)]
    pub target: BenchTarget,
    /// Messages per second.
    #[arg(long, default_value_t = 5000)]
    pub rate: u32,
    /// Messages in all.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// QoS (0, 1, 2).
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes (at least 8).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Topic.
    #[arg(long, short = 't', default_value = "bench/latency")]
    pub topic: String,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Flags of `fubar bench conns`.
#[derive(Debug, Args)]
pub struct ConnsArgs {
    /// The broker.
    #[command(flatten)]
    pub target: BenchTarget,
    /// The batch of clients.
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Seconds to hold the clients once connected.
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
    /// Each client subscribes (QoS 0) to PREFIX/<its client id> after CONNACK, and counts as
    /// connected once its SUBACK is in.
    #[arg(long, value_name = "PREFIX")]
    pub subscribe: Option<String>,
    /// TLS and WebSocket.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS flags of the client tools.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Connect over TLS, trusting this CA (PEM).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// Client certificate (PEM), for brokers that verify clients.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Name the server certificate must carry [default: the host].
    #[arg(long)]
    pub server_name: Option<String>,
    /// Speak MQTT over WebSocket (the port is then the broker's ws port, or its wss port with
    /// --cafile).
    #[arg(long)]
    pub ws: bool,
    /// The WebSocket path.
    #[arg(long, default_value = "/mqtt", requires = "ws")]
    pub ws_path: String,
}

/// Flags of `fubar bench handshakes`.
#[derive(Debug, Args)]
pub struct HandshakesArgs {
    /// The broker.
    #[command(flatten)]
    pub target: BenchTarget,
    /// Connections in all.
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    /// Connections in progress at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Which node: the same flags and defaults as `fubar node`, so a bare command finds the node
/// a bare `fubar node` started.
#[derive(Debug, Clone, Args)]
pub struct NodeLocation {
    /// Node name, NAME@HOST[:PORT] [default: fubar@<hostname>]: its admin socket on this
    /// machine, or else its cluster port (QUIC, default 4370).
    #[arg(long, visible_alias = "node")]
    pub name: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// How to reach a node of another machine (`--node NAME@HOST[:PORT]` with no admin socket
/// here): over QUIC to its cluster port, proving membership as a node would.
#[derive(Debug, Clone, Args)]
pub struct RemoteAccess {
    /// The cluster cookie, for a remote node [default: DATA_DIR/cookie].
    #[arg(long, value_name = "FILE")]
    pub cookie_file: Option<PathBuf>,
    /// The cluster's own CA (setting cluster.cafile), when the cluster uses one: the remote
    /// node's certificate is checked against it [default: none; the node proves the cookie].
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// A node certificate of the cluster CA (`fubar ssl new-certs --node`), proving
    /// membership to a remote node instead of the cookie, or an operator certificate
    /// (`new-certs --operator NAME --role read|admin`) allowing what its role allows (needs
    /// --cafile).
    #[arg(long, value_name = "FILE", requires = "keyfile")]
    pub certfile: Option<PathBuf>,
    /// The key of --certfile.
    #[arg(long, value_name = "FILE", requires = "certfile")]
    pub keyfile: Option<PathBuf>,
}

/// Flags of `fubar ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The node to talk to.
    #[command(flatten)]
    pub node: NodeLocation,
    /// How to reach it on another machine.
    #[command(flatten)]
    pub remote: RemoteAccess,
    /// The command; without one, an interactive shell on the node.
    #[command(subcommand)]
    pub command: Option<CtlCommand>,
}

/// The commands of the fubar admin shell, typed as `fubar ctl` takes them.
#[derive(Debug, Parser)]
#[command(name = "", no_binary_name = true, disable_version_flag = true)]
pub struct ShellLine {
    /// The command.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The commands of `fubar ctl`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Node name, version, uptime, listeners, connections, sessions, memory, cluster role.
    Status,
    /// Stop the node gracefully (as SIGTERM does).
    Stop,
    /// Accounts for client authentication.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Address rules: allow or deny connections by address block.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Log classes: open, close, redirect, list, dump.
    #[command(subcommand)]
    Log(LogCommand),
    /// Follow a client or a topic in the `trace` class.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Stop following a client or a topic.
    #[command(subcommand)]
    Untrace(UntraceCommand),
    /// TLS: reload certificates.
    #[command(subcommand)]
    Ssl(CtlSslCommand),
    /// The cluster: members, leader, replication lag, links; leaving it.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Show the effective settings, or change one at run time (kept across restarts).
    Settings {
        /// Dotted name, e.g. mqtt.max_packet_size.
        name: Option<String>,
        /// New value, as in the TOML file (negative numbers too).
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
    },
}

/// `fubar ctl cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members with their role, voter or learner, link state and replication lag; the
    /// leader; routes, registered clients and changes waiting to be committed.
    Status,
    /// Take a member out of the cluster for good (this node without NODE): its routes and
    /// clients are dropped and it stops voting.
    Leave {
        /// The member, NAME@HOST.
        node: Option<String>,
    },
}

/// `fubar ctl ssl ...`.
#[derive(Debug, Subcommand)]
pub enum CtlSslCommand {
    /// Load the certificate, key and CA files again: new TLS connections use them, existing
    /// ones are not dropped.
    Reload,
}

/// `fubar ctl log ...`.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Start recording a class.
    Open {
        /// access, packet, protocol, resource, debug, info, warning, error or trace.
        class: String,
    },
    /// Stop recording a class (its files stay).
    Close {
        /// Class name.
        class: String,
    },
    /// Redirect a class: none (binary files only), stdout, or PREFIX (daily text files).
    Out {
        /// Class name.
        class: String,
        /// none, stdout or PREFIX.
        redirect: String,
    },
    /// Classes with their redirects, sizes, event counts and drops (on the monitor: every
    /// node's link too).
    List,
    /// On the monitor: ship a class from every node (on) or stop shipping it (off).
    Collect {
        /// Class name.
        class: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Write a class's events to a text file, or every class to a file each.
    Dump {
        /// Class name (every class without one).
        class: Option<String>,
        /// Output file (for one class) or directory (for all) [default: the node's log dir].
        path: Option<String>,
    },
}

/// `fubar ctl trace ...`.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Follow everything a client id does.
    Client {
        /// Client id.
        id: String,
    },
    /// Follow every message on topics matching a filter.
    Topic {
        /// Topic filter.
        filter: String,
    },
    /// What is followed.
    List,
}

/// `fubar ctl untrace ...`.
#[derive(Debug, Subcommand)]
pub enum UntraceCommand {
    /// Stop following a client id.
    Client {
        /// Client id.
        id: String,
    },
    /// Stop following a topic filter.
    Topic {
        /// Topic filter.
        filter: String,
    },
}

/// `fubar ctl account ...`.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account or change its password.
    Update {
        /// User name.
        name: String,
        /// Password.
        password: String,
    },
    /// Delete an account.
    Delete {
        /// User name.
        name: String,
    },
    /// List account names.
    List,
}

/// `fubar ctl acl ...`.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Allow connections from ADDR[/PREFIX].
    Allow {
        /// Address block, e.g. 10.0.0.0/8.
        cidr: String,
    },
    /// Deny connections from ADDR[/PREFIX].
    Deny {
        /// Address block, e.g. 10.0.0.0/8.
        cidr: String,
    },
    /// Remove a rule.
    Delete {
        /// Address block as added.
        cidr: String,
    },
    /// List rules, most specific first.
    List,
    /// Topic rules: who may publish and subscribe to which topics.
    #[command(subcommand)]
    Topic(AclTopicCommand),
}

/// `fubar ctl acl topic ...`.
#[derive(Debug, Subcommand)]
pub enum AclTopicCommand {
    /// Add a rule: allow|deny publish|subscribe|both [user NAME | client ID] FILTER
    /// (`%u` user name, `%c` client id), e.g. `allow both devices/%c/#`.
    Add {
        /// The rule's words.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        rule: Vec<String>,
    },
    /// Delete a rule, written as added.
    Delete {
        /// The rule's words.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        rule: Vec<String>,
    },
    /// List the rules and acl.default.
    List,
    /// Add the rules of a mosquitto acl_file (all or none; a line fubar cannot express is
    /// refused with its number).
    Import {
        /// The acl_file.
        file: PathBuf,
    },
}

/// Flags of `fubar reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The node whose state is cleared.
    #[command(flatten)]
    pub node: NodeLocation,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Flags of `fubar node`. Each overrides the settings file, which overrides the defaults.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Settings file (TOML); see the README for every key and its default.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node name, NAME@HOST[:PORT] (PORT: the cluster port) [default: fubar@<hostname>].
    #[arg(long)]
    pub name: Option<String>,
    /// Data directory; the node's state goes under DIR/<NAME@HOST>/ [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the MQTT listener binds [default: 0.0.0.0].
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// MQTT TCP port; 0 picks a free one [default: 1883].
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// MQTT over TLS port (8883 by convention); 0 picks a free one [default: no TLS listener].
    #[arg(long)]
    pub mqtts_port: Option<u16>,
    /// HTTP port for /metrics, /healthz and /readyz (setting http.port); 0 picks a free one
    /// [default: no HTTP endpoint].
    #[arg(long)]
    pub http_port: Option<u16>,
    /// The monitor's web console port (setting console.port); 0 picks a free one [default:
    /// no console]. Sign in with the URL `fubar console url` prints.
    #[arg(long)]
    pub console_port: Option<u16>,
    /// MQTT over WebSocket port (plain, path ws.path); 0 picks a free one [default: no
    /// WebSocket listener].
    #[arg(long)]
    pub ws_port: Option<u16>,
    /// MQTT over secure WebSocket port (TLS as --mqtts-port); 0 picks a free one [default: no
    /// secure WebSocket listener].
    #[arg(long)]
    pub wss_port: Option<u16>,
    /// Largest MQTT packet accepted, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_packet_size: Option<usize>,
    /// Log classes also printed to stdout, comma-separated (added to the setting log.classes,
    /// whose classes are open at start) [default: trace].
    #[arg(long, value_name = "CLASSES", value_delimiter = ',')]
    pub log_stdout: Option<Vec<String>>,
    /// Require clients to log in with an account (setting auth.enabled).
    #[arg(long)]
    pub auth: bool,
    /// Ship this node's log events to the monitor NAME@HOST[:PORT] (setting cluster.master).
    #[arg(long, value_name = "NAME@HOST[:PORT]")]
    pub master: Option<String>,
    /// UDP port of the cluster (QUIC) listener [default: the PORT of --name NAME@HOST:PORT,
    /// else 4370]; one that disagrees with the name's is refused.
    #[arg(long, value_name = "PORT")]
    pub cluster_port: Option<u16>,
    /// The cluster cookie, a secret every member shares [default: DATA_DIR/cookie].
    #[arg(long, value_name = "FILE")]
    pub cookie_file: Option<PathBuf>,
}

/// Flags of `fubar monitor`.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// No MQTT listener: only collect the cluster's logs.
    #[arg(long)]
    pub no_mqtt: bool,
    /// The node flags.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Flags of `fubar search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The monitor (its --name and --data-dir; `--node` is the same as `--name`).
    #[command(flatten)]
    pub node: NodeLocation,
    /// How to reach it on another machine.
    #[command(flatten)]
    pub remote: RemoteAccess,
    /// Query, in tantivy's syntax over the fields node, class, client, user, peer, topic,
    /// type, seq and the text: `client:c1 AND class:access`, `topic:"a/b"`, `"keep-alive
    /// timeout"` (empty: every event).
    #[arg(default_value = "")]
    pub query: String,
    /// Only this class.
    #[arg(long)]
    pub class: Option<String>,
    /// Only the last DURATION (30s, 15m, 1h, 2d).
    #[arg(long, value_name = "DURATION", conflicts_with = "from")]
    pub since: Option<String>,
    /// Only from this UTC time (2026-11-25T14:00:00Z or "2026-11-25 14:00:00").
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Only until this UTC time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The most events printed.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// One JSON object per event instead of text lines.
    #[arg(long)]
    pub json: bool,
}

/// Connection flags shared by `fubar pub` and `fubar sub` (mosquitto's names).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Broker host, or a WebSocket URL: ws://HOST:PORT/PATH (wss:// with --cafile).
    #[arg(short = 'h', long, default_value = "localhost")]
    pub host: String,
    /// Broker port [default: 1883; 8883 with --cafile, 8080 with --ws, 8443 with both].
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Client id [default: fubar-pub-PID / fubar-sub-PID].
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", requires = "username")]
    pub password: Option<String>,
    /// Keep-alive, seconds.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    pub keep_alive: u16,
    /// Do not clean the session (persistent: the broker keeps subscriptions and QoS 1/2
    /// messages while away).
    #[arg(short = 'c', long = "disable-clean-session")]
    pub no_clean: bool,
    /// Protocol: mqttv31, mqttv311 or mqttv5 (or 3.1, 3.1.1, 5).
    #[arg(short = 'V', long = "protocol-version", default_value = "mqttv311")]
    pub protocol: String,
    /// Will topic.
    #[arg(long)]
    pub will_topic: Option<String>,
    /// Will payload.
    #[arg(long, alias = "will-payload", requires = "will_topic")]
    pub will_message: Option<String>,
    /// Will QoS.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub will_qos: u8,
    /// Retain the will.
    #[arg(long)]
    pub will_retain: bool,
    /// TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Flags of `fubar pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Connection.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic.
    #[arg(short = 't', long)]
    pub topic: String,
    /// The message.
    #[arg(short = 'm', long, group = "payload")]
    pub message: Option<String>,
    /// Send a file as the message.
    #[arg(short = 'f', long, group = "payload")]
    pub file: Option<PathBuf>,
    /// Send each line of stdin as a message.
    #[arg(short = 's', long = "stdin-line", group = "payload")]
    pub stdin_lines: bool,
    /// Send an empty message (with -r: delete the retained message).
    #[arg(short = 'n', long = "null-message", group = "payload")]
    pub null: bool,
    /// QoS.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Retain the message.
    #[arg(short = 'r', long)]
    pub retain: bool,
}

/// Flags of `fubar sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Connection.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic filters.
    #[arg(short = 't', long, required = true)]
    pub topic: Vec<String>,
    /// QoS.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Print the topic before each payload.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Exit after this many messages.
    #[arg(short = 'C', long)]
    pub count: Option<u64>,
    /// Exit after this many seconds without a message.
    #[arg(short = 'W', long)]
    pub timeout: Option<u64>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn every_command_line_definition_is_consistent() {
        // clap checks flag clashes (like -V used twice) only when a command is parsed; this
        // checks every subcommand now.
        Cli::command().debug_assert();
        ShellLine::command().debug_assert();
    }

    /// The default `arg` states: its `default_value`, or the `[default: ...]` of its help.
    fn stated_default(arg: &clap::Arg) -> Option<String> {
        let values = arg.get_default_values();
        if !values.is_empty() {
            let values: Vec<String> = values
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            return Some(values.join(","));
        }
        let help = arg.get_long_help().or_else(|| arg.get_help())?.to_string();
        let (_, rest) = help.split_once("[default: ")?;
        Some(rest.split(']').next().unwrap_or("").to_owned())
    }

    /// Every subcommand of `fubar`, by path (`"fubar node"`), depth first.
    fn every_command(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.to_owned(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            every_command(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    /// What a flag backed by a setting must state as its default, from `Settings::default()`,
    /// by long name; `None` for a flag no setting backs.
    fn default_from_settings(flag: &str) -> Option<String> {
        let d = crate::settings::Settings::default();
        let absent =
            |port: Option<u16>, what: &str| port.map_or_else(|| what.to_owned(), |p| p.to_string());
        Some(match flag {
            "name" => {
                let host = d.node.name.split_once('@').map_or("", |(_, h)| h);
                d.node.name.replace(host, "<hostname>")
            }
            "data-dir" => format!("./{}", d.node.data_dir.display()),
            "bind" => d.mqtt.bind.to_string(),
            "mqtt-port" => d.mqtt.port.to_string(),
            "mqtts-port" => absent(d.mqtts.port, "no TLS listener"),
            "http-port" => absent(d.http.port, "no HTTP endpoint"),
            "console-port" => absent(d.console.port, "no console"),
            "ws-port" => absent(d.ws.port, "no WebSocket listener"),
            "wss-port" => absent(d.wss.port, "no secure WebSocket listener"),
            "max-packet-size" => d.mqtt.max_packet_size.to_string(),
            "log-stdout" => {
                let to_stdout: Vec<&str> = d
                    .log
                    .classes
                    .iter()
                    .filter(|(_, to)| to.as_str() == "stdout")
                    .map(|(class, _)| class.as_str())
                    .collect();
                to_stdout.join(",")
            }
            "cluster-port" => format!("the PORT of --name NAME@HOST:PORT, else {}", d.cluster.port),
            // An empty cookie_file means the data dir's `cookie` (`Settings::cookie_file`).
            "cookie-file" if d.cluster.cookie_file.as_os_str().is_empty() => {
                "DATA_DIR/cookie".to_owned()
            }
            "cafile" if d.cluster.cafile.as_os_str().is_empty() => {
                "none; the node proves the cookie".to_owned()
            }
            _ => return None,
        })
    }

    #[test]
    fn every_default_a_flag_states_for_a_setting_is_the_settings_default() {
        let mut commands = Vec::new();
        every_command(&Cli::command(), "fubar", &mut commands);
        let mut checked = 0;
        for (path, cmd) in &commands {
            // Every flag of `node` and `monitor` overrides a setting; `ctl`, `search` and
            // `console` find a node by the same flags. The tools' own flags (bench, pub,
            // sub, ssl) and a search's `--limit` are not settings of a node.
            let all_settings = path == "fubar node" || path == "fubar monitor";
            let of_a_node = all_settings
                || path == "fubar ctl"
                || path == "fubar search"
                || path.starts_with("fubar console");
            for arg in cmd.get_arguments() {
                let (Some(flag), Some(stated)) = (arg.get_long(), stated_default(arg)) else {
                    continue;
                };
                match default_from_settings(flag) {
                    Some(expected) if of_a_node => {
                        assert_eq!(
                            stated, expected,
                            "{path} --{flag}: its help and the settings disagree"
                        );
                        checked += 1;
                    }
                    None if all_settings => {
                        panic!("{path} --{flag} states the default {stated:?}: map it to its setting here")
                    }
                    _ => {}
                }
            }
        }
        assert!(checked >= 13, "only {checked} stated defaults checked");
    }

    #[test]
    fn the_texts_that_name_a_default_in_passing_agree_with_the_settings() {
        let d = crate::settings::Settings::default();
        let cli = Cli::command();
        let node = cli.find_subcommand("node").expect("node");
        let about = node.get_about().expect("about").to_string();
        let listens = format!("MQTT on {}:{}", d.mqtt.bind, d.mqtt.port);
        assert!(
            about.contains(&listens),
            "{about:?} does not say {listens:?}"
        );
        let state = format!("state under ./{}/", d.node.data_dir.display());
        assert!(about.contains(&state), "{about:?} does not say {state:?}");
        let ctl = cli.find_subcommand("ctl").expect("ctl");
        let name = ctl
            .get_arguments()
            .find(|a| a.get_long() == Some("name"))
            .and_then(|a| a.get_long_help().or_else(|| a.get_help()))
            .expect("ctl --name has help")
            .to_string();
        let port = format!("(QUIC, default {})", d.cluster.port);
        assert!(name.contains(&port), "{name:?} does not say {port:?}");
        let ingest = cli
            .find_subcommand("bench")
            .and_then(|b| b.find_subcommand("ingest"))
            .expect("bench ingest");
        let cookie = ingest
            .get_arguments()
            .find(|a| a.get_long() == Some("cookie-file"))
            .and_then(stated_default)
            .expect("bench ingest --cookie-file states its default");
        assert_eq!(
            std::path::Path::new(&cookie),
            d.node.data_dir.join("cookie"),
            "bench ingest --cookie-file: the cookie of a node on the default data dir"
        );
    }
}
