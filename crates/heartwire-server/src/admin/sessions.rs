//! Admin logins: a random token per login, kept for [`SESSION_LIFETIME`], carried by
//! an HttpOnly, SameSite=Strict cookie (Secure when the request came over TLS).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use parking_lot::Mutex;

/// The cookie's name.
pub(crate) const COOKIE: &str = "heartwire_admin";
/// How long a login lasts.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Logins kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1000;

/// Marks a request that came over TLS: a listener that serves TLS inserts it into
/// the request's extensions, and the admin cookie is then `Secure`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OverTls;

/// The admin logins in force.
#[derive(Debug, Default)]
pub(crate) struct AdminSessions {
    tokens: Mutex<HashMap<String, Instant>>,
}

impl AdminSessions {
    /// A new login; returns its token.
    pub(crate) fn open(&self, now: Instant) -> String {
        let token: String = (0..2).map(|_| crate::id::random_id()).collect();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, expires| *expires > now);
        if tokens.len() >= MAX_SESSIONS {
            let oldest = tokens
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(token, _)| token.clone());
            if let Some(oldest) = oldest {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(token.clone(), now + SESSION_LIFETIME);
        token
    }

    /// Whether `headers` carry the cookie of a login in force.
    pub(crate) fn holds(&self, headers: &HeaderMap, now: Instant) -> bool {
        token_of(headers).is_some_and(|token| {
            self.tokens
                .lock()
                .get(token)
                .is_some_and(|expires| *expires > now)
        })
    }

    /// Ends the login of the cookie in `headers`, if any.
    pub(crate) fn close(&self, headers: &HeaderMap) {
        if let Some(token) = token_of(headers) {
            self.tokens.lock().remove(token);
        }
    }
}

/// The `Set-Cookie` value of a login with `token`.
pub(crate) fn set_cookie(token: &str, over_tls: bool) -> String {
    let secure = if over_tls { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub(crate) fn clear_cookie(over_tls: bool) -> String {
    let secure = if over_tls { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

fn token_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_login_holds_until_it_expires_or_closes() {
        let sessions = AdminSessions::default();
        let now = Instant::now();
        let token = sessions.open(now);
        assert_eq!(token.len(), 32);
        let headers = with_cookie(&format!("theme=dark; {COOKIE}={token}"));
        assert!(sessions.holds(&headers, now));
        assert!(!sessions.holds(&headers, now + SESSION_LIFETIME));
        assert!(!sessions.holds(&with_cookie(&format!("{COOKIE}=forged")), now));
        assert!(!sessions.holds(&HeaderMap::new(), now));
        sessions.close(&headers);
        assert!(!sessions.holds(&headers, now));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict_and_secure_over_tls() {
        let plain = set_cookie("t", false);
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie("t", true).ends_with("; Secure"));
    }
}
