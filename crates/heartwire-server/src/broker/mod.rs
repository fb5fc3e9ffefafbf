//! Channels: who is subscribed, and how a published message reaches them.
//!
//! Connections talk to a [`Broker`] only. Its methods never wait: results come back
//! as [`Outbound`](crate::mailbox::Outbound) items in the caller's
//! [`Mailbox`](crate::mailbox::Mailbox) (the `subscribed` confirmation, the publish
//! `ack`, the messages themselves), so a broker that crosses the network answers the
//! same way as the in-process one, and connection code does not change with it.
//!
//! - [`contract`]: the [`Broker`] trait and the requests it takes;
//! - [`memory`]: the in-process broker, for one node;
//! - [`redis`]: the broker that shares channels between nodes through Redis.
//!
//! A published message is a [`Publication`](crate::publication::Publication), built
//! once and shared by every recipient.

mod contract;
mod memory;
mod redis;

pub use contract::{Broker, BrokerHealth, PublishRequest, ShardHealth, SubscribeRequest};
pub use memory::{Clock, MemoryBroker, SystemClock};
pub use redis::{RedisBroker, RedisConfig, RedisTopology, WaitReplicas};
