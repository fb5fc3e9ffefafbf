//! The server API over real sockets, called with `reqwest`: the key (none, wrong,
//! right), bodies too large or malformed, publish and broadcast reaching native and
//! django-websocket-redis sockets, publish ids deduplicated, history, presence,
//! channels and info, on one node and on two nodes sharing a real `redis-server`;
//! sessions and users unsubscribed and disconnected on every node (users' tokens
//! minted by PyJWT).

use std::time::Duration;

use heartwire_core::protocol::ServerFrame;
use heartwire_server::{Access, ApiAccess, ChannelRule, Limits, Secret, ServerConfig};
use heartwire_testkit::redis::{TestRedis, node};
use heartwire_testkit::tokens::{Spec, TokenKit};
use heartwire_testkit::{
    PATIENCE, Socket, TestServer, connect, connect_native, expect_close, http_get, http_request,
    next_frame, next_text, subscribe,
};
use serde_json::{Value, json};

const KEY: &str = "api-key-of-the-tests-0123456789";
const JWT_SECRET: &str = "api-test-jwt-secret";

fn config() -> ServerConfig {
    #[derive(serde::Deserialize)]
    struct File {
        channels: Vec<ChannelRule>,
    }
    let rules = r#"
[[channels]]
pattern = "news:*"
subscribe = "anyone"
publish = "server"

[[channels]]
pattern = "*"
subscribe = "anyone"
publish = "anyone"
presence = "anyone"
"#;
    ServerConfig {
        api: ApiAccess {
            api_key: Some(Secret::from(KEY)),
            api_key_file: None,
        },
        channels: toml::from_str::<File>(rules).unwrap().channels,
        presence: vec!["room:*".into()],
        access: Access {
            jwt_secret: Some(JWT_SECRET.into()),
            allow_anonymous: Some(true),
            ..Access::default()
        },
        ..ServerConfig::default()
    }
}

/// Connects to `/ws` of `server` as the user of `token`; returns the socket and its
/// session.
async fn connect_as(server: &TestServer, token: &str) -> (Socket, String) {
    let mut socket = connect(&server.url(&format!("/ws?token={token}"))).await;
    match next_frame(&mut socket).await {
        ServerFrame::Hello {
            session,
            user: Some(_),
            ..
        } => (socket, session),
        other => panic!("expected an identified hello, got {other:?}"),
    }
}

/// Reads frames until a message of `channel`; returns its data.
async fn message_on(socket: &mut Socket, channel: &str) -> Value {
    match next_frame(socket).await {
        ServerFrame::Message {
            channel: got, data, ..
        } if got == channel => data,
        other => panic!("expected a message on {channel}, got {other:?}"),
    }
}

