//! `fubar node`: settings from defaults, file and flags; logging; the listener; signals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fubar_logs::LogHandle;
use fubar_store::replicated::NodeRole;
use fubar_store::{Store, SyncMode};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, NodeContext};
use crate::broker::cluster_hooks::{ClusterHooks, LocalOnly};
use crate::broker::{Broker, Server};
use crate::cli::{MonitorArgs, NodeArgs};
use crate::cluster::endpoint;
use crate::cluster::member::ClusterMember;
use crate::cluster::monitor::MonitorRole;
use crate::cluster::shipping::LogShipping;
use crate::console::ConsoleListener;
use crate::logging;
use crate::settings::{Settings, SyncSetting};

/// What a node process is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A broker (`fubar node`).
    Broker,
    /// The log collector (`fubar monitor`), serving MQTT too unless `mqtt` is false.
    Monitor {
        /// Whether it has an MQTT listener.
        mqtt: bool,
    },
}

/// Runs a broker node until SIGINT or SIGTERM.
pub(crate) fn run(args: NodeArgs) -> anyhow::Result<()> {
    run_as(args, Role::Broker)
}

/// Runs the monitor until SIGINT or SIGTERM.
pub(crate) fn run_monitor(args: MonitorArgs) -> anyhow::Result<()> {
    let role = Role::Monitor {
        mqtt: !args.no_mqtt,
    };
    run_as(args.node, role)
}

fn run_as(args: NodeArgs, role: Role) -> anyhow::Result<()> {
    let first = settings_of(&args, &[])?;
    let node_dir = first.node_dir();
    create_private_dir(&node_dir)?;
    let (logs, epoch) = logging::init(&first)?;
    let store = open_store(&first)?;
    // Changes made at run time (`fubar ctl settings`) were kept in the store: they apply over
    // the file, and flags apply over them.
    let settings = settings_of(&args, &store.settings()?)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let node = NodeParts {
        settings,
        store: Arc::new(store),
        logs: logs.clone(),
        epoch,
        role,
    };
    let result = runtime.block_on(serve(node));
    logs.shutdown();
    result
}

/// What `serve` runs.
struct NodeParts {
    settings: Settings,
    store: Arc<Store>,
    logs: LogHandle,
    epoch: u64,
    role: Role,
}

/// The node's directory, readable by its owner only: the admin socket lives there.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict data directory {}", dir.display()))
}

/// Opens the node's preserved state under `<node dir>/state`.
pub(crate) fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let mode = match settings.store.sync {
        SyncSetting::Group => SyncMode::Group,
        SyncSetting::None => SyncMode::None,
    };
    let window = Duration::from_millis(settings.store.group_commit_ms);
    Ok(Store::open(&settings.state_dir(), mode, window)?)
}

/// Defaults, overlaid with the settings file, then the stored run-time changes, then flags;
/// then checked.
fn settings_of(args: &NodeArgs, stored: &[(String, String)]) -> anyhow::Result<Settings> {
    let mut s = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    for (name, value) in stored {
        match s.with_change(name, value) {
            Ok(changed) => s = changed,
            Err(e) => eprintln!("fubar: ignoring the stored setting {name} = {value}: {e}"),
        }
    }
    let args = args.clone();
    if let Some(v) = args.name {
        s.node.name = v;
    }
    if let Some(v) = args.data_dir {
        s.node.data_dir = v;
    }
    if let Some(v) = args.bind {
        s.mqtt.bind = v;
    }
    if let Some(v) = args.mqtt_port {
        s.mqtt.port = v;
    }
    if let Some(v) = args.mqtts_port {
        s.mqtts.port = Some(v);
    }
    if let Some(v) = args.http_port {
        s.http.port = Some(v);
    }
    if let Some(v) = args.console_port {
        s.console.port = Some(v);
    }
    if let Some(v) = args.ws_port {
        s.ws.port = Some(v);
    }
    if let Some(v) = args.wss_port {
        s.wss.port = Some(v);
    }
    if let Some(v) = args.max_packet_size {
        s.mqtt.max_packet_size = v;
    }
    if let Some(v) = args.log_stdout {
        for class in v.into_iter().filter(|c| !c.is_empty()) {
            s.log.classes.insert(class, "stdout".into());
        }
    }
    if args.auth {
        s.auth.enabled = true;
    }
    if let Some(v) = args.master {
        s.cluster.master = v;
    }
    if let Some(v) = args.cluster_port {
        s.cluster.port = v;
    }
    if let Some(v) = args.cookie_file {
        s.cluster.cookie_file = v;
    }
    // `NAME@HOST:PORT`: the port is the cluster port, the identity is `NAME@HOST`.
    let port_set = args.cluster_port.is_some() || file_sets_cluster_port(args.config.as_deref());
    let (name, port) = crate::cluster::settle(&s.node.name, s.cluster.port, port_set)?;
    s.node.name = name;
    s.cluster.port = port;
    if s.node.name.len() > fubar_logproto::link::MAX_NODE_NAME {
        anyhow::bail!(
            "the node name is longer than {} bytes",
            fubar_logproto::link::MAX_NODE_NAME
        );
    }
    s.validate()?;
    Ok(s)
}

