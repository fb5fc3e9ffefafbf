//! `/ws`: the native protocol of JSON envelopes (docs/PROTOCOL.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use heartwire_core::protocol::{
    ClientFrame, Position, PresenceUser, ServerFrame, millis, session_name,
};
use heartwire_core::report::SessionReport;
use heartwire_core::{Error, ErrorCode};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{Context, Endpoint, EndpointKind, Outgoing};
use crate::auth::{self, expiry};
use crate::broker::{PublishRequest, SubscribeRequest};
use crate::handover::state::{EndpointState, SubscriptionState};
use crate::mailbox::{Member, Outbound};
use crate::metrics::ResumeOutcome;
use crate::permissions::{Action, Forbidden};
use crate::publication::{Encoding, Payload};

/// The native endpoint: its subscriptions, to release them at the end.
#[derive(Default)]
pub(crate) struct Native {
    subscriptions: Vec<Held>,
    /// The positions asked for by subscribes not answered yet, to count how each
    /// resume went; at most one per subscription (an unsubscribe drops its own).
    resuming: Vec<(Arc<str>, Position)>,
    /// The client has sent its report: a second one is invalid.
    reported: bool,
    /// Requests the broker (or the identity provider) has not answered yet: publishes
    /// with an id, presence, refresh. A live upgrade waits for their answers.
    unanswered: u32,
}

/// A subscription and the position of the last message queued to it, from which
/// another process resumes it after a live upgrade.
struct Held {
    channel: Arc<str>,
    /// The channel's epoch, once the subscription is confirmed (or carried over).
    epoch: Option<Arc<str>>,
    /// The last `seq` queued to the client.
    seq: u64,
    /// Resumed after a live upgrade: its confirmation is not news to the client,
    /// unless it says messages were lost.
    resumed: bool,
}

impl Held {
    fn new(channel: Arc<str>) -> Self {
        Self {
            channel,
            epoch: None,
            seq: 0,
            resumed: false,
        }
    }
}

fn frame(frame: &ServerFrame) -> Message {
    Message::Text(Utf8Bytes::from(frame.encode()))
}

fn error(code: ErrorCode, reason: impl Into<String>, id: Option<String>) -> Message {
    frame(&ServerFrame::Error {
        code,
        reason: reason.into(),
        id,
        channel: None,
        retry_after_ms: None,
    })
}

/// Texts longer than this are never `{"op":"ping"}`, and are not parsed to find out.
const LONGEST_PING: usize = 1024;

/// The `error` frame `forbidden` for a request on `channel`.
fn forbidden(refusal: Forbidden, channel: &str, id: Option<String>) -> Message {
    frame(&ServerFrame::Error {
        code: ErrorCode::Forbidden,
        reason: refusal.reason,
        id,
        channel: Some(channel.to_owned()),
        retry_after_ms: None,
    })
}

/// The answer to a `presence` request: the members' sessions, and their users with
/// the number of connections of each.
fn presence(channel: &str, members: &[Member]) -> Message {
    let mut users: BTreeMap<&str, u32> = BTreeMap::new();
    for user in members.iter().filter_map(|member| member.user.as_deref()) {
        *users.entry(user).or_default() += 1;
    }
    frame(&ServerFrame::Presence {
        channel: channel.to_owned(),
        members: members
            .iter()
            .map(|member| session_name(member.session))
            .collect(),
        users: users
            .into_iter()
            .map(|(user, connections)| PresenceUser {
                user: user.to_owned(),
                connections,
            })
            .collect(),
    })
}

impl Native {
    fn subscribe(&mut self, channel: String, since: Option<Position>, context: &mut Context) {
        if let Err(refusal) = context.permit(Action::Subscribe, &channel) {
            context.reply(forbidden(refusal, &channel, None));
            return;
        }
        let asked = since.clone();
        // Without the history permission the subscription starts at the live edge;
        // a client that asked to resume learns that nothing was recovered.
        let since = since.map(|since| match context.permit(Action::History, &channel) {
            Ok(()) => since,
            Err(_) => SubscribeRequest::unreplayable(),
        });
        let channel: Arc<str> = match self
            .subscriptions
            .iter()
            .find(|held| *held.channel == *channel)
        {
            Some(held) => held.channel.clone(),
            None if self.subscriptions.len()
                >= context.server().config.limits.max_subscriptions =>
            {
                let limit = context.server().config.limits.max_subscriptions;
                let reason = format!(
                    "cannot subscribe to {channel}: this connection already holds {limit} subscriptions"
                );
                context.reply(error(ErrorCode::TooManySubscriptions, reason, None));
                return;
            }
            None => {
                let channel = Arc::from(channel);
                self.subscriptions.push(Held::new(Arc::clone(&channel)));
                channel
            }
        };
        if let Some(asked) = asked {
            self.resuming.retain(|(held, _)| *held != channel);
            self.resuming.push((channel.clone(), asked));
        }
        let presence = context.server().config.has_presence(&channel);
        context.server().broker.subscribe(SubscribeRequest {
            channel,
            subscriber: context.mailbox().clone(),
            with_retained: false,
            since,
            presence,
            user: context.user(),
        });
    }

