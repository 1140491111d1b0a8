//! SUBSCRIBE and UNSUBSCRIBE (`Event::Subscribe`, `Event::Unsubscribe`): the topic rules, the
//! session's subscription quota and its store, the router, and the retained messages a new
//! subscription gets. The SUBACK/UNSUBACK codes are the protocol core's
//! (`answer_subscribe`, `answer_unsubscribe`).

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::limits;
use super::super::router::{deliver, report_unstored};
use super::Connection;
use crate::mqtt::connection::{
    FilterRefusal, SubscribeOutcome, SubscribeRequest, UnsubscribeOutcome, UnsubscribeRequest,
};
use crate::mqtt::message::{Delivery, RetainHandling, SubscriptionOptions};
use crate::mqtt::packet::QoS;

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Subscribes the session to each filter the protocol and the topic rules allow, answers
    /// with SUBACK, then sends the retained messages the new subscriptions call for.
    pub(super) fn handle_subscribe(&mut self, now: Instant, request: SubscribeRequest) {
        let Some(client) = &self.client else { return };
        let handle = client.handle.clone();
        let mut outcomes = Vec::with_capacity(request.filters.len());
        let mut granted = Vec::new();
        for requested in &request.filters {
            let (filter, options) = (requested.filter.as_str(), requested.options);
            match requested.refused {
                Some(FilterRefusal::Invalid) => {
                    tracing::info!(target: "protocol", client = %handle.client_id, filter, "invalid topic filter refused");
                }
                Some(FilterRefusal::OverLimits(e)) => {
                    limits::topic_refused("SUBSCRIBE", &handle.client_id, self.peer, filter, e);
                }
                None => {}
            }
            let outcome = match requested.refused {
                Some(refusal) => SubscribeOutcome::Refused(refusal),
                None if !self.subscription_decision(&handle, filter).allow => {
                    SubscribeOutcome::NotAuthorized
                }
                None => self.subscribe(&handle, filter, options),
            };
            let granted_now = matches!(outcome, SubscribeOutcome::Granted(_));
            outcomes.push(outcome);
            if !granted_now {
                continue;
            }
            let new = self.broker.router.subscribe(&handle, filter, options);
            tracing::info!(target: "resource", client = %handle.client_id, filter, qos = options.qos as u8, "subscription added");
            // Retain handling: 0 sends retained messages at every subscribe, 1 only for a
            // new subscription, 2 never.
            let send_retained = match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscription => new,
                RetainHandling::Never => false,
            };
            if send_retained {
                granted.push((filter, options.qos, options.subscription_id));
            }
        }
        self.proto.answer_subscribe(&request, &outcomes);
        self.send_transmits();
        // Retained messages follow the SUBACK, flagged as retained (MQTT-3.3.1-8), with the
        // subscription's identifier; expired ones are not sent (MQTT 5.0 3.3.2.3.3).
        for (filter, qos, id) in granted {
            self.send_retained(&handle, filter, qos, id, now);
        }
    }

    /// Adds a subscription to the session, session first and then router (see
    /// `Router::subscribe`). A new filter beyond `session.max_subscriptions` is refused. A
    /// persistent session's subscription is written before it is granted: one the store did
    /// not take is undone and refused, or it would vanish at restart.
    fn subscribe(
        &self,
        handle: &super::super::registry::SessionHandle,
        filter: &str,
        options: SubscriptionOptions,
    ) -> SubscribeOutcome {
        let max_subscriptions = self.settings.session.max_subscriptions;
        let mut slot = handle.lock();
        if !slot.session.has_subscription(filter)
            && slot.session.subscription_count() >= max_subscriptions
        {
            drop(slot);
            tracing::warn!(target: "warning", client = %handle.client_id, peer = %self.peer,
                kind = "SUBSCRIBE", filter, max = max_subscriptions,
                "subscription refused: session.max_subscriptions reached");
            return SubscribeOutcome::QuotaExceeded(max_subscriptions);
        }
        let before = slot.session.subscribe(filter, options);
        let Err(e) = slot.submit() else {
            return SubscribeOutcome::Granted(options.qos);
        };
        match before {
            Some(old) => {
                slot.session.subscribe(filter, old);
            }
            None => {
                slot.session.unsubscribe(filter);
            }
        }
        // The store still holds the session as it was before.
        let _ = slot.session.take_changes();
        drop(slot);
        tracing::error!(target: "error", client = %handle.client_id, peer = %self.peer,
            filter, error = %e, "subscription not stored: refused");
        SubscribeOutcome::NotStored(e.to_string())
    }

    /// Queues for the session the retained messages matching a new subscription that its
    /// topic rules let it read (a wildcard may cover more).
    fn send_retained(
        &self,
        handle: &super::super::registry::SessionHandle,
        filter: &str,
        qos: QoS,
        subscription_id: Option<u32>,
        now: Instant,
    ) {
        for message in self.broker.retained.matching(filter, now) {
            if !self.broker.router.may_receive(handle, &message.topic) {
                continue;
            }
            let qos = message.qos.min(qos);
            let retained = Delivery {
                message,
                qos,
                retain: true,
                share: None,
                subscription_ids: subscription_id.into_iter().collect(),
            };
            let topic = retained.message.topic.clone();
            if let Ok(d) = deliver(handle, retained, false) {
                report_unstored(
                    d.store_error.as_ref(),
                    &handle.client_id,
                    &topic,
                    "retained message on subscribe",
                );
            }
        }
    }

    /// Removes the session's subscriptions to each filter and answers with UNSUBACK; what a
    /// shared subscription left unacknowledged goes to another member of its group.
    pub(super) fn handle_unsubscribe(&mut self, request: UnsubscribeRequest) {
        let mut outcomes = Vec::with_capacity(request.filters.len());
        if let Some(client) = &self.client {
            for (filter, over) in &request.filters {
                // Such a filter cannot have been subscribed to.
                if let Some(e) = over {
                    limits::topic_refused("UNSUBSCRIBE", &client.id, self.peer, filter, *e);
                    outcomes.push(UnsubscribeOutcome::Invalid);
                    continue;
                }
                let removed = self.broker.router.unsubscribe(&client.handle, filter);
                let (existed, left, store_error) = {
                    let mut slot = client.handle.lock();
                    let existed = slot.session.unsubscribe(filter);
                    let left = slot.session.take_shared(Some(filter));
                    (existed, left, slot.submit().err())
                };
                super::super::shared::hand_over(&self.broker, &client.id, left);
                if removed {
                    tracing::info!(target: "resource", client = %client.id, filter, "subscription removed");
                }
                if let Some(e) = store_error {
                    // Gone from memory, but the store still has it (it returns at restart):
                    // not a success.
                    tracing::error!(target: "error", client = %client.id, peer = %self.peer,
                        filter, error = %e, "unsubscription not stored");
                    outcomes.push(UnsubscribeOutcome::NotStored);
                    continue;
                }
                outcomes.push(if existed || removed {
                    UnsubscribeOutcome::Removed
                } else {
                    UnsubscribeOutcome::NoSubscription
                });
            }
        }
        self.proto.answer_unsubscribe(request.packet_id, &outcomes);
        self.send_transmits();
    }
}
