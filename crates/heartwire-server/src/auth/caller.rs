//! The extractor that runs before every upgrade: it refuses a foreign `Origin` with
//! HTTP 403, and takes from the request what identifying the caller needs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::hook::HookRequest;
use crate::state::ServerState;

/// What an upgrade request brings to identify its caller, once its `Origin` passed.
#[derive(Debug, Default)]
pub(crate) struct Caller {
    /// The `token` query parameter, else the `Authorization: Bearer` token.
    pub(crate) token: Option<String>,
    /// The value of the session cookie.
    pub(crate) session_key: Option<String>,
    /// What the connect hook is told, when it will be asked.
    pub(crate) hook: Option<HookRequest>,
}

impl FromRequestParts<Arc<ServerState>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ServerState>,
    ) -> Result<Self, Response> {
        let auth = &state.auth;
        let headers = &parts.headers;
        let origin = headers
            .get(header::ORIGIN)
            .map(|value| String::from_utf8_lossy(value.as_bytes()));
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| parts.uri.authority().map(|authority| authority.as_str()));
        if let Err(refused) = auth.origins.check(origin.as_deref(), host) {
            state.metrics.refused("origin");
            return Err((StatusCode::FORBIDDEN, refused.to_string()).into_response());
        }
        let query = parts.uri.query();
        let token = query_token(query).or_else(|| bearer_token(headers));
        let session_key = cookie(headers, &auth.session_cookie);
        let verified_by_key = token.is_some() && auth.tokens.is_some();
        let hook = (auth.hook.is_some() && !verified_by_key).then(|| {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0);
            HookRequest::new(headers, parts.uri.path(), query, peer)
        });
        Ok(Self {
            token,
            session_key,
            hook,
        })
    }
}

/// The `token` parameter of a query string, decoded.
fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .filter(|token| !token.is_empty())
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_token_comes_from_the_query_or_the_bearer_header() {
        assert_eq!(
            query_token(Some("a=1&token=x.y%2Bz&b")),
            Some("x.y+z".into())
        );
        assert_eq!(query_token(Some("subscribe-broadcast&echo")), None);
        assert_eq!(query_token(Some("token=")), None);
        assert_eq!(query_token(None), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  a.b.c "),
        );
        assert_eq!(bearer_token(&headers), Some("a.b.c".into()));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpw"),
        );
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("csrftoken=1; sessionid=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("theme=dark"));
        assert_eq!(cookie(&headers, "sessionid"), Some("abc".into()));
        assert_eq!(cookie(&headers, "theme"), Some("dark".into()));
        assert_eq!(cookie(&headers, "session"), None);
    }
}
