//! `/ws/{facility}`: the conventions of django-websocket-redis (ws4redis).
//!
//! Raw text, no envelope. The query flags choose what the socket does, for each
//! audience of the facility `F`:
//!
//! | audience | channel | `subscribe-…` / `publish-…` |
//! |---|---|---|
//! | `broadcast` | `broadcast:F` | everyone's |
//! | `user` | `user:{user}:F` | the connection's user |
//! | `group` | `group:{group}:F`, each group | the connection's groups |
//! | `session` | `session:{key}:F` | the connection's session cookie |
//!
//! A subscribed socket receives its channels' messages, each starting with its last
//! one (when the `history` permission allows it); every text a publishing socket
//! sends is published on each of its publish channels; `echo` lets it receive its
//! own messages too. An anonymous connection has no user, group or session channels:
//! those flags subscribe and publish nothing, as in django-websocket-redis.
//!
//! Every channel goes through the channel permissions. A raw socket has no envelope
//! to carry a refusal, so a refused channel is left out, as django-websocket-redis's
//! `WS4REDIS_ALLOWED_CHANNELS` leaves out a flag: the socket opens with the others.
//!
//! Each channel keeps the position of the last message queued from it, so a live
//! upgrade moves the socket and the new process goes on from there.

use std::sync::Arc;

use bytes::Bytes;
use heartwire_core::protocol::{Position, validate_channel};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Context, Endpoint, EndpointKind, Outgoing};
use crate::auth::Identity;
use crate::broker::{PublishRequest, SubscribeRequest};
use crate::handover::state::{EndpointState, SubscriptionState, Ws4RedisState};
use crate::mailbox::Outbound;
use crate::permissions::Action;
use crate::permissions::identity_channels::Audience;
use crate::publication::{Encoding, Payload};

/// Which audiences of the facility a direction (subscribe or publish) uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Audiences {
    broadcast: bool,
    user: bool,
    group: bool,
    session: bool,
}

impl Audiences {
    /// Sets the audience named `name` (`broadcast`, `user`, `group`, `session`);
    /// returns whether it is one.
    fn set(&mut self, name: &str) -> bool {
        let flag = match name {
            "broadcast" => &mut self.broadcast,
            "user" => &mut self.user,
            "group" => &mut self.group,
            "session" => &mut self.session,
            _ => return false,
        };
        *flag = true;
        true
    }

    /// The channels of these audiences of `facility` for `identity` (`None`:
    /// anonymous, who has only the broadcast).
    fn channels(self, facility: &str, identity: Option<&Identity>) -> Vec<String> {
        let mut channels = Vec::new();
        if self.broadcast {
            channels.push(format!("broadcast:{facility}"));
        }
        let Some(identity) = identity else {
            return channels;
        };
        for (wanted, audience) in [
            (self.user, Audience::User),
            (self.group, Audience::Group),
            (self.session, Audience::Session),
        ] {
            if wanted {
                let owners = audience.owners(identity);
                channels.extend(
                    owners
                        .into_iter()
                        .filter_map(|owner| audience.channel(owner, facility)),
                );
            }
        }
        channels
    }
}

/// A channel a socket receives, and where it is in it.
#[derive(Debug, PartialEq, Eq)]
struct Receiving {
    channel: Arc<str>,
    /// The channel's epoch, once the subscription is confirmed (or carried over).
    epoch: Option<Arc<str>>,
    /// The latest `seq` queued to the client, or the channel's at the confirmation.
    seq: u64,
}

impl Receiving {
    fn new(channel: Arc<str>) -> Self {
        Self {
            channel,
            epoch: None,
            seq: 0,
        }
    }
}

/// A ws4redis socket: its facility, the flags of its URL, and the channels they
/// came to once its identity was known.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ws4Redis {
    facility: Box<str>,
    subscribe: Audiences,
    publish: Audiences,
    echo: bool,
    /// The channels subscribed to when the socket opened.
    subscribed: Box<[Receiving]>,
    /// The channels every text is published on.
    publishing: Box<[Arc<str>]>,
}

