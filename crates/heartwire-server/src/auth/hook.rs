//! The connect hook (`--auth-url`): the application says who the caller is, for apps
//! whose users sign in with a session cookie (Django, Rails, Laravel).
//!
//! For each upgrade heartwire POSTs to the hook, forwarding the request's `Cookie`,
//! `Authorization`, `Origin`, `User-Agent` and `X-Forwarded-For`, with the body
//! `{"path": …, "query": …, "remote_addr": …}`. The answers:
//!
//! - 200 with `{"user": "ada" | null, "groups": […], "expires_at": <unix seconds> | null}`:
//!   the identity (`user: null` is a caller who is not signed in);
//! - 401: refused for good (close 4401); 403: forbidden (close 4403);
//! - no answer within `--auth-timeout`, a 5xx, or anything else: "try again later"
//!   (close 1013 with a retry hint), so that clients back off while the app is down
//!   instead of giving up.
//!
//! At most [`MAX_CALLS`] calls run at once; a call waiting for its turn counts
//! against the timeout.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use rand::Rng;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::refusal::Refusal;
use crate::Error;

/// Hook calls in flight at once.
pub(crate) const MAX_CALLS: usize = 128;
/// The largest answer read, in bytes.
const MAX_BODY: usize = 64 * 1024;
/// The window over which clients refused with 1013 are asked to come back.
const RETRY_WINDOW_MS: std::ops::RangeInclusive<u64> = 1_000..=10_000;

/// The request headers the hook receives.
pub(crate) const FORWARDED: [HeaderName; 5] = [
    header::COOKIE,
    header::AUTHORIZATION,
    header::ORIGIN,
    header::USER_AGENT,
    HeaderName::from_static("x-forwarded-for"),
];

/// What the hook is told about one upgrade request.
#[derive(Debug, Clone, Default)]
pub(crate) struct HookRequest {
    /// The forwarded headers the request had.
    pub(crate) headers: HeaderMap,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) remote_addr: Option<SocketAddr>,
}

impl HookRequest {
    /// The forwarded headers of `headers`, with the request's path, query and peer.
    pub(crate) fn new(
        headers: &HeaderMap,
        path: &str,
        query: Option<&str>,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        let mut forwarded = HeaderMap::new();
        for name in &FORWARDED {
            for value in headers.get_all(name) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        Self {
            headers: forwarded,
            path: path.to_owned(),
            query: query.map(ToOwned::to_owned),
            remote_addr,
        }
    }
}

/// Who the hook says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookIdentity {
    pub(crate) user: String,
    pub(crate) groups: Vec<String>,
    pub(crate) expires_at: Option<SystemTime>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    expires_at: Option<f64>,
}

/// The hook's URL and its client. See the [module docs](self).
pub(crate) struct ConnectHook {
    url: reqwest::Url,
    client: reqwest::Client,
    timeout: Duration,
    calls: Semaphore,
}

impl ConnectHook {
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, Error> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            // The URL may hold credentials: it is not repeated.
            .ok_or_else(|| Error::Config("--auth-url is not an http or https URL".into()))?;
        Ok(Self {
            url,
            client: super::http_client(timeout, false)?,
            timeout,
            calls: Semaphore::new(MAX_CALLS),
        })
    }

    /// Asks the hook who sent `request`, at `now`: `None` for a caller the hook says
    /// is not signed in.
    pub(crate) async fn identify(
        &self,
        request: &HookRequest,
        now: SystemTime,
    ) -> Result<Option<HookIdentity>, Refusal> {
        let call = async {
            let _turn = self
                .calls
                .acquire()
                .await
                .map_err(|_| unavailable("closed"))?;
            self.call(request).await
        };
        let (status, body) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                tracing::warn!(timeout = ?self.timeout, "the connect hook did not answer in time");
                unavailable("sign-in service did not answer in time")
            })??;
        interpret(status, &body, now)
    }

    async fn call(&self, request: &HookRequest) -> Result<(StatusCode, Vec<u8>), Refusal> {
        let body = serde_json::json!({
            "path": request.path,
            "query": request.query,
            "remote_addr": request.remote_addr.map(|addr| addr.ip().to_string()),
        });
        let mut response = self
            .client
            .post(self.url.clone())
            .headers(request.headers.clone())
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|err| {
                tracing::warn!(err = %err.without_url(), "the connect hook cannot be reached");
                unavailable("sign-in service unreachable")
            })?;
        let status = StatusCode::from_u16(response.status().as_u16())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = super::read_bounded(&mut response, MAX_BODY)
            .await
            .map_err(|err| {
                tracing::warn!(%err, "cannot read the connect hook's answer");
                unavailable("sign-in service answered badly")
            })?;
        Ok((status, body))
    }
}