    /// Counts how a resume of `channel` went, answered with the channel's latest
    /// `seq` and `epoch`.
    fn resumed(
        &mut self,
        channel: &str,
        seq: u64,
        epoch: &str,
        recovered: bool,
        context: &Context,
    ) {
        let Some(index) = self
            .resuming
            .iter()
            .position(|(held, _)| **held == *channel)
        else {
            return;
        };
        let (_, asked) = self.resuming.swap_remove(index);
        let outcome = match (recovered, asked.epoch == epoch) {
            (true, _) => ResumeOutcome::Recovered,
            (false, true) => ResumeOutcome::Gap,
            (false, false) => ResumeOutcome::EpochChange,
        };
        let replayed = seq.saturating_sub(asked.seq);
        context.server().metrics.liveness.resumed(outcome, replayed);
    }

    /// A client's report of its previous session: counted, and judged against the
    /// sessions reaped for silence; a bad or second one is counted and ignored.
    fn report(&mut self, fields: &serde_json::Map<String, serde_json::Value>, context: &Context) {
        let report = match std::mem::replace(&mut self.reported, true) {
            true => Err("one report per connection"),
            false => SessionReport::from_fields(fields),
        };
        if let Err(reason) = report {
            tracing::debug!(reason, "report ignored");
        }
        let server = &context.server();
        let report = report.as_ref().map_err(|reason| *reason);
        (server.metrics.liveness).report(report, Instant::now(), &*server.broker);
    }

    fn presence(&mut self, channel: String, context: &mut Context) {
        if let Err(refusal) = context.permit(Action::Presence, &channel) {
            context.reply(forbidden(refusal, &channel, None));
        } else if context.server().config.has_presence(&channel) {
            let channel = Arc::from(channel);
            self.unanswered += 1;
            context
                .server()
                .broker
                .presence(channel, context.mailbox().clone());
        } else {
            let reason = format!("the server does not track who is subscribed to {channel}");
            context.reply(error(ErrorCode::PresenceOff, reason, None));
        }
    }

    /// After a refresh changed the identity's groups or channel claims: the
    /// subscriptions it no longer allows end, each told with `forbidden` and then
    /// `unsubscribed`.
    fn end_what_is_no_longer_allowed(&mut self, context: &mut Context) {
        let mut kept = Vec::with_capacity(self.subscriptions.len());
        for held in std::mem::take(&mut self.subscriptions) {
            let channel = held.channel.clone();
            match context.permit(Action::Subscribe, &channel) {
                Ok(()) => kept.push(held),
                Err(refusal) => {
                    context
                        .server()
                        .broker
                        .unsubscribe(&channel, context.mailbox().id());
                    context.reply(forbidden(refusal, &channel, None));
                    context.reply(frame(&ServerFrame::Unsubscribed {
                        channel: channel.to_string(),
                    }));
                }
            }
        }
        self.subscriptions = kept;
    }

    fn unsubscribe(&mut self, channel: String, context: &mut Context) {
        self.subscriptions.retain(|held| *held.channel != *channel);
        self.resuming.retain(|(held, _)| **held != *channel);
        context
            .server()
            .broker
            .unsubscribe(&channel, context.mailbox().id());
        context.reply(frame(&ServerFrame::Unsubscribed { channel }));
    }

