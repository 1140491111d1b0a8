//! `fubar node`: settings from defaults, file and flags; logging; the listener; signals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fubar_logs::LogHandle;
use fubar_store::{Store, SyncMode};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::broker::{Broker, Server};
use crate::cli::NodeArgs;
use crate::logging;
use crate::settings::{Settings, SyncSetting};

/// Runs a broker node until SIGINT or SIGTERM.
pub(crate) fn run(args: NodeArgs) -> anyhow::Result<()> {
    let first = settings_of(&args, &[])?;
    let node_dir = first.node_dir();
    create_private_dir(&node_dir)?;
    let logs = logging::init(&first)?;
    let store = open_store(&first)?;
    // Changes made at run time (`fubar ctl settings`) were kept in the store: they apply over
    // the file, and flags apply over them.
    let settings = settings_of(&args, &store.settings()?)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(settings, Arc::new(store), logs.clone()));
    logs.shutdown();
    result
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
    s.validate()?;
    Ok(s)
}

async fn serve(settings: Settings, store: Arc<Store>, logs: LogHandle) -> anyhow::Result<()> {
    let name = settings.node.name.clone();
    let want = std::net::SocketAddr::new(settings.mqtt.bind, settings.mqtt.port);
    let admin_path = admin::socket_path(&settings.node_dir());
    let tls = settings.mqtts.port.is_some();
    let broker = Arc::new(Broker::new(settings, Some(store))?);
    let _ = broker.logs.set(logs);
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
    let admin = admin::Endpoint::bind(&admin_path, broker.clone())?;
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
    tracing::info!(target: "info", node = %name, "node stopped");
    Ok(())
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
