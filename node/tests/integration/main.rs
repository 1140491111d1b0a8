//! Black-box tests: each starts the real `fubar` binary on a free loopback port and talks to it
//! with independent clients (rumqttc, mosquitto_pub/sub, paho-mqtt) or raw bytes.
//!
//! One test binary with modules (as ripgrep does) links once.

#![allow(
    clippy::unwrap_used,
    reason = "a test and its helpers fail by panicking"
)]

mod admin;
mod admin_authz;
mod bench;
mod client_owner;
mod close_drain;
mod cluster;
mod cluster_identity;
mod common;
mod conformance;
mod console;
mod http_limits;
mod interop;
mod lifecycle;
mod limits;
mod login_throttle;
mod logs;
mod malformed;
mod monitor;
mod mqtt5;
mod mqtt5_flow;
mod mqtt5_message;
mod mqtt5_rumqttc;
mod mqtt5_session;
mod observe;
mod observe_monitor;
mod overload;
mod partition;
mod replicas;
mod replicas_faults;
mod state;
mod sub_race;
mod tls;
mod tools;
mod topic_acl;
mod websocket;
mod websocket_guards;
