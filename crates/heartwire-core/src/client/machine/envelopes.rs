//! What the machine does with a heartwire server's envelopes: channel messages and
//! their positions, acks and errors of publishes, other errors, presence, token
//! refreshes, the `reconnect` hint; and how the caller's messages become envelopes.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ClientConnection, Mode};
use crate::client::event::{Event, Incoming};
use crate::client::frame::Frame;
use crate::client::outgoing::Outgoing;
use crate::client::positions::{Delivery, Gap};
use crate::error::ErrorCode;
use crate::protocol::{ClientFrame, ServerFrame};

impl ClientConnection {
    /// A text frame of a heartwire server, and what it parsed as.
    pub(super) fn handle_envelope(
        &mut self,
        now: Instant,
        text: String,
        parsed: Option<ServerFrame>,
    ) {
        match parsed {
            Some(ServerFrame::Message { channel, seq, data }) => {
                match self.carried.positions.handle_message(&channel, seq) {
                    Delivery::Duplicate | Delivery::Ended => {}
                    Delivery::Deliver => self.deliver(channel, seq, data),
                    Delivery::AfterGap(gap) => {
                        self.gap(&channel, gap);
                        self.deliver(channel, seq, data);
                    }
                }
            }
            Some(ServerFrame::Subscribed {
                channel,
                seq,
                epoch,
                recovered,
            }) => {
                self.subscribing.retain(|known| *known != channel);
                let positions = &mut self.carried.positions;
                let gap = positions.handle_subscribed(&channel, seq, &epoch, recovered);
                if let Some(gap) = gap {
                    self.gap(&channel, gap);
                }
                self.events.push_back(Event::Subscribed {
                    channel,
                    seq,
                    recovered,
                });
            }
            // A duplicate was published once already: acknowledged all the same.
            Some(ServerFrame::Ack { id, seq, duplicate }) => {
                if let Some(publish) = self.carried.unacked.ack(&id) {
                    self.events.push_back(Event::Published {
                        id,
                        channel: publish.channel,
                        seq,
                        duplicate,
                    });
                }
            }
            Some(ServerFrame::Error {
                code: ErrorCode::Unavailable,
                id: Some(id),
                ..
            }) => self.retry_later(now, &id),
            // Dropped for sending too fast: sent again once the hint has passed, and
            // the caller hears of it as an error that ends nothing.
            Some(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                id: Some(id),
                retry_after_ms,
                reason,
                channel,
            }) => {
                let hint = retry_after_ms.map(Duration::from_millis);
                self.retry_later_by(now, &id, hint);
                self.events.push_back(Event::Error {
                    code: ErrorCode::RateLimited,
                    reason,
                    channel,
                });
            }
            Some(ServerFrame::Error {
                code,
                reason,
                id: Some(id),
                channel,
                ..
            }) => {
                // Refused for good (not for want of a broker): sending it again would
                // be refused again. An id this client is not waiting for answers
                // nothing it knows: an error like any other.
                match self.carried.unacked.ack(&id) {
                    Some(publish) => self.events.push_back(Event::PublishRefused {
                        id,
                        channel: publish.channel,
                        code,
                        reason,
                    }),
                    None => self.refused(now, code, reason, channel),
                }
            }
            Some(ServerFrame::Error {
                code,
                reason,
                id: None,
                channel,
                ..
            }) => self.refused(now, code, reason, channel),
            Some(ServerFrame::Reconnect { after_ms, .. }) => {
                self.retry_after = Some(Duration::from_millis(after_ms));
            }
            Some(ServerFrame::Refreshed { expires_in_ms }) => {
                let expires_in = expires_in_ms.map(Duration::from_millis);
                self.refresh.handle_lifetime(now, expires_in);
                self.events.push_back(Event::Refreshed { expires_in });
            }
            Some(ServerFrame::Presence {
                channel,
                members,
                users,
            }) => self.events.push_back(Event::Presence {
                channel,
                members,
                users,
            }),
            Some(ServerFrame::Join {
                channel,
                session,
                user,
            }) => self.events.push_back(Event::Join {
                channel,
                session,
                user,
            }),
            Some(ServerFrame::Leave {
                channel,
                session,
                user,
            }) => self.events.push_back(Event::Leave {
                channel,
                session,
                user,
            }),
            Some(ServerFrame::Unsubscribed { channel }) => {
                if let Some(at) = self.leaving.iter().position(|known| *known == channel) {
                    self.leaving.swap_remove(at);
                } else {
                    self.carried.positions.forget(&channel);
                    self.events.push_back(Event::SubscriptionEnded { channel });
                }
            }
            Some(ServerFrame::Pong { .. } | ServerFrame::Hello { .. }) => {}
            _ => self.events.push_back(Event::Message(Incoming::Text(text))),
        }
    }

    /// The frame for a queued message, or `None` when it means nothing to this server.
    pub(super) fn encode(&mut self, message: Outgoing) -> Option<Frame> {
        let native = self.mode == Mode::Native;
        match message {
            Outgoing::Text(text) => Some(Frame::Text(text)),
            Outgoing::Binary(data) => Some(Frame::Binary(data)),
            Outgoing::Publish(publish) if native => {
                let frame = ClientFrame::Publish {
                    channel: publish.channel.clone(),
                    data: publish.data.clone(),
                    id: Some(publish.id.clone()),
                };
                self.carried.unacked.add(publish);
                Some(Frame::Text(frame.encode()))
            }
            Outgoing::Subscribe(channel) if native => {
                if !self.subscribing.contains(&channel) {
                    self.subscribing.push(channel.clone());
                }
                let since = self.carried.positions.since(&channel);
                Some(Frame::Text(
                    ClientFrame::Subscribe { channel, since }.encode(),
                ))
            }
            Outgoing::Unsubscribe(channel) if native => {
                self.carried.positions.forget(&channel);
                self.subscribing.retain(|known| *known != channel);
                self.leaving.push(channel.clone());
                Some(Frame::Text(ClientFrame::Unsubscribe { channel }.encode()))
            }
            Outgoing::Presence(channel) if native => {
                Some(Frame::Text(ClientFrame::Presence { channel }.encode()))
            }
            // Envelopes mean nothing to a server that is not heartwire.
            Outgoing::Publish(_)
            | Outgoing::Subscribe(_)
            | Outgoing::Unsubscribe(_)
            | Outgoing::Presence(_) => None,
        }
    }

    /// The server could not take publish `id` for want of a broker: it and every
    /// publish sent after it go out again first, in order and with their ids, after
    /// one first-retry window in which the outbox waits.
    fn retry_later(&mut self, now: Instant, id: &str) {
        self.retry_later_by(now, id, None);
    }

    /// Holds `id` and the publishes after it for `hint`, or the configured hold.
    fn retry_later_by(&mut self, now: Instant, id: &str, hint: Option<Duration>) {
        let mut again = self.carried.unacked.take_from(id);
        if again.is_empty() {
            return;
        }
        again.append(&mut self.carried.resend);
        self.carried.resend = again;
        self.hold_until = Some(now + hint.unwrap_or(self.config.unavailable_hold));
    }

    /// An `error` that answers no publish. A `forbidden` naming a channel whose
    /// `subscribed` is awaited refuses that subscribe: the channel is forgotten. An
    /// `unauthorized` or `forbidden` without a channel while a refresh is under way
    /// answers the refresh.
    fn refused(&mut self, now: Instant, code: ErrorCode, reason: String, channel: Option<String>) {
        match (channel, code) {
            (Some(channel), ErrorCode::Forbidden) if self.subscribing.contains(&channel) => {
                self.subscribing.retain(|known| *known != channel);
                self.carried.positions.forget(&channel);
                self.events
                    .push_back(Event::SubscriptionRefused { channel, reason });
            }
            (channel, code) => {
                if channel.is_none()
                    && matches!(code, ErrorCode::Unauthorized | ErrorCode::Forbidden)
                {
                    self.refresh.handle_refused(now);
                }
                self.events.push_back(Event::Error {
                    code,
                    reason,
                    channel,
                });
            }
        }
    }

    fn deliver(&mut self, channel: String, seq: u64, data: Value) {
        let message = Incoming::Channel { channel, seq, data };
        self.events.push_back(Event::Message(message));
    }

    fn gap(&mut self, channel: &str, gap: Gap) {
        self.events.push_back(Event::Gap {
            channel: channel.to_owned(),
            from_seq: gap.from_seq,
            to_seq: gap.to_seq,
            reason: gap.reason,
        });
    }
}
