//! TLS for fubar: every rustls configuration the project uses, and the certificates it makes.
//!
//! - [`server_config`] builds the MQTT TLS listener's configuration (TLS 1.2 and 1.3, optional
//!   or required client certificates checked against a CA file).
//! - [`client_config`] builds the configuration of fubar's own clients (pub, sub, bench) and,
//!   later, of the cluster and monitor QUIC links, which use the same CA material.
//! - [`quic_server_config`] and [`quic_client_config`] are the same, TLS 1.3 only, for QUIC
//!   endpoints (the monitor's log link).
//! - [`new_certs`] makes a CA and the server, client and node certificates it signs, as
//!   `fubar ssl new-certs` does; no OpenSSL is involved.
//! - [`cluster_server_config`] and [`cluster_client_config`] are the cluster port's, with
//!   its own trust ([`ClusterTrust`]: the cookie, or the cluster's own CA, never the MQTT
//!   client CA); [`self_made_identity`] makes a node's certificate on first start, and
//!   [`cert_kind`] tells a node certificate (marked with [`NODE_EKU`]) from any other.
//! - [`Role`]: what an operator certificate (`new-certs --operator NAME --role read|admin`,
//!   marked with [`OPERATOR_READ_EKU`] or [`OPERATOR_ADMIN_EKU`]) lets its holder do with
//!   admin commands; [`cert_kind`] reads it as [`CertKind::Operator`].
//! - [`peer_common_name`] reads the subject CN of a peer's certificate (the MQTT user name
//!   when the node takes it from the client certificate).
//!
//! The crate does no networking: callers wrap sockets with tokio-rustls or quinn. Its only
//! crypto provider is *ring*; the configurations are built with it explicitly, so they do not
//! depend on a process-wide default, but [`install_crypto_provider`] installs it as that
//! default for the libraries that look it up.

#![warn(missing_docs)]

mod certs;
mod cluster;
mod config;
mod error;
mod identity;
mod verify;

#[cfg(test)]
mod tests;

pub use certs::{new_certs, peer_common_name, NewCerts, DEFAULT_DAYS, DEFAULT_DIR};
pub use cluster::{
    cert_kind, cluster_client_config, cluster_client_config_for_node, cluster_server_config,
    self_made_identity, CertKind, ClusterTrust, NodeIdentity, NODE_EKU,
};
pub use config::{
    client_config, quic_client_config, quic_server_config, server_config, ServerTlsFiles,
};
pub use error::SslError;
pub use identity::{Role, UnknownRole, OPERATOR_ADMIN_EKU, OPERATOR_READ_EKU};
pub use verify::ClientVerify;

/// Installs *ring* as the process-wide rustls crypto provider; calling it again is harmless.
pub fn install_crypto_provider() {
    // Err means a provider is installed already: by an earlier call, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
