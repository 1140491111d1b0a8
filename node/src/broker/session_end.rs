//! The one way a session ends on this node: its subscriptions leave the router, the cluster
//! hears when the client id is free again, and one event says why, with the fields a search
//! for the client needs.

use std::sync::Arc;

use super::registry::SessionHandle;
use super::Broker;

/// Why a session ended here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd<'a> {
    /// Its last connection closed and the session was not persistent.
    Closed,
    /// Persistent, it stayed away past its expiry interval.
    Expired,
    /// A clean-session (clean start) connection of the same client id replaced it.
    Replaced,
    /// Another node has the client now; `moved` when the session went with it.
    MovedAway {
        /// The session (not only the connection) moved to the other node.
        moved: bool,
    },
    /// User `user` attached it, but `owner` claimed the id first on another node.
    NotOwner {
        /// The user of the connection that attached it here.
        user: Option<&'a str>,
        /// The user the cluster recorded as the id's owner.
        owner: &'a str,
    },
}

impl SessionEnd<'_> {
    /// Whether the client id is nobody's session any more (the cluster frees it): not when a
    /// new session here or another node holds it now.
    fn frees_the_id(self) -> bool {
        matches!(self, Self::Closed | Self::Expired)
    }
}

impl Broker {
    /// Ends `handle`'s session (already released from the registry) for `why`.
    pub fn end_session(&self, handle: &Arc<SessionHandle>, why: SessionEnd<'_>) {
        self.router.remove_session(handle);
        if why.frees_the_id() {
            self.cluster.client_ended(&handle.client_id);
        }
        let client = &*handle.client_id;
        match why {
            SessionEnd::Closed => {
                tracing::info!(target: "resource", client, "session ended");
            }
            SessionEnd::Expired => {
                tracing::info!(target: "resource", client, "session ended: expired");
            }
            SessionEnd::Replaced => {
                tracing::info!(target: "resource", client, "session ended: replaced by a clean session");
            }
            SessionEnd::MovedAway { moved } => {
                tracing::info!(target: "resource", client, moved, "session taken over by another node");
            }
            SessionEnd::NotOwner { user, owner } => {
                tracing::info!(target: "access", client, user = user.unwrap_or_default(), owner,
                    "session ended: the client id belongs to another user (claimed first on another node)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::cluster_hooks::Recording;
    use crate::mqtt::message::SubscriptionOptions;
    use crate::mqtt::packet::QoS;
    use crate::settings::Settings;

    #[test]
    fn every_end_unsubscribes_and_only_closed_or_expired_free_the_id() {
        let hooks = Arc::new(Recording::default());
        let broker = Broker::new(Settings::default(), None, hooks.clone()).unwrap();
        let limits = Settings::default().session_limits();
        let ends = [
            ("closed", SessionEnd::Closed, true),
            ("expired", SessionEnd::Expired, true),
            ("replaced", SessionEnd::Replaced, false),
            ("moved", SessionEnd::MovedAway { moved: true }, false),
            (
                "not-owner",
                SessionEnd::NotOwner {
                    user: Some("bob"),
                    owner: "alice",
                },
                false,
            ),
        ];
        for (conn, (id, why, frees)) in ends.into_iter().enumerate() {
            let handle = broker
                .registry
                .attach_with(id, None, true, false, conn as u64, limits)
                .unwrap()
                .handle;
            let options = SubscriptionOptions {
                qos: QoS::AtMostOnce,
                ..Default::default()
            };
            let filter = format!("t/{id}");
            handle.lock().session.subscribe(&filter, options);
            broker.router.subscribe(&handle, &filter, options);
            let before = broker.router.subscription_count();
            broker.end_session(&handle, why);
            assert_eq!(broker.router.subscription_count(), before - 1, "{id}");
            assert_eq!(hooks.ended.lock().contains(&id.to_owned()), frees, "{id}");
        }
    }
}
