//! One connection attempt: the handshake request with a fresh token, and what a
//! failed handshake means for the next attempt.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::{self, error::ProtocolError};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use super::config::{ClientConfig, TokenPlacement};

/// An open client WebSocket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why an attempt failed, and whether trying the same server again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptError {
    /// One sentence for people.
    pub(crate) reason: String,
    /// The server refused in a way retrying cannot fix.
    pub(crate) permanent: bool,
    /// The server asked to come back after this delay (`Retry-After`).
    pub(crate) retry_after: Option<Duration>,
    /// The server's host name did not resolve.
    pub(crate) unresolved: bool,
}

impl AttemptError {
    fn transient(reason: String) -> Self {
        Self {
            reason,
            permanent: false,
            retry_after: None,
            unresolved: false,
        }
    }

    fn permanent(reason: String) -> Self {
        Self {
            reason,
            permanent: true,
            retry_after: None,
            unresolved: false,
        }
    }
}

/// Opens a WebSocket to `url`, carrying a token fresh from the provider.
pub(crate) async fn open(url: &Url, config: &ClientConfig) -> Result<Socket, AttemptError> {
    let token = match &config.token {
        Some(provider) => provider().await,
        None => None,
    };
    let request = request(url, token.as_deref(), config.token_placement)?;
    let connector = if url.scheme() == "wss" {
        let tls = crate::tls::connector(&config.tls_roots)
            .map_err(|err| AttemptError::permanent(err.to_string()))?;
        Connector::Rustls(tls)
    } else {
        Connector::Plain
    };
    let handshake =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
    match tokio::time::timeout(config.connect_timeout, handshake).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(err @ tungstenite::Error::Io(_))) => Err(unreachable(url, err).await),
        Ok(Err(err)) => Err(classify(url, err)),
        Err(_) => Err(AttemptError::transient(format!(
            "{url} did not complete the WebSocket handshake within {} ms",
            config.connect_timeout.as_millis()
        ))),
    }
}

/// The handshake request: the URL, plus the token where it was asked to go.
fn request(
    url: &Url,
    token: Option<&str>,
    placement: TokenPlacement,
) -> Result<tungstenite::handshake::client::Request, AttemptError> {
    let mut url = url.clone();
    if let (Some(token), TokenPlacement::Query | TokenPlacement::Both) = (token, placement) {
        url.query_pairs_mut().append_pair("token", token);
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|err| AttemptError::permanent(format!("{url} cannot be requested: {err}")))?;
    if let (Some(token), TokenPlacement::Header | TokenPlacement::Both) = (token, placement) {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            AttemptError::transient(
                "the token provider returned a token that is not a valid header value".into(),
            )
        })?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(request)
}

/// A server that could not be reached: whether its host name resolves tells a typo
/// (or a name not yet in DNS) from a server that is down.
async fn unreachable(url: &Url, err: tungstenite::Error) -> AttemptError {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return classify(url, err);
    };
    match tokio::net::lookup_host((host, port)).await {
        Err(lookup) => AttemptError {
            unresolved: true,
            ..AttemptError::transient(format!("cannot resolve the host of {url}: {lookup}"))
        },
        Ok(_) => classify(url, err),
    }
}

/// What a failed handshake with `url` means.
fn classify(url: &Url, err: tungstenite::Error) -> AttemptError {
    use tungstenite::Error;
    match err {
        Error::Http(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let reason = format!("{url} refused the WebSocket handshake with HTTP {status}");
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                AttemptError {
                    reason,
                    permanent: false,
                    retry_after,
                    unresolved: false,
                }
            } else {
                AttemptError::permanent(reason)
            }
        }
        Error::Io(err) => match err.get_ref().and_then(|inner| inner.downcast_ref()) {
            // A certificate that fails a check stays failed: not retried.
            Some(tls) => AttemptError::permanent(format!(
                "{url}: {}",
                crate::tls::describe(&server_name(url), tls)
            )),
            None => AttemptError::transient(format!("cannot reach {url}: {err}")),
        },
        Error::Protocol(
            ProtocolError::HandshakeIncomplete | ProtocolError::ResetWithoutClosingHandshake,
        )
        | Error::ConnectionClosed
        | Error::AlreadyClosed => AttemptError::transient(format!(
            "{url} closed the connection during the WebSocket handshake"
        )),
        Error::Protocol(err) => {
            AttemptError::permanent(format!("{url} is not a WebSocket server: {err}"))
        }
        Error::HttpFormat(err) => {
            AttemptError::permanent(format!("{url} is not a WebSocket server: {err}"))
        }
        Error::Url(err) => AttemptError::permanent(format!("{url} cannot be used: {err}")),
        Error::Tls(tungstenite::error::TlsError::Rustls(err)) => AttemptError::permanent(format!(
            "{url}: {}",
            crate::tls::describe(&server_name(url), &err)
        )),
        Error::Tls(err) => AttemptError::permanent(format!("TLS with {url} failed: {err}")),
        other => AttemptError::transient(format!("connecting to {url} failed: {other}")),
    }
}

/// The name a server's certificate is checked against: the URL's host.
fn server_name(url: &Url) -> String {
    format!("`{}`", url.host_str().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("ws://127.0.0.1:9/ws?x=1").unwrap()
    }

    #[test]
    fn token_goes_where_it_was_asked_to() {
        let header = request(&url(), Some("abc"), TokenPlacement::Header).unwrap();
        assert_eq!(header.headers()[header::AUTHORIZATION], "Bearer abc");
        assert_eq!(header.uri().query(), Some("x=1"));

        let query = request(&url(), Some("a b"), TokenPlacement::Query).unwrap();
        assert!(query.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(query.uri().query(), Some("x=1&token=a+b"));

        let both = request(&url(), Some("t"), TokenPlacement::Both).unwrap();
        assert_eq!(both.headers()[header::AUTHORIZATION], "Bearer t");
        assert_eq!(both.uri().query(), Some("x=1&token=t"));

        let none = request(&url(), None, TokenPlacement::Both).unwrap();
        assert!(none.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(none.uri().query(), Some("x=1"));
    }

    fn http(status: u16, retry_after: Option<&str>) -> AttemptError {
        let mut response = tungstenite::http::Response::builder().status(status);
        if let Some(value) = retry_after {
            response = response.header(header::RETRY_AFTER, value);
        }
        classify(
            &url(),
            tungstenite::Error::Http(Box::new(response.body(None).unwrap())),
        )
    }

    #[test]
    fn handshake_refusals_that_cannot_change_are_permanent() {
        for status in [200, 400, 401, 403, 404] {
            assert!(http(status, None).permanent, "HTTP {status}");
        }
        let busy = http(503, Some("3"));
        assert!(!busy.permanent);
        assert_eq!(busy.retry_after, Some(Duration::from_secs(3)));
        assert!(!http(502, None).permanent);
    }
}
