//! MQTT 5.0 reason codes (section 2.4) and which packets may carry which.
//!
//! One enum holds every code; a value's meaning depends a little on the packet (0x00 is
//! "Success" in CONNACK, "Normal disconnection" in DISCONNECT and "Granted QoS 0" in SUBACK).
//! The per-packet lists below are the spec's tables: the decoder refuses a code that is not
//! in its packet's list, and the broker should pick from them.

use std::fmt;

use super::packet::ConnectReturnCode;

/// An MQTT 5.0 reason code (section 2.4, table 2-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum ReasonCode {
    /// 0x00: Success, also Normal disconnection and Granted QoS 0.
    #[default]
    Success = 0x00,
    /// 0x01: Granted QoS 1 (SUBACK).
    GrantedQoS1 = 0x01,
    /// 0x02: Granted QoS 2 (SUBACK).
    GrantedQoS2 = 0x02,
    /// 0x04: Disconnect with Will Message (DISCONNECT from a client).
    DisconnectWithWillMessage = 0x04,
    /// 0x10: No matching subscribers (PUBACK, PUBREC).
    NoMatchingSubscribers = 0x10,
    /// 0x11: No subscription existed (UNSUBACK).
    NoSubscriptionExisted = 0x11,
    /// 0x18: Continue authentication (AUTH).
    ContinueAuthentication = 0x18,
    /// 0x19: Re-authenticate (AUTH).
    ReAuthenticate = 0x19,
    /// 0x80: Unspecified error.
    UnspecifiedError = 0x80,
    /// 0x81: Malformed Packet.
    MalformedPacket = 0x81,
    /// 0x82: Protocol Error.
    ProtocolError = 0x82,
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// 0x84: Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: Client Identifier not valid.
    ClientIdentifierNotValid = 0x85,
    /// 0x86: Bad User Name or Password.
    BadUserNameOrPassword = 0x86,
    /// 0x87: Not authorized.
    NotAuthorized = 0x87,
    /// 0x88: Server unavailable.
    ServerUnavailable = 0x88,
    /// 0x89: Server busy.
    ServerBusy = 0x89,
    /// 0x8A: Banned.
    Banned = 0x8A,
    /// 0x8B: Server shutting down.
    ServerShuttingDown = 0x8B,
    /// 0x8C: Bad authentication method.
    BadAuthenticationMethod = 0x8C,
    /// 0x8D: Keep Alive timeout.
    KeepAliveTimeout = 0x8D,
    /// 0x8E: Session taken over.
    SessionTakenOver = 0x8E,
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8F,
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90,
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91,
    /// 0x92: Packet Identifier not found.
    PacketIdentifierNotFound = 0x92,
    /// 0x93: Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93,
    /// 0x94: Topic Alias invalid.
    TopicAliasInvalid = 0x94,
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95,
    /// 0x96: Message rate too high.
    MessageRateTooHigh = 0x96,
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97,
    /// 0x98: Administrative action.
    AdministrativeAction = 0x98,
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A,
    /// 0x9B: QoS not supported.
    QoSNotSupported = 0x9B,
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C,
    /// 0x9D: Server moved.
    ServerMoved = 0x9D,
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E,
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F,
    /// 0xA0: Maximum connect time.
    MaximumConnectTime = 0xA0,
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1,
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2,
}

/// Every reason code, in wire order.
pub const ALL: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        GrantedQoS1,
        GrantedQoS2,
        DisconnectWithWillMessage,
        NoMatchingSubscribers,
        NoSubscriptionExisted,
        ContinueAuthentication,
        ReAuthenticate,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        ServerShuttingDown,
        BadAuthenticationMethod,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        PacketIdentifierInUse,
        PacketIdentifierNotFound,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

/// Codes a CONNACK may carry (section 3.2.2.2).
pub const CONNACK: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        UnsupportedProtocolVersion,
        ClientIdentifierNotValid,
        BadUserNameOrPassword,
        NotAuthorized,
        ServerUnavailable,
        ServerBusy,
        Banned,
        BadAuthenticationMethod,
        TopicNameInvalid,
        PacketTooLarge,
        QuotaExceeded,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        ConnectionRateExceeded,
    ]
};

/// Codes a PUBACK or PUBREC may carry (sections 3.4.2.1 and 3.5.2.1).
pub const PUBACK: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        NoMatchingSubscribers,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicNameInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        PayloadFormatInvalid,
    ]
};

