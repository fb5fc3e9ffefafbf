//! A real `redis-server` on a free loopback port, for the Redis broker's tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// A `redis-server` started by the test, killed when dropped.
pub struct TestRedis {
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

    /// Kills the server and starts a new, empty one on the same port.
    pub fn restart(&mut self) {
        self.kill();
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