impl Ws4Redis {
    /// Reads the facility and the query string, or says what is wrong with them.
    pub(crate) fn from_request(facility: &str, query: Option<&str>) -> Result<Self, String> {
        validate_channel(&format!("broadcast:{facility}")).map_err(|_| {
            format!("invalid facility {facility:?}: use ASCII letters, digits or -_.:@/")
        })?;
        let mut socket = Self {
            facility: facility.into(),
            subscribe: Audiences::default(),
            publish: Audiences::default(),
            echo: false,
            subscribed: Box::default(),
            publishing: Box::default(),
        };
        for flag in query
            .unwrap_or("")
            .split('&')
            .filter(|flag| !flag.is_empty())
        {
            let name = flag.split_once('=').map_or(flag, |(name, _)| name);
            if name == "echo" {
                socket.echo = true;
            } else if let Some(audience) = name.strip_prefix("subscribe-") {
                socket.subscribe.set(audience);
            } else if let Some(audience) = name.strip_prefix("publish-") {
                socket.publish.set(audience);
            }
            // Unknown flags are ignored, as django-websocket-redis does.
        }
        Ok(socket)
    }

    /// The channels of `audiences` that this connection may use for `action`.
    fn permitted(&self, audiences: Audiences, action: Action, context: &Context) -> Vec<String> {
        let mut channels = audiences.channels(&self.facility, context.identity.as_deref());
        channels.retain(|channel| match context.permit(action, channel) {
            Ok(()) => true,
            Err(refusal) => {
                let connection = context.mailbox().id();
                tracing::debug!(
                    connection,
                    reason = refusal.reason,
                    "ws4redis flag left out"
                );
                false
            }
        });
        channels
    }
}

impl Endpoint for Ws4Redis {
    const KIND: EndpointKind = EndpointKind::Ws4Redis;

    fn facility(&self) -> Option<&str> {
        Some(&self.facility)
    }

    fn on_open(&mut self, context: &mut Context) {
        let subscribed = self.permitted(self.subscribe, Action::Subscribe, context);
        self.publishing = self
            .permitted(self.publish, Action::Publish, context)
            .into_iter()
            .map(Arc::from)
            .collect();
        self.subscribed = subscribed
            .into_iter()
            .map(|channel| Receiving::new(channel.into()))
            .collect();
        for receiving in &self.subscribed {
            subscribe(&receiving.channel, None, context);
        }
    }

    fn on_text(&mut self, text: Utf8Bytes, context: &mut Context) {
        // Without a publish flag the text goes nowhere, as in django-websocket-redis.
        for channel in &self.publishing {
            context.server().broker.publish(PublishRequest {
                channel: channel.clone(),
                payload: Payload::Text(text.as_str().into()),
                retain: true,
                origin: Some(context.mailbox().clone()),
                ack_id: None,
                publisher: context.publisher(),
            });
        }
    }

    fn on_binary(&mut self, _data: Bytes, _context: &mut Context) {}

    fn on_outbound(&mut self, item: Outbound, context: &mut Context) -> Option<Outgoing> {
        match item {
            Outbound::Message(message) => {
                if let Some(receiving) = self.receiving(&message.channel) {
                    // The retained message follows the confirmation, which gave
                    // the channel's latest `seq`: the position never goes back.
                    receiving.seq = receiving.seq.max(message.seq);
                }
                let own = message.origin == Some(context.mailbox().id());
                (self.echo || !own).then_some(Outgoing::Published(message, Encoding::Text))
            }
            Outbound::Subscribed {
                channel,
                seq,
                epoch,
                ..
            } => {
                // A raw socket has no frame for it; it marks where the channel is.
                if let Some(receiving) = self.receiving(&channel) {
                    receiving.epoch = Some(epoch);
                    receiving.seq = seq;
                }
                None
            }
            Outbound::Unsubscribe { channel } => {
                // The application ended it: the raw socket just stops receiving it.
                if self.receiving(&channel).is_some() {
                    self.subscribed = std::mem::take(&mut self.subscribed)
                        .into_iter()
                        .filter(|receiving| receiving.channel != channel)
                        .collect();
                    context
                        .server()
                        .broker
                        .unsubscribe(&channel, context.mailbox().id());
                }
                None
            }
            _ => None,
        }
    }

    fn on_close(&mut self, context: &mut Context) {
        for receiving in &self.subscribed {
            context
                .server()
                .broker
                .unsubscribe(&receiving.channel, context.mailbox().id());
        }
    }

    fn hand_over(&self) -> Option<EndpointState> {
        Some(EndpointState::Ws4Redis(Ws4RedisState {
            facility: self.facility.to_string(),
            echo: self.echo,
            subscriptions: self
                .subscribed
                .iter()
                .map(|receiving| {
                    let epoch = receiving.epoch.as_deref();
                    SubscriptionState::at(&receiving.channel, epoch, receiving.seq)
                })
                .collect(),
            publishing: self
                .publishing
                .iter()
                .map(|channel| channel.to_string())
                .collect(),
        }))
    }
}

