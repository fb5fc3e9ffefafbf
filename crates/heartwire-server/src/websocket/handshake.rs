//! The opening handshake (RFC 6455 §4.2): an axum extractor that checks the upgrade
//! request, and the 101 response that hands the stream itself (TCP, or TLS over TCP)
//! to the connection.
//!
//! Once upgraded, the stream is taken back out of hyper, so a connection holds the
//! socket alone and none of the HTTP layer's buffers.
//!
//! The request's permessage-deflate offers are judged here too (`deflate::offer`);
//! the answer goes out only when the server has compression on.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::deflate::{self, Agreement};
use super::socket::{self, Socket};
use super::upgrading::Upgrading;

/// A checked WebSocket upgrade request, ready to be accepted.
pub(crate) struct Upgrade {
    accept_key: String,
    on_upgrade: OnUpgrade,
    /// The client's first permessage-deflate offer that the server accepts.
    deflate: Option<Agreement>,
}

/// What the server sets an accepted connection up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The largest message taken from the client, inflated.
    pub(crate) max_message_size: usize,
    /// With compression on, the size from which messages go out compressed; `None`
    /// declines every permessage-deflate offer.
    pub(crate) compression_min_size: Option<usize>,
}

/// Why an upgrade request was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not an upgrade this server accepts: the HTTP status and a sentence.
    Request(StatusCode, &'static str),
    /// Another version of the protocol: 400 and, as RFC 6455 §4.2.2 asks, the version
    /// this server speaks.
    Version,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Request(status, sentence) => (status, sentence).into_response(),
            Self::Version => (
                StatusCode::BAD_REQUEST,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "Sec-WebSocket-Version must be 13",
            )
                .into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refused> {
        let bad = |sentence| Err(Refused::Request(StatusCode::BAD_REQUEST, sentence));
        if parts.method != Method::GET {
            return Err(Refused::Request(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade must use GET",
            ));
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return bad("the Connection header does not include 'upgrade'");
        }
        if !header_has_token(&parts.headers, header::UPGRADE, "websocket") {
            return bad("the Upgrade header is not 'websocket'");
        }
        if !header_has_token(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(Refused::Version);
        }
        let mut keys = parts.headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
        let key = match (keys.next(), keys.next()) {
            (None, _) => return bad("the Sec-WebSocket-Key header is missing"),
            (Some(key), None) if is_key(key.as_bytes().trim_ascii()) => key,
            _ => return bad("Sec-WebSocket-Key must be sent once, as 16 bytes in base64"),
        };
        let accept_key = derive_accept_key(key.as_bytes().trim_ascii());
        let offers = parts.headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS);
        let (deflate, declined) = deflate::negotiate(offers.iter().map(HeaderValue::as_bytes));
        for reason in declined {
            tracing::debug!(%reason, "permessage-deflate offer declined");
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(Refused::Request(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ));
        };
        Ok(Self {
            accept_key,
            on_upgrade,
            deflate,
        })
    }
}

impl Upgrade {
    /// Answers 101 and, once hyper has sent it, spawns the task `connection` makes of
    /// the socket.
    pub(crate) fn on_upgrade<F, T>(self, settings: Settings, connection: F) -> Response
    where
        F: FnOnce(Socket) -> T + Send + Unpin + 'static,
        T: Future<Output = ()> + Send + Unpin + 'static,
    {
        let on_upgrade = self.on_upgrade;
        let deflate = self
            .deflate
            .zip(settings.compression_min_size)
            .map(|(agreement, min_size)| socket::Deflate::new(agreement, min_size));
        let socket_settings = socket::Settings {
            max_message_size: settings.max_message_size,
            deflate,
        };
        tokio::spawn(Upgrading::Waiting {
            on_upgrade,
            settings: socket_settings,
            connection,
        });
        let accept = HeaderValue::from_str(&self.accept_key).expect("base64 is a valid header");
        let mut response = (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
        )
            .into_response();
        if let Some(deflate) = deflate {
            let extensions = HeaderValue::from_str(&deflate.agreement.response())
                .expect("the answer is plain ASCII");
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_EXTENSIONS, extensions);
        }
        response
    }
}

/// Whether `key` has the form of 16 bytes in base64 (RFC 6455 §4.2.1): 22 characters
/// of the base64 alphabet, then the padding `==`. The bits the last character carries
/// past the 16th byte are not checked, as in Go's and Node's servers.
fn is_key(key: &[u8]) -> bool {
    let is_base64 = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/');
    matches!(key, [characters @ .., b'=', b'='] if characters.len() == 22 && characters.iter().all(is_base64))
}

/// Whether a comma-separated header holds `token`, ignoring ASCII case.
fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    /// What the extractor answers to a GET with `headers`; a request that passes
    /// every check gets 426 here, where no connection can be upgraded.
    async fn answer(headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get("/ws");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        match Upgrade::from_request_parts(&mut parts, &()).await {
            Ok(_) => panic!("accepted without a connection to upgrade"),
            Err(refused) => refused.into_response(),
        }
    }

    const UPGRADE: [(&str, &str); 2] = [("upgrade", "websocket"), ("connection", "Upgrade")];

    /// Found by the `upgrade_request` fuzz target: a key that is not 16 bytes in
    /// base64, or a second key, was taken (RFC 6455 §4.2.1 asks for a refusal).
    #[tokio::test]
    async fn a_key_must_be_sixteen_bytes_in_base64_and_sent_once() {
        let version = ("sec-websocket-version", "13");
        let key = |value| {
            [
                UPGRADE[0],
                UPGRADE[1],
                version,
                ("sec-websocket-key", value),
            ]
        };
        for bad in [
            "c2hvcnQ=",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ=!",
            "",
        ] {
            let response = answer(&key(bad)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let mut twice = key("dGhlIHNhbXBsZSBub25jZQ==").to_vec();
        twice.push(("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA=="));
        assert_eq!(answer(&twice).await.status(), StatusCode::BAD_REQUEST);
        for good in ["dGhlIHNhbXBsZSBub25jZQ==", " AAAAAAAAAAAAAAAAAAAAAB==\t"] {
            let response = answer(&key(good)).await;
            assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED, "{good:?}");
        }
    }

    /// Found by the `upgrade_http` fuzz target: a refused version was not answered
    /// with the version this server speaks (RFC 6455 §4.2.2).
    #[tokio::test]
    async fn a_refused_version_is_answered_with_version_13() {
        let mut headers = UPGRADE.to_vec();
        headers.push(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
        headers.push(("sec-websocket-version", "8"));
        let response = answer(&headers).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }

    #[test]
    fn header_tokens_are_matched_whole_and_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(header_has_token(&headers, header::CONNECTION, "upgrade"));
        assert!(!header_has_token(&headers, header::CONNECTION, "alive"));
        assert!(!header_has_token(&headers, header::UPGRADE, "websocket"));
    }
}
