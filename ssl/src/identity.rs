//! Operator certificates: a person (or a script) running admin commands on the cluster port
//! with a role, instead of the cookie that makes its holder a node with every right.
//!
//! The role is in the certificate's extended key usage, as one of two OIDs of ours under the
//! arc of [`crate::NODE_EKU`]: [`OPERATOR_READ_EKU`] or [`OPERATOR_ADMIN_EKU`]. A certificate
//! carrying a role is never a node certificate (one carrying both markers, or both roles, is
//! [`crate::CertKind::Other`]), and counts only where the TLS layer checked its chain against
//! the cluster CA.

use std::fmt;
use std::str::FromStr;

use rcgen::ExtendedKeyUsagePurpose;
use serde::{Deserialize, Serialize};

/// The EKU of an operator with the `read` role: OID 2.25.7976541819552169118.1.1.
pub const OPERATOR_READ_EKU: &[u64] = &[2, 25, 7_976_541_819_552_169_118, 1, 1];
/// The EKU of an operator with the `admin` role: OID 2.25.7976541819552169118.1.2.
pub const OPERATOR_ADMIN_EKU: &[u64] = &[2, 25, 7_976_541_819_552_169_118, 1, 2];

/// What an admin caller may do. Ordered: `Admin` may do all that `Read` may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Look: status, search, log tail and list, cluster status, the lists.
    Read,
    /// Look and change: stop, accounts, settings, address rules, log redirects, collection,
    /// tracing, leaving the cluster.
    Admin,
}

impl Role {
    /// The role's name, as `--role` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    fn eku(self) -> &'static [u64] {
        match self {
            Self::Read => OPERATOR_READ_EKU,
            Self::Admin => OPERATOR_ADMIN_EKU,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is neither `read` nor `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: read or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// The extended usages of an operator certificate: TLS client, and the role's marker.
pub(crate) fn operator_usages(role: Role) -> Vec<ExtendedKeyUsagePurpose> {
    vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::Other(role.eku().to_vec()),
    ]
}

/// The role markers among a certificate's other EKU OIDs: `Some(role)` when exactly one
/// role is marked; `None` for none, and for both (an ambiguous certificate grants nothing).
pub(crate) fn marked_role(oids: &[x509_parser::der_parser::oid::Oid<'_>]) -> Option<Role> {
    let has = |eku: &[u64]| {
        oids.iter()
            .any(|oid| oid.iter().is_some_and(|arcs| arcs.eq(eku.iter().copied())))
    };
    match (has(OPERATOR_READ_EKU), has(OPERATOR_ADMIN_EKU)) {
        (true, false) => Some(Role::Read),
        (false, true) => Some(Role::Admin),
        _ => None,
    }
}

/// Whether a certificate marks any role (an ambiguous one included).
pub(crate) fn marks_a_role(oids: &[x509_parser::der_parser::oid::Oid<'_>]) -> bool {
    oids.iter().any(|oid| {
        oid.iter().is_some_and(|arcs| {
            let arcs: Vec<u64> = arcs.collect();
            arcs == OPERATOR_READ_EKU || arcs == OPERATOR_ADMIN_EKU
        })
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;

    use super::*;
    use crate::{cert_kind, new_certs, CertKind, NewCerts, NODE_EKU};

    fn der(path: &std::path::Path) -> Vec<u8> {
        CertificateDer::from_pem_file(path).unwrap().to_vec()
    }

    #[test]
    fn operator_certificates_carry_their_role_and_nothing_else_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (name, role) in [("reader", Role::Read), ("boss", Role::Admin)] {
            new_certs(&NewCerts {
                dir: dir.to_owned(),
                operators: vec![name.into()],
                operator_role: role,
                ..NewCerts::default()
            })
            .unwrap();
            assert_eq!(
                cert_kind(&der(&dir.join(format!("operator-{name}.pem")))),
                CertKind::Operator {
                    name: name.into(),
                    role
                }
            );
        }
        // The key is the operator's secret.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("operator-boss.key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(cert_kind(&der(&dir.join("cert.pem"))), CertKind::Other);
    }

    /// A certificate that marks two things at once grants nothing.
    #[test]
    fn ambiguous_markers_make_no_operator_and_no_node() {
        let mixed = |ekus: Vec<&[u64]>| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, "x@h");
            params.extended_key_usages = ekus
                .into_iter()
                .map(|e| ExtendedKeyUsagePurpose::Other(e.to_vec()))
                .collect();
            cert_kind(params.self_signed(&key).unwrap().der())
        };
        assert_eq!(mixed(vec![NODE_EKU, OPERATOR_READ_EKU]), CertKind::Other);
        assert_eq!(
            mixed(vec![OPERATOR_READ_EKU, OPERATOR_ADMIN_EKU]),
            CertKind::Other
        );
        assert_eq!(mixed(vec![NODE_EKU]), CertKind::Node("x@h".into()));
        assert_eq!(
            mixed(vec![OPERATOR_ADMIN_EKU]),
            CertKind::Operator {
                name: "x@h".into(),
                role: Role::Admin
            }
        );
    }

    #[test]
    fn roles_parse_by_name_and_admin_covers_read() {
        assert_eq!("read".parse::<Role>().unwrap(), Role::Read);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        assert!(Role::Admin > Role::Read);
    }
}
