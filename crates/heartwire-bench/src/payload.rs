//! Benchmark payloads: `~` and the send time in microseconds since the Unix epoch (16
//! digits), padded with `x` to the wanted size, so that any process on the machine
//! can tell how long a payload took to arrive, whatever envelope carried it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MARK: char = '~';
const DIGITS: usize = 16;

/// The smallest payload: the mark and the time.
pub(crate) const MIN_SIZE: usize = 1 + DIGITS;

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
}

/// A payload of `size` bytes (at least [`MIN_SIZE`]) stamped now.
pub(crate) fn stamped(size: usize) -> String {
    let mut payload = format!("{MARK}{:0width$}", now_micros(), width = DIGITS);
    payload.extend(std::iter::repeat_n('x', size.saturating_sub(MIN_SIZE)));
    payload
}

/// How long ago the payload inside `frame` was stamped, if it holds one.
pub(crate) fn age(frame: &str) -> Option<Duration> {
    let sent = stamp(frame)?;
    Some(Duration::from_micros(now_micros().saturating_sub(sent)))
}

/// When the payload inside `frame` was stamped, in microseconds since the Unix epoch.
pub(crate) fn stamp(frame: &str) -> Option<u64> {
    let start = frame.find(MARK)? + 1;
    frame.get(start..start + DIGITS)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_has_its_size_and_its_age_inside_any_envelope() {
        let payload = stamped(64);
        assert_eq!(payload.len(), 64);
        let envelope = format!(r#"{{"op":"message","data":"{payload}"}}"#);
        assert!(age(&envelope).expect("stamped") < Duration::from_secs(1));
        assert_eq!(age("no payload"), None);
    }
}
