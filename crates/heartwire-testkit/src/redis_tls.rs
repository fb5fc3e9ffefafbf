//! A `redis-server` that speaks only TLS (`--port 0 --tls-port`), with a certificate
//! from a test CA, for the broker's `rediss://` tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::PATIENCE;
use super::certs::TestCa;
use super::redis_process::{free_port, wait_until};

/// A TLS-only `redis-server`, killed when dropped.
#[derive(Debug)]
pub struct TestRedisTls {
    /// Its TLS port on 127.0.0.1.
    pub port: u16,
    ca: std::path::PathBuf,
    child: Child,
}

impl TestRedisTls {
    /// Starts it with a certificate for `localhost` from `ca`, and waits until it
    /// answers PING over TLS.
    pub fn start(ca: &TestCa) -> Self {
        let pair = ca.localhost();
        let port = free_port(false);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&pair.cert)
            .arg("--tls-key-file")
            .arg(&pair.key)
            .arg("--tls-ca-cert-file")
            .arg(&ca.cert)
            .args(["--tls-auth-clients", "no"])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-server ({err}); run scripts/test, which installs it")
            });
        let redis = Self {
            port,
            ca: ca.cert.clone(),
            child,
        };
        wait_until("redis-server answers PING over TLS", PATIENCE, || {
            redis.cli(&["ping"]).trim() == "PONG"
        });
        redis
    }

    /// Its `rediss://` URL, by the name its certificate holds.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}/", self.port)
    }

    /// Runs `redis-cli --tls` against it (at most two seconds) and returns the output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("timeout")
            .arg(Duration::from_secs(2).as_secs().to_string())
            .args(["redis-cli", "--tls", "--cacert"])
            .arg(&self.ca)
            .args(["-h", "localhost", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-cli ({err}); run scripts/test, which installs it")
            });
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for TestRedisTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
