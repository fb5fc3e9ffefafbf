//! One open connection: the select loop around the connection machine of
//! [`heartwire_core::client`], the writer task, and the fail-back probe.
//!
//! Every decision is the machine's. The loop feeds it what happens — a frame, the
//! end of the stream, the caller's close, a probe's result, the time — and carries
//! out what it asks: events to the caller, frames to the writer, a probe to open, a
//! fresh token to fetch for a refresh.
//!
//! Writes go through a small writer task, so the loop keeps reading (and keeps its
//! liveness deadlines) while a write is stuck on a server that stopped reading.
//! Following the machine's contract, every frame the socket already holds is read
//! before a timeout is handled.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use heartwire_core::client::{self, ClientConnection, End, Frame};
use heartwire_core::{DisconnectReason, ErrorCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::attempt::{self, AttemptError, Socket};
use super::config::ClientConfig;
use super::event::Event;
use super::outbox::Outbox;
use super::state::ClientState;

/// Frames that may wait for the writer task.
const WRITE_QUEUE: usize = 64;

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It ended for `reason`; `retry_after` is the server's hint, if it gave one.
    Ended {
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    },
    /// A preferred server answered a fail-back probe: continue on its socket.
    Switch { server: usize, socket: Box<Socket> },
    /// The caller dropped the event stream.
    CallerGone,
}

type Probe = Pin<Box<dyn Future<Output = Result<Socket, AttemptError>> + Send>>;
type TokenFetch = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// What one connection works with besides its machine.
#[derive(Debug)]
pub(crate) struct Connection<'a> {
    pub(crate) config: &'a ClientConfig,
    pub(crate) state: &'a ClientState,
    pub(crate) events: &'a mpsc::Sender<Event>,
}