/// Codes a PUBREL or PUBCOMP may carry (sections 3.6.2.1 and 3.7.2.1).
pub const PUBREL: &[ReasonCode] = &[ReasonCode::Success, ReasonCode::PacketIdentifierNotFound];

/// Codes a SUBACK may carry (section 3.9.3).
pub const SUBACK: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        GrantedQoS1,
        GrantedQoS2,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
        QuotaExceeded,
        SharedSubscriptionsNotSupported,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

/// Codes an UNSUBACK may carry (section 3.11.3).
pub const UNSUBACK: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        NoSubscriptionExisted,
        UnspecifiedError,
        ImplementationSpecificError,
        NotAuthorized,
        TopicFilterInvalid,
        PacketIdentifierInUse,
    ]
};

/// Codes a DISCONNECT may carry, from either side (section 3.14.2.1).
pub const DISCONNECT: &[ReasonCode] = {
    use ReasonCode::*;
    &[
        Success,
        DisconnectWithWillMessage,
        UnspecifiedError,
        MalformedPacket,
        ProtocolError,
        ImplementationSpecificError,
        NotAuthorized,
        ServerBusy,
        ServerShuttingDown,
        KeepAliveTimeout,
        SessionTakenOver,
        TopicFilterInvalid,
        TopicNameInvalid,
        ReceiveMaximumExceeded,
        TopicAliasInvalid,
        PacketTooLarge,
        MessageRateTooHigh,
        QuotaExceeded,
        AdministrativeAction,
        PayloadFormatInvalid,
        RetainNotSupported,
        QoSNotSupported,
        UseAnotherServer,
        ServerMoved,
        SharedSubscriptionsNotSupported,
        ConnectionRateExceeded,
        MaximumConnectTime,
        SubscriptionIdentifiersNotSupported,
        WildcardSubscriptionsNotSupported,
    ]
};

/// Codes an AUTH may carry (section 3.15.2.1).
pub const AUTH: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::ContinueAuthentication,
    ReasonCode::ReAuthenticate,
];

impl ReasonCode {
    /// The code for a wire value, `None` for a value the spec does not define.
    pub fn from_u8(v: u8) -> Option<Self> {
        ALL.iter().copied().find(|c| *c as u8 == v)
    }

    /// Whether this code reports a failure (0x80 and above, section 2.4).
    pub fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// The spec's name for the code.
    pub fn name(self) -> &'static str {
        use ReasonCode::*;
        match self {
            Success => "Success",
            GrantedQoS1 => "Granted QoS 1",
            GrantedQoS2 => "Granted QoS 2",
            DisconnectWithWillMessage => "Disconnect with Will Message",
            NoMatchingSubscribers => "No matching subscribers",
            NoSubscriptionExisted => "No subscription existed",
            ContinueAuthentication => "Continue authentication",
            ReAuthenticate => "Re-authenticate",
            UnspecifiedError => "Unspecified error",
            MalformedPacket => "Malformed Packet",
            ProtocolError => "Protocol Error",
            ImplementationSpecificError => "Implementation specific error",
            UnsupportedProtocolVersion => "Unsupported Protocol Version",
            ClientIdentifierNotValid => "Client Identifier not valid",
            BadUserNameOrPassword => "Bad User Name or Password",
            NotAuthorized => "Not authorized",
            ServerUnavailable => "Server unavailable",
            ServerBusy => "Server busy",
            Banned => "Banned",
            ServerShuttingDown => "Server shutting down",
            BadAuthenticationMethod => "Bad authentication method",
            KeepAliveTimeout => "Keep Alive timeout",
            SessionTakenOver => "Session taken over",
            TopicFilterInvalid => "Topic Filter invalid",
            TopicNameInvalid => "Topic Name invalid",
            PacketIdentifierInUse => "Packet Identifier in use",
            PacketIdentifierNotFound => "Packet Identifier not found",
            ReceiveMaximumExceeded => "Receive Maximum exceeded",
            TopicAliasInvalid => "Topic Alias invalid",
            PacketTooLarge => "Packet too large",
            MessageRateTooHigh => "Message rate too high",
            QuotaExceeded => "Quota exceeded",
            AdministrativeAction => "Administrative action",
            PayloadFormatInvalid => "Payload format invalid",
            RetainNotSupported => "Retain not supported",
            QoSNotSupported => "QoS not supported",
            UseAnotherServer => "Use another server",
            ServerMoved => "Server moved",
            SharedSubscriptionsNotSupported => "Shared Subscriptions not supported",
            ConnectionRateExceeded => "Connection rate exceeded",
            MaximumConnectTime => "Maximum connect time",
            SubscriptionIdentifiersNotSupported => "Subscription Identifiers not supported",
            WildcardSubscriptionsNotSupported => "Wildcard Subscriptions not supported",
        }
    }

    /// The MQTT 3.1/3.1.1 CONNACK return code this code is sent as to an older client. The
    /// five refusals 3.1.1 knows map one to one; a refusal it has no word for becomes
    /// "server unavailable", or "not authorized" when it is about the client's rights.
    pub fn connect_return_code(self) -> ConnectReturnCode {
        use ReasonCode::*;
        match self {
            Success => ConnectReturnCode::Accepted,
            UnsupportedProtocolVersion => ConnectReturnCode::UnacceptableProtocolVersion,
            ClientIdentifierNotValid => ConnectReturnCode::IdentifierRejected,
            BadUserNameOrPassword | BadAuthenticationMethod => {
                ConnectReturnCode::BadUserNameOrPassword
            }
            NotAuthorized | Banned => ConnectReturnCode::NotAuthorized,
            _ => ConnectReturnCode::ServerUnavailable,
        }
    }
}

