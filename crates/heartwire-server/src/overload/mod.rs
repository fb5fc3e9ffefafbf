//! Refusing new connections while the node is overloaded, so that the connections it
//! already holds keep their latency (docs/RELIABILITY.md, "Overload").
//!
//! Three signals, each with its bound (`--overload-max-lag`, `--overload-max-memory`,
//! `--max-pending-handshakes`):
//! - scheduler lag: [`Overload::watch`] sleeps [`TICK`] at a time and measures how late
//!   it wakes; the workers are saturated when every tick has been late by more than the
//!   bound for [`LAG_SUSTAIN`] (one late tick is a stall of the whole process, which
//!   refusing would not help);
//! - resident memory, read every [`MEMORY_EVERY`];
//! - handshakes in flight: TCP connections accepted that have not had the answer to
//!   their first request yet, counted by the listener.
//!
//! Lag and memory pass through a [`Gate`] (sans-IO, with hysteresis: on above the bound,
//! off below a lower value) so that the verdict does not flap; the handshake count is
//! compared at each upgrade, as a refusal lowers it at once.

mod gate;
mod memory;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::Gauge;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::OverloadBounds;
use gate::Gate;

/// How often the scheduler's lag is measured.
const TICK: Duration = Duration::from_millis(100);

/// How long every tick must be late by more than `--overload-max-lag` before new
/// connections are refused.
const LAG_SUSTAIN: Duration = Duration::from_secs(2);

/// How often resident memory is read, when it has a bound.
const MEMORY_EVERY: Duration = Duration::from_millis(500);

/// Which bound refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Lag,
    Memory,
    Handshakes,
}

impl Signal {
    /// The reasons of `heartwire_refused_total`, one per signal.
    pub(crate) const LABELS: [&'static str; 3] =
        ["overload_lag", "overload_memory", "overload_handshakes"];

    /// Its reason in `heartwire_refused_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Lag => Self::LABELS[0],
            Self::Memory => Self::LABELS[1],
            Self::Handshakes => Self::LABELS[2],
        }
    }

    /// What the refused client is told.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Lag => {
                "server overloaded: its scheduler lags more than overload-max-lag; retry later"
            }
            Self::Memory => {
                "server overloaded: its memory is over overload-max-memory; retry later"
            }
            Self::Handshakes => {
                "server overloaded: more than max-pending-handshakes handshakes in flight; retry later"
            }
        }
    }
}

/// The node's overload verdicts, kept up to date by [`Overload::watch`].
pub(crate) struct Overload {
    bounds: OverloadBounds,
    lagging: AtomicBool,
    over_memory: AtomicBool,
    gates: Mutex<Gates>,
}

/// The gates of the signals that have a bound.
struct Gates {
    lag: Option<Gate>,
    memory: Option<Gate>,
}

impl Overload {
    /// Verdicts for `bounds`; memory, when bounded, is read once now, so that a node
    /// started over its bound refuses from its first connection.
    pub(crate) fn new(bounds: OverloadBounds) -> Self {
        let micros = |lag: Duration| u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        let max_lag = bounds.overload_max_lag;
        let lag = (!max_lag.is_zero())
            .then(|| Gate::new(micros(max_lag), micros(max_lag / 2), LAG_SUSTAIN));
        let memory = bounds
            .overload_max_memory
            .map(|max| Gate::new(max as u64, max as u64 / 10 * 9, Duration::ZERO));
        let overload = Self {
            bounds,
            lagging: AtomicBool::new(false),
            over_memory: AtomicBool::new(false),
            gates: Mutex::new(Gates { lag, memory }),
        };
        overload.read_memory(Instant::now());
        overload
    }

    /// The signal past its bound, if any, with `pending` handshakes in flight (the one
    /// asking included).
    pub(crate) fn signal(&self, pending: usize) -> Option<Signal> {
        let max_pending = self.bounds.max_pending_handshakes;
        if self.lagging.load(Ordering::Acquire) {
            Some(Signal::Lag)
        } else if self.over_memory.load(Ordering::Acquire) {
            Some(Signal::Memory)
        } else if max_pending > 0 && pending > max_pending {
            Some(Signal::Handshakes)
        } else {
            None
        }
    }

    /// Measures the scheduler's lag every [`TICK`] (into `lag_gauge`, in seconds) and
    /// memory every [`MEMORY_EVERY`]; runs for as long as it is polled.
    pub(crate) async fn watch(&self, lag_gauge: &Gauge) -> Infallible {
        let mut memory_read = Instant::now();
        loop {
            let planned = Instant::now() + TICK;
            tokio::time::sleep_until(planned).await;
            let now = Instant::now();
            let lag = now.saturating_duration_since(planned);
            lag_gauge.set(lag.as_secs_f64());
            if let Some(gate) = &mut self.gates.lock().lag {
                let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
                let on = gate.observe(micros, now.into_std());
                self.lagging.store(on, Ordering::Release);
            }
            if now.saturating_duration_since(memory_read) >= MEMORY_EVERY {
                memory_read = now;
                self.read_memory(now);
            }
        }
    }

    /// Reads resident memory into its gate, when it has a bound.
    fn read_memory(&self, now: Instant) {
        let mut gates = self.gates.lock();
        let Some(gate) = &mut gates.memory else {
            return;
        };
        if let Some(bytes) = memory::resident_bytes() {
            let on = gate.observe(bytes, now.into_std());
            self.over_memory.store(on, Ordering::Release);
        }
    }
}
