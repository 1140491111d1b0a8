//! The text form of MQTT 5.0 properties, as the `protocol` and `trace` log classes show them.
//!
//! Only the properties that are set appear, in identifier order, by their spec names
//! (section 2.2.2.2), separated by `, `: numbers and flags as their wire value, strings in
//! single quotes (a quote or backslash inside escaped, so is any control character), binary
//! values as their length, user properties as `'key'='value'` pairs in the order they came.
//! Single quotes keep a log line readable: the log's own text form puts the whole field in
//! double quotes and would escape every double quote inside.
//!
//! Example: `Content Type='text/plain', Correlation Data=<4 bytes>, User Property='k'='v'`.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::properties::{self as p, property_name, Properties};

impl fmt::Display for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Entries { f, first: true };
        out.flag(p::PAYLOAD_FORMAT_INDICATOR, self.payload_format_utf8)?;
        out.number(p::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval)?;
        out.text(p::CONTENT_TYPE, &self.content_type)?;
        out.text(p::RESPONSE_TOPIC, &self.response_topic)?;
        out.binary(p::CORRELATION_DATA, &self.correlation_data)?;
        for &id in &self.subscription_identifiers {
            out.number(p::SUBSCRIPTION_IDENTIFIER, Some(id))?;
        }
        out.number(p::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval)?;
        out.text(
            p::ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        )?;
        out.number(p::SERVER_KEEP_ALIVE, self.server_keep_alive)?;
        out.text(p::AUTHENTICATION_METHOD, &self.authentication_method)?;
        out.binary(p::AUTHENTICATION_DATA, &self.authentication_data)?;
        out.flag(
            p::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        )?;
        out.number(p::WILL_DELAY_INTERVAL, self.will_delay_interval)?;
        out.flag(
            p::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        )?;
        out.text(p::RESPONSE_INFORMATION, &self.response_information)?;
        out.text(p::SERVER_REFERENCE, &self.server_reference)?;
        out.text(p::REASON_STRING, &self.reason_string)?;
        out.number(p::RECEIVE_MAXIMUM, self.receive_maximum)?;
        out.number(p::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum)?;
        out.number(p::TOPIC_ALIAS, self.topic_alias)?;
        out.number(p::MAXIMUM_QOS, self.maximum_qos.map(|q| q as u8))?;
        out.flag(p::RETAIN_AVAILABLE, self.retain_available)?;
        for (k, v) in &self.user_properties {
            out.name(p::USER_PROPERTY)?;
            quoted(out.f, k)?;
            out.f.write_str("=")?;
            quoted(out.f, v)?;
        }
        out.number(p::MAXIMUM_PACKET_SIZE, self.maximum_packet_size)?;
        out.flag(
            p::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        )?;
        out.flag(
            p::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        )?;
        out.flag(
            p::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        )
    }
}

/// Writes `name=value` entries with `, ` between them.
struct Entries<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    first: bool,
}

impl Entries<'_, '_> {
    /// The separator (but before the first) and `Name=`.
    fn name(&mut self, id: u8) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.f.write_str(", ")?;
        }
        self.f.write_str(property_name(id).unwrap_or("?"))?;
        self.f.write_str("=")
    }

    fn number(&mut self, id: u8, v: Option<impl fmt::Display>) -> fmt::Result {
        match v {
            Some(v) => {
                self.name(id)?;
                write!(self.f, "{v}")
            }
            None => Ok(()),
        }
    }

    /// A one-byte flag, shown as its wire value 0 or 1.
    fn flag(&mut self, id: u8, v: Option<bool>) -> fmt::Result {
        self.number(id, v.map(u8::from))
    }

    fn text(&mut self, id: u8, v: &Option<Arc<str>>) -> fmt::Result {
        match v {
            Some(s) => {
                self.name(id)?;
                quoted(self.f, s)
            }
            None => Ok(()),
        }
    }

    /// Binary data shows as its length only: it may be anything, and large.
    fn binary(&mut self, id: u8, v: &Option<Bytes>) -> fmt::Result {
        match v {
            Some(b) => {
                self.name(id)?;
                write!(self.f, "<{} bytes>", b.len())
            }
            None => Ok(()),
        }
    }
}

/// `s` in single quotes, with `'`, `\` and control characters escaped.
pub fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => write!(f, "{}", c.escape_debug())?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    f.write_str("'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::QoS;

    #[test]
    fn empty_properties_show_nothing() {
        assert_eq!(Properties::default().to_string(), "");
    }

    #[test]
    fn message_properties_by_spec_name_in_identifier_order() {
        let props = Properties {
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w x".into())],
            correlation_data: Some(Bytes::from_static(b"\x00\x01\x02\x03")),
            response_topic: Some("reply/1".into()),
            content_type: Some("text/plain".into()),
            message_expiry_interval: Some(60),
            payload_format_utf8: Some(true),
            subscription_identifiers: vec![7, 268_435_455],
            topic_alias: Some(3),
            ..Properties::default()
        };
        assert_eq!(
            props.to_string(),
            "Payload Format Indicator=1, Message Expiry Interval=60, \
             Content Type='text/plain', Response Topic='reply/1', Correlation Data=<4 bytes>, \
             Subscription Identifier=7, Subscription Identifier=268435455, Topic Alias=3, \
             User Property='k'='v', User Property='k'='w x'"
        );
    }

    #[test]
    fn connack_properties_flags_as_wire_values() {
        let props = Properties {
            session_expiry_interval: Some(0),
            assigned_client_identifier: Some("auto-1".into()),
            server_keep_alive: Some(30),
            receive_maximum: Some(32),
            topic_alias_maximum: Some(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(true),
            maximum_packet_size: Some(1_048_576),
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(false),
            shared_subscription_available: Some(true),
            reason_string: Some("fine".into()),
            ..Properties::default()
        };
        assert_eq!(
            props.to_string(),
            "Session Expiry Interval=0, Assigned Client Identifier='auto-1', \
             Server Keep Alive=30, Reason String='fine', Receive Maximum=32, \
             Topic Alias Maximum=10, Maximum QoS=1, Retain Available=1, \
             Maximum Packet Size=1048576, Wildcard Subscription Available=1, \
             Subscription Identifier Available=0, Shared Subscription Available=1"
        );
    }

    #[test]
    fn connect_will_and_auth_properties() {
        let props = Properties {
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"")),
            request_problem_information: Some(false),
            request_response_information: Some(true),
            will_delay_interval: Some(5),
            response_information: Some("r/".into()),
            server_reference: Some("other:1883".into()),
            ..Properties::default()
        };
        assert_eq!(
            props.to_string(),
            "Authentication Method='SCRAM-SHA-1', Authentication Data=<0 bytes>, \
             Request Problem Information=0, Will Delay Interval=5, \
             Request Response Information=1, Response Information='r/', \
             Server Reference='other:1883'"
        );
    }

    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped() {
        let props = Properties {
            reason_string: Some("it's a\\b\nc=d, é".into()),
            user_properties: vec![("a'".into(), "".into())],
            ..Properties::default()
        };
        assert_eq!(
            props.to_string(),
            r"Reason String='it\'s a\\b\nc=d, é', User Property='a\''=''"
        );
    }
}
