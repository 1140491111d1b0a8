//! Client ids belong to their user (issue 17): a session remembers the verified user whose
//! connection created it, and a connection of another user may not take it over, resume it or
//! replace it.
//!
//! A connection's *verified user* is the user name its password was checked for (`--auth`)
//! or the one its client certificate gave (`ssl.username_from_cn`); a user name sent without
//! either proves nothing and counts as none. The rule, for a connection of user `u` and an
//! existing session of owner `o`:
//!
//! | owner `o` | connection `u` | outcome |
//! |---|---|---|
//! | none | none | as before ownership existed: take over, resume or replace |
//! | none | some user | claimed as a *fresh* session: the old one is discarded (nothing it held passes to `u`, session present 0) and the new one is `u`'s |
//! | `o` | `o` | as before: take over, resume or replace |
//! | `o` | another user, or none | refused: CONNACK 2 / 0x85, the session and its connection untouched |
//!
//! So with `--auth` off nothing changes (no session has an owner), and a session from before
//! `--auth` was turned on (or read from a format 3 store) cannot hand its queue to whoever
//! claims its id first: nothing says who created it.

use std::fmt;

/// What a connection may do with an existing session of the client id it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Take over, resume or replace it, as the CONNECT asks.
    Allowed,
    /// Only replace it: the session has no owner and the connection has a verified user, so
    /// it starts afresh (as with clean start) and becomes that user's.
    Fresh,
    /// Nothing: the session belongs to another user.
    Refused,
}

/// Decides what a connection of verified user `user` may do with a session owned by `owner`.
pub fn claim(owner: Option<&str>, user: Option<&str>) -> Claim {
    match (owner, user) {
        (None, None) => Claim::Allowed,
        (None, Some(_)) => Claim::Fresh,
        (Some(o), Some(u)) if o == u => Claim::Allowed,
        (Some(_), _) => Claim::Refused,
    }
}

/// `claim`, with a refusal as the error that says whose the session is.
pub fn check(owner: Option<&str>, user: Option<&str>) -> Result<Claim, NotOwner> {
    match claim(owner, user) {
        Claim::Refused => Err(NotOwner {
            owner: owner.unwrap_or_default().to_owned(),
        }),
        allowed => Ok(allowed),
    }
}

/// A connection was refused the session of a client id: it belongs to another user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOwner {
    /// The user the session belongs to.
    pub owner: String,
}

impl fmt::Display for NotOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the client id's session belongs to user {:?}",
            self.owner
        )
    }
}

impl std::error::Error for NotOwner {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_may_have_an_owned_session() {
        assert_eq!(claim(Some("alice"), Some("alice")), Claim::Allowed);
        assert_eq!(claim(Some("alice"), Some("bob")), Claim::Refused);
        // A connection with no verified user (auth turned off since) is refused too.
        assert_eq!(claim(Some("alice"), None), Claim::Refused);
        assert_eq!(
            check(Some("alice"), Some("bob")),
            Err(NotOwner {
                owner: "alice".into()
            })
        );
    }

    #[test]
    fn an_ownerless_session_is_open_to_anonymous_and_fresh_for_a_user() {
        assert_eq!(claim(None, None), Claim::Allowed);
        assert_eq!(claim(None, Some("bob")), Claim::Fresh);
    }
}
