//! What a client carries from one connection to the next, so that the next resumes
//! where this one ended.

use std::collections::VecDeque;

use super::outgoing::Publish;
use super::positions::Positions;
use super::unacked::Unacked;
use crate::failover::Failover;

/// What one connection hands on to the next: the servers' health, the position in
/// each channel, and the publishes not yet acknowledged.
#[derive(Debug)]
pub struct Carried {
    pub(super) failover: Failover,
    pub(super) positions: Positions,
    pub(super) unacked: Unacked,
    /// Publishes to send again, oldest first, before anything from the outbox.
    pub(super) resend: VecDeque<Publish>,
}

impl Carried {
    /// A client's state before its first connection.
    pub fn new(failover: Failover) -> Self {
        Self {
            failover,
            positions: Positions::default(),
            unacked: Unacked::default(),
            resend: VecDeque::new(),
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
