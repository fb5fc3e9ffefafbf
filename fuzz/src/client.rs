//! The client's connection machine (`heartwire_core::client`) driven by a script the
//! fuzzer writes: what a server sends (well-formed envelopes and anything else), time
//! passing (timers that fire on time or late), what the caller sends and when it
//! closes, fail-back probes, and new connections that carry on from the last.
//!
//! The harness is the driver the machine's docs describe, on synthetic time, and it
//! checks after every step what must hold whatever the server does:
//! - outputs stay bounded: at most two events per input, and never more frames than
//!   the inputs account for (no loop that sends without end);
//! - deadlines move on: once handle_timeout ran at `now`, the next deadline is later
//!   (a driver never spins), and a connection that ended asks for nothing more;
//! - what goes on the wire is valid: control payloads of at most 125 bytes, a close
//!   code a client may send with a reason of at most 123 bytes, one close and no data
//!   or Ping after it, JSON envelopes the server parses;
//! - what reaches the application makes sense: one `Open` before anything the server
//!   said, channel messages of a subscribed channel in increasing `seq` (never a
//!   duplicate), skipped messages reported as a range, round trips no longer than the
//!   time that passed.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use heartwire_core::client::{
    Carried, ClientConnection, ConnectionConfig, End, Event, Frame, GapReason, Incoming, Outgoing,
    PUBLISHES_IN_FLIGHT, Publish,
};
use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_core::{DisconnectReason, ErrorCode, Failover};

use crate::reference;

/// Steps in one script at most: enough to open, resume and end a few connections.
const MAX_STEPS: usize = 300;
/// Channel names the script uses; the caller only ever uses valid ones.
const CHANNELS: [&str; 3] = ["a", "b", "room:1"];
const EPOCHS: [&str; 2] = ["e1", "e2"];
/// Durations the script picks from: the edges of the hello wait, and common settings.
const MILLIS: [u64; 12] = [
    0, 1, 10, 250, 499, 500, 501, 1_000, 2_000, 4_000, 20_000, 60_000,
];
/// What a `hello` may advertise, in milliseconds, the absurd included.
const ADVERTISED: [u64; 6] = [0, 1, 100, 4_000, 20_000, u64::MAX];
/// Events one input may cause at most (a gap and the message after it, say).
const EVENTS_PER_INPUT: usize = 2;
/// Timer rounds within one advance of time before the harness calls it a spin.
const MAX_TIMER_ROUNDS: usize = 10_000;

/// With `FUZZ_TRACE` set, every step, frame and event is printed: replay an input
/// (`FUZZ_TRACE=1 scripts/fuzz replay client_machine FILE`) to read its story.
static TRACE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("FUZZ_TRACE").is_some());

/// Runs one script. Panics when an invariant breaks.
pub fn run(input: &[u8]) {
    let mut u = Unstructured::new(input);
    // A script that runs out of bytes just ends.
    let _ = Harness::new(&mut u).and_then(|mut harness| harness.play(&mut u));
}

/// The driver: the machine, the caller's side, and what has been seen so far.
struct Harness {
    start: Instant,
    now: Instant,
    config: ConnectionConfig,
    servers: usize,
    machine: Option<ClientConnection>,
    server: usize,
    outbox: VecDeque<Outgoing>,
    /// The caller's channels, restored by every new connection.
    subscriptions: Vec<String>,
    next_id: u64,
    issued: Vec<String>,
    probe: Option<usize>,
    last_ping: Option<Bytes>,
    connection: ConnectionState,
    /// Per subscribed channel, the last non-zero `seq` delivered since it was
    /// (re)subscribed.
    delivered: HashMap<String, Option<u64>>,
    /// Inputs since the last drain, and frames the inputs so far account for.
    inputs: usize,
    frame_budget: usize,
    frames_sent: usize,
}

/// What is known of the current connection.
#[derive(Default)]
struct ConnectionState {
    opened: bool,
    close_sent: bool,
    ended: bool,
}

impl Harness {
    fn new(u: &mut Unstructured<'_>) -> Result<Self> {
        let start = Instant::now();
        let config = ConnectionConfig {
            ping_interval: millis(u)?.max(Duration::from_millis(1)),
            ping_timeout: millis(u)?.max(Duration::from_millis(1)),
            close_timeout: millis(u)?,
            unavailable_hold: millis(u)?,
        };
        let servers = u.int_in_range(1..=3)?;
        let subscriptions = CHANNELS[..u.int_in_range(0..=CHANNELS.len())?]
            .iter()
            .map(|&channel| channel.to_owned())
            .collect();
        let mut harness = Self {
            start,
            now: start,
            config,
            servers,
            machine: None,
            server: 0,
            outbox: VecDeque::new(),
            subscriptions,
            next_id: 0,
            issued: Vec::new(),
            probe: None,
            last_ping: None,
            connection: ConnectionState::default(),
            delivered: HashMap::new(),
            inputs: 0,
            frame_budget: 0,
            frames_sent: 0,
        };
        let carried = Carried::new(Failover::new(servers, millis(u)?));
        harness.connect(carried, 0);
        Ok(harness)
    }