impl Connection<'_> {
    /// Runs `machine` on `socket` until the connection ends.
    pub(crate) async fn run(&self, machine: &mut ClientConnection, socket: Socket) -> Outcome {
        let (sink, mut stream) = socket.split();
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let write_task = tokio::spawn(write_all(sink, queue));
        let outcome = self.select_loop(machine, &mut stream, &writer).await;
        drop(writer);
        // The writer gets the close handshake's time to flush, then it is cut off: a
        // server that stopped reading must not keep this task alive.
        let _ = tokio::time::timeout(self.config.close_timeout, drain(write_task)).await;
        outcome
    }

    async fn select_loop(
        &self,
        machine: &mut ClientConnection,
        stream: &mut SplitStream<Socket>,
        writer: &mpsc::Sender<Message>,
    ) -> Outcome {
        let mut outbox = &self.state.outbox;
        let mut probe: Option<(usize, Probe)> = None;
        let mut preferred: Option<Socket> = None;
        let mut token: Option<TokenFetch> = None;
        let mut closing = false;
        loop {
            // Frames first: what the machine sends on opening (the subscriptions) is on
            // its way before the caller hears `Open`.
            write_while_room(machine, writer, &mut outbox);
            while let Some(event) = machine.poll_event() {
                if !self.emit(event).await {
                    return Outcome::CallerGone;
                }
            }
            if let Some(server) = machine.poll_probe() {
                let (url, config) = (self.config.servers[server].clone(), self.config.clone());
                probe = Some((
                    server,
                    Box::pin(async move { attempt::open(&url, &config).await }),
                ));
            }
            if machine.poll_token_request() {
                token = Some(match &self.config.token {
                    Some(provider) => provider(),
                    None => Box::pin(async { None }),
                });
            }
            if let Some(end) = machine.poll_end() {
                // The last frames (a close) go out as far as the writer has room.
                write_while_room(machine, writer, &mut outbox);
                return match end {
                    End::Closed {
                        reason,
                        retry_after,
                    } => Outcome::Ended {
                        reason,
                        retry_after,
                    },
                    End::Switch { server } => Outcome::Switch {
                        server,
                        socket: Box::new(preferred.expect("a switch follows a probe that opened")),
                    },
                };
            }
            let can_write = machine.wants_transmit(Instant::now(), &outbox);
            let wake = machine.poll_timeout();
            tokio::select! {
                biased;
                frame = stream.next() => match frame {
                    Some(frame) => {
                        handle_read(machine, frame);
                    }
                    None => machine.handle_transport_end(Instant::now(), DisconnectReason::Transport(
                        "the server closed the TCP connection".into(),
                    )),
                },
                result = async { probe.as_mut().expect("guarded").1.as_mut().await }, if probe.is_some() => {
                    let (server, _) = probe.take().expect("guarded");
                    preferred = result.ok();
                    machine.handle_probe_result(Instant::now(), server, preferred.is_some());
                }
                fresh = async { token.as_mut().expect("guarded").as_mut().await }, if token.is_some() => {
                    token = None;
                    machine.handle_token(Instant::now(), fresh);
                }
                () = self.state.stop.cancelled(), if !closing => {
                    closing = true;
                    machine.handle_close(Instant::now(), &mut outbox);
                }
                // The writer was full: wait for room.
                permit = writer.reserve(), if can_write => match permit {
                    Ok(permit) => {
                        let frame = machine.poll_transmit(Instant::now(), &mut outbox);
                        if let Some(message) = frame.and_then(to_message) {
                            permit.send(message);
                        }
                    }
                    Err(_) => machine.handle_transport_end(Instant::now(), DisconnectReason::Transport(
                        "the connection can no longer be written to".into(),
                    )),
                },
                () = self.state.outbox.queued.notified(), if !can_write => {}
                () = sleep_until(wake) => {
                    // Read what the socket already holds before judging silence.
                    while let Some(Some(frame)) = stream.next().now_or_never() {
                        if !handle_read(machine, frame) {
                            break;
                        }
                    }
                    machine.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// Hands an event of the machine to the caller; `false` when the caller is gone.
    async fn emit(&self, event: client::Event) -> bool {
        let event = match event {
            client::Event::Open { server, session } => Event::Open {
                url: self.config.servers[server].clone(),
                session,
            },
            client::Event::Subscribed {
                channel,
                seq,
                recovered,
            } => Event::Subscribed {
                channel,
                seq,
                recovered,
            },
            client::Event::Message(message) => Event::Message(message),
            client::Event::Published { .. } if !self.config.report_acks => return true,
            client::Event::Published {
                id,
                channel,
                seq,
                duplicate,
            } => Event::Published {
                id,
                channel,
                seq,
                duplicate,
            },
            client::Event::PublishRefused {
                id,
                channel,
                code,
                reason,
            } => Event::PublishRefused {
                id,
                channel,
                code,
                reason,
            },
            client::Event::Gap {
                channel,
                from_seq,
                to_seq,
                reason,
            } => Event::Gap {
                channel,
                from_seq,
                to_seq,
                reason,
            },
            client::Event::Error {
                code,
                reason,
                channel,
            } => Event::Error {
                code,
                reason,
                channel,
            },
            client::Event::SubscriptionRefused { channel, reason } => {
                // Asking again on every connection would be refused every time.
                self.state.remove_subscription(&channel);
                Event::Error {
                    code: ErrorCode::Forbidden,
                    reason,
                    channel: Some(channel),
                }
            }
            client::Event::SubscriptionEnded { channel } => {
                self.state.remove_subscription(&channel);
                Event::SubscriptionEnded { channel }
            }
            client::Event::Presence {
                channel,
                members,
                users,
            } => Event::Presence {
                channel,
                members,
                users,
            },
            client::Event::Join {
                channel,
                session,
                user,
            } => Event::Join {
                channel,
                session,
                user,
            },
            client::Event::Leave {
                channel,
                session,
                user,
            } => Event::Leave {
                channel,
                session,
                user,
            },
            client::Event::Refreshed { expires_in } => Event::Refreshed { expires_in },
            client::Event::RoundTrip(rtt) => {
                self.state.set_rtt(rtt);
                return true;
            }
        };
        self.events.send(event).await.is_ok()
    }
}

/// Hands what the socket yielded to the machine; `false` when reading is over.
fn handle_read(machine: &mut ClientConnection, read: Result<Message, tungstenite::Error>) -> bool {
    match read {
        Ok(message) => {
            if let Some(frame) = to_frame(message) {
                machine.handle_frame(Instant::now(), frame);
            }
            true
        }
        Err(err) => {
            machine.handle_transport_end(Instant::now(), transport_reason(err));
            false
        }
    }
}

/// Hands the machine's frames to the writer while it has room.
fn write_while_room(
    machine: &mut ClientConnection,
    writer: &mpsc::Sender<Message>,
    outbox: &mut &Outbox,
) {
    while let Ok(permit) = writer.try_reserve() {
        let Some(frame) = machine.poll_transmit(Instant::now(), outbox) else {
            return;
        };
        if let Some(message) = to_message(frame) {
            permit.send(message);
        }
    }
}

/// The machine's frame for a message read from the socket.
fn to_frame(message: Message) -> Option<Frame> {
    Some(match message {
        Message::Text(text) => Frame::Text(text.as_str().to_owned()),
        Message::Binary(data) => Frame::Binary(data),
        Message::Ping(payload) => Frame::Ping(payload),
        Message::Pong(payload) => Frame::Pong(payload),
        Message::Close(frame) => match frame {
            Some(frame) => Frame::Close {
                code: Some(u16::from(frame.code)),
                reason: frame.reason.as_str().to_owned(),
            },
            None => Frame::Close {
                code: None,
                reason: String::new(),
            },
        },
        // Reading never yields raw frames.
        Message::Frame(_) => return None,
    })
}

/// The message to write for a frame of the machine.
fn to_message(frame: Frame) -> Option<Message> {
    Some(match frame {
        Frame::Text(text) => Message::text(text),
        Frame::Binary(data) => Message::Binary(data),
        Frame::Ping(payload) => Message::Ping(payload),
        // tungstenite answers every Ping itself as it reads it: a second Pong would
        // only cost bytes.
        Frame::Pong(_) => return None,
        Frame::Close { code, reason } => Message::Close(code.map(|code| CloseFrame {
            code: code.into(),
            reason: reason.into(),
        })),
    })
}

/// Writes frames until the queue closes or the socket fails.
async fn write_all(mut sink: SplitSink<Socket, Message>, mut queue: mpsc::Receiver<Message>) {
    while let Some(message) = queue.recv().await {
        if sink.feed(message).await.is_err() {
            return;
        }
        while let Ok(message) = queue.try_recv() {
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Waits for the writer task, and aborts it if this wait is itself cut short.
async fn drain(task: JoinHandle<()>) {
    struct AbortOnDrop(Option<JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.abort();
            }
        }
    }
    let mut guard = AbortOnDrop(Some(task));
    if let Some(task) = guard.0.as_mut() {
        let _ = task.await;
    }
    guard.0 = None;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The disconnect reason for a read error.
fn transport_reason(err: tungstenite::Error) -> DisconnectReason {
    use tungstenite::Error;
    match err {
        Error::Utf8(_) => DisconnectReason::InvalidUtf8,
        Error::Capacity(_) => DisconnectReason::MessageTooBig,
        Error::Protocol(err @ tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            DisconnectReason::Transport(err.to_string())
        }
        Error::Protocol(err) => DisconnectReason::ProtocolError(err.to_string()),
        other => DisconnectReason::Transport(other.to_string()),
    }
}
