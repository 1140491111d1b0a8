//! Node names, as in Erlang: `NAME@HOST`, here with an optional `:PORT` for the cluster port
//! (QUIC) when it is not the default.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::str::FromStr;

/// The cluster port (QUIC: log shipping to the monitor, remote admin) when a name gives none.
pub const DEFAULT_CLUSTER_PORT: u16 = 4370;

/// A node's name and where its cluster port is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeName {
    /// The part before `@`.
    pub name: String,
    /// The host after `@` (a host name or an IP address).
    pub host: String,
    /// The cluster port.
    pub port: u16,
}

/// Why a node name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a node name NAME@HOST[:PORT]: {why}")]
pub struct BadNodeName {
    given: String,
    why: &'static str,
}

impl NodeName {
    /// `NAME@HOST`, without the port: the name the node's logs and state go by.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.host)
    }

    /// The cluster address, resolved.
    pub fn cluster_addr(&self) -> std::io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("no address for {}", self.host)))
    }
}

/// A node name whose port and the cluster port setting disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the node name {name} says cluster port {named}, but --cluster-port / cluster.port says {set}: give one, or the same")]
pub struct PortConflict {
    name: String,
    named: u16,
    set: u16,
}

/// A node's identity and cluster port from its name and the `cluster.port` setting
/// (`port_set`: given by a flag or the settings file, not the default): `NAME@HOST:PORT`
/// listens on PORT unless the setting says otherwise, and a setting that disagrees is
/// refused. The identity is `NAME@HOST` whatever the port, the way every name is compared
/// (`--master`, certificates, the membership): a port says where, not who.
///
/// A name that does not parse is returned as it is (settings validation judges it).
pub fn settle(name: &str, port: u16, port_set: bool) -> Result<(String, u16), PortConflict> {
    let Ok((parsed, explicit)) = NodeName::parse(name) else {
        return Ok((name.to_owned(), port));
    };
    if !explicit {
        return Ok((parsed.id(), port));
    }
    if port_set && port != parsed.port {
        return Err(PortConflict {
            name: name.to_owned(),
            named: parsed.port,
            set: port,
        });
    }
    Ok((parsed.id(), parsed.port))
}

/// `name` compared as every node name is: `NAME@HOST`, the port left out (unchanged if it
/// does not parse).
pub fn identity(name: &str) -> String {
    name.parse::<NodeName>()
        .map_or_else(|_| name.to_owned(), |n| n.id())
}

impl NodeName {
    /// Parses `NAME@HOST[:PORT]`; the flag says whether the port was written.
    pub fn parse(s: &str) -> Result<(Self, bool), BadNodeName> {
        let bad = |why| BadNodeName {
            given: s.to_owned(),
            why,
        };
        let (name, rest) = s.split_once('@').ok_or_else(|| bad("no '@'"))?;
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        if name.contains(['/', '\\', ':', '@']) || name.chars().any(char::is_whitespace) {
            return Err(bad("the name holds a '/', '\\', ':', '@' or a space"));
        }
        let (host, port, explicit) = match rest.rsplit_once(':') {
            // An IPv6 address in brackets, or a host, then a port.
            Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?;
                (h, port, true)
            }
            _ => (rest, DEFAULT_CLUSTER_PORT, false),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '\\', '@']) {
            return Err(bad("bad host"));
        }
        Ok((
            Self {
                name: name.to_owned(),
                host: host.to_owned(),
                port,
            },
            explicit,
        ))
    }
}

impl FromStr for NodeName {
    type Err = BadNodeName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).map(|(name, _)| name)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == DEFAULT_CLUSTER_PORT {
            write!(f, "{}@{}", self.name, self.host)
        } else if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.name, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NodeName, BadNodeName> {
        s.parse()
    }

    #[test]
    fn names_hosts_and_ports() {
        let n = parse("monitor@host1").unwrap();
        assert_eq!(
            (n.name.as_str(), n.host.as_str(), n.port),
            ("monitor", "host1", 4370)
        );
        assert_eq!(n.id(), "monitor@host1");
        assert_eq!(n.to_string(), "monitor@host1");
        let n = parse("n2@127.0.0.1:5000").unwrap();
        assert_eq!((n.host.as_str(), n.port), ("127.0.0.1", 5000));
        assert_eq!(n.to_string(), "n2@127.0.0.1:5000");
        let n = parse("n3@[::1]:6000").unwrap();
        assert_eq!((n.host.as_str(), n.port), ("::1", 6000));
        assert_eq!(n.to_string(), "n3@[::1]:6000");
        assert_eq!(parse("n4@::1").unwrap().port, DEFAULT_CLUSTER_PORT);
        assert_eq!(
            parse("n5@localhost:4370")
                .unwrap()
                .cluster_addr()
                .unwrap()
                .port(),
            4370
        );
    }

    #[test]
    fn a_port_in_the_name_is_the_cluster_port_and_never_part_of_the_identity() {
        assert_eq!(
            settle("n1@127.0.0.1:5000", 4370, false).unwrap(),
            ("n1@127.0.0.1".to_owned(), 5000)
        );
        assert_eq!(
            settle("n1@127.0.0.1:5000", 5000, true).unwrap(),
            ("n1@127.0.0.1".to_owned(), 5000)
        );
        let e = settle("n1@127.0.0.1:5000", 6000, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("5000") && e.contains("6000"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        // No port in the name: the setting (or its default) decides.
        assert_eq!(settle("n1@h", 0, true).unwrap(), ("n1@h".to_owned(), 0));
        assert_eq!(
            settle("n1@h", 4370, false).unwrap(),
            ("n1@h".to_owned(), 4370)
        );
        // The founder of the issue: its name and its master's compare equal.
        assert_eq!(identity("n1@127.0.0.1:5000"), identity("n1@127.0.0.1"));
        assert_eq!(identity("n1@[::1]:7"), "n1@::1");
        assert_eq!(identity("not a name"), "not a name");
    }

    #[test]
    fn bad_names_say_why() {
        for bad in [
            "",
            "monitor",
            "@host",
            "a@",
            "a b@h",
            "a@h:port",
            "a/b@h",
            "a@h/x",
            "a@h:99999",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("not a node name"), "{bad}: {e}");
        }
    }
}
