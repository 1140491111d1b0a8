//! A CONNECT the protocol core accepted (`Event::Connect`): the broker's part of it, who the
//! client is (credentials, a certificate's user), where its session lives (here, or taken
//! over from another node), and the CONNACK once it is attached.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::client_owner::NotOwner;
use super::super::limits;
use super::{Client, Connection};
use crate::broker::session_end::SessionEnd;
use crate::mqtt::connection::{inflight_window, CloseReason, ConnectRequest, SessionTerms};
use crate::mqtt::packet::{Connect, ConnectReturnCode, Packet, ProtocolVersion};
use crate::mqtt::reason::ReasonCode;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Authenticates the client of an accepted CONNECT, attaches its session and answers
    /// with CONNACK; a refusal is answered (CONNACK with its code) and closes.
    pub(super) async fn handle_connect(
        &mut self,
        request: ConnectRequest,
    ) -> Result<(), CloseReason> {
        let ConnectRequest {
            connect: c,
            replaced_client_id,
            terms:
                SessionTerms {
                    expiry_secs: expiry,
                    persistent,
                },
            clean_start,
            assign_client_id,
        } = request;
        let settings = self.settings.clone();
        let refuse = |this: &mut Self, code: ReasonCode, why: &'static str| {
            this.proto.refuse_connect(code);
            this.send_transmits();
            // `code`: what a 3.1.1 client reads; an MQTT 5.0 client gets the reason code.
            tracing::info!(target: "access", peer = %this.peer, client = %c.client_id,
                user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
                code = code.connect_return_code() as u8,
                reason = (c.protocol == ProtocolVersion::V5).then(|| format!("{:#04x}", code as u8)),
                "connect refused: {why}");
            Err(CloseReason::Refused(why))
        };
        if let Err(why) = self.broker.memory.admit() {
            return refuse(
                self,
                ConnectReturnCode::ServerUnavailable.into(),
                why.reason(),
            );
        }
        // A verified client certificate's user stands for the credentials (the protocol core
        // put it in the CONNECT).
        let by_certificate = self.proto.certificate_user().is_some();
        if !by_certificate && settings.auth.enabled {
            let broker = self.broker.clone();
            let check =
                broker
                    .accounts
                    .check(self.peer.ip(), c.username.as_deref(), c.password.as_deref());
            // A connection closed while its password waits or is checked is dropped with the
            // check: the throttle never counts a connection that is gone.
            let room = settings.mqtt.max_packet_size;
            let checked = tokio::select! {
                checked = check => checked,
                why = gone(&mut self.reader, self.proto.input_mut(), room) => {
                    tracing::info!(target: "access", peer = %self.peer, client = %c.client_id,
                        user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
                        "connect abandoned: the connection closed before its password check ended");
                    return Err(why);
                }
            };
            if let Err(refusal) = checked {
                return refuse(self, refusal.code, refusal.reason);
            }
        }
        // The user the session will belong to: one a password or a certificate proved. A user
        // name sent while `--auth` is off proves nothing (`client_owner`).
        let user = (by_certificate || settings.auth.enabled)
            .then(|| c.username.clone())
            .flatten();
        if let Some(original) = &replaced_client_id {
            tracing::info!(target: "access", peer = %self.peer, client = %c.client_id,
                sent_client_id = %original, "client id replaced by the user name (auth.client_id_from_username)");
        }
        let client_id: Arc<str> = if assign_client_id {
            self.broker.assign_client_id(self.conn_id).into()
        } else {
            c.client_id.as_str().into()
        };
        // Cut off from the majority of the cluster, or not yet caught up with its log since it
        // started or heard a majority again, this node does not serve a replicated session:
        // the others may have moved it (`cluster.session_lease_ms`).
        if self.broker.cluster.refuses_session(&client_id) {
            return refuse(
                self,
                ConnectReturnCode::ServerUnavailable.into(),
                "session lease not held (cut off from the cluster, or catching up with it)",
            );
        }
        // Another node may hold the client: it closes that connection, and a persistent
        // session comes here to be resumed.
        match self
            .broker
            .cluster
            .take_over(&client_id, user.as_deref(), !clean_start)
            .await
        {
            Ok(Some(moved)) => super::super::persist::install_moved(&self.broker, moved),
            Ok(None) => {}
            Err(refused) => return Err(self.refuse_not_owner(&c, user.as_deref(), refused)),
        }
        if let Err(why) =
            limits::admit_session(&self.broker, &settings, &client_id, clean_start, persistent)
        {
            limits::session_refused(&client_id, self.peer, why);
            // MQTT 5.0 0x97 quota exceeded; 3.1.1 CONNACK 3 server unavailable.
            self.proto.refuse_connect(ReasonCode::QuotaExceeded);
            self.send_transmits();
            return Err(CloseReason::Refused("persistent session refused"));
        }
        let attached = match self.broker.registry.attach_with(
            &client_id,
            user.as_deref(),
            clean_start,
            persistent,
            self.conn_id,
            settings.session_limits(),
        ) {
            Ok(attached) => attached,
            Err(refused) => return Err(self.refuse_not_owner(&c, user.as_deref(), refused)),
        };
        // Topic rules see the user of the connection that holds the session now.
        attached.handle.acl.set_user(c.username.as_deref());
        if let Some(old) = &attached.discarded {
            self.broker.end_session(old, SessionEnd::Replaced);
        }
        if let Some(will) = &attached.discarded_will {
            self.broker.publish_will(&client_id, will, "session ended");
        }
        if attached.took_over {
            tracing::info!(target: "resource", client = %client_id, peer = %self.peer, "session taken over");
        }
        self.broker
            .cluster
            .client_attached(&client_id, user.as_deref());
        tracing::info!(target: "resource", client = %client_id, clean = c.clean_session,
            "{}", if attached.session_present { "session resumed" } else { "session created" });
        // Authentication and the session may have taken a while: the keep-alive counts
        // from now.
        let now = Instant::now();
        let session_present =
            self.proto
                .accept_connect(now, &c, attached.session_present, &client_id);
        self.send_transmits();
        let keep_alive = self.proto.keep_alive_secs();
        tracing::info!(target: "access", client = %client_id, peer = %self.peer,
            transport = self.transport,
            user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
            keep_alive, clean_session = c.clean_session, session_present,
            "connected");
        if self.broker.tracer.client_traced(&client_id) {
            tracing::info!(target: "trace", client = %client_id, peer = %self.peer,
                user = c.username.as_deref().unwrap_or(""), protocol = %c.protocol,
                keep_alive, clean_session = c.clean_session, session_present,
                "connected");
        }
        let window = inflight_window(&c, settings.session.inflight_window);
        let resend = {
            let mut slot = attached.handle.lock();
            slot.session.set_inflight_window(window);
            // The session lives on after the connection for its expiry interval, at most
            // `session.max_age_secs`.
            slot.session.set_expiry_secs(expiry);
            let resend = slot.session.resend_on_resume(now);
            slot.submit_or_log("session resumed");
            resend
        };
        let will = self.allowed_will(&attached.handle, c.will);
        self.client = Some(Client {
            // The session's own copy of the id (the registry's key too), not this one: one
            // allocation per connected client instead of two.
            id: Arc::clone(&attached.handle.client_id),
            protocol: c.protocol,
            handle: attached.handle,
            will: will.map(Box::new),
            kicked: attached.kicked,
        });
        // Named by `client` from now on: the copy kept for the CONNECT's own records goes.
        self.connecting = None;
        for p in resend {
            self.resend(p);
        }
        Ok(())
    }

    /// Refuses a CONNECT whose client id has a session of another user (here or on the node
    /// holding it): CONNACK 2 identifier rejected (3.1/3.1.1) / 0x85 client identifier not
    /// valid (5.0). The session and its connection are left as they are.
    fn refuse_not_owner(
        &mut self,
        c: &Connect,
        user: Option<&str>,
        refused: NotOwner,
    ) -> CloseReason {
        let code = ReasonCode::ClientIdentifierNotValid;
        self.proto.refuse_connect(code);
        self.send_transmits();
        tracing::warn!(target: "access", peer = %self.peer, client = %c.client_id,
            user = user.unwrap_or(""), owner = %refused.owner, protocol = %c.protocol,
            code = code.connect_return_code() as u8,
            reason = (c.protocol == ProtocolVersion::V5).then(|| format!("{:#04x}", code as u8)),
            "connect refused: the client id's session belongs to another user");
        CloseReason::Refused("client id of another user")
    }

    /// Sends a packet a resumed session resends. A PUBLISH goes with its full topic (aliases
    /// are per connection) and, when it is larger than the client accepts, is dropped as if
    /// delivered (MQTT 5.0 3.1.2.11.4).
    fn resend(&mut self, packet: Packet) {
        let Packet::Publish(p) = packet else {
            return self.send(&packet);
        };
        if !self.proto.protocol().is_v5() {
            return self.send(&Packet::Publish(p));
        }
        let (topic, qos, packet_id) = (p.topic.clone(), p.qos, p.packet_id);
        match self.proto.flow.outgoing_publish(p, false) {
            Ok(packet) => self.send(&packet),
            Err(size) => {
                self.session(|s| s.discard_inflight(packet_id));
                self.report_too_large(&topic, qos, size);
            }
        }
    }
}

