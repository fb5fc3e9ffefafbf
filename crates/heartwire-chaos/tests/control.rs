//! The control API over real HTTP (hyper's client on loopback): `GET /fault` shows the
//! fault in force, `POST /fault` switches the proxy's connections at once, bad bodies
//! get 400 with a sentence and change nothing, `GET /connections` lists what is open,
//! unknown paths get 404.

use std::net::SocketAddr;
use std::time::Duration;

use heartwire_chaos::{Fault, Proxy, control};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PATIENCE: Duration = Duration::from_secs(10);

/// A proxy in front of a listener of the test, and its control API.
struct Rig {
    proxy: Proxy,
    upstream: TcpListener,
    control: SocketAddr,
}

impl Rig {
    async fn start() -> Self {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = upstream.local_addr().unwrap().to_string();
        let proxy = Proxy::bind("127.0.0.1:0".parse().unwrap(), target)
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control = listener.local_addr().unwrap();
        tokio::spawn(control::serve(
            listener,
            proxy.handle(),
            std::future::pending(),
        ));
        Self {
            proxy,
            upstream,
            control,
        }
    }

    async fn request(&self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let stream = TcpStream::connect(self.control).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.control.to_string())
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
            .await
            .expect("the control API answers")
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn fault(&self) -> Value {
        let (status, body) = self.request(Method::GET, "/fault", "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

#[tokio::test]
async fn post_switches_the_fault_and_get_shows_it() {
    let rig = Rig::start().await;
    assert_eq!(rig.fault().await, json!({"kind": "none"}));

    let (status, body) = rig
        .request(
            Method::POST,
            "/fault",
            r#"{"kind":"latency","ms":200,"jitter_ms":50}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let shown = json!({"kind": "latency", "ms": 200, "jitter_ms": 50, "direction": "both"});
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), shown);
    assert_eq!(rig.fault().await, shown);
    assert_eq!(
        rig.proxy.fault(),
        Fault::Latency {
            ms: 200,
            jitter_ms: 50,
            direction: heartwire_chaos::Direction::Both
        }
    );

    for body in [
        r#"{"kind":"blackhole","direction":"down"}"#,
        r#"{"kind":"bandwidth","bytes_per_sec":1024}"#,
        r#"{"kind":"reset"}"#,
        r#"{"kind":"idle-cut","after_ms":60000}"#,
        r#"{"kind":"none"}"#,
    ] {
        let (status, answer) = rig.request(Method::POST, "/fault", body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        let sent: Value = serde_json::from_str(body).unwrap();
        assert_eq!(rig.fault().await["kind"], sent["kind"]);
    }
}

#[tokio::test]
async fn a_bad_body_gets_400_with_a_sentence_and_changes_nothing() {
    let rig = Rig::start().await;
    let before = r#"{"kind":"blackhole","direction":"up"}"#;
    assert_eq!(
        rig.request(Method::POST, "/fault", before).await.0,
        StatusCode::OK
    );
    for (body, why) in [
        ("{", "EOF while parsing"),
        ("kind=reset", "expected value"),
        (r#"{"kind":"earthquake"}"#, "unknown variant `earthquake`"),
        (r#"{"kind":"latency","ms":"slow"}"#, "invalid type"),
        (r#"{"kind":"none","ms":1}"#, "unknown field `ms`"),
        (r#"{"kind":"bandwidth","bytes_per_sec":0}"#, "at least 1"),
    ] {
        let (status, answer) = rig.request(Method::POST, "/fault", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer.starts_with("the fault is not valid: ") && answer.contains(why),
            "{body}: {answer}"
        );
        assert_eq!(
            rig.fault().await,
            json!({"kind": "blackhole", "direction": "up"})
        );
    }
}

#[tokio::test]
async fn a_switch_over_http_reaches_open_connections() {
    let rig = Rig::start().await;
    let mut client = TcpStream::connect(rig.proxy.local_addr()).await.unwrap();
    let (mut server, _) = rig.upstream.accept().await.unwrap();
    client.write_all(b"hi").await.unwrap();
    let mut hi = [0; 2];
    server.read_exact(&mut hi).await.unwrap();

    let (status, body) = rig.request(Method::GET, "/connections", "").await;
    assert_eq!(status, StatusCode::OK);
    let connections: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(connections.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(connections[0]["up"]["forwarded"], 2, "{body}");
    assert_eq!(
        connections[0]["peer"],
        client.local_addr().unwrap().to_string()
    );

    let (status, _) = rig
        .request(Method::POST, "/fault", r#"{"kind":"reset"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut byte = [0; 1];
    let read = tokio::time::timeout(PATIENCE, client.read(&mut byte))
        .await
        .expect("the reset arrives");
    assert_eq!(
        read.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let rig = Rig::start().await;
    let (status, body) = rig.request(Method::GET, "/faults", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("GET /fault, POST /fault"), "{body}");
    let (status, _) = rig.request(Method::DELETE, "/fault", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
