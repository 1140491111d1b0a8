//! `fubar pub` and `fubar sub`, in the manner of mosquitto_pub and mosquitto_sub.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::mqtt::packet::{Ack, Connect, Disconnect, Packet, Publish, QoS, SubAckCode, Subscribe};
use crate::tools::client::{connect_with, ClientReader, ClientWriter, Dial};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Session {
    /// The broker.
    pub addr: SocketAddr,
    /// TLS, if any.
    pub tls: Option<Dial>,
    /// The CONNECT to send.
    pub connect: Connect,
}

/// What `fubar sub` does.
#[derive(Debug, Clone)]
pub struct SubOptions {
    /// Topic filters.
    pub topics: Vec<String>,
    /// Requested QoS.
    pub qos: QoS,
    /// Print `topic payload` instead of the payload alone.
    pub verbose: bool,
    /// Exit after this many messages.
    pub count: Option<u64>,
    /// Exit after this long without a message.
    pub idle_timeout: Option<Duration>,
}

/// Subscribes and prints messages to `out` until `count` or the idle timeout.
pub async fn subscribe(s: Session, o: SubOptions, out: &mut dyn io::Write) -> io::Result<u64> {
    let keep_alive = s.connect.keep_alive;
    let (mut r, mut w, _) = connect_with(s.addr, s.tls.as_ref(), s.connect).await?;
    w.push(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: o.topics.iter().map(|t| (t.clone(), o.qos.into())).collect(),
        properties: Default::default(),
    }));
    w.flush().await?;
    let ping_every = Duration::from_secs(u64::from(keep_alive.max(1)));
    let mut received = 0;
    loop {
        if o.count.is_some_and(|c| received >= c) {
            break;
        }
        let wait = o.idle_timeout.unwrap_or(Duration::MAX).min(ping_every);
        let packet = match tokio::time::timeout(wait, r.next()).await {
            Ok(p) => p?,
            Err(_) if o.idle_timeout.is_some_and(|t| t <= ping_every) => break,
            Err(_) => {
                w.push(&Packet::PingReq);
                w.flush().await?;
                continue;
            }
        };
        match packet {
            Packet::Publish(p) => {
                received += 1;
                if o.verbose {
                    out.write_all(p.topic.as_bytes())?;
                    out.write_all(b" ")?;
                }
                out.write_all(&p.payload)?;
                out.write_all(b"\n")?;
                out.flush()?;
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => w.push(&Packet::PubAck(Ack::new(p.packet_id))),
                    QoS::ExactlyOnce => w.push(&Packet::PubRec(Ack::new(p.packet_id))),
                }
            }
            Packet::PubRel(Ack { packet_id: id, .. }) => w.push(&Packet::PubComp(Ack::new(id))),
            Packet::SubAck(a) if a.codes.contains(&SubAckCode::Failure) => {
                return Err(io::Error::other("the broker refused a subscription"));
            }
            _ => {}
        }
        w.flush().await?;
    }
    w.push(&Packet::Disconnect(Disconnect::default()));
    let _ = w.flush().await;
    Ok(received)
}

/// What `fubar pub` sends.
#[derive(Debug, Clone)]
pub struct PubOptions {
    /// Topic.
    pub topic: String,
    /// Payloads, one PUBLISH each.
    pub messages: Vec<Bytes>,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
}

/// Publishes every message, waits for each acknowledgement, disconnects.
pub async fn publish(s: Session, o: PubOptions) -> io::Result<u64> {
    let (mut r, mut w, _) = connect_with(s.addr, s.tls.as_ref(), s.connect).await?;
    let topic: Arc<str> = o.topic.as_str().into();
    let mut sent = 0;
    for (i, payload) in o.messages.into_iter().enumerate() {
        let packet_id = if o.qos == QoS::AtMostOnce {
            0
        } else {
            (i % 65_535) as u16 + 1
        };
        w.push(&Packet::Publish(Publish {
            dup: false,
            qos: o.qos,
            retain: o.retain,
            topic: topic.clone(),
            packet_id,
            payload,
            properties: Default::default(),
        }));
        w.flush().await?;
        if o.qos != QoS::AtMostOnce {
            acknowledged(&mut r, &mut w, packet_id).await?;
        }
        sent += 1;
    }
    w.push(&Packet::Disconnect(Disconnect::default()));
    w.flush().await?;
    Ok(sent)
}

/// Waits until the broker has acknowledged `packet_id` (PUBACK, or PUBREC/PUBREL/PUBCOMP).
async fn acknowledged(
    r: &mut ClientReader,
    w: &mut ClientWriter,
    packet_id: u16,
) -> io::Result<()> {
    loop {
        match r.next().await? {
            Packet::PubAck(Ack { packet_id: id, .. })
            | Packet::PubComp(Ack { packet_id: id, .. })
                if id == packet_id =>
            {
                return Ok(())
            }
            Packet::PubRec(Ack { packet_id: id, .. }) => {
                w.push(&Packet::PubRel(Ack::new(id)));
                w.flush().await?;
            }
            _ => {}
        }
    }
}