impl From<ConnectReturnCode> for ReasonCode {
    fn from(code: ConnectReturnCode) -> Self {
        match code {
            ConnectReturnCode::Accepted => Self::Success,
            ConnectReturnCode::UnacceptableProtocolVersion => Self::UnsupportedProtocolVersion,
            ConnectReturnCode::IdentifierRejected => Self::ClientIdentifierNotValid,
            ConnectReturnCode::ServerUnavailable => Self::ServerUnavailable,
            ConnectReturnCode::BadUserNameOrPassword => Self::BadUserNameOrPassword,
            ConnectReturnCode::NotAuthorized => Self::NotAuthorized,
        }
    }
}

/// A CONNACK code compares equal to the 3.1.1 return code that means the same.
impl PartialEq<ConnectReturnCode> for ReasonCode {
    fn eq(&self, other: &ConnectReturnCode) -> bool {
        *self == Self::from(*other)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} {}", *self as u8, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_nothing_else_decodes() {
        for v in 0..=u8::MAX {
            match ReasonCode::from_u8(v) {
                Some(c) => assert_eq!(c as u8, v),
                None => assert!(!ALL.iter().any(|c| *c as u8 == v)),
            }
        }
        assert_eq!(ALL.len(), 43);
        assert!(ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_and_values_of_server_disconnects() {
        assert_eq!(ReasonCode::KeepAliveTimeout as u8, 0x8D);
        assert_eq!(ReasonCode::SessionTakenOver as u8, 0x8E);
        assert_eq!(ReasonCode::PacketTooLarge as u8, 0x95);
        assert_eq!(ReasonCode::QuotaExceeded as u8, 0x97);
        assert_eq!(ReasonCode::UseAnotherServer as u8, 0x9C);
        assert_eq!(
            ReasonCode::SessionTakenOver.to_string(),
            "0x8e Session taken over"
        );
        assert!(ReasonCode::UnspecifiedError.is_error());
        assert!(!ReasonCode::NoMatchingSubscribers.is_error());
    }

    #[test]
    fn v3_return_codes_map_both_ways() {
        for v in 0..=5 {
            let old = ConnectReturnCode::from_u8(v).unwrap();
            let new = ReasonCode::from(old);
            assert_eq!(new.connect_return_code(), old);
            assert_eq!(new, old);
            assert!(CONNACK.contains(&new));
        }
        assert_eq!(
            ReasonCode::Banned.connect_return_code(),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            ReasonCode::ServerBusy.connect_return_code(),
            ConnectReturnCode::ServerUnavailable
        );
    }

    #[test]
    fn per_packet_lists_hold_only_defined_codes() {
        for list in [CONNACK, PUBACK, PUBREL, SUBACK, UNSUBACK, DISCONNECT, AUTH] {
            assert!(list.iter().all(|c| ALL.contains(c)));
            assert!(list.contains(&ReasonCode::Success));
        }
    }
}
