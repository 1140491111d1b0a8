//! The registry of client ids: which session belongs to which id, and which connection (if
//! any) owns it now. Session takeover and session expiry happen here.
//!
//! Lock order: the registry map first, then a session's slot; never the other way round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use crate::mqtt::session::{Session, SessionLimits};

/// The mutable state of one session and its current owner.
#[derive(Debug)]
pub struct SessionSlot {
    /// The sans-IO session.
    pub session: Session,
    /// The connection serving this session, if one is.
    owner: Option<Owner>,
    /// Clean session: the session ends with its connection.
    pub clean: bool,
    /// When the last connection ended, while none serves it.
    offline_since: Option<Instant>,
}

impl SessionSlot {
    /// Whether a connection serves this session now.
    pub fn is_online(&self) -> bool {
        self.owner.is_some()
    }
}

#[derive(Debug)]
struct Owner {
    conn_id: u64,
    kick: oneshot::Sender<()>,
}

/// A session shared by the registry, the router and the connection serving it.
#[derive(Debug)]
pub struct SessionHandle {
    /// The client id.
    pub client_id: Arc<str>,
    slot: Mutex<SessionSlot>,
    /// Woken when a message is queued for the session.
    pub notify: Notify,
}

impl SessionHandle {
    /// Locks the session's slot (a short lock: nothing is awaited while it is held).
    pub fn lock(&self) -> MutexGuard<'_, SessionSlot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What `Registry::attach` found and did.
#[derive(Debug)]
pub struct Attached {
    /// The session the connection now owns.
    pub handle: Arc<SessionHandle>,
    /// True when an existing session was resumed (CONNACK's session present).
    pub session_present: bool,
    /// A previous session of the same id that was discarded (clean session 1); its
    /// subscriptions must be removed from the router.
    pub discarded: Option<Arc<SessionHandle>>,
    /// Whether another connection was told to close (takeover).
    pub took_over: bool,
    /// Fires when another connection takes this session over.
    pub kicked: oneshot::Receiver<()>,
}

/// All sessions of a node, by client id.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<Arc<str>, Arc<SessionHandle>>>,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<SessionHandle>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the session of `client_id` to connection `conn_id`: resumes it (clean 0) or
    /// starts a new one, and tells any connection that held it to close.
    pub fn attach(
        &self,
        client_id: &str,
        clean: bool,
        conn_id: u64,
        limits: SessionLimits,
    ) -> Attached {
        let (kick, kicked) = oneshot::channel();
        let mut map = self.map();
        let mut took_over = false;
        let mut discarded = None;
        if let Some(existing) = map.get(client_id).cloned() {
            let mut slot = existing.lock();
            if let Some(old) = slot.owner.take() {
                let _ = old.kick.send(());
                took_over = true;
            }
            if !clean {
                slot.owner = Some(Owner { conn_id, kick });
                slot.offline_since = None;
                slot.clean = false;
                drop(slot);
                return Attached {
                    handle: existing,
                    session_present: true,
                    discarded: None,
                    took_over,
                    kicked,
                };
            }
            drop(slot);
            map.remove(client_id);
            discarded = Some(existing);
        }
        let client_id: Arc<str> = client_id.into();
        let handle = Arc::new(SessionHandle {
            client_id: client_id.clone(),
            slot: Mutex::new(SessionSlot {
                session: Session::new(limits),
                owner: Some(Owner { conn_id, kick }),
                clean,
                offline_since: None,
            }),
            notify: Notify::new(),
        });
        map.insert(client_id, handle.clone());
        Attached {
            handle,
            session_present: false,
            discarded,
            took_over,
            kicked,
        }
    }

    /// Connection `conn_id` ended at `now`. Returns true when the session ended with it
    /// (clean session) and was removed; its subscriptions must then leave the router.
    pub fn detach(&self, handle: &Arc<SessionHandle>, conn_id: u64, now: Instant) -> bool {
        let mut map = self.map();
        let mut slot = handle.lock();
        if slot.owner.as_ref().map(|o| o.conn_id) != Some(conn_id) {
            return false; // taken over: the session is someone else's now
        }
        slot.owner = None;
        slot.offline_since = Some(now);
        if !slot.clean {
            slot.session.drop_qos0();
            return false;
        }
        drop(slot);
        remove_if_same(&mut map, handle);
        true
    }

    /// The session registered under `client_id`, if any.
    pub fn get(&self, client_id: &str) -> Option<Arc<SessionHandle>> {
        self.map().get(client_id).cloned()
    }

    /// Removes persistent sessions offline for longer than `max_age`; returns them so their
    /// subscriptions can leave the router.
    pub fn expire(&self, now: Instant, max_age: Duration) -> Vec<Arc<SessionHandle>> {
        let mut map = self.map();
        let expired: Vec<Arc<SessionHandle>> = map
            .values()
            .filter(|h| {
                let slot = h.lock();
                slot.owner.is_none()
                    && slot
                        .offline_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= max_age)
            })
            .cloned()
            .collect();
        for h in &expired {
            remove_if_same(&mut map, h);
        }
        expired
    }

    /// Number of sessions (online and offline).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn remove_if_same(map: &mut HashMap<Arc<str>, Arc<SessionHandle>>, handle: &Arc<SessionHandle>) {
    if map
        .get(&handle.client_id)
        .is_some_and(|h| Arc::ptr_eq(h, handle))
    {
        map.remove(&handle.client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SessionLimits {
        SessionLimits {
            max_queued_messages: 10,
            max_queued_bytes: 1000,
            inflight_window: 4,
        }
    }

    #[test]
    fn persistent_session_is_resumed_and_old_owner_kicked() {
        let r = Registry::default();
        let mut a = r.attach("c", false, 1, limits());
        assert!(!a.session_present);
        let b = r.attach("c", false, 2, limits());
        assert!(b.session_present && b.took_over);
        assert!(Arc::ptr_eq(&a.handle, &b.handle));
        assert!(
            a.kicked.try_recv().is_ok(),
            "first connection is told to close"
        );
        // The kicked connection's detach does not touch the new owner.
        assert!(!r.detach(&a.handle, 1, Instant::now()));
        assert!(b.handle.lock().is_online());
    }

    #[test]
    fn clean_session_replaces_and_ends_with_connection() {
        let r = Registry::default();
        let a = r.attach("c", false, 1, limits());
        let b = r.attach("c", true, 2, limits());
        assert!(!b.session_present);
        assert!(Arc::ptr_eq(b.discarded.as_ref().unwrap(), &a.handle));
        assert!(r.detach(&b.handle, 2, Instant::now()));
        assert!(r.get("c").is_none());
    }

    #[test]
    fn offline_persistent_session_expires_after_max_age() {
        let r = Registry::default();
        let a = r.attach("c", false, 1, limits());
        let t0 = Instant::now();
        assert!(!r.detach(&a.handle, 1, t0));
        assert!(r
            .expire(t0 + Duration::from_secs(5), Duration::from_secs(10))
            .is_empty());
        assert_eq!(
            r.expire(t0 + Duration::from_secs(10), Duration::from_secs(10))
                .len(),
            1
        );
        assert!(r.is_empty());
    }
}
