//! The registry of client ids: which session belongs to which id, and which connection (if
//! any) owns it now. Session takeover and session expiry happen here.
//!
//! Lock order: the registry map first, then a session's slot; never the other way round.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use fubar_store::Store;
use tokio::sync::{oneshot, Notify};

use super::persist;
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
    /// Set once the session is gone from the registry; the router refuses new subscriptions
    /// of an ended session, so none can outlive it.
    ended: bool,
    /// Drops not yet reported in a `warning` event, and when the last report was made.
    drops_unreported: usize,
    last_drop_report: Option<Instant>,
}

impl SessionSlot {
    fn new(
        session: Session,
        owner: Option<Owner>,
        clean: bool,
        offline_since: Option<Instant>,
    ) -> Self {
        Self {
            session,
            owner,
            clean,
            offline_since,
            ended: false,
            drops_unreported: 0,
            last_drop_report: None,
        }
    }

    /// Whether a connection serves this session now.
    pub fn is_online(&self) -> bool {
        self.owner.is_some()
    }

    /// Whether connection `conn_id` serves this session now.
    pub fn is_owned_by(&self, conn_id: u64) -> bool {
        self.owner.as_ref().is_some_and(|o| o.conn_id == conn_id)
    }

    /// Whether the session has left the registry (ended, replaced or expired).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Counts `dropped` messages; returns the count to report now, at most once per
    /// `every`, so that a flood makes one warning a second rather than one per message.
    pub fn note_drops(&mut self, dropped: usize, now: Instant, every: Duration) -> Option<usize> {
        self.drops_unreported += dropped;
        if self.drops_unreported == 0
            || self
                .last_drop_report
                .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return None;
        }
        self.last_drop_report = Some(now);
        Some(std::mem::take(&mut self.drops_unreported))
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
    /// Where a persistent session's changes are written.
    store: Option<Arc<Store>>,
}

impl SessionHandle {
    fn new(client_id: Arc<str>, slot: SessionSlot, store: Option<Arc<Store>>) -> Self {
        Self {
            client_id,
            slot: Mutex::new(slot),
            notify: Notify::new(),
            store,
        }
    }

    /// Locks the session's slot (a short lock: nothing is awaited while it is held). When the
    /// guard is dropped, what a persistent session changed is written to the store.
    pub fn lock(&self) -> SlotGuard<'_> {
        SlotGuard {
            guard: self.slot.lock().unwrap_or_else(PoisonError::into_inner),
            handle: self,
        }
    }
}

/// A locked session slot that writes the session's journal to the store when released.
#[derive(Debug)]
pub struct SlotGuard<'a> {
    guard: MutexGuard<'a, SessionSlot>,
    handle: &'a SessionHandle,
}

impl Deref for SlotGuard<'_> {
    type Target = SessionSlot;
    fn deref(&self) -> &SessionSlot {
        &self.guard
    }
}

impl DerefMut for SlotGuard<'_> {
    fn deref_mut(&mut self) -> &mut SessionSlot {
        &mut self.guard
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let changes = self.guard.session.take_changes();
        if changes.is_empty() || self.guard.ended {
            return;
        }
        if let Some(store) = &self.handle.store {
            persist::write_changes(store, &self.handle.client_id, &self.guard.session, changes);
        }
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
    store: Option<Arc<Store>>,
}

impl Registry {
    /// A registry whose persistent sessions are kept in `store`.
    pub fn with_store(store: Option<Arc<Store>>) -> Self {
        Self {
            sessions: Mutex::default(),
            store,
        }
    }

    /// Adds a persistent session read back from the store, offline since `now`.
    pub fn restore(&self, client_id: &str, session: Session, now: Instant) -> Arc<SessionHandle> {
        let handle = self.new_handle(client_id, SessionSlot::new(session, None, false, Some(now)));
        self.map().insert(handle.client_id.clone(), handle.clone());
        handle
    }

    fn new_handle(&self, client_id: &str, slot: SessionSlot) -> Arc<SessionHandle> {
        Arc::new(SessionHandle::new(
            client_id.into(),
            slot,
            self.store.clone(),
        ))
    }

