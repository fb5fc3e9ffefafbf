//! The liveness state machine: when to probe a peer, when it is dead, and when a
//! closing socket must be dropped.
//!
//! [`Liveness`] does no I/O and reads no clock. Its owner feeds it events with an
//! explicit `now` (a frame arrived, a Pong arrived, a close frame went out or came in),
//! calls [`Liveness::handle_timeout`] when [`Liveness::poll_timeout`] is reached, and
//! carries out what [`Liveness::poll_action`] returns, in order, until it returns `None`.
//! The server drives one per connection; the Rust client drives one per attempt.
//!
//! The rules:
//! - any inbound frame proves the peer alive;
//! - a Ping goes out only after `ping_interval` of inbound silence, so a busy
//!   connection is never pinged;
//! - if nothing at all arrives within `ping_timeout` after a Ping, the peer is dead:
//!   a best-effort close 1011 goes out and the socket is dropped at once;
//! - once a close frame has gone out, the peer has `close_timeout` to answer it, then
//!   the socket is dropped: nothing lingers in CLOSING;
//! - an optional application heartbeat (a magic string) is due every
//!   `heartbeat_interval`, whatever the traffic, because clients of that convention
//!   count the heartbeats themselves.
//!
//! Events at an instant are applied before timeouts at the same instant: a frame that
//! arrives exactly at the deadline keeps the connection alive. The driver must
//! therefore read what the socket holds before it calls `handle_timeout`, so a process
//! that was stalled does not mistake its own lateness for a dead peer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::reason::DisconnectReason;

/// Timing of one connection's liveness checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Inbound silence after which a Ping is sent.
    pub ping_interval: Duration,
    /// How long after a Ping the peer has to send any frame.
    pub ping_timeout: Duration,
    /// How long after a close frame went out the socket may stay open.
    pub close_timeout: Duration,
    /// Period of the application heartbeat, when the connection uses one.
    pub heartbeat_interval: Option<Duration>,
}

impl LivenessConfig {
    /// The longest a dead peer can go unnoticed: `ping_interval + ping_timeout`.
    pub fn detection_bound(&self) -> Duration {
        self.ping_interval + self.ping_timeout
    }
}

impl Default for LivenessConfig {
    /// The defaults of Python `websockets`: 20 s / 20 s, close timeout 10 s.
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(10),
            heartbeat_interval: None,
        }
    }
}

/// Something the owner of a [`Liveness`] must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a protocol Ping frame carrying this payload.
    SendPing(PingPayload),
    /// Send the application heartbeat (for example a magic string).
    SendHeartbeat,
    /// Send a close frame with this code and reason, without waiting for an answer.
    SendClose {
        /// The close code.
        code: u16,
        /// The close reason text.
        reason: &'static str,
    },
    /// Drop the transport now: the connection is over, for this reason.
    Drop(DisconnectReason),
}

/// The payload of a Ping sent by [`Liveness`]: a counter, so a Pong can be matched to
/// its Ping for round-trip time.
pub type PingPayload = [u8; 8];

/// An open connection's [`Liveness`] as durations, not instants, which cannot cross
/// processes: what a live upgrade hands to the new process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LivenessSnapshot {
    /// Since when the peer has been silent.
    pub silence: Duration,
    /// A Ping not answered yet: its id, and how long ago it went out.
    pub unanswered: Option<(u64, Duration)>,
    /// The latest Ping: its id, and how long ago it went out.
    pub latest_ping: Option<(u64, Duration)>,
    /// The id of the next Ping.
    pub next_ping_id: u64,
    /// How long until the next application heartbeat.
    pub next_heartbeat: Option<Duration>,
    /// The latest round-trip time.
    pub rtt: Option<Duration>,
    /// A Ping is due and not yet handed out.
    pub ping_due: bool,
    /// A heartbeat is due and not yet handed out.
    pub heartbeat_due: bool,
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    id: u64,
    sent_at: Instant,
}

