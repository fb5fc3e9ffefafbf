//! The negotiation of permessage-deflate (RFC 7692 §5, §7.1), without I/O: a client's
//! `Sec-WebSocket-Extensions` offers in, the server's answer out.
//!
//! The server always answers with `server_no_context_takeover` and
//! `client_no_context_takeover` (RFC 7692 allows a server to add both to any offer it
//! accepts). Each message is then compressed on its own, so a connection keeps no
//! compressor and no window between messages: an idle connection costs the same
//! with compression as without, and a message published to many connections is
//! compressed once for all of them. The price is the ratio: a message cannot refer
//! back to the messages before it.
//!
//! An offer is declined, as §7.1 asks, when it names an unknown parameter, names one
//! twice or gives one an invalid value; the next offer is then tried, and a client
//! whose every offer is declined is served without compression. An offer of
//! `server_max_window_bits=8` is declined too: zlib's raw deflate has no 256-byte
//! window.

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// What was agreed with a client: the window the server compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// log2 of the server's LZ77 window, 9 to 15 (what the client asked for with
    /// `server_max_window_bits`, else 15).
    pub(crate) window_bits: u8,
}

/// Why one offer of permessage-deflate was declined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Declined {
    /// A parameter RFC 7692 does not define.
    Unknown(String),
    /// A parameter given twice.
    Duplicate(String),
    /// A parameter whose value is missing, present where none is allowed, or not
    /// one RFC 7692 allows.
    BadValue(String),
    /// A valid offer this server cannot serve (`server_max_window_bits=8`).
    Unsupported(&'static str),
}

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown(name) => write!(f, "unknown parameter {name:?}"),
            Self::Duplicate(name) => write!(f, "parameter {name:?} given twice"),
            Self::BadValue(name) => write!(f, "invalid value for {name:?}"),
            Self::Unsupported(what) => f.write_str(what),
        }
    }
}

impl Agreement {
    /// The value of the server's `Sec-WebSocket-Extensions` response header.
    pub(crate) fn response(&self) -> String {
        let mut response =
            format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
        if self.window_bits < 15 {
            response.push_str(&format!("; server_max_window_bits={}", self.window_bits));
        }
        response
    }
}

/// The first offer of permessage-deflate in `headers` (the values of every
/// `Sec-WebSocket-Extensions` header, in order) that the server accepts, with why
/// each one before it was declined.
pub(crate) fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
) -> (Option<Agreement>, Vec<Declined>) {
    let mut declined = Vec::new();
    for header in headers {
        let Ok(header) = std::str::from_utf8(header) else {
            continue;
        };
        for extension in split_outside_quotes(header, ',') {
            let mut parts = split_outside_quotes(extension, ';');
            let name = parts.next().unwrap_or_default();
            if !name.eq_ignore_ascii_case(NAME) {
                continue;
            }
            match accept(parts) {
                Ok(agreement) => return (Some(agreement), declined),
                Err(reason) => declined.push(reason),
            }
        }
    }
    (None, declined)
}

/// Judges one offer's parameters.
fn accept<'a>(parameters: impl Iterator<Item = &'a str>) -> Result<Agreement, Declined> {
    let mut seen: Vec<&str> = Vec::new();
    let mut window_bits = 15;
    for parameter in parameters {
        let (name, value) = match parameter.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (parameter.trim(), None),
        };
        if name.is_empty() {
            // `permessage-deflate;` with nothing after the semicolon.
            return Err(Declined::BadValue(parameter.into()));
        }
        if seen.contains(&name) {
            return Err(Declined::Duplicate(name.into()));
        }
        seen.push(name);
        let bad = || Declined::BadValue(name.into());
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => {
                return Err(bad());
            }
            ("server_max_window_bits", Some(value)) => {
                window_bits = window_size(value).ok_or_else(bad)?;
            }
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                // Messages from the client are inflated with the largest window,
                // which reads whatever window it compresses with.
                window_size(value).ok_or_else(bad)?;
            }
            ("server_max_window_bits", None) => return Err(bad()),
            _ => return Err(Declined::Unknown(name.into())),
        }
    }
    if window_bits == 8 {
        return Err(Declined::Unsupported(
            "server_max_window_bits=8: zlib has no 256-byte window for raw deflate",
        ));
    }
    Ok(Agreement { window_bits })
}