    /// Ends a session: no more store writes for it, and its stored state is deleted.
    fn end(&self, slot: &mut SessionSlot, client_id: &str) {
        slot.ended = true;
        if slot.session.is_persistent() {
            let _ = slot.session.take_changes();
            if let Some(store) = &self.store {
                if let Err(e) = store.delete_session(client_id) {
                    tracing::error!(target: "error", client = client_id, error = %e, "cannot delete stored session");
                }
            }
        }
    }

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
                slot.session.set_persistent(true);
                drop(slot);
                return Attached {
                    handle: existing,
                    session_present: true,
                    discarded: None,
                    took_over,
                    kicked,
                };
            }
            self.end(&mut slot, client_id);
            drop(slot);
            map.remove(client_id);
            discarded = Some(existing);
        }
        let mut session = Session::new(limits);
        session.set_persistent(!clean);
        let owner = Some(Owner { conn_id, kick });
        let handle = self.new_handle(client_id, SessionSlot::new(session, owner, clean, None));
        drop(handle.lock()); // writes a new persistent session's record
        map.insert(handle.client_id.clone(), handle.clone());
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
        self.end(&mut slot, &handle.client_id);
        drop(slot);
        remove_if_same(&mut map, handle);
        true
    }

    /// Another node of the cluster now holds `client_id`: tells the connection holding it
    /// here (if any) to close, ends the session here and returns it, so its subscriptions
    /// can leave the router.
    pub fn release(&self, client_id: &str) -> Option<Arc<SessionHandle>> {
        self.release_with(client_id, |_, _| ()).map(|(h, ())| h)
    }

    /// `release`, calling `f` on the session (and whether it is persistent) first, under its
    /// lock: what `f` takes is exactly what the session held when it ended here.
    pub fn release_with<T>(
        &self,
        client_id: &str,
        f: impl FnOnce(&Session, bool) -> T,
    ) -> Option<(Arc<SessionHandle>, T)> {
        let mut map = self.map();
        let handle = map.get(client_id).cloned()?;
        let mut slot = handle.lock();
        if let Some(old) = slot.owner.take() {
            let _ = old.kick.send(());
        }
        let taken = f(&slot.session, !slot.clean);
        self.end(&mut slot, client_id);
        drop(slot);
        remove_if_same(&mut map, &handle);
        Some((handle, taken))
    }

    /// Every client id with a session here.
    pub fn client_ids(&self) -> Vec<String> {
        self.map().keys().map(|k| k.to_string()).collect()
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
                let mut slot = h.lock();
                let expired = slot.owner.is_none()
                    && slot
                        .offline_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= max_age);
                if expired {
                    self.end(&mut slot, &h.client_id);
                }
                expired
            })
            .cloned()
            .collect();
        for h in &expired {
            remove_if_same(&mut map, h);
        }
        expired
    }

    /// Drops the queued QoS 0 messages of every session (the memory alarm); returns how many.
    pub fn drop_qos0_everywhere(&self) -> usize {
        let handles: Vec<Arc<SessionHandle>> = self.map().values().cloned().collect();
        handles
            .iter()
            .map(|h| {
                let mut slot = h.lock();
                let before = slot.session.queued();
                slot.session.drop_qos0();
                before - slot.session.queued()
            })
            .sum()
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
        assert!(a.handle.lock().is_ended());
        assert!(r.detach(&b.handle, 2, Instant::now()));
        assert!(b.handle.lock().is_ended());
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
        assert!(a.handle.lock().is_ended());
    }

    #[test]
    fn drop_reports_are_rate_limited_but_counted() {
        let r = Registry::default();
        let a = r.attach("c", true, 1, limits());
        let mut slot = a.handle.lock();
        let t0 = Instant::now();
        let every = Duration::from_secs(1);
        assert_eq!(slot.note_drops(2, t0, every), Some(2));
        assert_eq!(
            slot.note_drops(3, t0 + Duration::from_millis(10), every),
            None
        );
        assert_eq!(
            slot.note_drops(4, t0 + Duration::from_millis(20), every),
            None
        );
        assert_eq!(slot.note_drops(0, t0 + every, every), Some(7));
        assert_eq!(slot.note_drops(0, t0 + 3 * every, every), None);
    }
}