impl Ws4Redis {
    /// The channel `channel`, if the socket receives it.
    fn receiving(&mut self, channel: &str) -> Option<&mut Receiving> {
        self.subscribed
            .iter_mut()
            .find(|receiving| *receiving.channel == *channel)
    }

    /// Takes over a socket handed over by another process: each channel is
    /// subscribed again from its position, so the messages published since follow
    /// once and in order; one not confirmed yet is subscribed as at the open. The
    /// query flags did their work at the open and are not kept.
    pub(crate) fn resume(socket: Ws4RedisState, context: &Context) -> Self {
        let Ws4RedisState {
            facility,
            echo,
            subscriptions,
            publishing,
        } = socket;
        let mut subscribed = Vec::with_capacity(subscriptions.len());
        for SubscriptionState { channel, position } in subscriptions {
            let mut receiving = Receiving::new(channel.into());
            // Until the new confirmation, the position is the one carried over: a
            // second upgrade before it carries that one on.
            if let Some(position) = &position {
                receiving.epoch = Some(position.epoch.as_str().into());
                receiving.seq = position.seq;
            }
            subscribe(&receiving.channel, position, context);
            subscribed.push(receiving);
        }
        Self {
            facility: facility.into(),
            subscribe: Audiences::default(),
            publish: Audiences::default(),
            echo,
            subscribed: subscribed.into(),
            publishing: publishing.into_iter().map(Arc::from).collect(),
        }
    }
}

/// Subscribes the socket to `channel`: from `since` (after a live upgrade), or at
/// the live edge with the channel's last message when the `history` permission
/// allows it (at the open).
fn subscribe(channel: &Arc<str>, since: Option<Position>, context: &Context) {
    context.server().broker.subscribe(SubscribeRequest {
        channel: channel.clone(),
        subscriber: context.mailbox().clone(),
        with_retained: since.is_none() && context.permit(Action::History, channel).is_ok(),
        since,
        presence: context.server().config.has_presence(channel),
        user: context.user(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Audiences {
        Audiences {
            broadcast: true,
            user: true,
            group: true,
            session: true,
        }
    }

    #[test]
    fn reads_the_query_flags() {
        let socket = Ws4Redis::from_request(
            "chat",
            Some("subscribe-broadcast&publish-broadcast&subscribe-user&publish-group&echo"),
        )
        .unwrap();
        assert_eq!(&*socket.facility, "chat");
        assert!(socket.subscribe.broadcast && socket.subscribe.user && !socket.subscribe.group);
        assert!(socket.publish.broadcast && socket.publish.group && !socket.publish.user);
        assert!(socket.echo);
        let quiet =
            Ws4Redis::from_request("chat", Some("subscribe-session&x=1&publish-all")).unwrap();
        assert!(quiet.subscribe.session && !quiet.echo);
        assert_eq!(quiet.publish, Audiences::default());
        let none = Ws4Redis::from_request("chat", None).unwrap();
        assert_eq!(none.subscribe, Audiences::default());
    }

    #[test]
    fn refuses_bad_facility_names() {
        let err = Ws4Redis::from_request("a b", None).unwrap_err();
        assert!(err.contains("invalid facility"), "{err}");
    }

    #[test]
    fn audiences_name_the_channels_of_the_identity() {
        let ada = Identity {
            user: "ada".into(),
            groups: vec!["staff".into(), "ops".into()],
            session_key: Some("k1".into()),
            expires_at: None,
            channels: Vec::new(),
        };
        assert_eq!(
            everything().channels("chat", Some(&ada)),
            [
                "broadcast:chat",
                "user:ada:chat",
                "group:staff:chat",
                "group:ops:chat",
                "session:k1:chat"
            ]
        );
        // Anonymous: the broadcast only.
        assert_eq!(everything().channels("chat", None), ["broadcast:chat"]);
        // A name that would spell another's channel has none.
        let odd = Identity {
            user: "a:b".into(),
            groups: Vec::new(),
            session_key: None,
            ..ada
        };
        let user_only = Audiences {
            user: true,
            ..Audiences::default()
        };
        assert!(user_only.channels("chat", Some(&odd)).is_empty());
    }
}
