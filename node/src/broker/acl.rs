//! Address control, as Erlang fubar's `mqtt_acl`: allow or deny connections by address block.
//!
//! The most specific rule (longest prefix) that contains the peer's address decides; an
//! address no rule covers is allowed. IPv4-mapped IPv6 peers are matched as IPv4.

use parking_lot::RwLock;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use fubar_store::{Store, StoreError};

/// An address block, `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// An address rule that could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// Not `ADDR` or `ADDR/PREFIX`, or the prefix is too long for the address.
    #[error("{0}")]
    BadCidr(String),
    /// The store refused the change.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FromStr for Cidr {
    type Err = AclError;

    fn from_str(s: &str) -> Result<Self, AclError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            AclError::BadCidr(format!(
                "{s:?} is not ADDR or ADDR/PREFIX (e.g. 10.0.0.0/8, ::1)"
            ))
        })?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                    AclError::BadCidr(format!("prefix of {s:?} must be 0..={max}"))
                })?,
            };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The address rules of a node.
#[derive(Debug, Default)]
pub struct Acl {
    /// Rules, most specific first.
    rules: RwLock<Vec<(Cidr, bool)>>,
    store: Option<Arc<Store>>,
}

impl Acl {
    /// The rules kept in `store`.
    pub fn load(store: Option<Arc<Store>>) -> Result<Self, StoreError> {
        let mut rules = Vec::new();
        if let Some(s) = &store {
            for (text, allow) in s.acl()? {
                match text.parse::<Cidr>() {
                    Ok(c) => rules.push((c, allow)),
                    Err(e) => {
                        tracing::warn!(target: "warning", rule = %text, error = %e, "ignoring a stored address rule")
                    }
                }
            }
        }
        let acl = Self {
            rules: RwLock::new(rules),
            store,
        };
        acl.sort();
        Ok(acl)
    }

    fn sort(&self) {
        let mut rules = self.rules.write();
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.prefix));
    }

    /// Whether a connection from `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let rules = self.rules.read();
        rules
            .iter()
            .find(|(c, _)| c.contains(ip))
            .is_none_or(|(_, allow)| *allow)
    }

    /// Adds or replaces a rule; returns its normal form.
    pub fn set(&self, cidr: &str, allow: bool) -> Result<String, AclError> {
        let c: Cidr = cidr.parse()?;
        let text = c.to_string();
        if let Some(store) = &self.store {
            store.put_acl(&text, allow)?;
        }
        {
            let mut rules = self.rules.write();
            rules.retain(|(r, _)| *r != c);
            rules.push((c, allow));
        }
        self.sort();
        Ok(text)
    }

    /// Deletes a rule; returns whether it existed.
    pub fn delete(&self, cidr: &str) -> Result<bool, AclError> {
        let c: Cidr = cidr.parse()?;
        if let Some(store) = &self.store {
            store.delete_acl(&c.to_string())?;
        }
        let mut rules = self.rules.write();
        let before = rules.len();
        rules.retain(|(r, _)| *r != c);
        Ok(rules.len() != before)
    }

    /// The rules as (`ADDR/PREFIX`, allow), most specific first.
    pub fn list(&self) -> Vec<(String, bool)> {
        let rules = self.rules.read();
        rules.iter().map(|(c, a)| (c.to_string(), *a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_contain() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(
            c.contains(ip("::ffff:10.1.2.3")),
            "v4-mapped peers match v4 rules"
        );
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        let odd: Cidr = "192.168.0.0/23".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.9")));
        assert!(!odd.contains(ip("192.168.2.9")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn most_specific_rule_wins_and_default_allows() {
        let acl = Acl::default();
        assert!(acl.allows(ip("10.0.0.1")));
        acl.set("10.0.0.0/8", false).unwrap();
        acl.set("10.9.0.0/16", true).unwrap();
        assert!(!acl.allows(ip("10.0.0.1")));
        assert!(acl.allows(ip("10.9.1.1")));
        assert!(acl.allows(ip("11.0.0.1")));
        assert_eq!(acl.list()[0].0, "10.9.0.0/16");
        assert!(acl.delete("10.0.0.0/8").unwrap());
        assert!(!acl.delete("10.0.0.0/8").unwrap());
        assert!(acl.allows(ip("10.0.0.1")));
    }
}
