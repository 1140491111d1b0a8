//! Flow control toward the server (MQTT 5.0 section 4.9), sans-IO: the QoS 1 and QoS 2
//! PUBLISH packets a client has outstanding on one connection, against the Receive Maximum the
//! server announced in CONNACK.
//!
//! A QoS 1 PUBLISH is outstanding until its PUBACK is sent (which may wait for the store's
//! durability), a QoS 2 one until its PUBCOMP is sent, that is until the client's PUBREL
//! comes. A client with more outstanding than the maximum broke MQTT-3.3.4-7; the server
//! closes the connection with DISCONNECT 0x93 (MQTT 5.0 3.2.2.3.3). The count belongs to the
//! connection (section 4.9: the quota starts afresh with each one): QoS 2 ids left awaiting
//! PUBREL by an earlier connection do not count.

use std::collections::BTreeSet;

use super::packet::QoS;

/// The client sent more unacknowledged QoS 1/2 PUBLISH packets than the Receive Maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The Receive Maximum the server announced.
    pub max: u16,
}

/// The QoS 1/2 PUBLISH packets outstanding on a connection.
#[derive(Debug, Clone)]
pub struct ReceiveQuota {
    max: u16,
    /// QoS 1 PUBLISHes whose PUBACK is not sent yet.
    qos1: usize,
    /// Packet ids of QoS 2 PUBLISHes received on this connection and not yet released.
    qos2: BTreeSet<u16>,
}

impl ReceiveQuota {
    /// Nothing outstanding; at most `max` (at least 1) may be.
    pub fn new(max: u16) -> Self {
        Self {
            max: max.max(1),
            qos1: 0,
            qos2: BTreeSet::new(),
        }
    }

    /// The Receive Maximum announced to the client.
    pub fn max(&self) -> u16 {
        self.max
    }

    /// PUBLISH packets outstanding.
    pub fn outstanding(&self) -> usize {
        self.qos1 + self.qos2.len()
    }

    /// A PUBLISH arrived: counts it, or says the client has gone beyond the maximum. A QoS 2
    /// packet id already outstanding (a redelivery) is not counted twice.
    pub fn on_publish(&mut self, qos: QoS, packet_id: u16) -> Result<(), QuotaExceeded> {
        let fresh = match qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => true,
            QoS::ExactlyOnce => !self.qos2.contains(&packet_id),
        };
        if fresh && self.outstanding() >= usize::from(self.max) {
            return Err(QuotaExceeded { max: self.max });
        }
        match qos {
            QoS::AtLeastOnce => self.qos1 += 1,
            _ => {
                self.qos2.insert(packet_id);
            }
        }
        Ok(())
    }

    /// A PUBACK was sent: its QoS 1 PUBLISH is no longer outstanding.
    pub fn puback_sent(&mut self) {
        self.qos1 = self.qos1.saturating_sub(1);
    }

    /// PUBREL came for `packet_id` (PUBCOMP answers it at once): its QoS 2 PUBLISH is no
    /// longer outstanding.
    pub fn pubrel_received(&mut self, packet_id: u16) {
        self.qos2.remove(&packet_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos1_counts_until_its_puback_is_sent() {
        let mut q = ReceiveQuota::new(2);
        q.on_publish(QoS::AtLeastOnce, 1).unwrap();
        q.on_publish(QoS::AtLeastOnce, 2).unwrap();
        assert_eq!(
            q.on_publish(QoS::AtLeastOnce, 3),
            Err(QuotaExceeded { max: 2 })
        );
        q.puback_sent();
        q.on_publish(QoS::AtLeastOnce, 3).unwrap();
        assert_eq!(q.outstanding(), 2);
    }

    #[test]
    fn qos2_counts_until_pubrel_and_a_redelivery_counts_once() {
        let mut q = ReceiveQuota::new(2);
        q.on_publish(QoS::ExactlyOnce, 7).unwrap();
        q.on_publish(QoS::ExactlyOnce, 7).unwrap();
        q.on_publish(QoS::ExactlyOnce, 8).unwrap();
        assert!(q.on_publish(QoS::ExactlyOnce, 9).is_err());
        q.pubrel_received(7);
        q.on_publish(QoS::ExactlyOnce, 9).unwrap();
        // A PUBREL for an id never counted (an earlier connection's) changes nothing.
        q.pubrel_received(100);
        assert_eq!(q.outstanding(), 2);
    }

    #[test]
    fn qos0_is_never_counted() {
        let mut q = ReceiveQuota::new(1);
        for _ in 0..10 {
            q.on_publish(QoS::AtMostOnce, 0).unwrap();
        }
        q.on_publish(QoS::AtLeastOnce, 1).unwrap();
        assert!(q.on_publish(QoS::ExactlyOnce, 2).is_err());
        assert_eq!(q.outstanding(), 1);
    }

    #[test]
    fn a_puback_sent_with_nothing_outstanding_changes_nothing() {
        let mut q = ReceiveQuota::new(1);
        q.puback_sent();
        assert_eq!(q.outstanding(), 0);
        q.on_publish(QoS::AtLeastOnce, 1).unwrap();
        assert!(q.on_publish(QoS::AtLeastOnce, 2).is_err());
    }
}
