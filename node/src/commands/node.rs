//! `fubar node`: settings from defaults, file and flags; logging; the listener; signals.

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::broker::Server;
use crate::cli::NodeArgs;
use crate::logging;
use crate::settings::Settings;

/// Runs a broker node until SIGINT or SIGTERM.
pub(crate) fn run(args: NodeArgs) -> anyhow::Result<()> {
    let settings = settings_of(args)?;
    logging::init(&settings.log)?;
    let node_dir = settings.node_dir();
    std::fs::create_dir_all(&node_dir)
        .with_context(|| format!("cannot create data directory {}", node_dir.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(settings))
}

/// Defaults, overlaid with the settings file, overlaid with flags; then checked.
fn settings_of(args: NodeArgs) -> anyhow::Result<Settings> {
    let mut s = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
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
    if let Some(v) = args.max_packet_size {
        s.mqtt.max_packet_size = v;
    }
    if let Some(v) = args.log_stdout {
        s.log.stdout = v.into_iter().filter(|c| !c.is_empty()).collect();
    }
    s.validate()?;
    Ok(s)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let name = settings.node.name.clone();
    let want = std::net::SocketAddr::new(settings.mqtt.bind, settings.mqtt.port);
    let server = Server::bind(settings)
        .await
        .with_context(|| format!("cannot listen on {want}"))?;
    let addr = server.local_addr()?;
    // Install the handlers before announcing the node: a SIGTERM sent as soon as the line
    // below is seen must stop it gracefully, not kill it.
    let term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(term, int, shutdown.clone()));
    // Tests and scripts wait for this line: it means the listener is accepting.
    println!("fubar node {name} listening on mqtt://{addr}");
    tracing::info!(target: "info", node = %name, %addr, version = env!("CARGO_PKG_VERSION"), "node started");
    server.run(shutdown).await;
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
