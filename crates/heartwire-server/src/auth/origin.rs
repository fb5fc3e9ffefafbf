//! Which browser pages may open a WebSocket: the `Origin` check that stops
//! cross-site WebSocket hijacking (a page of another site opening a socket with the
//! user's cookies).
//!
//! Browsers send `Origin` with every WebSocket handshake and pages cannot forge it.
//! Without `--allowed-origin` only the server's own origin passes: the `Origin`'s
//! host and port must equal the `Host` header's. A request without `Origin` is not
//! from a browser page (a CLI, a backend) and passes, as in Centrifugo and NATS: the
//! check protects browsers' ambient credentials, which such clients do not have.

use std::fmt;

/// One `--allowed-origin` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every origin.
    Any,
    /// `scheme://host[:port]`, or with `*.` in front of the host: any subdomain of it
    /// (one label or more).
    Origin {
        scheme: String,
        host: String,
        subdomains: bool,
        /// `None`: the scheme's default port.
        port: Option<u16>,
    },
}

/// The allowed origins. See the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OriginPolicy {
    patterns: Vec<Pattern>,
}

/// Why an `Origin` was refused: the sentence of the HTTP 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginRefused {
    origin: String,
}

impl fmt::Display for OriginRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebSocket connections from pages of {origin} are not allowed: start heartwire with --allowed-origin {origin} to allow them",
            origin = self.origin
        )
    }
}

impl OriginPolicy {
    /// The policy of these `--allowed-origin` patterns, or what is wrong with one.
    pub(crate) fn new(patterns: &[String]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|pattern| parse_pattern(pattern))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether a handshake with these `Origin` and `Host` headers may go on.
    pub(crate) fn check(
        &self,
        origin: Option<&str>,
        host: Option<&str>,
    ) -> Result<(), OriginRefused> {
        let Some(origin_text) = origin else {
            return Ok(());
        };
        let refused = || OriginRefused {
            origin: shown(origin_text),
        };
        let parsed = parse_origin(origin_text);
        if self.patterns.is_empty() {
            let same = parsed
                .as_ref()
                .zip(host)
                .is_some_and(|(origin, host)| same_origin(origin, host));
            return if same { Ok(()) } else { Err(refused()) };
        }
        let allowed = self
            .patterns
            .iter()
            .any(|pattern| match (pattern, &parsed) {
                (Pattern::Any, _) => true,
                (Pattern::Origin { .. }, None) => false,
                (
                    Pattern::Origin {
                        scheme,
                        host,
                        subdomains,
                        port,
                    },
                    Some(origin),
                ) => {
                    origin.scheme == *scheme
                        && origin.port == port.unwrap_or_else(|| default_port(scheme))
                        && if *subdomains {
                            origin
                                .host
                                .strip_suffix(host.as_str())
                                .is_some_and(|labels| !labels.is_empty())
                        } else {
                            origin.host == *host
                        }
                }
            });
        if allowed { Ok(()) } else { Err(refused()) }
    }
}

/// An `Origin` header's parts, lowercased, with its port made explicit.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// Reads `scheme://host[:port]`; `None` for `null` and anything else that is not
/// an origin.
fn parse_origin(text: &str) -> Option<Origin> {
    let url = url::Url::parse(text).ok()?;
    let scheme = url.scheme().to_owned();
    let host = url.host_str()?.to_ascii_lowercase();
    let port = url.port_or_known_default()?;
    Some(Origin { scheme, host, port })
}

/// Whether `origin` is the origin of a server reached as `host` (the `Host` header:
/// `name[:port]`, without a port when it is the scheme's default).
fn same_origin(origin: &Origin, host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = match host.rsplit_once(':') {
        // An IPv6 address without a port, such as [::1], has colons in brackets.
        Some((name, port)) if !port.contains(']') => match port.parse::<u16>() {
            Ok(port) => (name.to_owned(), port),
            Err(_) => return false,
        },
        _ => (host.clone(), default_port(&origin.scheme)),
    };
    origin.host == name && origin.port == port
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" | "wss" => 443,
        _ => 80,
    }
}

