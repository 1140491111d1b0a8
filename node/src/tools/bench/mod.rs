//! `fubar bench`: load generation against any MQTT broker, with a progress bar while it runs,
//! results a person can read and `--json` for scripts; Ctrl-C stops a run and reports what it
//! measured.

pub mod conns;
pub mod control;
pub mod flow;
pub mod handshakes;
pub mod ingest;
pub mod latency;
pub mod probe;
pub mod report;
#[cfg(test)]
pub(crate) mod test_broker {
    //! An in-memory broker on a free loopback port, for the benchmarks' own tests.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio::task::JoinHandle;

    use crate::broker::{Broker, Server};
    use crate::settings::Settings;

    /// A running in-memory broker.
    pub(crate) struct TestBroker {
        pub(crate) addr: SocketAddr,
        pub(crate) broker: Arc<Broker>,
        serving: JoinHandle<()>,
    }

    impl TestBroker {
        pub(crate) async fn start() -> Self {
            let mut settings = Settings::default();
            settings.mqtt.bind = [127, 0, 0, 1].into();
            settings.mqtt.port = 0;
            let broker = Arc::new(Broker::standalone(settings, None).expect("in-memory broker"));
            let server = Server::bind(broker.clone()).await.expect("bind");
            let addr = server.local_addr().expect("address");
            let serving = tokio::spawn(server.run());
            Self {
                addr,
                broker,
                serving,
            }
        }

        pub(crate) async fn stop(self) {
            self.broker.shutdown.cancel();
            self.serving.await.expect("server task");
        }
    }
}
