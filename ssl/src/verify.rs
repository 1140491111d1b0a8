//! The client-certificate policy of a TLS listener.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SslError;

/// Whether a TLS listener asks its clients for a certificate (setting `ssl.verify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientVerify {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A client certificate is asked for and checked if sent; clients without one are let in.
    Optional,
    /// Every client must present a certificate signed by the CA.
    Required,
}

impl ClientVerify {
    /// The setting's spelling: `none`, `optional` or `required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

impl fmt::Display for ClientVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ClientVerify {
    type Err = SslError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "optional" => Ok(Self::Optional),
            "required" => Ok(Self::Required),
            other => Err(SslError::BadVerify(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClientVerify;

    #[test]
    fn parses_prints_and_serializes_lowercase() {
        for v in [
            ClientVerify::None,
            ClientVerify::Optional,
            ClientVerify::Required,
        ] {
            assert_eq!(v.to_string().parse::<ClientVerify>().unwrap(), v);
        }
        assert_eq!(
            "required".parse::<ClientVerify>().unwrap(),
            ClientVerify::Required
        );
        let err = "Required".parse::<ClientVerify>().unwrap_err().to_string();
        assert!(
            err.contains("Required") && err.contains("optional"),
            "{err}"
        );
        use serde::de::{value, Deserialize as _, IntoDeserializer as _};
        let de: value::StrDeserializer<'_, value::Error> = "optional".into_deserializer();
        assert_eq!(
            ClientVerify::deserialize(de).unwrap(),
            ClientVerify::Optional
        );
    }
}
