//! A real `redis-server` on a free loopback port, for the Redis broker's tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use heartwire_server::{RedisBroker, RedisConfig, ServerConfig};

use super::{PATIENCE, TestServer, wait_for_health};

/// A node with the Redis broker on `redis` (any topology), once its `/healthz`
/// says ok.
pub async fn node_on(redis: &RedisConfig, config: ServerConfig) -> TestServer {
    let broker =
        RedisBroker::start(redis, config.retention, config.holdings).expect("broker starts");
    let server = TestServer::start_with_broker(config, Arc::new(broker)).await;
    wait_for_health(&server, "ok").await;
    server
}

/// A node with the Redis broker (names under `prefix`), once its `/healthz` says ok.
pub async fn node_with_prefix(redis: &TestRedis, config: ServerConfig, prefix: &str) -> TestServer {
    let redis_config = RedisConfig::single(redis.url()).with_prefix(prefix);
    let broker = RedisBroker::start(&redis_config, config.retention, config.holdings)
        .expect("broker starts");
    let server = TestServer::start_with_broker(config, Arc::new(broker)).await;
    wait_for_health(&server, "ok").await;
    server
}

/// A node with the Redis broker on a runtime of its own, so that the test can kill
/// it abruptly: its tasks stop without closing anything or telling Redis.
#[derive(Debug)]
pub struct IsolatedNode {
    /// Where the node listens.
    pub addr: std::net::SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl IsolatedNode {
    /// Starts a node on `redis` with `config` (its `listen` replaced by a free port).
    pub async fn start(redis: &TestRedis, config: ServerConfig) -> Self {
        let url = redis.url();
        let (runtime, addr) = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let addr = runtime.block_on(async move {
                let config = ServerConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    ..config
                };
                let redis_config = RedisConfig::single(url);
                let broker =
                    RedisBroker::start(&redis_config, config.retention, config.holdings).unwrap();
                let server = heartwire_server::Server::bind_with_broker(config, Arc::new(broker))
                    .await
                    .unwrap();
                let addr = server.local_addr();
                tokio::spawn(server.run(std::future::pending()));
                addr
            });
            (runtime, addr)
        })
        .await
        .unwrap();
        Self {
            addr,
            runtime: Some(runtime),
        }
    }

    /// The `ws://` URL of `path` on this node.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops the node at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for IsolatedNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node with the Redis broker and no prefix, once its `/healthz` says ok.
pub async fn node(redis: &TestRedis, config: ServerConfig) -> TestServer {
    node_with_prefix(redis, config, "").await
}

/// A `redis-server` started by the test, killed when dropped.
#[derive(Debug)]
pub struct TestRedis {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts `redis-server` without persistence on a free port and waits until it
    /// answers PING. Fails when the binary is missing: `scripts/test` installs it.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut redis = Self { port, child: None };
        redis.launch();
        redis
    }

    /// The `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-server ({err}); run scripts/test, which installs it")
            });
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while self.cli(&["ping"]).trim() != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its data is gone: there is no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (such as `STOP` or `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Starts a new, empty server on the same port after [`kill`](Self::kill).
    pub fn relaunch(&mut self) {
        self.launch();
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-cli ({err}); run scripts/test, which installs it")
            });
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until `channel` has `count` subscribers in Redis (PUBSUB NUMSUB).
    pub fn wait_for_subscribers(&self, channel: &str, count: u32) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let output = self.cli(&["PUBSUB", "NUMSUB", channel]);
            let now = output
                .lines()
                .nth(1)
                .and_then(|n| n.trim().parse::<u32>().ok());
            if now == Some(count) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{channel} has {now:?} subscribers, wanted {count}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `redis-cli` with `args`, its output piped, for commands that stream.
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli runs")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