    fn publish(
        &mut self,
        channel: String,
        data: serde_json::Value,
        id: Option<String>,
        context: &mut Context,
    ) {
        if let Err(refusal) = context.permit(Action::Publish, &channel) {
            context.reply(forbidden(refusal, &channel, id));
            return;
        }
        let longest = context.server().config.holdings.max_publish_id_length;
        if let Some(long) = id.as_ref().filter(|id| id.len() > longest) {
            context.server().metrics.refused("id_too_long");
            let reason = format!(
                "publish id of {} bytes; the server takes at most {longest} (max-publish-id-length)",
                long.len()
            );
            // The id is not sent back: it is what is too long.
            context.reply(error(ErrorCode::IdTooLong, reason, None));
            return;
        }
        let data =
            serde_json::value::to_raw_value(&data).expect("a parsed JSON value encodes again");
        if id.is_some() {
            self.unanswered += 1;
        }
        context.server().broker.publish(PublishRequest {
            channel: Arc::from(channel),
            payload: Payload::Json(data),
            retain: false,
            origin: Some(context.mailbox().clone()),
            ack_id: id,
            publisher: context.publisher(),
        });
    }
}

impl Endpoint for Native {
    const KIND: EndpointKind = EndpointKind::Native;

    fn on_open(&mut self, context: &mut Context) {
        let config = &context.server().config;
        let hello = ServerFrame::Hello {
            session: session_name(context.mailbox().id()),
            ping_interval_ms: millis(config.liveness.ping_interval),
            ping_timeout_ms: millis(config.liveness.ping_timeout),
            server: concat!("heartwire/", env!("CARGO_PKG_VERSION")).to_owned(),
            user: context
                .identity
                .as_ref()
                .map(|identity| identity.user.clone()),
            expires_in_ms: expiry::expires_in_ms(context.identity.as_deref(), SystemTime::now()),
            reports: true,
        };
        context.reply(frame(&hello));
    }

    fn is_heartbeat(&self, text: &str) -> bool {
        text.len() <= LONGEST_PING
            && text.contains("ping")
            && matches!(ClientFrame::parse(text), Ok(ClientFrame::Ping { .. }))
    }

    fn on_rate_limited(
        &mut self,
        text: Option<&str>,
        retry_after: Duration,
        context: &mut Context,
    ) {
        // A publish is named by its id, so that its client sends it again.
        let id = match text.map(ClientFrame::parse) {
            Some(Ok(ClientFrame::Publish { id, .. })) => id,
            _ => None,
        };
        let retry_after_ms = millis(retry_after).max(1);
        context.reply(frame(&ServerFrame::Error {
            code: ErrorCode::RateLimited,
            reason: format!(
                "too many messages (message-rate); this one was dropped, send again after {retry_after_ms} ms"
            ),
            id,
            channel: None,
            retry_after_ms: Some(retry_after_ms),
        }));
    }

    fn on_text(&mut self, text: Utf8Bytes, context: &mut Context) {
        match ClientFrame::parse(&text) {
            Ok(ClientFrame::Ping { echo }) => {
                context.server().metrics.client_heartbeats.increment(1);
                context.reply(frame(&ServerFrame::Pong { echo }));
            }
            Ok(ClientFrame::Subscribe { channel, since }) => {
                self.subscribe(channel, since, context)
            }
            Ok(ClientFrame::Unsubscribe { channel }) => self.unsubscribe(channel, context),
            Ok(ClientFrame::Presence { channel }) => self.presence(channel, context),
            Ok(ClientFrame::Publish { channel, data, id }) => {
                self.publish(channel, data, id, context)
            }
            Ok(ClientFrame::Refresh { token }) => {
                self.unanswered += 1;
                auth::start_refresh(context.server().clone(), token, context.mailbox().clone());
            }
            Ok(ClientFrame::Report { fields }) => self.report(&fields, context),
            Err(Error::Request { code, reason }) => context.reply(error(code, reason, None)),
        }
    }

    fn on_binary(&mut self, _data: Bytes, context: &mut Context) {
        context.reply(error(
            ErrorCode::Unsupported,
            "binary frames are not accepted on /ws; send JSON text",
            None,
        ));
    }

