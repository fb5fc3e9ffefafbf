//! The WebSocket upgrade: what the server must answer to a request (RFC 6455 §4.2.1
//! and §4.2.2), and two ways to put a request to it, built field by field or as raw
//! bytes through hyper.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};
use heartwire_server::fuzzing::upgrade_router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Headers a request built from lines may carry at most.
const MAX_HEADERS: usize = 64;

/// The largest body a refusal may have: a sentence.
const MAX_REFUSAL_BODY: usize = 1024;

/// One runtime for every input: the extractor and hyper need one, not a new one each.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

/// A request and the answer it got.
#[derive(Debug)]
pub struct Exchange {
    /// The request's method.
    pub method: Method,
    /// The request's headers.
    pub headers: HeaderMap,
    /// Whether the HTTP layer offered an upgrade for this request.
    pub can_upgrade: bool,
    /// The response's status.
    pub status: StatusCode,
    /// The response's headers.
    pub response_headers: HeaderMap,
    /// The response's body.
    pub body: Bytes,
}

/// Builds a request from text lines: the first line is the method, each other line
/// one `name:value` header. Lines that are no valid method or header are passed by,
/// so any input gives a request.
pub fn request_from_lines(input: &[u8]) -> Request<Body> {
    let mut lines = input.split(|&byte| byte == b'\n');
    let method = lines
        .next()
        .and_then(|line| Method::from_bytes(line).ok())
        .unwrap_or(Method::GET);
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    let headers = request.headers_mut();
    for line in lines.take(MAX_HEADERS) {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    request
}

/// Puts `request` to the server's upgrade extractor directly, without an HTTP
/// connection (so an accepted request is answered 426: nothing can be upgraded).
pub fn exchange(request: Request<Body>) -> Exchange {
    let method = request.method().clone();
    let headers = request.headers().clone();
    let can_upgrade = request.extensions().get::<OnUpgrade>().is_some();
    let response = RUNTIME
        .block_on(upgrade_router().oneshot(request))
        .expect("a router never fails");
    let (parts, body) = response.into_parts();
    let body = RUNTIME
        .block_on(axum::body::to_bytes(body, MAX_REFUSAL_BODY))
        .expect("a short body");
    Exchange {
        method,
        headers,
        can_upgrade,
        status: parts.status,
        response_headers: parts.headers,
        body,
    }
}

/// Serves `input`, the bytes a client sends, as one HTTP/1.1 connection through hyper
/// to the upgrade extractor, and returns every request that reached it with its answer.
pub fn serve_raw(input: &[u8]) -> Vec<Exchange> {
    let exchanges = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&exchanges);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let recorded = Arc::clone(&recorded);
        async move {
            let method = request.method().clone();
            let headers = request.headers().clone();
            let can_upgrade = request.extensions().get::<OnUpgrade>().is_some();
            let response = upgrade_router().oneshot(request).await?;
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, MAX_REFUSAL_BODY)
                .await
                .expect("a short body");
            recorded.lock().expect("not poisoned").push(Exchange {
                method,
                headers,
                can_upgrade,
                status: parts.status,
                response_headers: parts.headers.clone(),
                body: body.clone(),
            });
            Ok::<_, Infallible>(Response::from_parts(parts, Body::from(body)))
        }
    });
    let stream = MemoryStream {
        input: input.to_vec(),
        read: 0,
    };
    RUNTIME.block_on(async {
        let mut http = http1::Builder::new();
        // The client's end of the stream closes after its bytes: answer them first.
        http.half_close(true).header_read_timeout(None);
        // A connection that ends with an error (bad request line, say) is hyper's
        // answer; what matters is what reached the extractor.
        let _ = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
        // Let the task the 101 spawned see its upgrade, and end.
        tokio::task::yield_now().await;
    });
    Arc::try_unwrap(exchanges)
        .map(|exchanges| exchanges.into_inner().expect("not poisoned"))
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.lock().expect("not poisoned")))
}

/// Checks an answer against RFC 6455 §4.2: the status the request deserves, the
/// headers of a 101, a sentence with a refusal.
pub fn check(exchange: &Exchange) {
    let expected = expected_status(exchange);
    assert_eq!(
        exchange.status, expected,
        "{exchange:?} should be answered {expected}"
    );
    if exchange.status == StatusCode::SWITCHING_PROTOCOLS {
        let key = exchange
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .expect("accepted with a key");
        let response = &exchange.response_headers;
        assert_eq!(
            response
                .get(header::SEC_WEBSOCKET_ACCEPT)
                .map(HeaderValue::as_bytes),
            Some(accept_key(trim_whitespace(key.as_bytes())).as_bytes()),
        );
        assert!(has_token(response, &header::UPGRADE, "websocket"));
        assert!(has_token(response, &header::CONNECTION, "upgrade"));
    } else {
        assert!(
            !exchange.body.is_empty(),
            "a refusal says why: {exchange:?}"
        );
        assert!(std::str::from_utf8(&exchange.body).is_ok());
        assert!(
            exchange
                .response_headers
                .get(header::SEC_WEBSOCKET_ACCEPT)
                .is_none()
        );
    }
    let headers = &exchange.headers;
    let upgrade_attempt = exchange.method == Method::GET
        && has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket");
    if upgrade_attempt && !has_version_13(headers) {
        assert_eq!(
            exchange
                .response_headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .map(HeaderValue::as_bytes),
            Some(&b"13"[..]),
            "a refused version is answered with the one supported (§4.2.2)"
        );
    }
}