/// An API client of one server, with a key (or none).
struct Api {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    fn new(addr: std::net::SocketAddr, key: Option<&str>) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: format!("http://{addr}"),
            key: key.map(str::to_owned),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let request = match &self.key {
            Some(key) => request.header("X-API-Key", key),
            None => request,
        };
        let response = tokio::time::timeout(PATIENCE, request.send())
            .await
            .expect("an answer in time")
            .expect("an HTTP answer");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{status} {text}"
        );
        (status, serde_json::from_str(&text).expect("a JSON body"))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    async fn publish(&self, body: Value) -> Value {
        let (status, answer) = self.post("/api/publish", body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Waits until `channel` has `count` subscribers on this node.
    async fn wait_for_subscribers(&self, channel: &str, count: u64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, answer) = self.get(&format!("/api/channels?pattern={channel}")).await;
            let found = answer["channels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["channel"] == channel)
                .map_or(0, |entry| entry["subscribers"].as_u64().unwrap());
            if found >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel} has {found} subscribers, wanted {count}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn error_code(answer: &Value) -> &str {
    answer["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error: {answer}"))
}

#[tokio::test]
async fn without_a_key_the_api_is_off() {
    let server = TestServer::start(ServerConfig::default()).await;
    let api = Api::new(server.addr, Some(KEY));
    let (status, answer) = api.get("/api/info").await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&answer), "not_found");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--api-key")
    );
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused_and_the_key_is_never_shown() {
    let server = TestServer::start(config()).await;
    let close = format!("{}x", &KEY[..KEY.len() - 1]);
    for key in [None, Some(""), Some(close.as_str()), Some(&KEY[..10])] {
        let api = Api::new(server.addr, key);
        for (status, answer) in [
            api.get("/api/info").await,
            api.post("/api/publish", r#"{"channel":"a","data":1}"#)
                .await,
            api.get("/api/nothing-here").await,
        ] {
            assert_eq!(status, 401, "{key:?}: {answer}");
            assert_eq!(error_code(&answer), "unauthorized");
        }
    }
    assert!(server.metric("heartwire_api_refused_total").await >= 12.0);
    let right = Api::new(server.addr, Some(KEY));
    assert_eq!(right.get("/api/info").await.0, 200);
    let (status, answer) = right.get("/api/nothing-here").await;
    assert_eq!((status, error_code(&answer)), (404, "not_found"));
    for path in ["/metrics", "/healthz"] {
        assert!(!http_get(server.addr, path).await.contains(KEY), "{path}");
    }
}

#[tokio::test]
async fn guessing_the_key_is_slowed_per_address_before_the_key_is_compared() {
    let server = TestServer::start(config()).await;
    let base = format!("http://{}", server.addr);
    let from = |last: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let guesser = from(1);
    let call = |client: &reqwest::Client, key: &str| {
        client
            .get(format!("{base}/api/info"))
            .header("X-API-Key", key)
            .send()
    };
    // Thirty wrong keys sent at once: ten are answered as wrong, the others refused
    // (eleven if the test took longer than the 6 s that give one more guess).
    let keys: Vec<String> = (0..30)
        .map(|n| format!("guess-{n}-of-the-api-key"))
        .collect();
    let answers = futures_util::future::join_all(keys.iter().map(|key| call(&guesser, key))).await;
    let statuses: Vec<u16> = answers
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let wrong = statuses.iter().filter(|&&status| status == 401).count();
    let refused = statuses.iter().filter(|&&status| status == 429).count();
    assert!(
        (10..=11).contains(&wrong) && wrong + refused == 30,
        "{statuses:?}"
    );
    // The next is refused before it is compared: the right key too, and at the admin login.
    for key in ["one-more-guess-of-the-key", KEY] {
        let response = call(&guesser, key).await.unwrap();
        assert_eq!(response.status(), 429, "{key}");
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=6).contains(&retry), "Retry-After {retry}");
        let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(error_code(&answer), "too_many_wrong_keys");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("try again in")
        );
    }
    let login = guesser
        .post(format!("{base}/admin/login"))
        .form(&[("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
    assert!(login.headers().get("set-cookie").is_none());
    assert!(login.text().await.unwrap().contains("Too many wrong keys"));
    // Another address is not touched.
    assert_eq!(call(&from(2), KEY).await.unwrap().status(), 200);
}

#[tokio::test]
async fn bodies_too_large_or_malformed_are_refused_with_a_sentence() {
    let server = TestServer::start(ServerConfig {
        limits: Limits {
            max_message_size: 1024,
            ..Limits::default()
        },
        ..config()
    })
    .await;
    let api = Api::new(server.addr, Some(KEY));
    let big = json!({"channel": "a", "data": "x".repeat(2000)}).to_string();
    let (status, answer) = api.post("/api/publish", big).await;
    assert_eq!(
        (status, error_code(&answer)),
        (413, "too_large"),
        "{answer}"
    );
    // Chunked, without a Content-Length, it is cut at the limit all the same.
    let chunk = "y".repeat(1500);
    let request = format!(
        "POST /api/publish HTTP/1.1\r\nHost: test\r\nX-API-Key: {KEY}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let response = http_request(server.addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains(r#""code":"too_large""#), "{response}");

    for (body, needle) in [
        ("{not json", "not the JSON expected"),
        (r#"{"data":1}"#, "missing field `channel`"),
        (
            r#"{"channel":"a","data":1,"extra":2}"#,
            "unknown field `extra`",
        ),
        (
            r#"{"channel":"no spaces","data":1}"#,
            "invalid channel name",
        ),
        (r#"{"channel":"a","data":1,"id":""}"#, "id must be"),
    ] {
        let (status, answer) = api.post("/api/publish", body).await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "bad_request"),
            "{body}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, answer) = api.get("/api/history?channel=a&limit=many").await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "bad_request"),
        "{answer}"
    );
    let (status, answer) = api.get("/api/presence").await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "bad_request"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_publish_reaches_native_and_ws4redis_sockets_as_the_server() {
    let server = TestServer::start(config()).await;
    let api = Api::new(server.addr, Some(KEY));
    let (mut native, _) = connect_native(&server).await;
    subscribe(&mut native, "broadcast:chat").await;
    let mut django = connect(&server.url("/ws/chat?subscribe-broadcast")).await;
    api.wait_for_subscribers("broadcast:chat", 2).await;

    let answer = api
        .publish(json!({"channel": "broadcast:chat", "data": "hello"}))
        .await;
    assert_eq!(answer["seq"], 1);
    assert!(
        answer["epoch"]
            .as_str()
            .is_some_and(|epoch| !epoch.is_empty())
    );
    assert!(answer.get("duplicate").is_none(), "{answer}");
    // The raw text, as a Redis publish reaches django-websocket-redis sockets.
    assert_eq!(next_text(&mut django).await, "hello");
    match next_frame(&mut native).await {
        ServerFrame::Message { channel, seq, data } => {
            assert_eq!((channel.as_str(), seq), ("broadcast:chat", 1));
            assert_eq!(data, json!("hello"));
        }
        other => panic!("expected the message, got {other:?}"),
    }
    // A JSON object reaches the raw socket as its JSON text.
    api.publish(json!({"channel": "broadcast:chat", "data": {"n": 2}}))
        .await;
    assert_eq!(next_text(&mut django).await, r#"{"n":2}"#);
    // A late django-websocket-redis joiner gets the facility's last message first.
    let mut late = connect(&server.url("/ws/chat?subscribe-broadcast")).await;
    assert_eq!(next_text(&mut late).await, r#"{"n":2}"#);

    // Channels only the server publishes on take the API's messages.
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "news:today").await;
    let answer = api
        .publish(json!({"channel": "news:today", "data": {"headline": "API"}}))
        .await;
    assert_eq!(answer["seq"], 1);
    match next_frame(&mut reader).await {
        ServerFrame::Message { data, .. } => assert_eq!(data, json!({"headline": "API"})),
        other => panic!("expected the message, got {other:?}"),
    }
}

#[tokio::test]
async fn an_id_seen_within_the_dedup_window_is_published_once() {
    let server = TestServer::start(config()).await;
    let api = Api::new(server.addr, Some(KEY));
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "orders").await;
    api.publish(json!({"channel": "orders", "data": 0})).await;
    let first = api
        .publish(json!({"channel": "orders", "data": 1, "id": "order-1"}))
        .await;
    let again = api
        .publish(json!({"channel": "orders", "data": 1, "id": "order-1"}))
        .await;
    assert_eq!(first["seq"], 2);
    assert_eq!(again["seq"], 2);
    assert_eq!(again["epoch"], first["epoch"]);
    assert_eq!(again["duplicate"], true);
    let after = api.publish(json!({"channel": "orders", "data": 3})).await;
    assert_eq!(after["seq"], 3, "the duplicate took no seq");
    let seqs: Vec<u64> = [
        next_frame(&mut reader).await,
        next_frame(&mut reader).await,
        next_frame(&mut reader).await,
    ]
    .into_iter()
    .map(|frame| match frame {
        ServerFrame::Message { seq, .. } => seq,
        other => panic!("expected a message, got {other:?}"),
    })
    .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[tokio::test]
async fn broadcast_answers_each_channel() {
    let server = TestServer::start(config()).await;
    let api = Api::new(server.addr, Some(KEY));
    let (mut reader, _) = connect_native(&server).await;
    subscribe(&mut reader, "b").await;
    let (status, answer) = api
        .post(
            "/api/broadcast",
            json!({"channels": ["a", "b", "bad name"], "data": {"x": 1}}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["channel"], "a");
    assert_eq!(results[0]["seq"], 1);
    assert_eq!(results[1]["seq"], 1);
    assert_eq!(results[2]["error"]["code"], "bad_request");
    match next_frame(&mut reader).await {
        ServerFrame::Message { channel, data, .. } => {
            assert_eq!((channel.as_str(), data), ("b", json!({"x": 1})));
        }
        other => panic!("expected the message, got {other:?}"),
    }
    let (status, answer) = api
        .post(
            "/api/broadcast",
            json!({"channels": [], "data": 1}).to_string(),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (400, "bad_request"));
}

#[tokio::test]
async fn history_presence_channels_and_info() {
    let server = TestServer::start(config()).await;
    let api = Api::new(server.addr, Some(KEY));
    for n in 1..=5 {
        api.publish(json!({"channel": "log", "data": {"n": n}}))
            .await;
    }
    let (status, all) = api.get("/api/history?channel=log").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["seq"], 5);
    assert_eq!(all["recovered"], true);
    let seqs = |answer: &Value| -> Vec<u64> {
        answer["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kept| kept["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all["publications"][0]["data"], json!({"n": 1}));
    let epoch = all["epoch"].as_str().unwrap();
    let (_, since) = api
        .get(&format!("/api/history?channel=log&since=3&epoch={epoch}"))
        .await;
    assert_eq!(seqs(&since), [4, 5]);
    let (_, newest) = api
        .get("/api/history?channel=log&reverse=true&limit=2")
        .await;
    assert_eq!(seqs(&newest), [5, 4]);
    let (_, other) = api
        .get("/api/history?channel=log&since=1&epoch=elsewhere")
        .await;
    assert_eq!(other["recovered"], false);
    assert_eq!(seqs(&other), Vec::<u64>::new());
    let (_, empty) = api.get("/api/history?channel=never-used").await;
    assert_eq!((empty["seq"].as_u64(), seqs(&empty).len()), (Some(0), 0));

    let (mut member, session) = connect_native(&server).await;
    subscribe(&mut member, "room:1").await;
    let (status, presence) = api.get("/api/presence?channel=room:1").await;
    assert_eq!(status, 200, "{presence}");
    assert_eq!(
        presence["members"],
        json!([{"session": session, "user": null}])
    );
    let (status, answer) = api.get("/api/presence?channel=log").await;
    assert_eq!((status, error_code(&answer)), (404, "not_found"));
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--presence")
    );

    let (mut other_reader, _) = connect_native(&server).await;
    subscribe(&mut other_reader, "room:1").await;
    subscribe(&mut other_reader, "room:2").await;
    let (_, channels) = api.get("/api/channels?pattern=room:*").await;
    assert_eq!(
        channels["channels"],
        json!([
            {"channel": "room:1", "subscribers": 2},
            {"channel": "room:2", "subscribers": 1},
        ])
    );

    let (status, info) = api.get("/api/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["connections"], 2);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["broker"]["name"], "memory");
    assert_eq!(info["broker"]["up"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_nodes_a_publish_on_one_reaches_the_other_and_django() {
    let redis = TestRedis::start();
    let (first, second) = (node(&redis, config()).await, node(&redis, config()).await);
    let (api_first, api_second) = (
        Api::new(first.addr, Some(KEY)),
        Api::new(second.addr, Some(KEY)),
    );
    let (mut reader, _) = connect_native(&second).await;
    subscribe(&mut reader, "room:9").await;
    let mut django = connect(&second.url("/ws/alerts?subscribe-broadcast")).await;
    api_second.wait_for_subscribers("broadcast:alerts", 1).await;
    redis.wait_for_subscribers("broadcast:alerts", 1);
    let mut raw = redis.spawn_cli(&["SUBSCRIBE", "broadcast:alerts"]);

    let answer = api_first
        .publish(json!({"channel": "room:9", "data": "across", "id": "x1"}))
        .await;
    assert_eq!(answer["seq"], 1);
    match next_frame(&mut reader).await {
        ServerFrame::Message { seq, data, .. } => assert_eq!((seq, data), (1, json!("across"))),
        other => panic!("expected the message, got {other:?}"),
    }
    // The id is known on every node.
    let again = api_second
        .publish(json!({"channel": "room:9", "data": "across", "id": "x1"}))
        .await;
    assert_eq!(
        (again["seq"].clone(), again["duplicate"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(again["epoch"], answer["epoch"]);
    let (_, history) = api_second.get("/api/history?channel=room:9").await;
    assert_eq!(
        history["publications"],
        json!([{"seq": 1, "data": "across"}])
    );
    // Members reach the other node's view through Redis, soon after the subscribe.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, presence) = api_first.get("/api/presence?channel=room:9").await;
        if presence["members"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{presence}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    redis.wait_for_subscribers("broadcast:alerts", 2);
    api_first
        .publish(json!({"channel": "broadcast:alerts", "data": "fire drill"}))
        .await;
    assert_eq!(next_text(&mut django).await, "fire drill");
    // A Django process subscribed in Redis reads the same raw text.
    let output = read_lines(&mut raw, 6);
    raw.kill().unwrap();
    let _ = raw.wait();
    assert!(output.iter().any(|line| line == "fire drill"), "{output:?}");
    // Each node reports itself to the others.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, info) = api_first.get("/api/info").await;
        assert_eq!(info["broker"]["name"], "redis");
        let nodes = info["nodes"].as_array().unwrap();
        if nodes.len() == 2 {
            let (_, other) = api_second.get("/api/info").await;
            assert!(
                nodes.iter().any(|node| node["node"] == other["node"]),
                "{info}"
            );
            assert!(
                nodes.iter().all(|node| node["broker"]["up"] == true),
                "{info}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `count` lines of a child's output, failing after [`PATIENCE`].
fn read_lines(child: &mut std::process::Child, count: usize) -> Vec<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("a piped stdout");
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().take(count) {
            if lines.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    (0..count)
        .map_while(|_| read.recv_timeout(PATIENCE).ok())
        .collect()
}

#[tokio::test]
async fn a_session_is_unsubscribed_or_disconnected_with_the_code_given() {
    let server = TestServer::start(config()).await;
    let api = Api::new(server.addr, Some(KEY));
    let (mut socket, session) = connect_native(&server).await;
    subscribe(&mut socket, "room:a").await;
    subscribe(&mut socket, "room:b").await;

    let (status, answer) = api
        .post(
            "/api/unsubscribe",
            json!({"session": session, "channel": "room:a"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    match next_frame(&mut socket).await {
        ServerFrame::Unsubscribed { channel } => assert_eq!(channel, "room:a"),
        other => panic!("expected unsubscribed, got {other:?}"),
    }
    api.publish(json!({"channel": "room:a", "data": "gone"}))
        .await;
    api.publish(json!({"channel": "room:b", "data": "kept"}))
        .await;
    assert_eq!(message_on(&mut socket, "room:b").await, json!("kept"));

    for (body, needle) in [
        (json!({"code": 4403}), "either a user or a session"),
        (
            json!({"user": "ada", "session": session}),
            "either a user or a session",
        ),
        (json!({"session": "not-a-session"}), "not a session id"),
        (json!({"session": session, "code": 3000}), "code must be"),
        (
            json!({"session": session, "reason": "x".repeat(124)}),
            "at most 123 bytes",
        ),
    ] {
        let (status, answer) = api.post("/api/disconnect", body.to_string()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{answer}"
        );
    }
    let reason = "server restarting; retry after 250 ms";
    let (status, _) = api
        .post(
            "/api/disconnect",
            json!({"session": session, "code": 1012, "reason": reason}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(expect_close(&mut socket).await, (1012, reason.to_owned()));
    server
        .wait_for_metric(
            r#"heartwire_disconnects_total{reason="server_disconnect"}"#,
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_unsubscribed_and_disconnected_on_every_node() {
    let tokens = TokenKit::new()
        .await
        .mint(&[
            Spec::secret("HS256", JWT_SECRET, json!({"sub": "ada"})),
            Spec::secret("HS256", JWT_SECRET, json!({"sub": "bob"})),
        ])
        .await;
    let redis = TestRedis::start();
    let (first, second) = (node(&redis, config()).await, node(&redis, config()).await);
    let api = Api::new(first.addr, Some(KEY));
    let (mut ada_here, _) = connect_as(&first, &tokens[0]).await;
    let (mut ada_there, _) = connect_as(&second, &tokens[0]).await;
    let (mut bob, _) = connect_as(&second, &tokens[1]).await;
    for socket in [&mut ada_here, &mut ada_there, &mut bob] {
        subscribe(socket, "feed:1").await;
        subscribe(socket, "feed:2").await;
    }

    let (status, answer) = api
        .post(
            "/api/unsubscribe",
            json!({"user": "ada", "channel": "feed:1"}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    for socket in [&mut ada_here, &mut ada_there] {
        match next_frame(socket).await {
            ServerFrame::Unsubscribed { channel } => assert_eq!(channel, "feed:1"),
            other => panic!("expected unsubscribed, got {other:?}"),
        }
    }
    api.publish(json!({"channel": "feed:1", "data": "for bob"}))
        .await;
    api.publish(json!({"channel": "feed:2", "data": "for all"}))
        .await;
    assert_eq!(message_on(&mut bob, "feed:1").await, json!("for bob"));
    assert_eq!(message_on(&mut bob, "feed:2").await, json!("for all"));
    for socket in [&mut ada_here, &mut ada_there] {
        assert_eq!(message_on(socket, "feed:2").await, json!("for all"));
    }

    let (status, _) = api
        .post(
            "/api/disconnect",
            json!({"user": "ada", "reason": "account closed"}).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    for socket in [&mut ada_here, &mut ada_there] {
        assert_eq!(
            expect_close(socket).await,
            (4403, "account closed".to_owned())
        );
    }
    // Others stay connected.
    api.publish(json!({"channel": "feed:2", "data": "still here"}))
        .await;
    assert_eq!(message_on(&mut bob, "feed:2").await, json!("still here"));
    let (_, info) = Api::new(second.addr, Some(KEY)).get("/api/info").await;
    assert_eq!(info["connections"], 1, "{info}");
}

#[tokio::test]
async fn the_admin_login_sets_a_strict_http_only_cookie_that_only_the_admin_page_may_use() {
    let off = TestServer::start(ServerConfig::default()).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{}/admin", off.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let server = TestServer::start(config()).await;
    let base = format!("http://{}", server.addr);
    let page = client.get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text().await.unwrap().contains(r#"name="key""#),
        "the login form"
    );

    let wrong = client
        .post(format!("{base}/admin/login"))
        .form(&[("key", "not-the-key-at-all")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let login = client
        .post(format!("{base}/admin/login"))
        .form(&[("key", KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    let call = |with_header: bool| {
        let request = client
            .get(format!("{base}/api/info"))
            .header("cookie", &pair);
        let request = if with_header {
            request.header("x-heartwire-admin", "1")
        } else {
            request
        };
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(call(false).await, 401, "the cookie alone opens nothing");
    assert_eq!(call(true).await, 200);
    let dashboard = client
        .get(format!("{base}/admin"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert!(dashboard.text().await.unwrap().contains("Busiest channels"));

    let logout = client
        .post(format!("{base}/admin/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert!(
        logout.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(call(true).await, 401, "the login is over");
}

/// Reads `response`'s event stream until its text holds `needle`; returns all read.
async fn read_until(response: &mut reqwest::Response, needle: &str, read: &mut String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !read.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in time; read {read:?}"))
            .expect("the stream reads");
        let chunk = chunk.unwrap_or_else(|| panic!("the stream ended before {needle:?}: {read:?}"));
        read.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn an_event_stream_of_a_user_is_unsubscribed_and_disconnected_too() {
    let tokens = TokenKit::new()
        .await
        .mint(&[Spec::secret("HS256", JWT_SECRET, json!({"sub": "cy"}))])
        .await;
    let server = TestServer::start(config()).await;
    let api = Api::new(server.addr, Some(KEY));
    let mut stream = reqwest::get(format!(
        "http://{}/sse?channel=feed:s&token={}",
        server.addr, tokens[0]
    ))
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    let mut read = String::new();
    read_until(&mut stream, "event: subscribed", &mut read).await;

    let body = json!({"user": "cy", "channel": "feed:s"}).to_string();
    assert_eq!(api.post("/api/unsubscribe", body).await.0, 200);
    read_until(&mut stream, "event: unsubscribed", &mut read).await;

    let body = json!({"user": "cy", "reason": "bye"}).to_string();
    assert_eq!(api.post("/api/disconnect", body).await.0, 200);
    read_until(&mut stream, "event: disconnected", &mut read).await;
    read_until(&mut stream, r#""reason":"bye""#, &mut read).await;
    assert!(read.contains(r#""code":4403"#), "{read}");
    let end = tokio::time::timeout(PATIENCE, stream.chunk())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "the stream ends: {end:?}");
}