/// The reason text of the close frame sent to a peer found dead.
const PING_TIMEOUT_TEXT: &str = "ping timeout";

/// The reasons are boxed: a connection is open for most of its life, and a server
/// holds one machine per connection.
#[derive(Debug)]
enum Phase {
    Open,
    /// A close frame went out; the peer has until `deadline` to answer.
    Closing {
        deadline: Instant,
        reason: Box<DisconnectReason>,
    },
    /// Over; the actions that end it are still to be handed out.
    Ending {
        /// A best-effort close frame (a ping timeout's) is still to go out.
        sends_close: bool,
        reason: Box<DisconnectReason>,
    },
    Ended,
}

/// Liveness of one WebSocket connection. See the [module docs](self).
#[derive(Debug)]
pub struct Liveness {
    /// Shared: a server holds one machine per connection, and they all run with the
    /// same few configurations.
    config: Arc<LivenessConfig>,
    phase: Phase,
    last_heard: Instant,
    /// A Ping after which nothing has been heard yet.
    unanswered: Option<Probe>,
    /// The latest Ping sent, to match its Pong for round-trip time.
    latest_ping: Option<Probe>,
    next_ping_id: u64,
    next_heartbeat: Option<Instant>,
    rtt: Option<Duration>,
    /// How long the peer had been silent when it was declared dead.
    detected_after: Option<Duration>,
    ping_due: bool,
    heartbeat_due: bool,
}

impl Liveness {
    /// Starts watching a connection that opened at `now`.
    pub fn new(config: impl Into<Arc<LivenessConfig>>, now: Instant) -> Self {
        let config = config.into();
        Self {
            phase: Phase::Open,
            last_heard: now,
            unanswered: None,
            latest_ping: None,
            next_ping_id: 0,
            next_heartbeat: config.heartbeat_interval.map(|every| now + every),
            config,
            rtt: None,
            detected_after: None,
            ping_due: false,
            heartbeat_due: false,
        }
    }

    /// The configuration this machine runs with.
    pub fn config(&self) -> &LivenessConfig {
        &self.config
    }

