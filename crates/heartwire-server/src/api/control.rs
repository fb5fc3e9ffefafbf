//! Disconnect and unsubscribe on every node: the commands travel on a channel of
//! the server's own.
//!
//! `POST /api/disconnect` and `/api/unsubscribe` publish a [`Command`] on
//! [`CONTROL_CHANNEL`] through the broker, so with Redis every node receives it, in
//! the same order, and each applies it to its own connections (found in the
//! [`Registry`](crate::registry::Registry) by user or session). The channel's name
//! starts with `$`, which no client may write in a channel name, so no connection
//! can subscribe to it or publish on it.
//!
//! The same subscription reads the nodes' reports of themselves ([`super::nodes`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::inbox::{ANSWER_TIMEOUT, receive};
use super::nodes::NODES_CHANNEL;
use crate::broker::SubscribeRequest;
use crate::id::new_connection_id;
use crate::mailbox::{Mailbox, Outbound};
use crate::publication::Payload;
use crate::registry::Target;
use crate::state::ServerState;

/// The channel of the commands.
pub(crate) const CONTROL_CHANNEL: &str = "$heartwire:control";

/// Commands that may wait for the node to apply them.
const CONTROL_QUEUE: usize = 4096;

/// A command to every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Command {
    /// Whose connections.
    pub(crate) target: Target,
    /// What to do with them.
    pub(crate) action: Act,
}

/// What a [`Command`] does to each connection it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Act {
    /// Close it with this code and reason.
    Disconnect {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// End its subscription to this channel.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
}

/// This node's subscription to the commands.
#[derive(Debug)]
pub(crate) struct Control {
    mailbox: Arc<Mailbox>,
}

impl Control {
    /// Subscribes to the commands, and waits (up to a few seconds, since the broker
    /// may be away) until the subscription is in place.
    pub(crate) async fn join(state: &ServerState) -> Self {
        let control = Self::subscribe(state);
        let confirmed = tokio::time::timeout(ANSWER_TIMEOUT, async {
            while let Some(item) = receive(&control.mailbox).await {
                if matches!(item, Outbound::Subscribed { .. }) {
                    return true;
                }
            }
            false
        })
        .await;
        if confirmed != Ok(true) {
            tracing::warn!("the server API's control channel is not subscribed yet");
        }
        control
    }

    fn subscribe(state: &ServerState) -> Self {
        let mailbox = Arc::new(Mailbox::new(new_connection_id(), CONTROL_QUEUE));
        for channel in [CONTROL_CHANNEL, NODES_CHANNEL] {
            state.broker.subscribe(SubscribeRequest {
                channel: Arc::from(channel),
                subscriber: mailbox.clone(),
                with_retained: false,
                since: None,
                presence: false,
                user: None,
            });
        }
        Self { mailbox }
    }

    /// Runs `control` when there is one, else waits forever.
    pub(crate) async fn run_if_on(
        control: Option<Self>,
        state: Arc<ServerState>,
    ) -> std::convert::Infallible {
        match control {
            Some(control) => {
                tokio::select! {
                    never = control.run(state.clone()) => never,
                    never = super::nodes::report(state) => never,
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Applies every command that arrives, for as long as the server runs.
    pub(crate) async fn run(mut self, state: Arc<ServerState>) -> std::convert::Infallible {
        loop {
            match receive(&self.mailbox).await {
                Some(Outbound::Message(message)) => {
                    let Payload::Json(data) = &message.payload else {
                        tracing::warn!(channel = %message.channel, "a control message that is not JSON");
                        continue;
                    };
                    if &*message.channel == NODES_CHANNEL {
                        match serde_json::from_str(data.get()) {
                            Ok(report) => state.node_reports.heard(report),
                            Err(err) => tracing::warn!(%err, "an unreadable node report"),
                        }
                        continue;
                    }
                    match serde_json::from_str(data.get()) {
                        Ok(command) => apply(&state, command),
                        Err(err) => tracing::warn!(%err, "an unreadable control command"),
                    }
                }
                Some(_) => {}
                None => {
                    // Commands came faster than they were applied: start over.
                    tracing::warn!("control commands overflowed; subscribing again");
                    for channel in [CONTROL_CHANNEL, NODES_CHANNEL] {
                        state.broker.unsubscribe(channel, self.mailbox.id());
                    }
                    self = Self::subscribe(&state);
                }
            }
        }
    }
}

/// Applies `command` to this node's connections.
fn apply(state: &ServerState, command: Command) {
    let found = state.registry.find(&command.target);
    tracing::debug!(connections = found.len(), action = ?command.action, "control command");
    match command.action {
        Act::Disconnect { code, reason } => {
            let reason: Arc<str> = Arc::from(reason);
            for mailbox in found {
                mailbox.disconnect(code, reason.clone());
            }
        }
        Act::Unsubscribe { channel } => {
            let channel: Arc<str> = Arc::from(channel);
            for mailbox in found {
                mailbox.deliver(Outbound::Unsubscribe {
                    channel: channel.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_back_as_written() {
        let command = Command {
            target: Target::User("ada".into()),
            action: Act::Disconnect {
                code: 4403,
                reason: "banned".into(),
            },
        };
        let text = serde_json::to_string(&command).unwrap();
        assert_eq!(
            text,
            r#"{"target":{"user":"ada"},"action":{"disconnect":{"code":4403,"reason":"banned"}}}"#
        );
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), command);
    }
}
