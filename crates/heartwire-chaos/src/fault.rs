//! The faults the proxy can apply, and their JSON form (the body of `POST /fault`).
//!
//! One fault is in force at a time. Each is an object with a `kind`:
//!
//! | JSON | what the proxy does |
//! |---|---|
//! | `{"kind":"none"}` | forwards every byte as it comes |
//! | `{"kind":"blackhole","direction":"both"}` | reads and discards, forwards nothing in that direction; both sockets stay open |
//! | `{"kind":"latency","ms":200,"jitter_ms":50}` | holds each chunk `ms` plus a random `0..=jitter_ms` before forwarding it, in order |
//! | `{"kind":"bandwidth","bytes_per_sec":65536}` | paces the bytes of each connection to that rate |
//! | `{"kind":"reset"}` | resets (RST) both sockets of every connection, and every new one while on |
//! | `{"kind":"idle-cut","after_ms":60000}` | closes a connection once no byte has passed either way for `after_ms` |
//!
//! `direction` (`"up"`: client to upstream, `"down"`: upstream to client, `"both"`, the
//! default) may be given to `blackhole`, `latency` and `bandwidth`. Unknown kinds and
//! unknown fields are refused, as are values that cannot work (a rate of 0, a cut after
//! 0 ms, delays over [`MAX_DELAY_MS`]). docs/CHAOS.md says the same for users.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The longest `ms`, `jitter_ms` and `after_ms` accepted: one day.
pub const MAX_DELAY_MS: u64 = 86_400_000;

/// A fault of the proxy; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// Forward every byte as it comes.
    #[default]
    None,
    /// Read and discard, forward nothing in `direction`; the sockets stay open.
    Blackhole {
        /// Which way bytes stop.
        #[serde(default)]
        direction: Direction,
    },
    /// Hold each chunk `ms + random(0..=jitter_ms)` milliseconds, keeping order.
    Latency {
        /// The delay every chunk gets.
        ms: u64,
        /// The most that is added at random on top of `ms`.
        #[serde(default)]
        jitter_ms: u64,
        /// Which way chunks are delayed.
        #[serde(default)]
        direction: Direction,
    },
    /// Pace each connection's bytes to `bytes_per_sec` in `direction`.
    Bandwidth {
        /// The rate, per connection and per direction.
        bytes_per_sec: u64,
        /// Which way bytes are paced.
        #[serde(default)]
        direction: Direction,
    },
    /// Reset (RST) every connection, and each new one while this is on.
    Reset,
    /// Close a connection once no byte has passed either way for `after_ms`.
    IdleCut {
        /// The silence a connection survives, in milliseconds.
        after_ms: u64,
    },
}

/// Which way a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the client to the upstream server.
    Up,
    /// From the upstream server to the client.
    Down,
    /// Both ways.
    #[default]
    Both,
}

/// One way through a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// From the client to the upstream server.
    Up,
    /// From the upstream server to the client.
    Down,
}

impl Flow {
    /// Both flows, up first.
    pub const BOTH: [Flow; 2] = [Flow::Up, Flow::Down];

    /// 0 for up, 1 for down: an index into per-flow arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Flow::Up => 0,
            Flow::Down => 1,
        }
    }
}

impl Direction {
    /// Whether this direction includes `flow`.
    pub fn covers(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Direction::Both, _) | (Direction::Up, Flow::Up) | (Direction::Down, Flow::Down)
        )
    }
}