/// The status RFC 6455 §4.2.1 asks for: 405 for a method other than GET; 400 unless
/// `Connection` holds `upgrade`, `Upgrade` holds `websocket`, `Sec-WebSocket-Version`
/// holds `13` and there is exactly one `Sec-WebSocket-Key` that is the base64 of 16
/// bytes; 101 when all hold and the connection can be upgraded, 426 when it cannot.
fn expected_status(exchange: &Exchange) -> StatusCode {
    let headers = &exchange.headers;
    if exchange.method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    let keys: Vec<&HeaderValue> = headers.get_all(header::SEC_WEBSOCKET_KEY).iter().collect();
    let valid = has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket")
        && has_version_13(headers)
        && matches!(keys[..], [key] if is_base64_of_16_bytes(key.as_bytes()));
    match (valid, exchange.can_upgrade) {
        (false, _) => StatusCode::BAD_REQUEST,
        (true, true) => StatusCode::SWITCHING_PROTOCOLS,
        (true, false) => StatusCode::UPGRADE_REQUIRED,
    }
}

fn has_version_13(headers: &HeaderMap) -> bool {
    has_token(headers, &header::SEC_WEBSOCKET_VERSION, "13")
}

/// Whether a comma-separated header of any of the values of `name` holds `token`, in
/// any ASCII case, with optional whitespace (space, tab) around it (RFC 9110 §5.6.1).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.as_bytes().split(|&byte| byte == b',').any(|item| {
            let item = trim_whitespace(item);
            item.eq_ignore_ascii_case(token.as_bytes())
        })
    })
}

fn trim_whitespace(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Whether `key`, without surrounding whitespace, is base64 of 16 bytes (RFC 4648):
/// 24 characters, padding only at the end. Bits past the 16th byte in the last
/// character are not checked (Go's and Node's WebSocket servers do not check them
/// either).
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    static BASE64: LazyLock<data_encoding::Encoding> = LazyLock::new(|| {
        let mut specification = data_encoding::BASE64.specification();
        specification.check_trailing_bits = false;
        specification.encoding().expect("base64 with padding")
    });
    let key = trim_whitespace(key);
    // The decoder also takes padded blocks one after another ("b25=ZjQ="), which
    // RFC 4648 does not: the padding must end the text.
    let padding = key.iter().position(|&byte| byte == b'=');
    padding.is_none_or(|start| key[start..].iter().all(|&byte| byte == b'='))
        && BASE64.decode(key).is_ok_and(|decoded| decoded.len() == 16)
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2, step 5.4).
fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID.as_bytes());
    data_encoding::BASE64.encode(&sha1.digest().bytes())
}

/// A client's end of a connection in memory: its bytes in one read, then the end of
/// the stream; what the server writes is taken and dropped.
struct MemoryStream {
    input: Vec<u8>,
    read: usize,
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let rest = &this.input[this.read..];
        let len = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..len]);
        this.read += len;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_is_accepted_with_its_accept_value() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_base64_of_16_bytes(b"x"));
        assert!(is_base64_of_16_bytes(b" AAAAAAAAAAAAAAAAAAAAAB==\t"));
        assert!(!is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25=ZjQ="));
    }

    const VALID: &str = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn raw_requests_reach_the_extractor_through_hyper_and_a_valid_one_is_upgraded() {
        let refused = format!("GET / HTTP/1.1\r\nHost: a\r\n\r\n{VALID}");
        let exchanges = serve_raw(refused.as_bytes());
        let statuses: Vec<StatusCode> = exchanges.iter().map(|exchange| exchange.status).collect();
        assert_eq!(
            statuses,
            [StatusCode::BAD_REQUEST, StatusCode::SWITCHING_PROTOCOLS]
        );
        // hyper offers an upgrade only to a request that asks for one.
        assert!(!exchanges[0].can_upgrade && exchanges[1].can_upgrade);
        exchanges.iter().for_each(check);
        let accept = &exchanges[1].response_headers[header::SEC_WEBSOCKET_ACCEPT];
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_request_built_from_lines_is_checked_without_an_upgrade() {
        let lines = "GET\nUpgrade: websocket\nConnection:upgrade\n\
            Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version:13\nbad line";
        let exchange = exchange(request_from_lines(lines.as_bytes()));
        assert_eq!(exchange.headers.len(), 4);
        assert_eq!(exchange.status, StatusCode::UPGRADE_REQUIRED);
        check(&exchange);
    }

    #[test]
    #[should_panic(expected = "should be answered 400")]
    fn the_oracle_refuses_an_answer_the_rfc_does_not_allow() {
        let mut exchange = exchange(request_from_lines(b"GET\nUpgrade: websocket"));
        exchange.status = StatusCode::UPGRADE_REQUIRED;
        check(&exchange);
    }

    #[test]
    fn tokens_are_whole_items_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive,\tUpgrade "),
        );
        assert!(has_token(&headers, &header::CONNECTION, "upgrade"));
        assert!(!has_token(&headers, &header::CONNECTION, "alive"));
    }
}