/// A window size as RFC 7692 writes it: 8 to 15, in decimal, without leading zeros.
fn window_size(value: &str) -> Option<u8> {
    match value {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => value.parse().ok(),
        _ => None,
    }
}

/// The value of a quoted string (RFC 7230 §3.2.6), or the token as it is.
fn unquote(value: &str) -> &str {
    match value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        // Window sizes hold no escapes; an escaped value is left to fail as a number.
        Some(inner) => inner,
        None => value,
    }
}

/// The pieces of `text` between `separator`s that are not inside a quoted string,
/// trimmed.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (index, character) in text.char_indices() {
            match character {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                _ if character == separator && !quoted => {
                    rest = Some(&text[index + 1..]);
                    return Some(text[..index].trim());
                }
                _ => {}
            }
        }
        rest = None;
        Some(text.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(headers: &[&str]) -> (Option<Agreement>, Vec<Declined>) {
        negotiate(headers.iter().map(|header| header.as_bytes()))
    }

    fn agreed(headers: &[&str]) -> Option<u8> {
        offer(headers).0.map(|agreement| agreement.window_bits)
    }

    /// What Chromium, Firefox, Node `ws` and Python `websockets` send by default.
    #[test]
    fn the_offers_of_browsers_and_libraries_are_accepted() {
        for header in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=15",
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ] {
            assert_eq!(agreed(&[header]), Some(15), "{header}");
        }
        let (agreement, declined) = offer(&["permessage-deflate; client_max_window_bits"]);
        assert!(declined.is_empty());
        assert_eq!(
            agreement.unwrap().response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn a_smaller_server_window_is_granted_and_answered() {
        let agreement = offer(&["permessage-deflate; server_max_window_bits=10"])
            .0
            .unwrap();
        assert_eq!(agreement.window_bits, 10);
        assert!(
            agreement
                .response()
                .ends_with("; server_max_window_bits=10")
        );
        assert_eq!(
            agreed(&[r#"permessage-deflate; server_max_window_bits="9""#]),
            Some(9)
        );
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_is_tried() {
        let cases: [(&str, Declined); 9] = [
            ("permessage-deflate; foo", Declined::Unknown("foo".into())),
            (
                "permessage-deflate; server_max_window_bits=16",
                Declined::BadValue("server_max_window_bits".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=010",
                Declined::BadValue("server_max_window_bits".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits",
                Declined::BadValue("server_max_window_bits".into()),
            ),
            (
                "permessage-deflate; client_max_window_bits=7",
                Declined::BadValue("client_max_window_bits".into()),
            ),
            (
                "permessage-deflate; server_no_context_takeover=1",
                Declined::BadValue("server_no_context_takeover".into()),
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                Declined::Duplicate("client_no_context_takeover".into()),
            ),
            ("permessage-deflate;", Declined::BadValue(String::new())),
            (
                "permessage-deflate; server_max_window_bits=8",
                Declined::Unsupported(
                    "server_max_window_bits=8: zlib has no 256-byte window for raw deflate",
                ),
            ),
        ];
        for (header, reason) in cases {
            assert_eq!(offer(&[header]), (None, vec![reason.clone()]), "{header}");
            // A valid offer after the bad one, in the same header or the next.
            let fallback = "permessage-deflate; server_max_window_bits=12";
            let both = format!("{header}, {fallback}");
            assert_eq!(agreed(&[&both]), Some(12), "{both}");
            assert_eq!(agreed(&[header, fallback]), Some(12), "{header}");
        }
    }

    #[test]
    fn other_extensions_and_odd_spelling_are_handled() {
        assert_eq!(agreed(&["x-webkit-deflate-frame"]), None);
        assert_eq!(agreed(&[]), None);
        assert_eq!(
            agreed(&[r#"foo; bar="a,b;c", PerMessage-Deflate ;server_max_window_bits = 11"#]),
            Some(11)
        );
        assert_eq!(offer(&["foo, bar"]), (None, vec![]));
    }

    #[test]
    fn splitting_respects_quotes_and_escapes() {
        let pieces: Vec<_> = split_outside_quotes(r#"a; b="x;\"y"; c"#, ';').collect();
        assert_eq!(pieces, ["a", r#"b="x;\"y""#, "c"]);
        let pieces: Vec<_> = split_outside_quotes("", ',').collect();
        assert_eq!(pieces, [""]);
    }
}