fn parse_pattern(text: &str) -> Result<Pattern, String> {
    if text.trim() == "*" {
        return Ok(Pattern::Any);
    }
    let bad = |why: &str| {
        format!(
            "--allowed-origin {text:?} {why}; write an origin such as https://app.example.com or https://*.example.com"
        )
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("has no scheme"))?;
    if !matches!(scheme, "http" | "https") {
        return Err(bad("is not http or https"));
    }
    if rest.contains('/') {
        return Err(bad("has a path, which origins do not have"));
    }
    let (subdomains, rest) = match rest.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.contains('*') {
        return Err(bad("has a * that is not a leading *."));
    }
    // The URL parser checks the host and the port, and drops a default port.
    let url =
        url::Url::parse(&format!("{scheme}://{rest}")).map_err(|err| bad(&err.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("has no host"))?;
    let host = if subdomains {
        format!(".{host}")
    } else {
        host.to_owned()
    };
    Ok(Pattern::Origin {
        scheme: scheme.to_owned(),
        host,
        subdomains,
        port: url.port(),
    })
}

/// An origin as it may be shown in a refusal: printable, and short.
fn shown(origin: &str) -> String {
    origin
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> OriginPolicy {
        let patterns: Vec<String> = patterns.iter().map(|&p| p.to_owned()).collect();
        OriginPolicy::new(&patterns).unwrap()
    }

    #[test]
    fn without_patterns_only_the_same_origin_passes() {
        let same = policy(&[]);
        for (origin, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("https://example.com", "example.com"),
            ("https://example.com", "example.com:443"),
            ("http://Example.COM", "example.com"),
            ("http://[::1]:9000", "[::1]:9000"),
            ("http://[::1]", "[::1]"),
        ] {
            assert_eq!(
                same.check(Some(origin), Some(host)),
                Ok(()),
                "{origin} {host}"
            );
        }
        for (origin, host) in [
            ("http://127.0.0.1:8081", "127.0.0.1:8080"),
            ("http://evil.example", "example.com"),
            ("https://example.com", "example.com:80"),
            ("null", "example.com"),
            ("http://example.com", "example.com:x"),
        ] {
            assert!(
                same.check(Some(origin), Some(host)).is_err(),
                "{origin} {host}"
            );
        }
        assert!(same.check(Some("http://a"), None).is_err());
    }

    #[test]
    fn requests_without_an_origin_pass() {
        assert_eq!(policy(&[]).check(None, Some("example.com")), Ok(()));
        assert_eq!(policy(&["https://a.example"]).check(None, None), Ok(()));
    }

    #[test]
    fn patterns_are_exact_or_subdomain_globs() {
        let allowed = policy(&[
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:3000",
        ]);
        for origin in [
            "https://app.example.com",
            "https://app.example.com:443",
            "https://a.example.org",
            "https://a.b.example.org",
            "http://localhost:3000",
        ] {
            assert_eq!(
                allowed.check(Some(origin), Some("ws.example.com")),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://example.org",
            "https://evilexample.org",
            "https://example.org.evil.com",
            "http://localhost:3001",
            "null",
        ] {
            assert!(
                allowed.check(Some(origin), Some("ws.example.com")).is_err(),
                "{origin}"
            );
        }
        // With patterns, the server's own origin is one more pattern to give.
        assert!(
            allowed
                .check(Some("https://ws.example.com"), Some("ws.example.com"))
                .is_err()
        );
        assert_eq!(policy(&["*"]).check(Some("null"), None), Ok(()));
    }

    #[test]
    fn refusals_name_the_origin_and_the_option() {
        let err = policy(&[])
            .check(Some("https://evil.example"), Some("a"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "WebSocket connections from pages of https://evil.example are not allowed: start heartwire with --allowed-origin https://evil.example to allow them"
        );
    }

    #[test]
    fn bad_patterns_say_what_an_origin_looks_like() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://x/path",
            "https://a.*.com",
            "https://",
        ] {
            let err = OriginPolicy::new(&[bad.to_owned()]).unwrap_err();
            assert!(
                err.contains("--allowed-origin") && err.contains("https://"),
                "{err}"
            );
        }
    }
}
