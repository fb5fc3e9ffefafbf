//! The files the server hands to browsers: the demo page and `/heartwire.js`, which pages of
//! other origins may import (CORS), while nothing else is shared across origins.

use heartwire_server::ServerConfig;
use heartwire_testkit::*;

/// The response's header `name` (case-insensitive), when present.
fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = response.split_once("\r\n\r\n")?;
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn get_from(path: &str, origin: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: test\r\nOrigin: {origin}\r\n\r\n")
}

#[tokio::test]
async fn heartwire_js_may_be_imported_from_any_origin() {
    let server = TestServer::start(ServerConfig::default()).await;
    let response = http_request(
        server.addr,
        &get_from("/heartwire.js", "https://app.example"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response:.200}");
    assert_eq!(
        header(&response, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert!(response.contains("export class Heartwire"));
}

#[tokio::test]
async fn nothing_else_is_shared_across_origins() {
    let server = TestServer::start(ServerConfig::default()).await;
    for path in ["/", "/healthz", "/metrics"] {
        let response = http_request(server.addr, &get_from(path, "https://app.example")).await;
        assert!(
            response.starts_with("HTTP/1.0 200"),
            "{path}: {response:.200}"
        );
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            None,
            "{path} must not be readable by other origins"
        );
    }
}
