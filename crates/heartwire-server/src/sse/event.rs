//! The text of the event stream (the WHATWG `text/event-stream` format): events with
//! an `id`, a type and `data`, the `retry:` field, and comments as heartbeats.

use std::fmt::Write;

/// Appends an event of type `kind` (`None`: the default type, `message`) with `id`
/// and `data`, one `data:` line per line of it.
pub(crate) fn event(out: &mut String, kind: Option<&str>, id: &str, data: &str) {
    if let Some(kind) = kind {
        let _ = writeln!(out, "event: {kind}");
    }
    let _ = writeln!(out, "id: {id}");
    for line in data.split('\n') {
        let _ = writeln!(out, "data: {}", line.strip_suffix('\r').unwrap_or(line));
    }
    out.push('\n');
}

/// Appends the `retry:` field: the delay, in milliseconds, a browser waits before it
/// reconnects.
pub(crate) fn retry(out: &mut String, millis: u64) {
    let _ = writeln!(out, "retry: {millis}\n");
}

/// A comment: ignored by `EventSource`, but traffic that keeps proxies from cutting
/// an idle stream.
pub(crate) const HEARTBEAT: &str = ":\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_their_fields_and_end_with_a_blank_line() {
        let mut out = String::new();
        event(&mut out, None, "e:3", r#"{"seq":3}"#);
        event(&mut out, Some("gap"), "e:3,f:9", "two\r\nlines");
        retry(&mut out, 1500);
        assert_eq!(
            out,
            "id: e:3\ndata: {\"seq\":3}\n\nevent: gap\nid: e:3,f:9\ndata: two\ndata: lines\n\nretry: 1500\n\n"
        );
    }
}
