//! The client's connection machine: everything a heartwire client decides while a
//! connection is open, with no socket, no clock and no runtime.
//!
//! [`ClientConnection`] follows the contract of [`Liveness`](crate::Liveness). Its
//! driver opens a socket, builds the machine with the time and what the previous
//! connection left ([`Carried`]), then loops:
//!
//! - it feeds in what happens, each with an explicit `now`: a [`Frame`] arrived
//!   ([`handle_frame`](ClientConnection::handle_frame)), the transport ended, the
//!   caller closed the client, a fail-back probe finished;
//! - it calls [`handle_timeout`](ClientConnection::handle_timeout) when
//!   [`poll_timeout`](ClientConnection::poll_timeout) is reached, after reading
//!   everything the socket already holds: events at an instant are applied before
//!   timeouts at the same instant, so a stalled driver does not mistake its own
//!   lateness for a dead server;
//! - it carries out what the machine asks, until each `poll_*` returns `None`:
//!   [`Event`]s for the application, a server to probe
//!   ([`poll_probe`](ClientConnection::poll_probe)), frames to write
//!   ([`poll_transmit`](ClientConnection::poll_transmit), while the transport has
//!   room), and at last how the connection ended
//!   ([`poll_end`](ClientConnection::poll_end)).
//!
//! The caller's messages wait in an [`Outbox`] that the driver shares with the
//! caller; the machine takes from its front only when it may send.
//!
//! The rules:
//! - **Mode.** A heartwire server's first frame is `hello`: its `ping_interval` and
//!   `ping_timeout` replace the configured ones and the connection speaks JSON
//!   envelopes. Any other first frame, or nothing within [`HELLO_WAIT`], means a
//!   plain WebSocket server: text and binary go out as they are, envelopes are
//!   dropped. Nothing leaves the outbox before the mode is known.
//! - **Liveness.** An embedded [`Liveness`](crate::Liveness): a Ping after
//!   `ping_interval` of silence, a dead server after `ping_timeout` more. Server
//!   Pings are answered with Pongs.
//! - **Resume.** On a heartwire server every subscription is restored first, each
//!   with the last position delivered as `since`; then publishes never acknowledged
//!   go out again, in order, with their ids; then the outbox. Channel messages at or
//!   before a channel's position are duplicates and dropped; what cannot arrive is an
//!   [`Event::Gap`]. A message with `seq` 0 is delivered as it is.
//! - **Acks.** An `ack` (duplicate or not) ends a publish. An `error` naming a
//!   publish ends it too, and reaches the application as text, except `unavailable`:
//!   then that publish and every later one go out again, and the outbox waits one
//!   `unavailable_hold`. At most [`PUBLISHES_IN_FLIGHT`] publishes await their ack.
//! - **Identity.** When `hello` says the identity expires (`expires_in_ms`), a
//!   [`Refresh`] is scheduled: when it is due,
//!   [`poll_token_request`](ClientConnection::poll_token_request) asks the driver for
//!   a fresh token, which it hands back with [`handle_token`](ClientConnection::handle_token) and which
//!   goes out as `refresh`. `refreshed` reschedules; a refusal is an
//!   [`Event::Error`] and is tried again later. Any `error` that answers no publish
//!   is an [`Event::Error`]; a `forbidden` one naming a channel also forgets that
//!   channel's position. `presence`, `join` and `leave` are events of their own.
//! - **End.** A `reconnect` hint is kept for the [`End`]. The caller's close sends
//!   what the outbox holds, then a close 1000. While on a backup, a preferred server
//!   is probed when [`Failover`](crate::Failover) says it is due; a probe that
//!   succeeds ends this connection with [`End::Switch`] after a close 1001.
//!
//! Files: `machine` (the machine) and `machine/envelopes` (its dealings with a
//! heartwire server's JSON envelopes), `carried` (what one connection hands on to the
//! next), `positions` (per-channel positions and gaps), `refresh` (when the token is
//! refreshed), `unacked` (publishes awaiting their ack), `outgoing` (what the caller sends), `frame` and `event` (what crosses
//! the wire, what the application hears).

mod carried;
mod event;
mod frame;
mod machine;
mod outgoing;
mod positions;
mod refresh;
mod unacked;

pub use carried::Carried;
pub use event::{Event, GapReason, Incoming};
pub use frame::Frame;
pub use machine::{ClientConnection, ConnectionConfig, End, HELLO_WAIT, PUBLISHES_IN_FLIGHT};
pub use outgoing::{Outbox, Outgoing, Publish};
pub use refresh::{REFRESH_LEAD, RETRY_FLOOR, Refresh, refresh_after};