    fn on_outbound(&mut self, item: Outbound, context: &mut Context) -> Option<Outgoing> {
        if matches!(
            item,
            Outbound::Ack { .. }
                | Outbound::Presence { .. }
                | Outbound::Refreshed(_)
                | Outbound::Error { id: Some(_), .. }
        ) {
            self.unanswered = self.unanswered.saturating_sub(1);
        }
        let message = match item {
            Outbound::Message(message) => {
                if let Some(held) = self.held(&message.channel) {
                    held.seq = message.seq;
                }
                return Some(Outgoing::Published(message, Encoding::Native));
            }
            Outbound::Subscribed {
                channel,
                seq,
                epoch,
                recovered,
            } => {
                if let Some(recovered) = recovered {
                    self.resumed(&channel, seq, &epoch, recovered, context);
                }
                if let Some(held) = self.held(&channel) {
                    held.seq = seq;
                    held.epoch = Some(epoch.clone());
                    if std::mem::take(&mut held.resumed) && recovered == Some(true) {
                        return None;
                    }
                }
                frame(&ServerFrame::Subscribed {
                    channel: channel.to_string(),
                    seq,
                    epoch: epoch.to_string(),
                    recovered,
                })
            }
            Outbound::Ack {
                id, seq, duplicate, ..
            } => frame(&ServerFrame::Ack { id, seq, duplicate }),
            Outbound::Presence { channel, members } => presence(&channel, &members),
            Outbound::PresenceChange {
                channel,
                member,
                joined,
            } => {
                // Only those who may see presence learn of joins and leaves.
                context.permit(Action::Presence, &channel).ok()?;
                let channel = channel.to_string();
                let session = session_name(member.session);
                let user = member.user.map(|user| user.to_string());
                frame(&if joined {
                    ServerFrame::Join {
                        channel,
                        session,
                        user,
                    }
                } else {
                    ServerFrame::Leave {
                        channel,
                        session,
                        user,
                    }
                })
            }
            Outbound::Error { code, reason, id } => {
                if code == ErrorCode::TooManyChannels {
                    context.server().metrics.refused("too_many_channels");
                }
                error(code, reason, id)
            }
            Outbound::Unsubscribe { channel } => {
                // The application ended it; a subscription already gone is left alone.
                self.held(&channel)?;
                self.subscriptions.retain(|held| held.channel != channel);
                context
                    .server()
                    .broker
                    .unsubscribe(&channel, context.mailbox().id());
                frame(&ServerFrame::Unsubscribed {
                    channel: channel.to_string(),
                })
            }
            Outbound::Refreshed(outcome) => {
                let answer =
                    expiry::apply_refresh(&mut context.identity, *outcome, SystemTime::now());
                if matches!(answer, ServerFrame::Refreshed { .. }) {
                    self.end_what_is_no_longer_allowed(context);
                }
                frame(&answer)
            }
        };
        Some(message.into())
    }

    fn on_shutdown(&mut self, reconnect_after_ms: u64) -> Option<Message> {
        let reason = "server restarting".to_owned();
        Some(frame(&ServerFrame::Reconnect {
            after_ms: reconnect_after_ms,
            reason,
        }))
    }

    fn on_close(&mut self, context: &mut Context) {
        for held in self.subscriptions.drain(..) {
            context
                .server()
                .broker
                .unsubscribe(&held.channel, context.mailbox().id());
        }
    }

    fn awaits_answers(&self) -> bool {
        self.unanswered > 0
    }

    fn hand_over(&self) -> Option<EndpointState> {
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|held| SubscriptionState::at(&held.channel, held.epoch.as_deref(), held.seq))
            .collect();
        Some(EndpointState::Native { subscriptions })
    }
}

impl Native {
    /// The subscription to `channel`, if held.
    fn held(&mut self, channel: &str) -> Option<&mut Held> {
        self.subscriptions
            .iter_mut()
            .find(|held| *held.channel == *channel)
    }

    /// Takes over the subscriptions of a connection handed over by another process:
    /// each is subscribed again from its position, so the messages published since
    /// follow, once and in order, and its confirmation is not sent again.
    pub(crate) fn resume(subscriptions: Vec<SubscriptionState>, context: &Context) -> Self {
        let mut native = Self::default();
        for subscription in subscriptions {
            let channel: Arc<str> = Arc::from(subscription.channel);
            let mut held = Held::new(channel.clone());
            // Until the new confirmation, the position is the one carried over: a
            // second upgrade before it carries that one on.
            if let Some(position) = &subscription.position {
                held.epoch = Some(position.epoch.as_str().into());
                held.seq = position.seq;
                held.resumed = true;
            }
            native.subscriptions.push(held);
            context.server().broker.subscribe(SubscribeRequest {
                presence: context.server().config.has_presence(&channel),
                channel,
                subscriber: context.mailbox().clone(),
                with_retained: false,
                since: subscription.position,
                user: context.user(),
            });
        }
        native
    }
}
