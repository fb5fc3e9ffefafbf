//! The opening handshake (RFC 6455 §4.2): an axum extractor that checks the upgrade
//! request, and the 101 response that hands the TCP stream itself to the connection.
//!
//! Once upgraded, the stream is taken back out of hyper, so a connection holds the
//! socket alone and none of the HTTP layer's buffers.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::socket::Socket;

/// A checked WebSocket upgrade request, ready to be accepted.
pub(crate) struct Upgrade {
    accept_key: String,
    on_upgrade: OnUpgrade,
}

/// Why an upgrade request was refused: the HTTP status and a sentence.
#[derive(Debug)]
pub(crate) struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refused> {
        let bad = |sentence| Err(Refused(StatusCode::BAD_REQUEST, sentence));
        if parts.method != Method::GET {
            return Err(Refused(
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
            return bad("Sec-WebSocket-Version must be 13");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return bad("the Sec-WebSocket-Key header is missing");
        };
        let accept_key = derive_accept_key(key.as_bytes());
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(Refused(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ));
        };
        Ok(Self {
            accept_key,
            on_upgrade,
        })
    }
}

impl Upgrade {
    /// Answers 101 and, once hyper has sent it, spawns the task `connection` makes of
    /// the socket.
    pub(crate) fn on_upgrade<F, T>(self, max_message_size: usize, connection: F) -> Response
    where
        F: FnOnce(Socket) -> T + Send + 'static,
        T: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(err) => return tracing::debug!(%err, "upgrade failed"),
            };
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    let socket =
                        Socket::new(parts.io.into_inner(), parts.read_buf, max_message_size);
                    connection(socket).await;
                }
                Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
            }
        });
        let accept = HeaderValue::from_str(&self.accept_key).expect("base64 is a valid header");
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
        )
            .into_response()
    }
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
    use super::*;

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
