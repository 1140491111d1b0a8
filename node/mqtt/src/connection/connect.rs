//! What a CONNECT settles, apart from who the client is (credentials and sessions are the
//! broker's): whether its client id is acceptable, the session's terms, the keep-alive, and
//! the CONNACK the server answers with.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Connection, Phase};
use crate::packet::{
    Ack, ConnAck, Connect, ConnectReturnCode, Packet, Properties, ProtocolVersion,
};
use crate::reason::ReasonCode;

/// How long a session outlives its connection, as a CONNECT asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTerms {
    /// The MQTT 5.0 session expiry interval (`None` before 5.0).
    pub expiry_secs: Option<u32>,
    /// Whether the session outlives the connection.
    pub persistent: bool,
}

/// MQTT 5.0: clean start discards an existing session (else it is resumed), and the session
/// outlives the connection when the session expiry interval is above 0. In 3.1/3.1.1 clean
/// session says both.
pub fn session_terms(c: &Connect) -> SessionTerms {
    let expiry_secs = (c.protocol == ProtocolVersion::V5)
        .then(|| c.properties.session_expiry_interval.unwrap_or(0));
    SessionTerms {
        expiry_secs,
        persistent: expiry_secs.map_or(!c.clean_session, |secs| secs > 0),
    }
}

/// The in-flight window toward a client: an MQTT 5.0 client takes at most its Receive
/// Maximum of QoS 1/2 messages in flight (the configured window if it is smaller).
pub fn inflight_window(c: &Connect, configured: usize) -> usize {
    c.properties
        .receive_maximum
        .map_or(configured, |n| configured.min(usize::from(n)))
}

impl Connection {
    /// Whether a CONNECT's client id is acceptable: MQTT 3.1 allows 1 to 23 characters; 3.1.1
    /// up to `Limits::max_client_id_len` bytes, empty only with clean session; MQTT 5.0 up to
    /// that length, and an empty one gets an id assigned, clean start or not.
    pub fn client_id_allowed(&self, c: &Connect) -> bool {
        let max = self.limits.max_client_id_len;
        match c.protocol {
            ProtocolVersion::V31 => (1..=23).contains(&c.client_id.chars().count()),
            ProtocolVersion::V311 => {
                c.client_id.len() <= max && (!c.client_id.is_empty() || c.clean_session)
            }
            ProtocolVersion::V5 => c.client_id.len() <= max,
        }
    }

    /// The broker accepted `c` at `now` for the client `client_id`: the CONNACK goes to
    /// `poll_transmit`, and the session present flag it carries is returned. A client that
    /// sent no client id is told the one it got (MQTT 5.0, 3.2.2.3.7). For MQTT 5.0 this
    /// settles the terms in `flow` and announces the server's own (3.2.2.3): Receive Maximum,
    /// Topic Alias Maximum, Maximum Packet Size, and the Server Keep Alive, which holds a
    /// client asking for no keep-alive, or for more than `Limits::max_keep_alive_secs`, to
    /// that maximum (MQTT-3.2.2-21). 3.1/3.1.1 clients keep their own keep-alive.
    pub fn accept_connect(
        &mut self,
        now: Instant,
        c: &Connect,
        session_present: bool,
        client_id: &Arc<str>,
    ) -> bool {
        let assigned = self.tell_client_id.then(|| client_id.clone());
        // MQTT 3.1 has no session present flag.
        let session_present = session_present && c.protocol != ProtocolVersion::V31;
        let mut connack = ConnAck::new(session_present, ConnectReturnCode::Accepted);
        let mut keep_alive = c.keep_alive;
        if c.protocol == ProtocolVersion::V5 {
            self.flow.on_connect(c, &self.limits);
            // The encoder leaves these out for 3.1/3.1.1.
            let p = &mut connack.properties;
            p.assigned_client_identifier = assigned;
            p.retain_available = Some(true);
            p.wildcard_subscription_available = Some(true);
            p.shared_subscription_available = Some(true);
            p.subscription_identifier_available = Some(true);
            p.maximum_packet_size = u32::try_from(self.limits.max_packet_size).ok();
            // Absent would mean 65,535 and no aliases.
            p.receive_maximum = Some(self.flow.quota.max());
            let aliases = self.flow.inbound.max();
            p.topic_alias_maximum = (aliases > 0).then_some(aliases);
            let max = self.limits.max_keep_alive_secs;
            if keep_alive == 0 || keep_alive > max {
                keep_alive = max;
                p.server_keep_alive = Some(max);
            }
        }
        self.phase = Phase::Connected;
        self.session_expiry = session_terms(c).expiry_secs;
        self.last_received = now;
        self.keep_alive_secs = keep_alive;
        // The server allows one and a half keep-alive intervals (MQTT-3.1.2-24).
        self.keep_alive =
            (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        self.transmit.push_back(Packet::ConnAck(connack));
        session_present
    }
}

impl Connection {
    /// The PUBREL or PUBCOMP answering a PUBREC or PUBREL for `packet_id`: MQTT 5.0 says 0x92
    /// when the packet id is unknown (sections 3.6.2.1, 3.7.2.1), with a reason string unless
    /// the client asked for none.
    pub fn release_ack(&self, packet_id: u16, known: bool) -> Ack {
        if known || self.protocol != ProtocolVersion::V5 {
            return Ack::new(packet_id);
        }
        Ack {
            packet_id,
            reason: ReasonCode::PacketIdentifierNotFound,
            properties: Properties {
                reason_string: self
                    .flow
                    .reason_string(|| format!("no QoS 2 message with packet id {packet_id}")),
                ..Properties::default()
            },
        }
    }
}