/// Reads on while a CONNECT's password is checked (what a client sends after its CONNECT is
/// kept in `rbuf`, up to `room` bytes), and ends when the client has closed the connection.
async fn gone<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    room: usize,
) -> CloseReason {
    use tokio::io::AsyncReadExt as _;
    loop {
        if rbuf.len() >= room {
            // Full: the rest waits in the socket until the check has ended.
            return std::future::pending().await;
        }
        rbuf.reserve(4096);
        match reader.read_buf(rbuf).await {
            Ok(0) => return CloseReason::SocketClosed,
            Ok(_) => {}
            Err(e) => return CloseReason::SocketError(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::broker::{Broker, Server};
    use crate::settings::Settings;

    /// A connected client's id is the session's own `Arc` (the registry's key), not a copy
    /// of its own: one allocation per idle connection less.
    #[tokio::test]
    async fn a_connection_shares_its_session_s_client_id() {
        let mut settings = Settings::default();
        settings.mqtt.bind = [127, 0, 0, 1].into();
        settings.mqtt.port = 0;
        let broker = Arc::new(Broker::standalone(settings, None).expect("a broker"));
        let server = Server::bind(broker.clone()).await.expect("bound");
        let addr = server.local_addr().expect("an address");
        let serving = tokio::spawn(server.run());
        let mut client = TcpStream::connect(addr).await.expect("connected");
        // CONNECT (3.1.1, clean session, keep-alive 60, client id "gone"), then its CONNACK.
        let connect = [
            0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 4, b'g', b'o', b'n', b'e',
        ];
        client.write_all(&connect).await.expect("sent");
        let mut connack = [0u8; 4];
        client.read_exact(&mut connack).await.expect("a CONNACK");
        assert_eq!(connack, [0x20, 2, 0, 0]);
        let handle = broker.registry.get("gone").expect("the session");
        let connected = Arc::strong_count(&handle.client_id);
        client.write_all(&[0xe0, 0]).await.expect("DISCONNECT sent");
        // A clean session ends with its connection: the registry's key and the connection's
        // hold on the id go, and only the handle's own (with its topic rules') stay. Waited
        // for, not timed: the connection's task lets go after the registry has.
        let mut left = connected;
        for _ in 0..500 {
            left = Arc::strong_count(&handle.client_id);
            if connected - left >= 2 && broker.registry.get("gone").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            connected - left,
            2,
            "the registry's key and the connection's"
        );
        broker.shutdown.cancel();
        serving.await.expect("the server task");
    }
}