    fn machine(&mut self) -> &mut ClientConnection {
        self.machine.as_mut().expect("a connection is always there")
    }

    fn connect(&mut self, carried: Carried, server: usize) {
        // The subscriptions, every publish ever made (some may be carried over), and
        // the report of the session lost last.
        self.frame_budget += self.subscriptions.len() + self.issued.len() + 1;
        self.server = server;
        self.connection = ConnectionState::default();
        // A probe belongs to the connection that asked for it.
        self.probe = None;
        self.machine = Some(ClientConnection::new(
            self.config,
            carried,
            server,
            self.subscriptions.clone(),
            self.now,
        ));
        self.drain();
    }

    fn play(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        for _ in 0..MAX_STEPS {
            if u.is_empty() {
                break;
            }
            self.step(u)?;
            self.drain();
        }
        Ok(())
    }

    /// Prints what happens at the current time, when tracing.
    fn note(&self, what: impl Debug) {
        if *TRACE {
            eprintln!("{:>12?}  {what:?}", self.now - self.start);
        }
    }

    fn step(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        match u.int_in_range(0..=12)? {
            0 => {
                let by = millis(u)?;
                self.note(("time passes", by));
                self.advance(by);
            }
            1 => {
                // A driver that wakes late: every deadline passed is handled at once.
                let by = millis(u)?;
                self.note(("time passes, the driver wakes late", by));
                self.now += by;
                self.fire_timers(3);
            }
            2..=5 => {
                let frame = self.server_frame(u)?;
                self.note(("server sends", &frame));
                let now = self.now;
                self.input(|machine| machine.handle_frame(now, frame));
            }
            6 | 7 => self.caller_sends(u)?,
            8 => {
                self.note("the caller closes");
                let now = self.now;
                let outbox = &mut self.outbox;
                // The caller's close sends what the outbox holds, then a close.
                self.frame_budget += outbox.len() + 1;
                self.inputs += 1;
                self.machine
                    .as_mut()
                    .expect("a connection")
                    .handle_close(now, outbox);
            }
            9 => {
                self.note("the transport ends");
                let reason = DisconnectReason::Transport("connection reset".into());
                let now = self.now;
                self.input(|machine| machine.handle_transport_end(now, reason));
            }
            10 => {
                if let Some(server) = self.probe.take() {
                    let (now, succeeded) = (self.now, u.arbitrary()?);
                    self.note(("probe result", server, succeeded));
                    self.frame_budget += 1;
                    self.input(|machine| machine.handle_probe_result(now, server, succeeded));
                }
            }
            11 => {
                if self.connection.ended {
                    let machine = self.machine.take().expect("a connection");
                    let server = u.choose_index(self.servers)?;
                    self.note(("new connection", server));
                    self.connect(machine.into_carried(), server);
                }
            }
            _ => {
                // The server answers the last Ping.
                if let Some(payload) = self.last_ping.clone() {
                    self.note(("server answers the Ping", &payload));
                    let now = self.now;
                    self.input(|machine| machine.handle_frame(now, Frame::Pong(payload)));
                }
            }
        }
        Ok(())
    }

    /// One input to the machine.
    fn input(&mut self, apply: impl FnOnce(&mut ClientConnection)) {
        self.inputs += 1;
        apply(self.machine());
    }

