//! Three `heartwire serve` processes sharing one `redis-server`, each told about
//! Redis in another way (flag, environment, config file): a message published on one
//! reaches the subscribers of the other two.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::{PATIENCE, Running, heartwire};

/// A process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run redis-cli ({err}); run scripts/test"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn start_redis() -> (Process, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run redis-server ({err}); run scripts/test"));
    let redis = Process(child);
    let deadline = Instant::now() + PATIENCE;
    while redis_cli(port, &["ping"]).trim() != "PONG" {
        assert!(
            Instant::now() < deadline,
            "redis-server did not answer in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (redis, port)
}

fn heartwire_serve() -> Command {
    let mut command = heartwire();
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    command
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Waits until the node's `/healthz` reports `"status":"ok"` (its broker reached Redis).
async fn wait_until_ok(addr: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
            .await
            .expect("/healthz answers in time")
            .unwrap();
        if response.contains(r#""status":"ok""#) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} not ok in time: {response}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn three_processes_share_a_facility_through_redis() {
    let (_redis, port) = start_redis();
    let url = format!("redis://127.0.0.1:{port}/");

    let mut by_flag = heartwire_serve();
    by_flag.args(["--redis", &url]);
    let first = Running::start(by_flag);

    let mut by_env = heartwire_serve();
    by_env.env("HEARTWIRE_REDIS", &url);
    let second = Running::start(by_env);

    let dir = std::env::temp_dir().join(format!("heartwire-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("heartwire.toml");
    std::fs::write(&file, format!("redis = \"{url}\"\n")).unwrap();
    let mut by_file = heartwire_serve();
    by_file.arg("--config").arg(&file);
    let third = Running::start(by_file);

    let mut readers = Vec::new();
    for addr in [&second.addr, &third.addr] {
        let url = format!("ws://{addr}/ws/chat?subscribe-broadcast");
        readers.push(tokio_tungstenite::connect_async(url).await.unwrap().0);
    }
    let deadline = Instant::now() + PATIENCE;
    while redis_cli(port, &["PUBSUB", "NUMSUB", "broadcast:chat"])
        .lines()
        .nth(1)
        != Some("2")
    {
        assert!(
            Instant::now() < deadline,
            "the two nodes did not subscribe in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until_ok(&first.addr).await;
    let url = format!("ws://{}/ws/chat?publish-broadcast", first.addr);
    let (mut writer, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    writer
        .send(Message::text("across processes"))
        .await
        .unwrap();
    for reader in &mut readers {
        assert_eq!(next_text(reader).await, "across processes");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
