//! The fault switch: the fault in force, and what each connection compares against
//! to know which faults reached it.
//!
//! Two faults outlive the moment they were on, for the connections they touched:
//!
//! - A **blackhole** is for the rest of a connection's life. What it read was
//!   discarded, so its byte stream could not resume intact (as after a NAT forgets a
//!   mapping or a machine dies): once a blackhole covered a flow of a connection, that
//!   flow forwards nothing again, even after `none`. Connections opened later flow.
//! - A **reset** resets every connection open when it was switched on, even when
//!   another fault replaces it at once (`reset` then `none` is a one-shot reset).
//!
//! Both work by counting: the switch counts how often each was switched on, and a
//! connection remembers the counts at its birth, so no switch is missed however
//! quickly the next one follows.

use std::time::Instant;

use tokio::sync::watch;

use crate::fault::{Fault, Flow};

/// The fault in force, since when, and how often blackholes and resets were switched
/// on so far.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// The fault in force.
    pub(crate) fault: Fault,
    /// When it was switched on.
    pub(crate) since: Instant,
    /// How often a blackhole covering each flow was switched on.
    blackholes: [u64; 2],
    /// How often a reset was switched on.
    resets: u64,
}

/// What a connection saw of the switch when it was accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Birth {
    blackholes: [u64; 2],
    blackholed: [bool; 2],
    resets: u64,
}

impl Setting {
    fn new(fault: Fault, now: Instant) -> Self {
        let mut setting = Self {
            fault: Fault::None,
            since: now,
            blackholes: [0; 2],
            resets: 0,
        };
        setting.switch(fault, now);
        setting
    }

    fn switch(&mut self, fault: Fault, now: Instant) {
        for flow in Flow::BOTH {
            if fault.blackholes(flow) {
                self.blackholes[flow.index()] += 1;
            }
        }
        if fault == Fault::Reset {
            self.resets += 1;
        }
        self.fault = fault;
        self.since = now;
    }

    /// What a connection accepted now remembers.
    pub(crate) fn birth(&self) -> Birth {
        Birth {
            blackholes: self.blackholes,
            blackholed: Flow::BOTH.map(|flow| self.fault.blackholes(flow)),
            resets: self.resets,
        }
    }

    /// Whether `flow` of a connection born at `birth` forwards nothing any more.
    pub(crate) fn severs(&self, birth: &Birth, flow: Flow) -> bool {
        let at = flow.index();
        birth.blackholed[at] || self.blackholes[at] > birth.blackholes[at]
    }

    /// Whether a reset was switched on since `birth`.
    pub(crate) fn resets_since(&self, birth: &Birth) -> bool {
        self.resets > birth.resets
    }
}

/// Holds the setting; connections watch it.
#[derive(Debug)]
pub(crate) struct Switch {
    sender: watch::Sender<Setting>,
}

impl Switch {
    pub(crate) fn new(fault: Fault) -> Self {
        let (sender, _) = watch::channel(Setting::new(fault, Instant::now()));
        Self { sender }
    }

    /// Puts `fault` in force for every connection, open or to come.
    pub(crate) fn set(&self, fault: Fault) {
        let now = Instant::now();
        self.sender
            .send_modify(|setting| setting.switch(fault, now));
    }

    /// The fault in force.
    pub(crate) fn fault(&self) -> Fault {
        self.sender.borrow().fault
    }

    /// A view of the setting that tells of every change.
    pub(crate) fn watch(&self) -> watch::Receiver<Setting> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Direction;

    fn blackhole(direction: Direction) -> Fault {
        Fault::Blackhole { direction }
    }

    #[test]
    fn a_blackhole_severs_the_connections_it_touched_for_good() {
        let now = Instant::now();
        let mut setting = Setting::new(Fault::None, now);
        let before = setting.birth();
        setting.switch(blackhole(Direction::Up), now);
        let during = setting.birth();
        assert!(setting.severs(&before, Flow::Up));
        assert!(!setting.severs(&before, Flow::Down));
        assert!(setting.severs(&during, Flow::Up));

        setting.switch(Fault::None, now);
        let after = setting.birth();
        assert!(
            setting.severs(&before, Flow::Up),
            "still severed after none"
        );
        assert!(setting.severs(&during, Flow::Up), "born blackholed");
        assert!(!setting.severs(&after, Flow::Up), "a new connection flows");
        assert!(!setting.severs(&after, Flow::Down));

        setting.switch(blackhole(Direction::Down), now);
        assert!(setting.severs(&after, Flow::Down));
        assert!(!setting.severs(&after, Flow::Up));
        assert!(setting.severs(&before, Flow::Down) && setting.severs(&before, Flow::Up));
    }

    #[test]
    fn a_reset_reaches_every_connection_open_when_it_was_switched_on() {
        let now = Instant::now();
        let mut setting = Setting::new(Fault::Reset, now);
        let born_during_reset = setting.birth();
        assert!(!setting.resets_since(&born_during_reset));
        setting.switch(Fault::None, now);
        let before = setting.birth();
        setting.switch(Fault::Reset, now);
        setting.switch(Fault::None, now);
        assert!(
            setting.resets_since(&before),
            "a one-shot reset is not missed"
        );
        assert!(setting.resets_since(&born_during_reset));
        assert!(!setting.resets_since(&setting.birth()));
    }

    #[test]
    fn other_faults_leave_nothing_behind() {
        let now = Instant::now();
        let mut setting = Setting::new(Fault::None, now);
        let birth = setting.birth();
        for fault in [
            Fault::Latency {
                ms: 1,
                jitter_ms: 0,
                direction: Direction::Both,
            },
            Fault::Bandwidth {
                bytes_per_sec: 1,
                direction: Direction::Both,
            },
            Fault::IdleCut { after_ms: 1 },
            Fault::None,
        ] {
            setting.switch(fault, now);
        }
        assert!(!setting.resets_since(&birth));
        assert!(!Flow::BOTH.iter().any(|&flow| setting.severs(&birth, flow)));
    }
}
