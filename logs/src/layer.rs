//! The `tracing` layer: events whose target is a class name become `Event`s on the channel.

use std::borrow::Cow;
use std::fmt;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use fubar_logproto::Class;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::shared::Shared;
use crate::writer::Msg;

/// The class a `tracing` target names, if any.
pub fn class_of_target(target: &str) -> Option<Class> {
    // Cheap reject first: every class name is 4 to 8 bytes.
    if !(4..=8).contains(&target.len()) {
        return None;
    }
    Class::ALL.into_iter().find(|c| c.name() == target)
}

/// The `tracing_subscriber::Layer` that records classed events; never blocks the caller.
///
/// Closed classes are disabled for the whole subscriber (`enabled` answers from an atomic bit
/// set), so they cost almost nothing; other targets are left to the other layers.
pub struct EventLayer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: SyncSender<Msg>,
}

impl fmt::Debug for EventLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLayer")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl<S: Subscriber> Layer<S> for EventLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        match class_of_target(metadata.target()) {
            // A closed class's callsites are off until it opens (opening and closing rebuild
            // tracing's interest cache), so they cost one load of a cached answer.
            Some(class) if !self.shared.is_wanted(class) => Interest::never(),
            // A wanted class is asked again at every event: a full channel drops it there.
            Some(_) => Interest::sometimes(),
            None => Interest::always(),
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        let Some(class) = class_of_target(metadata.target()) else {
            return true;
        };
        if !self.shared.is_wanted(class) {
            return false;
        }
        if self.shared.is_full() {
            // Dropped here, before the event's fields are even evaluated: under a flood the
            // publish path pays one atomic load per event.
            self.shared.record_drop(class);
            return false;
        }
        true
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let Some(class) = class_of_target(event.metadata().target()) else {
            return;
        };
        if !self.shared.is_wanted(class) {
            return;
        }
        if self.shared.is_full() {
            self.shared.record_drop(class);
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let event = self.shared.event(class, fields.message, fields.fields);
        // Counted before sending, so the writer never takes one that was not counted.
        self.shared.enqueued();
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => self.shared.dequeued(),
            Err(TrySendError::Full(_)) => {
                self.shared.dequeued();
                self.shared.record_drop(class);
            }
        }
    }
}

/// Collects an event's message and other fields, in order.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(Cow<'static, str>, String)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.push((Cow::Borrowed(field.name()), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, if value { "true" } else { "false" }.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive as `DisplayValue`, whose Debug is the value's Display.
        self.put(field, format!("{value:?}"));
    }
}