    /// Lets `by` pass, firing each deadline on time, as a timer would.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        let mut rounds = 0;
        while let Some(deadline) = self.machine().poll_timeout() {
            if deadline > until {
                break;
            }
            self.now = self.now.max(deadline);
            self.timeout();
            rounds += 1;
            assert!(rounds <= MAX_TIMER_ROUNDS, "timers fire without end");
        }
        self.now = until;
    }

    /// Handles every deadline that has passed: it must move past `now` within
    /// `rounds` calls.
    fn fire_timers(&mut self, rounds: usize) {
        for _ in 0..rounds {
            match self.machine().poll_timeout() {
                Some(deadline) if deadline <= self.now => self.timeout(),
                _ => return,
            }
        }
        let deadline = self.machine().poll_timeout();
        assert!(
            deadline.is_none_or(|deadline| deadline > self.now),
            "a deadline that handle_timeout does not move on: a driver would spin"
        );
    }

    fn timeout(&mut self) {
        self.note("timeout");
        let now = self.now;
        // A Ping, or a close.
        self.frame_budget += 1;
        self.input(|machine| machine.handle_timeout(now));
        self.drain();
    }

    fn caller_sends(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let channel = (*u.choose(&CHANNELS)?).to_owned();
        let message = match u.int_in_range(0..=4)? {
            0 | 1 => {
                let id = format!("p-{}", self.next_id);
                self.next_id += 1;
                self.issued.push(id.clone());
                let data = serde_json::json!({ "n": self.next_id, "x": u.arbitrary::<i32>()? });
                Outgoing::Publish(Publish { id, channel, data })
            }
            2 => Outgoing::Text(format!("text {}", u.arbitrary::<u32>()?)),
            3 => {
                if !self.subscriptions.contains(&channel) {
                    self.subscriptions.push(channel.clone());
                }
                Outgoing::Subscribe(channel)
            }
            _ => {
                self.subscriptions.retain(|held| *held != channel);
                Outgoing::Unsubscribe(channel)
            }
        };
        self.note(("the caller sends", &message));
        self.outbox.push_back(message);
        self.frame_budget += 1;
        Ok(())
    }

    /// Something a server might send: mostly well-formed envelopes about the
    /// script's channels and publishes, sometimes anything.
    fn server_frame(&mut self, u: &mut Unstructured<'_>) -> Result<Frame> {
        let channel = (*u.choose(&CHANNELS)?).to_owned();
        let envelope = match u.int_in_range(0..=13)? {
            0 => ServerFrame::Hello {
                session: "s".into(),
                ping_interval_ms: *u.choose(&ADVERTISED)?,
                ping_timeout_ms: *u.choose(&ADVERTISED)?,
                server: "heartwire/fuzz".into(),
                user: None,
                expires_in_ms: None,
                reports: u.arbitrary()?,
            },
            1..=3 => ServerFrame::Message {
                channel,
                seq: u.int_in_range(0..=12)?,
                data: u.arbitrary::<u8>()?.into(),
            },
            4 => ServerFrame::Subscribed {
                channel,
                seq: u.int_in_range(0..=12)?,
                epoch: (*u.choose(&EPOCHS)?).to_owned(),
                recovered: *u.choose(&[None, Some(true), Some(false)])?,
            },
            5 => ServerFrame::Ack {
                id: self.some_id(u)?,
                seq: u.arbitrary()?,
                duplicate: u.arbitrary()?,
            },
            6 => ServerFrame::Error {
                code: *u.choose(&[
                    ErrorCode::Unavailable,
                    ErrorCode::BadRequest,
                    ErrorCode::InvalidChannel,
                ])?,
                reason: "refused".into(),
                id: Some(self.some_id(u)?),
                channel: None,
                retry_after_ms: u.arbitrary()?,
            },
            7 => ServerFrame::Reconnect {
                after_ms: *u.choose(&ADVERTISED)?,
                reason: "restart".into(),
            },
            8 => return Ok(Frame::Text(u.arbitrary()?)),
            9 => {
                return Ok(Frame::Binary(small_bytes(u, 8)?));
            }
            10 => {
                self.frame_budget += 1;
                return Ok(Frame::Ping(small_bytes(u, 125)?));
            }
            11 => {
                return Ok(Frame::Pong(small_bytes(u, 8)?));
            }
            12 => {
                return Ok(Frame::Close {
                    code: *u.choose(&[None, Some(1000), Some(1001), Some(1012), Some(4401)])?,
                    reason: "bye".into(),
                });
            }
            _ => ServerFrame::Unsubscribed { channel },
        };
        if let ServerFrame::Error {
            code: ErrorCode::Unavailable,
            ..
        } = envelope
        {
            // Every publish in flight may go out again.
            self.frame_budget += PUBLISHES_IN_FLIGHT;
        }
        Ok(Frame::Text(envelope.encode()))
    }

    /// The id of a publish of this script, or one the client never used.
    fn some_id(&self, u: &mut Unstructured<'_>) -> Result<String> {
        match u.choose(&self.issued) {
            Ok(id) if u.arbitrary()? => Ok(id.clone()),
            _ => Ok(format!("p-{}", u.int_in_range(0..=300)?)),
        }
    }

    /// Takes what the machine has for the driver, in the documented order, and checks
    /// it.
    fn drain(&mut self) {
        let inputs = std::mem::take(&mut self.inputs);
        let mut events = 0;
        while let Some(event) = self.machine().poll_event() {
            events += 1;
            self.note(("event", &event));
            assert!(!self.connection.ended, "an event after the end: {event:?}");
            self.check_event(event);
        }
        assert!(
            events <= EVENTS_PER_INPUT * inputs.max(1),
            "{events} events for {inputs} inputs"
        );
        if let Some(server) = self.machine().poll_probe() {
            assert!(server < self.servers && server != self.server);
            assert!(
                self.probe.replace(server).is_none(),
                "a second probe at once"
            );
        }
        let now = self.now;
        loop {
            let outbox = &mut self.outbox;
            let Some(frame) = self
                .machine
                .as_mut()
                .expect("a connection")
                .poll_transmit(now, outbox)
            else {
                break;
            };
            self.note(("sent", &frame));
            self.frames_sent += 1;
            assert!(
                self.frames_sent <= self.frame_budget,
                "{} frames sent for inputs that account for {}",
                self.frames_sent,
                self.frame_budget
            );
            self.check_frame(frame);
        }
        if let Some(end) = self.machine().poll_end() {
            self.note(("end", &end));
            assert!(!self.connection.ended, "a second end: {end:?}");
            self.connection.ended = true;
            if let End::Switch { server } = end {
                assert!(server < self.servers && server != self.server);
            }
        }
        if self.connection.ended {
            assert_eq!(
                self.machine().poll_timeout(),
                None,
                "an ended connection waits"
            );
            assert_eq!(self.machine().poll_end(), None);
        }
    }

    fn check_event(&mut self, event: Event) {
        if let Event::Open { server, .. } = event {
            assert!(!self.connection.opened, "a second Open");
            assert_eq!(server, self.server);
            self.connection.opened = true;
            return;
        }
        // A round trip measures the socket, which is open before the server's kind
        // is known; what the server says comes after Open.
        if let Event::RoundTrip(rtt) = event {
            assert!(rtt <= self.now - self.start);
            return;
        }
        assert!(self.connection.opened, "{event:?} before Open");
        match event {
            Event::Subscribed { channel, .. } => {
                self.delivered.insert(channel, None);
            }
            Event::Message(Incoming::Channel { channel, seq, .. }) if seq != 0 => {
                if let Some(last) = self.delivered.get_mut(&channel) {
                    assert!(
                        last.is_none_or(|last| seq > last),
                        "{channel}: seq {seq} after {last:?}"
                    );
                    *last = Some(seq);
                }
            }
            // A gap the client found itself is a range; the server's gaps may end
            // below their start when it cannot tell what was missed.
            Event::Gap {
                from_seq,
                to_seq,
                reason: GapReason::Skipped,
                ..
            } => assert!(from_seq <= to_seq, "a gap from {from_seq} to {to_seq}"),
            _ => {}
        }
    }

    fn check_frame(&mut self, frame: Frame) {
        let closed = self.connection.close_sent;
        match frame {
            Frame::Ping(payload) => {
                assert!(!closed && payload.len() <= 125);
                self.last_ping = Some(payload);
            }
            // An answer, not data: RFC 6455 forbids only data frames after a close.
            Frame::Pong(payload) => assert!(payload.len() <= 125),
            Frame::Close { code, reason } => {
                assert!(!closed, "a second close");
                self.connection.close_sent = true;
                if let Some(code) = code {
                    assert!(reference::close_code_allowed(code), "close code {code}");
                }
                assert!(
                    reason.len() <= 123,
                    "a close reason of {} bytes",
                    reason.len()
                );
            }
            Frame::Text(text) => {
                assert!(!closed, "a text frame after a close: {text}");
                if text.starts_with('{') {
                    let parsed = ClientFrame::parse(&text);
                    let frame = parsed.unwrap_or_else(|err| panic!("{text} is refused: {err}"));
                    if let ClientFrame::Unsubscribe { channel } = frame {
                        self.delivered.remove(&channel);
                    }
                }
            }
            Frame::Binary(_) => assert!(!closed, "a binary frame after a close"),
        }
    }
}

/// Up to `max` bytes of the script.
fn small_bytes(u: &mut Unstructured<'_>, max: usize) -> Result<Bytes> {
    let len = u.int_in_range(0..=max)?;
    Ok(Bytes::copy_from_slice(u.bytes(len)?))
}

fn millis(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(Duration::from_millis(*u.choose(&MILLIS)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_of_any_bytes_run_to_their_end() {
        for seed in 0..200u32 {
            let bytes: Vec<u8> = (0..600u32)
                .map(|index| {
                    (index.wrapping_mul(2_654_435_761).wrapping_add(seed * 7919) >> 13) as u8
                })
                .collect();
            run(&bytes);
        }
    }
}