    /// A frame of any kind arrived from the peer.
    pub fn handle_frame(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Open | Phase::Closing { .. }) {
            self.last_heard = self.last_heard.max(now);
            self.unanswered = None;
        }
    }

    /// A Pong arrived. Returns the round-trip time when it answers the latest Ping.
    pub fn handle_pong(&mut self, now: Instant, payload: &[u8]) -> Option<Duration> {
        if !matches!(self.phase, Phase::Open | Phase::Closing { .. }) {
            return None;
        }
        self.handle_frame(now);
        let probe = self.latest_ping?;
        if payload != probe.id.to_be_bytes() {
            return None;
        }
        self.latest_ping = None;
        let rtt = now.saturating_duration_since(probe.sent_at);
        self.rtt = Some(rtt);
        Some(rtt)
    }

    /// The owner sent a probe of its own (a Ping or an application-level ping) at
    /// `now`: the peer now has `ping_timeout` to answer, unless a probe is already
    /// waiting for an answer.
    pub fn handle_probe_sent(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Open) && self.unanswered.is_none() {
            self.unanswered = Some(Probe {
                id: u64::MAX,
                sent_at: now,
            });
        }
    }

    /// A close frame went out at `now`, for `reason`. The peer has `close_timeout`
    /// to answer it before the socket is dropped.
    pub fn handle_close_sent(&mut self, now: Instant, reason: DisconnectReason) {
        if matches!(self.phase, Phase::Open) {
            self.ping_due = false;
            self.heartbeat_due = false;
            self.phase = Phase::Closing {
                deadline: now + self.config.close_timeout,
                reason: Box::new(reason),
            };
        }
    }

    /// A close frame arrived. If this side had closed first, the handshake is done;
    /// otherwise the peer closed, and the transport (which answers the close frame
    /// itself) is to be dropped.
    pub fn handle_close_received(&mut self, now: Instant, code: Option<u16>, reason: &str) {
        self.handle_frame(now);
        let reason = match std::mem::replace(&mut self.phase, Phase::Ended) {
            Phase::Open => Box::new(DisconnectReason::PeerClosed {
                code,
                reason: reason.to_owned(),
            }),
            Phase::Closing { reason, .. } => reason,
            done @ (Phase::Ending { .. } | Phase::Ended) => {
                self.phase = done;
                return;
            }
        };
        self.phase = Phase::Ending {
            sends_close: false,
            reason,
        };
    }

    /// The transport failed (reset, end of stream, a protocol error reported by the
    /// WebSocket layer): the connection is over, for `reason`.
    pub fn handle_transport_end(&mut self, reason: DisconnectReason) {
        match self.phase {
            Phase::Open => {
                self.phase = Phase::Ending {
                    sends_close: false,
                    reason: Box::new(reason),
                }
            }
            // A close was under way: its reason stands.
            Phase::Closing { .. } => {
                let Phase::Closing { reason, .. } =
                    std::mem::replace(&mut self.phase, Phase::Ended)
                else {
                    unreachable!()
                };
                self.phase = Phase::Ending {
                    sends_close: false,
                    reason,
                };
            }
            Phase::Ending { .. } | Phase::Ended => {}
        }
    }

    /// Applies every deadline that has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::Open => {
                if let Some(probe) = self.unanswered {
                    if now >= probe.sent_at + self.config.ping_timeout {
                        self.detected_after = Some(now.saturating_duration_since(self.last_heard));
                        self.ping_due = false;
                        self.heartbeat_due = false;
                        self.phase = Phase::Ending {
                            sends_close: true,
                            reason: Box::new(DisconnectReason::PingTimeout),
                        };
                        return;
                    }
                } else if now >= self.last_heard + self.config.ping_interval {
                    let probe = Probe {
                        id: self.next_ping_id,
                        sent_at: now,
                    };
                    self.next_ping_id += 1;
                    self.unanswered = Some(probe);
                    self.latest_ping = Some(probe);
                    self.ping_due = true;
                }
                if let (Some(due), Some(every)) =
                    (self.next_heartbeat, self.config.heartbeat_interval)
                {
                    if now >= due {
                        self.heartbeat_due = true;
                        // Scheduled from now, so a late wake-up does not send a burst.
                        self.next_heartbeat = Some(now + every);
                    }
                }
            }
            Phase::Closing { deadline, .. } if now >= *deadline => {
                let Phase::Closing { reason, .. } =
                    std::mem::replace(&mut self.phase, Phase::Ended)
                else {
                    unreachable!()
                };
                self.phase = Phase::Ending {
                    sends_close: false,
                    reason,
                };
            }
            Phase::Closing { .. } | Phase::Ending { .. } | Phase::Ended => {}
        }
    }

    /// The next thing to do, if any. Call until it returns `None`.
    pub fn poll_action(&mut self) -> Option<Action> {
        match &mut self.phase {
            Phase::Ending {
                sends_close,
                reason,
            } => {
                if std::mem::take(sends_close) {
                    let code = reason.close_code().unwrap_or(1011);
                    return Some(Action::SendClose {
                        code,
                        reason: PING_TIMEOUT_TEXT,
                    });
                }
                let Phase::Ending { reason, .. } = std::mem::replace(&mut self.phase, Phase::Ended)
                else {
                    unreachable!()
                };
                Some(Action::Drop(*reason))
            }
            Phase::Ended => None,
            Phase::Open | Phase::Closing { .. } => {
                if std::mem::take(&mut self.heartbeat_due) {
                    return Some(Action::SendHeartbeat);
                }
                if std::mem::take(&mut self.ping_due) {
                    let id = self.latest_ping.map_or(0, |probe| probe.id);
                    return Some(Action::SendPing(id.to_be_bytes()));
                }
                None
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    ///
    /// `None` once the connection is over: from the moment its last actions (a close
    /// frame, the drop) wait in [`poll_action`](Self::poll_action), and after. While it
    /// is open or closing there is always a deadline, even when actions wait.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Open => {
                let liveness = match self.unanswered {
                    Some(probe) => probe.sent_at + self.config.ping_timeout,
                    None => self.last_heard + self.config.ping_interval,
                };
                Some(
                    self.next_heartbeat
                        .map_or(liveness, |beat| beat.min(liveness)),
                )
            }
            Phase::Closing { deadline, .. } => Some(*deadline),
            Phase::Ending { .. } | Phase::Ended => None,
        }
    }

    /// The machine of an open connection as durations before `now`, so another
    /// process can take it over ([`Liveness::resume`]); `None` once a close has begun
    /// (a closing connection is not handed over).
    pub fn snapshot(&self, now: Instant) -> Option<LivenessSnapshot> {
        if !matches!(self.phase, Phase::Open) {
            return None;
        }
        let age = |at: Instant| now.saturating_duration_since(at);
        let probe = |probe: Probe| (probe.id, age(probe.sent_at));
        Some(LivenessSnapshot {
            silence: age(self.last_heard),
            unanswered: self.unanswered.map(probe),
            latest_ping: self.latest_ping.map(probe),
            next_ping_id: self.next_ping_id,
            next_heartbeat: self
                .next_heartbeat
                .map(|at| at.saturating_duration_since(now)),
            rtt: self.rtt,
            ping_due: self.ping_due,
            heartbeat_due: self.heartbeat_due,
        })
    }

    /// An open connection's machine taken over at `now` from a [`snapshot`](Self::snapshot)
    /// made in another process: every deadline stays where it was.
    pub fn resume(
        config: impl Into<Arc<LivenessConfig>>,
        snapshot: &LivenessSnapshot,
        now: Instant,
    ) -> Self {
        let before = |age: Duration| now.checked_sub(age).unwrap_or(now);
        let probe = |(id, age): (u64, Duration)| Probe {
            id,
            sent_at: before(age),
        };
        Self {
            config: config.into(),
            phase: Phase::Open,
            last_heard: before(snapshot.silence),
            unanswered: snapshot.unanswered.map(probe),
            latest_ping: snapshot.latest_ping.map(probe),
            next_ping_id: snapshot.next_ping_id,
            next_heartbeat: snapshot.next_heartbeat.map(|left| now + left),
            rtt: snapshot.rtt,
            ping_due: snapshot.ping_due,
            heartbeat_due: snapshot.heartbeat_due,
            detected_after: None,
        }
    }

    /// The latest round-trip time measured from a Ping and its Pong.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// When the peer was declared dead for its silence (a ping timeout): how long
    /// it had been silent then, from the last frame heard to the decision. `None`
    /// for a connection that ended any other way, or has not ended.
    pub fn detected_after(&self) -> Option<Duration> {
        self.detected_after
    }

    /// When the peer was last heard from.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Whether a close frame has gone out and the handshake is not finished.
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. })
    }

    /// Whether the connection is over (the `Drop` action may still be pending).
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Ending { .. } | Phase::Ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(20);
    const TIMEOUT: Duration = Duration::from_secs(10);
    const CLOSE: Duration = Duration::from_secs(5);

    fn config() -> LivenessConfig {
        LivenessConfig {
            ping_interval: INTERVAL,
            ping_timeout: TIMEOUT,
            close_timeout: CLOSE,
            heartbeat_interval: None,
        }
    }

    fn actions(machine: &mut Liveness) -> Vec<Action> {
        std::iter::from_fn(|| machine.poll_action()).collect()
    }

    /// Runs timeouts from `start` until `end`, collecting every action with its time.
    fn run_until(machine: &mut Liveness, end: Instant) -> Vec<(Instant, Action)> {
        let mut out = Vec::new();
        while let Some(deadline) = machine.poll_timeout() {
            if deadline > end {
                break;
            }
            machine.handle_timeout(deadline);
            out.extend(
                actions(machine)
                    .into_iter()
                    .map(|action| (deadline, action)),
            );
        }
        out
    }

    #[test]
    fn silent_peer_is_pinged_after_the_interval() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        assert_eq!(machine.poll_timeout(), Some(t0 + INTERVAL));
        machine.handle_timeout(t0 + INTERVAL - Duration::from_millis(1));
        assert!(actions(&mut machine).is_empty());
        machine.handle_timeout(t0 + INTERVAL);
        assert_eq!(
            actions(&mut machine),
            [Action::SendPing(0u64.to_be_bytes())]
        );
        assert_eq!(machine.poll_timeout(), Some(t0 + INTERVAL + TIMEOUT));
    }

    #[test]
    fn the_deadline_stays_while_a_ping_waits_and_goes_once_the_end_waits() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        // The Ping waits in poll_action; the deadline for its answer is already set.
        assert_eq!(machine.poll_timeout(), Some(t0 + INTERVAL + TIMEOUT));
        assert_eq!(
            actions(&mut machine),
            [Action::SendPing(0u64.to_be_bytes())]
        );
        machine.handle_timeout(t0 + INTERVAL + TIMEOUT);
        // The close and the drop wait: nothing is left to time.
        assert_eq!(machine.poll_timeout(), None);
        assert_eq!(actions(&mut machine).len(), 2);
        assert_eq!(machine.poll_timeout(), None);
    }

    #[test]
    fn silent_peer_is_dropped_after_interval_plus_timeout() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        let events = run_until(&mut machine, t0 + Duration::from_secs(3600));
        let dead_at = t0 + INTERVAL + TIMEOUT;
        assert_eq!(
            events,
            [
                (t0 + INTERVAL, Action::SendPing(0u64.to_be_bytes())),
                (
                    dead_at,
                    Action::SendClose {
                        code: 1011,
                        reason: "ping timeout"
                    }
                ),
                (dead_at, Action::Drop(DisconnectReason::PingTimeout)),
            ]
        );
        assert_eq!(machine.poll_timeout(), None);
        assert!(machine.is_over());
    }

    #[test]
    fn detection_time_runs_from_the_last_frame_heard_to_the_reap() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        let heard = t0 + Duration::from_secs(7);
        machine.handle_frame(heard);
        assert_eq!(machine.detected_after(), None);
        // A driver that wakes 300 ms late counts its lateness too: the peer was
        // silent that long when it was reaped.
        let late = Duration::from_millis(300);
        machine.handle_timeout(heard + INTERVAL);
        actions(&mut machine);
        machine.handle_timeout(heard + INTERVAL + TIMEOUT + late);
        assert!(machine.is_over());
        assert_eq!(machine.detected_after(), Some(INTERVAL + TIMEOUT + late));
    }

    #[test]
    fn a_connection_that_ends_otherwise_has_no_detection_time() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        machine.handle_close_received(t0 + INTERVAL + Duration::from_secs(1), Some(1000), "");
        assert!(machine.is_over());
        assert_eq!(machine.detected_after(), None);
        let mut closing = Liveness::new(config(), t0);
        closing.handle_close_sent(t0, DisconnectReason::LocalClose);
        closing.handle_timeout(t0 + CLOSE);
        assert!(closing.is_over());
        assert_eq!(closing.detected_after(), None);
    }

    #[test]
    fn traffic_suppresses_pings() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        // A frame every half interval for an hour: never a Ping.
        let step = INTERVAL / 2;
        for i in 1..=360 {
            let now = t0 + step * i;
            machine.handle_frame(now);
            machine.handle_timeout(now);
            assert!(actions(&mut machine).is_empty(), "pinged at step {i}");
        }
    }

    #[test]
    fn any_frame_answers_a_ping() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        assert!(matches!(actions(&mut machine)[..], [Action::SendPing(_)]));
        // A data frame, not a Pong, arrives just before the timeout.
        let heard = t0 + INTERVAL + TIMEOUT - Duration::from_millis(1);
        machine.handle_frame(heard);
        assert_eq!(machine.poll_timeout(), Some(heard + INTERVAL));
        machine.handle_timeout(t0 + INTERVAL + TIMEOUT);
        assert!(actions(&mut machine).is_empty());
        assert!(!machine.is_over());
    }

    #[test]
    fn traffic_exactly_at_the_deadline_keeps_the_peer_alive() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        actions(&mut machine);
        let deadline = machine.poll_timeout().unwrap();
        machine.handle_frame(deadline);
        machine.handle_timeout(deadline);
        assert!(actions(&mut machine).is_empty());
        assert_eq!(machine.poll_timeout(), Some(deadline + INTERVAL));
    }

    #[test]
    fn pong_measures_round_trip_time() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        let [Action::SendPing(payload)] = actions(&mut machine)[..] else {
            panic!()
        };
        let rtt = Duration::from_millis(42);
        assert_eq!(
            machine.handle_pong(t0 + INTERVAL + rtt, &payload),
            Some(rtt)
        );
        assert_eq!(machine.rtt(), Some(rtt));
        // A Pong we did not ask for still proves life but measures nothing.
        assert_eq!(machine.handle_pong(t0 + INTERVAL * 2, b"other"), None);
    }

    #[test]
    fn pong_after_the_timeout_changes_nothing() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        let [Action::SendPing(payload)] = actions(&mut machine)[..] else {
            panic!()
        };
        machine.handle_timeout(t0 + INTERVAL + TIMEOUT);
        let ended = actions(&mut machine);
        assert_eq!(
            ended.last(),
            Some(&Action::Drop(DisconnectReason::PingTimeout))
        );
        assert_eq!(
            machine.handle_pong(t0 + INTERVAL + TIMEOUT + Duration::from_millis(1), &payload),
            None
        );
        machine.handle_frame(t0 + INTERVAL * 3);
        assert!(actions(&mut machine).is_empty());
        assert_eq!(machine.poll_timeout(), None);
    }

    #[test]
    fn close_during_a_pending_ping_is_bounded_by_the_close_timeout() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        actions(&mut machine);
        // Closing starts 1 s before the Ping would time out.
        let closed_at = t0 + INTERVAL + TIMEOUT - Duration::from_secs(1);
        machine.handle_close_sent(closed_at, DisconnectReason::ServerShutdown);
        assert!(machine.is_closing());
        assert_eq!(machine.poll_timeout(), Some(closed_at + CLOSE));
        // The Ping's own timeout passes during the close: nothing is sent.
        machine.handle_timeout(t0 + INTERVAL + TIMEOUT);
        assert!(actions(&mut machine).is_empty());
        machine.handle_timeout(closed_at + CLOSE);
        assert_eq!(
            actions(&mut machine),
            [Action::Drop(DisconnectReason::ServerShutdown)]
        );
    }

    #[test]
    fn close_handshake_completes_with_the_local_reason() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_close_sent(t0, DisconnectReason::SlowConsumer);
        machine.handle_close_received(t0 + Duration::from_millis(3), Some(1008), "");
        assert_eq!(
            actions(&mut machine),
            [Action::Drop(DisconnectReason::SlowConsumer)]
        );
    }

    #[test]
    fn peer_close_ends_the_connection_with_its_code() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_close_received(t0, Some(1001), "bye");
        assert_eq!(
            actions(&mut machine),
            [Action::Drop(DisconnectReason::PeerClosed {
                code: Some(1001),
                reason: "bye".into()
            })]
        );
        assert!(machine.is_over());
    }

    #[test]
    fn transport_end_keeps_a_close_in_progress_as_the_reason() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_close_sent(t0, DisconnectReason::MessageTooBig);
        machine.handle_transport_end(DisconnectReason::Transport("reset".into()));
        assert_eq!(
            actions(&mut machine),
            [Action::Drop(DisconnectReason::MessageTooBig)]
        );

        let mut open = Liveness::new(config(), t0);
        open.handle_transport_end(DisconnectReason::Transport("reset".into()));
        assert_eq!(
            actions(&mut open),
            [Action::Drop(DisconnectReason::Transport("reset".into()))]
        );
    }

    #[test]
    fn own_probe_starts_the_timeout_without_a_ping() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        let probed = t0 + Duration::from_secs(1);
        machine.handle_probe_sent(probed);
        assert_eq!(machine.poll_timeout(), Some(probed + TIMEOUT));
        machine.handle_timeout(probed + TIMEOUT);
        assert_eq!(
            actions(&mut machine).last(),
            Some(&Action::Drop(DisconnectReason::PingTimeout))
        );
    }

    #[test]
    fn heartbeat_is_sent_on_its_period_whatever_the_traffic() {
        let t0 = Instant::now();
        let every = Duration::from_secs(4);
        let mut machine = Liveness::new(
            LivenessConfig {
                heartbeat_interval: Some(every),
                ..config()
            },
            t0,
        );
        let mut beats = Vec::new();
        for ms in (0..=20_000).step_by(500) {
            let now = t0 + Duration::from_millis(ms);
            machine.handle_frame(now);
            if machine.poll_timeout().is_some_and(|due| due <= now) {
                machine.handle_timeout(now);
            }
            for action in actions(&mut machine) {
                assert_eq!(action, Action::SendHeartbeat);
                beats.push(ms);
            }
        }
        assert_eq!(beats, [4_000, 8_000, 12_000, 16_000, 20_000]);
    }

    #[test]
    fn late_wake_up_sends_one_heartbeat_not_a_burst() {
        let t0 = Instant::now();
        let every = Duration::from_secs(4);
        let mut machine = Liveness::new(
            LivenessConfig {
                heartbeat_interval: Some(every),
                ..config()
            },
            t0,
        );
        let late = t0 + Duration::from_secs(17);
        machine.handle_frame(late);
        machine.handle_timeout(late);
        assert_eq!(actions(&mut machine), [Action::SendHeartbeat]);
        assert_eq!(machine.poll_timeout(), Some(late + every));
    }

    #[test]
    fn a_snapshot_resumed_in_another_process_keeps_every_deadline() {
        let t0 = Instant::now();
        let mut machine = Liveness::new(config(), t0);
        machine.handle_timeout(t0 + INTERVAL);
        assert_eq!(
            actions(&mut machine),
            [Action::SendPing(0u64.to_be_bytes())]
        );
        let taken = t0 + INTERVAL + Duration::from_millis(10);
        let snapshot = machine.snapshot(taken).expect("open");
        // The other process's clock reads another instant for the same moment.
        let other = taken + Duration::from_secs(100);
        let mut resumed = Liveness::resume(config(), &snapshot, other);
        let shift = Duration::from_secs(100);
        assert_eq!(
            resumed.poll_timeout(),
            machine.poll_timeout().map(|at| at + shift)
        );
        assert!(
            resumed
                .handle_pong(other, &0u64.to_be_bytes())
                .is_some_and(|rtt| rtt == Duration::from_millis(10))
        );
        machine.handle_close_sent(taken, DisconnectReason::ServerShutdown);
        assert!(machine.snapshot(taken).is_none());
    }

    #[test]
    fn detection_bound_is_interval_plus_timeout() {
        assert_eq!(config().detection_bound(), INTERVAL + TIMEOUT);
    }
}
