//! Where a class's events go besides its binary segments.

use std::fmt;
use std::str::FromStr;

use crate::LogError;

/// The longest accepted file prefix, in bytes (daily names add about 20 more).
pub const MAX_PREFIX_LEN: usize = 100;

/// A class's redirect: nothing, stdout, or daily text files `<dir>/<prefix>_YYYY-MM-DD.log.N`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Redirect {
    /// Binary segments only.
    #[default]
    None,
    /// One text line per event on stdout.
    Stdout,
    /// Daily text files in the log dir named after this prefix.
    Prefix(String),
}

impl Redirect {
    /// A prefix redirect, checked like `FromStr` does.
    pub fn prefix(p: &str) -> Result<Self, LogError> {
        check_prefix(p)?;
        Ok(Self::Prefix(p.to_owned()))
    }
}

/// Refuses prefixes that would leave the log dir or make an unusable file name.
fn check_prefix(p: &str) -> Result<(), LogError> {
    let reason = if p.is_empty() {
        "empty prefix"
    } else if p.contains('/') || p.contains('\\') {
        "a prefix cannot contain a path separator"
    } else if p.contains("..") {
        "a prefix cannot contain '..'"
    } else if p.contains('\0') {
        "a prefix cannot contain NUL"
    } else if p.chars().any(char::is_control) {
        "a prefix cannot contain control characters"
    } else if p.len() > MAX_PREFIX_LEN {
        "prefix too long"
    } else {
        return Ok(());
    };
    Err(LogError::BadRedirect {
        value: p.to_owned(),
        reason,
    })
}

impl FromStr for Redirect {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, LogError> {
        match s {
            "none" => Ok(Self::None),
            "stdout" => Ok(Self::Stdout),
            p => Self::prefix(p),
        }
    }
}

impl fmt::Display for Redirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Stdout => f.write_str("stdout"),
            Self::Prefix(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_redirects_parse_and_print_back() {
        for s in ["none", "stdout", "fubar", "my-app.v2"] {
            let r: Redirect = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert_eq!("none".parse::<Redirect>().unwrap(), Redirect::None);
        assert_eq!("stdout".parse::<Redirect>().unwrap(), Redirect::Stdout);
        assert_eq!(
            "fubar".parse::<Redirect>().unwrap(),
            Redirect::Prefix("fubar".into())
        );
    }

    #[test]
    fn bad_prefixes_are_refused_with_what_is_allowed() {
        let long = "x".repeat(MAX_PREFIX_LEN + 1);
        for s in [
            "a/b",
            "..",
            "../x",
            "",
            "a\\b",
            "a\0b",
            "a\nb",
            "/abs",
            long.as_str(),
        ] {
            let err = s.parse::<Redirect>().unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, LogError::BadRedirect { .. }), "{s:?}");
            assert!(msg.contains("allowed: none, stdout"), "{msg}");
        }
    }
}