/// Whether the settings file gives `cluster.port` (a name's port must then agree with it).
fn file_sets_cluster_port(config: Option<&std::path::Path>) -> bool {
    config
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("cluster")?.as_table()?.get("port").cloned())
        .is_some()
}

async fn serve(node: NodeParts) -> anyhow::Result<()> {
    let NodeParts {
        settings,
        store,
        logs,
        epoch,
        role,
    } = node;
    let name = settings.node.name.clone();
    let want = std::net::SocketAddr::new(settings.mqtt.bind, settings.mqtt.port);
    let admin_path = admin::socket_path(&settings.node_dir());
    let tls = settings.mqtts.port.is_some() || settings.wss.port.is_some();
    // The console is bound first: its URL is what `fubar console url` hands out.
    let console = match role {
        Role::Monitor { .. } => ConsoleListener::bind(&settings).await.with_context(|| {
            format!(
                "cannot listen for the console on {}:{}",
                settings.console.bind,
                settings.console.port.unwrap_or_default()
            )
        })?,
        Role::Broker => None,
    };
    let monitor = match role {
        Role::Monitor { .. } => Some(Arc::new(MonitorRole::start(&settings, &logs, epoch)?)),
        Role::Broker => None,
    };
    // A monitor founds (or belongs to) a cluster; a broker is a member if it names a master.
    let endpoint = match &monitor {
        Some(m) => Some(m.server.clone()),
        None if !settings.cluster.master.is_empty() => {
            Some(endpoint::start_member_endpoint(&settings, epoch)?)
        }
        None => None,
    };
    let member = match &endpoint {
        Some(server) => {
            let node_role = match role {
                Role::Monitor { .. } => NodeRole::Monitor,
                Role::Broker => NodeRole::Broker,
            };
            let m =
                ClusterMember::start(&settings, store.clone(), server, node_role, epoch).await?;
            Some(m)
        }
        None => None,
    };
    // A broker of a cluster ships its events to the cluster's monitor (spooled from boot
    // until the monitor is known and reachable).
    let shipper = match (&member, &monitor) {
        (Some(m), None) => {
            let s = LogShipping::start(&settings, &logs, epoch)?;
            tokio::spawn(s.clone().ship_when_monitor_known(m.clone()));
            Some(s)
        }
        _ => None,
    };
    let serves_mqtt = !matches!(role, Role::Monitor { mqtt: false });
    // The broker tells the cluster member (its hooks) what other nodes must know.
    let hooks: Arc<dyn ClusterHooks> = match &member {
        Some(m) => m.clone(),
        None => Arc::new(LocalOnly),
    };
    let broker =
        Arc::new(Broker::new(settings, Some(store), hooks)?.with_packet_log(logs.packet_sink()));
    if let Some(m) = &member {
        m.attach(&broker)?;
    }
    let node = Arc::new(NodeContext {
        broker: broker.clone(),
        logs: Some(logs),
        member: member.clone(),
        monitor: monitor.clone(),
        shipping: shipper.clone(),
        console: console.as_ref().map(ConsoleListener::sign_in),
    });
    if let Some(server) = &endpoint {
        admin::serve_remote(server, node.clone());
    }
    if let Some(m) = &monitor {
        broker.add_listener(format!("cluster://{}", m.addr));
        println!("fubar monitor {name} collecting on cluster://{}", m.addr);
    } else if let Some(server) = &endpoint {
        let addr = server.local_addr()?;
        broker.add_listener(format!("cluster://{addr}"));
        // Before the mqtt line: scripts wait for that one as the sign the node is ready.
        println!("fubar node {name} cluster port on cluster://{addr}");
    }
    tokio::spawn(crate::broker::sys_topics::run(broker.clone()));
    // Before the listening line: scripts wait for that one, and then read the HTTP port.
    let http = start_http(&node, &name).await?;
    let console = match (console, &monitor) {
        (Some(c), Some(m)) => {
            let url = c.sign_in().base_url().to_owned();
            println!("fubar monitor {name} console on {url}");
            tracing::info!(target: "info", node = %name, %url, "console started");
            Some(tokio::spawn(c.run(
                node.clone(),
                m.clone(),
                broker.shutdown.clone(),
            )))
        }
        _ => None,
    };
    if !serves_mqtt {
        let done = serve_without_mqtt(node, &admin_path, &name).await;
        stop_http(http).await;
        stop_http(console).await;
        return done;
    }
    if tls {
        // Missing or unreadable certificate or key: refuse to start, naming the file.
        // The error's message already says why (its source): `{e:#}` would say it twice.
        broker.load_tls().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let server = Server::bind(broker.clone())
        .await
        .with_context(|| format!("cannot listen on {want}"))?;
    let addr = server.local_addr()?;
    broker.add_listener(format!("mqtt://{addr}"));
    if let Some(tls_addr) = server.tls_local_addr().transpose()? {
        broker.add_listener(format!("mqtts://{tls_addr}"));
        // Before the mqtt line: scripts wait for that one as the sign the node is ready.
        println!("fubar node {name} listening on mqtts://{tls_addr}");
    }
    let ws_path = broker.settings().ws.path.clone();
    if let Some(ws_addr) = server.ws_local_addr().transpose()? {
        broker.add_listener(format!("ws://{ws_addr}{ws_path}"));
        println!("fubar node {name} listening on ws://{ws_addr}{ws_path}");
    }
    if let Some(wss_addr) = server.wss_local_addr().transpose()? {
        broker.add_listener(format!("wss://{wss_addr}{ws_path}"));
        println!("fubar node {name} listening on wss://{wss_addr}{ws_path}");
    }
    let admin = admin::Endpoint::bind(&admin_path, node.clone())?;
    // Install the handlers before announcing the node: a SIGTERM sent as soon as the line
    // below is seen must stop it gracefully, not kill it.
    let term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(cancel_on_signal(term, int, broker.shutdown.clone()));
    let admin_task = tokio::spawn(admin.run());
    // Tests and scripts wait for this line: it means the listener is accepting.
    println!("fubar node {name} listening on mqtt://{addr}");
    tracing::info!(target: "info", node = %name, %addr, admin = %admin_path.display(),
        version = env!("CARGO_PKG_VERSION"), "node started");
    server.run().await;
    let _ = admin_task.await;
    stop_http(http).await;
    stop_http(console).await;
    stop_cluster_parts(&node).await;
    tracing::info!(target: "info", node = %name, "node stopped");
    Ok(())
}

/// A monitor without an MQTT listener: the admin socket and the cluster port until a signal.
async fn serve_without_mqtt(
    node: Arc<NodeContext>,
    admin_path: &std::path::Path,
    name: &str,
) -> anyhow::Result<()> {
    let broker = &node.broker;
    let admin = admin::Endpoint::bind(admin_path, node.clone())?;
    let term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(cancel_on_signal(term, int, broker.shutdown.clone()));
    let admin_task = tokio::spawn(admin.run());
    // Scripts wait for this line: the cluster port and the admin socket are ready.
    println!("fubar monitor {name} ready (no MQTT listener)");
    tracing::info!(target: "info", node = %name, admin = %admin_path.display(),
        version = env!("CARGO_PKG_VERSION"), "monitor started without MQTT");
    broker.shutdown.cancelled().await;
    let _ = admin_task.await;
    stop_cluster_parts(&node).await;
    tracing::info!(target: "info", node = %name, "node stopped");
    Ok(())
}

/// Binds and starts the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`) when `http.port`
/// is set, and says where it listens.
async fn start_http(
    node: &Arc<NodeContext>,
    name: &str,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let settings = node.broker.settings();
    let Some(endpoint) = crate::http::HttpEndpoint::bind(node.clone())
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {}:{}",
                settings.http.bind,
                settings.http.port.unwrap_or_default()
            )
        })?
    else {
        return Ok(None);
    };
    let addr = endpoint.local_addr()?;
    println!("fubar node {name} http on http://{addr}");
    tracing::info!(target: "info", node = %name, %addr, "HTTP endpoint started");
    Ok(Some(tokio::spawn(
        endpoint.run(node.broker.shutdown.clone()),
    )))
}

/// Waits for the HTTP endpoint (stopped by the node's shutdown token) to finish.
async fn stop_http(task: Option<tokio::task::JoinHandle<()>>) {
    if let Some(task) = task {
        let _ = task.await;
    }
}

/// Stops the cluster member, then the log shipper and the monitor role, if the node has them.
async fn stop_cluster_parts(node: &NodeContext) {
    if let Some(m) = &node.member {
        m.shutdown().await;
    }
    if let Some(s) = &node.shipping {
        s.shutdown().await;
    }
    if let Some(m) = &node.monitor {
        m.shutdown().await;
    }
}

/// Cancels `token` at the first SIGINT or SIGTERM.
async fn cancel_on_signal(mut term: Signal, mut int: Signal, token: CancellationToken) {
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!(target: "info", "shutdown requested");
    token.cancel();
}