/// What an answer of the hook means at `now`.
fn interpret(
    status: StatusCode,
    body: &[u8],
    now: SystemTime,
) -> Result<Option<HookIdentity>, Refusal> {
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            return Err(Refusal::Unauthorized(
                "not signed in: the application refused the credentials".into(),
            ));
        }
        StatusCode::FORBIDDEN => {
            return Err(Refusal::Forbidden(
                "forbidden: the application does not let this user connect".into(),
            ));
        }
        other => {
            tracing::warn!(
                status = other.as_u16(),
                "the connect hook answered an error"
            );
            return Err(unavailable("sign-in service failed"));
        }
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|err| {
        tracing::warn!(%err, "the connect hook's answer is not the expected JSON");
        unavailable("sign-in service answered badly")
    })?;
    let Some(user) = answer.user.filter(|user| !user.is_empty()) else {
        return Ok(None);
    };
    let expires_at = answer.expires_at.map(|at| {
        UNIX_EPOCH + Duration::try_from_secs_f64(at.max(0.0)).unwrap_or(Duration::MAX / 2)
    });
    if expires_at.is_some_and(|at| at <= now) {
        return Err(Refusal::Expired(
            "session expired; sign in and connect again".into(),
        ));
    }
    Ok(Some(HookIdentity {
        user,
        groups: answer.groups,
        expires_at,
    }))
}

/// A 1013 refusal, with a retry hint drawn over [`RETRY_WINDOW_MS`] so that the
/// refused clients do not all come back at once.
fn unavailable(reason: &str) -> Refusal {
    let retry_after = Duration::from_millis(rand::rng().random_range(RETRY_WINDOW_MS));
    Refusal::Unavailable {
        reason: reason.to_owned(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_200_answer_is_the_identity() {
        let body = br#"{"user":"ada","groups":["staff"],"expires_at":2000}"#;
        let identity = interpret(StatusCode::OK, body, at(1000)).unwrap().unwrap();
        assert_eq!(identity.user, "ada");
        assert_eq!(identity.groups, ["staff"]);
        assert_eq!(identity.expires_at, Some(at(2000)));
        let anonymous = interpret(StatusCode::OK, br#"{"user":null}"#, at(0)).unwrap();
        assert_eq!(anonymous, None);
        let plain = interpret(StatusCode::OK, br#"{"user":"bo"}"#, at(0))
            .unwrap()
            .unwrap();
        assert_eq!((plain.groups.len(), plain.expires_at), (0, None));
    }

    #[test]
    fn statuses_map_to_the_close_codes() {
        let code = |status: u16, body: &[u8]| {
            interpret(StatusCode::from_u16(status).unwrap(), body, at(1000))
                .unwrap_err()
                .close_code()
        };
        assert_eq!(code(401, b""), 4401);
        assert_eq!(code(403, b""), 4403);
        for status in [500, 502, 503, 404, 302] {
            assert_eq!(code(status, b""), 1013, "HTTP {status}");
        }
        assert_eq!(code(200, b"<html>"), 1013);
        assert_eq!(code(200, br#"{"user":"ada","expires_at":999}"#), 4498);
    }

    #[test]
    fn retry_hints_are_spread() {
        let hints: std::collections::HashSet<_> = (0..50)
            .map(|_| match unavailable("x") {
                Refusal::Unavailable { retry_after, .. } => retry_after,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(hints.len() > 10, "{hints:?}");
        assert!(
            hints
                .iter()
                .all(|hint| RETRY_WINDOW_MS.contains(&(hint.as_millis() as u64)))
        );
    }

    #[test]
    fn only_the_listed_headers_are_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("sessionid=abc"));
        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("k"));
        let request = HookRequest::new(&headers, "/ws/chat", Some("echo"), None);
        let names: Vec<_> = request.headers.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["cookie", "x-forwarded-for"]);
    }
}
