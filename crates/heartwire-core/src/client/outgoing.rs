//! What the caller sends, and the queue it waits in until the machine can send it.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::Value;

/// A publish to a heartwire server, with the id it keeps until acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Unique to this publish among every client's (see `docs/CLIENT.md`).
    pub id: String,
    /// The channel.
    pub channel: String,
    /// The published value.
    pub data: Value,
}

/// A message waiting to go out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Publish on a channel (a heartwire server only).
    Publish(Publish),
    /// A text frame, as is.
    Text(String),
    /// A binary frame, as is.
    Binary(Bytes),
    /// Subscribe to a channel (a heartwire server only).
    Subscribe(String),
    /// Unsubscribe from a channel (a heartwire server only).
    Unsubscribe(String),
    /// Ask who is subscribed to a channel (a heartwire server only).
    Presence(String),
}

/// The caller's queue of messages, oldest first. The machine takes from its front
/// only when it can send; the caller may keep it anywhere (behind a lock, say).
pub trait Outbox {
    /// Takes the oldest message.
    fn pop(&mut self) -> Option<Outgoing>;

    /// Whether no message waits.
    fn is_empty(&self) -> bool;
}

impl Outbox for VecDeque<Outgoing> {
    fn pop(&mut self) -> Option<Outgoing> {
        self.pop_front()
    }

    fn is_empty(&self) -> bool {
        VecDeque::is_empty(self)
    }
}