impl Fault {
    /// Parses and checks a fault from its JSON form.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        let invalid = |err: serde_json::Error| Error::InvalidFault(err.to_string());
        let given: serde_json::Value = serde_json::from_slice(json).map_err(invalid)?;
        let fault = Fault::deserialize(&given).map_err(invalid)?;
        // The JSON shown for a fault has every field its kind takes.
        let known = serde_json::to_value(fault).map_err(invalid)?;
        if let (Some(given), Some(known)) = (given.as_object(), known.as_object()) {
            if let Some(unknown) = given.keys().find(|field| !known.contains_key(*field)) {
                let fields: Vec<&str> = known.keys().map(String::as_str).collect();
                return Err(Error::InvalidFault(format!(
                    "unknown field `{unknown}`; the fields of {} are: {}",
                    known["kind"],
                    fields.join(", ")
                )));
            }
        }
        fault.validate()?;
        Ok(fault)
    }

    /// The JSON form, with every default spelled out.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a fault always serializes")
    }

    /// Refuses values that cannot work.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Err(Error::InvalidFault(reason.to_owned()));
        match *self {
            Fault::Latency { ms, jitter_ms, .. }
                if ms > MAX_DELAY_MS || jitter_ms > MAX_DELAY_MS =>
            {
                invalid("`ms` and `jitter_ms` must each be at most 86400000 (one day)")
            }
            Fault::Bandwidth {
                bytes_per_sec: 0, ..
            } => invalid("`bytes_per_sec` must be at least 1"),
            Fault::IdleCut { after_ms } if after_ms == 0 || after_ms > MAX_DELAY_MS => {
                invalid("`after_ms` must be between 1 and 86400000 (one day)")
            }
            _ => Ok(()),
        }
    }

    /// Whether this fault stops the bytes of `flow`.
    pub fn blackholes(&self, flow: Flow) -> bool {
        matches!(self, Fault::Blackhole { direction } if direction.covers(flow))
    }

    /// The fixed delay and the most jitter added to each chunk of `flow`, if any.
    pub fn latency(&self, flow: Flow) -> Option<(Duration, Duration)> {
        match *self {
            Fault::Latency {
                ms,
                jitter_ms,
                direction,
            } if direction.covers(flow) => {
                Some((Duration::from_millis(ms), Duration::from_millis(jitter_ms)))
            }
            _ => None,
        }
    }

    /// The rate `flow` is paced to, in bytes per second, if any.
    pub fn bandwidth(&self, flow: Flow) -> Option<u64> {
        match *self {
            Fault::Bandwidth {
                bytes_per_sec,
                direction,
            } if direction.covers(flow) => Some(bytes_per_sec),
            _ => None,
        }
    }

    /// The silence after which a connection is closed, if any.
    pub fn idle_cut(&self) -> Option<Duration> {
        match *self {
            Fault::IdleCut { after_ms } => Some(Duration::from_millis(after_ms)),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both ways",
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::None => f.write_str("none"),
            Fault::Blackhole { direction } => write!(f, "blackhole {direction}"),
            Fault::Latency {
                ms,
                jitter_ms,
                direction,
            } => write!(f, "latency {ms} ms + 0..={jitter_ms} ms {direction}"),
            Fault::Bandwidth {
                bytes_per_sec,
                direction,
            } => write!(f, "bandwidth {bytes_per_sec} B/s {direction}"),
            Fault::Reset => f.write_str("reset"),
            Fault::IdleCut { after_ms } => write!(f, "idle-cut after {after_ms} ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Fault, Error> {
        Fault::from_json(json.as_bytes())
    }

    #[test]
    fn every_kind_parses_with_its_defaults() {
        let cases = [
            (r#"{"kind":"none"}"#, Fault::None),
            (
                r#"{"kind":"blackhole"}"#,
                Fault::Blackhole {
                    direction: Direction::Both,
                },
            ),
            (
                r#"{"kind":"blackhole","direction":"up"}"#,
                Fault::Blackhole {
                    direction: Direction::Up,
                },
            ),
            (
                r#"{"kind":"latency","ms":200,"jitter_ms":50}"#,
                Fault::Latency {
                    ms: 200,
                    jitter_ms: 50,
                    direction: Direction::Both,
                },
            ),
            (
                r#"{"kind":"latency","ms":5,"direction":"down"}"#,
                Fault::Latency {
                    ms: 5,
                    jitter_ms: 0,
                    direction: Direction::Down,
                },
            ),
            (
                r#"{"kind":"bandwidth","bytes_per_sec":1000}"#,
                Fault::Bandwidth {
                    bytes_per_sec: 1000,
                    direction: Direction::Both,
                },
            ),
            (r#"{"kind":"reset"}"#, Fault::Reset),
            (
                r#"{"kind":"idle-cut","after_ms":60000}"#,
                Fault::IdleCut { after_ms: 60_000 },
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(parse(json).unwrap(), expected, "{json}");
            // What GET /fault shows parses back to the same fault.
            assert_eq!(parse(&expected.to_json()).unwrap(), expected);
        }
    }

    #[test]
    fn the_json_shown_spells_out_defaults() {
        let fault = parse(r#"{"kind":"latency","ms":10}"#).unwrap();
        assert_eq!(
            fault.to_json(),
            r#"{"kind":"latency","ms":10,"jitter_ms":0,"direction":"both"}"#
        );
    }

    #[test]
    fn bad_input_is_refused_with_a_sentence() {
        let refused = [
            ("", "EOF"),
            ("not json", "expected"),
            (r#"{"ms":200}"#, "missing field `kind`"),
            (r#"{"kind":"flood"}"#, "unknown variant `flood`"),
            (r#"{"kind":"latency"}"#, "missing field `ms`"),
            (r#"{"kind":"latency","ms":-1}"#, "invalid value"),
            (
                r#"{"kind":"blackhole","direction":"sideways"}"#,
                "unknown variant `sideways`",
            ),
            (r#"{"kind":"reset","after_ms":5}"#, "unknown field"),
            (
                r#"{"kind":"idle-cut","after_ms":1,"ms":3}"#,
                "unknown field `ms`",
            ),
            (r#"{"kind":"bandwidth","bytes_per_sec":0}"#, "at least 1"),
            (r#"{"kind":"idle-cut","after_ms":0}"#, "between 1 and"),
            (r#"{"kind":"latency","ms":86400001}"#, "at most"),
        ];
        for (json, why) in refused {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.starts_with("the fault is not valid: "), "{json}: {err}");
            assert!(err.contains(why), "{json}: {err} should mention {why}");
        }
    }

    #[test]
    fn directions_cover_their_flows() {
        let fault = |direction| Fault::Blackhole { direction };
        assert!(fault(Direction::Up).blackholes(Flow::Up));
        assert!(!fault(Direction::Up).blackholes(Flow::Down));
        assert!(!fault(Direction::Down).blackholes(Flow::Up));
        assert!(fault(Direction::Down).blackholes(Flow::Down));
        assert!(
            Flow::BOTH
                .iter()
                .all(|&flow| fault(Direction::Both).blackholes(flow))
        );
        assert!(!Fault::None.blackholes(Flow::Up));
        let slow = Fault::Bandwidth {
            bytes_per_sec: 10,
            direction: Direction::Down,
        };
        assert_eq!(slow.bandwidth(Flow::Down), Some(10));
        assert_eq!(slow.bandwidth(Flow::Up), None);
        let late = Fault::Latency {
            ms: 3,
            jitter_ms: 4,
            direction: Direction::Up,
        };
        assert_eq!(
            late.latency(Flow::Up),
            Some((Duration::from_millis(3), Duration::from_millis(4)))
        );
        assert_eq!(late.latency(Flow::Down), None);
        assert_eq!(
            Fault::IdleCut { after_ms: 7 }.idle_cut(),
            Some(Duration::from_millis(7))
        );
    }
}
