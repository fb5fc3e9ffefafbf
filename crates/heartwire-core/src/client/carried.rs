//! What a client carries from one connection to the next, so that the next resumes
//! where this one ended.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::outgoing::Publish;
use super::positions::Positions;
use super::unacked::Unacked;
use crate::failover::Failover;
use crate::report::{OfflineReason, SessionReport};

/// What one connection hands on to the next: the servers' health, the position in
/// each channel, the publishes not yet acknowledged, and how the last session ended.
#[derive(Debug)]
pub struct Carried {
    pub(super) failover: Failover,
    pub(super) positions: Positions,
    pub(super) unacked: Unacked,
    /// Publishes to send again, oldest first, before anything from the outbox.
    pub(super) resend: VecDeque<Publish>,
    /// The last session lost, until a server that takes reports hears of it.
    pub(super) previous: Option<Previous>,
}

/// A session the client lost: what its report says, once the next `hello` comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Previous {
    pub(super) session: String,
    /// When the client learned of the end.
    pub(super) lost_at: Instant,
    pub(super) reason: OfflineReason,
    /// How long before the end the server was last heard.
    pub(super) last_heard: Duration,
}

impl Previous {
    /// The report to send at `now`, when the next `hello` came.
    pub(super) fn report(self, now: Instant) -> SessionReport {
        SessionReport {
            previous_session: self.session,
            offline: now.saturating_duration_since(self.lost_at),
            reason: self.reason,
            last_heard: self.last_heard,
        }
    }
}

impl Carried {
    /// A client's state before its first connection.
    pub fn new(failover: Failover) -> Self {
        Self {
            failover,
            positions: Positions::default(),
            unacked: Unacked::default(),
            resend: VecDeque::new(),
            previous: None,
        }
    }

    /// The servers' health, for picking where the next attempt goes.
    pub fn failover(&self) -> &Failover {
        &self.failover
    }

    /// The servers' health, to record how an attempt went.
    pub fn failover_mut(&mut self) -> &mut Failover {
        &mut self.failover
    }
}
