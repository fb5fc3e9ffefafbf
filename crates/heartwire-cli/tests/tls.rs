//! `heartwire serve` and `heartwire connect` over TLS, as processes: a bad pair stops
//! the start with one sentence, SIGHUP loads a new pair (a bad one is logged and the
//! old one kept) while connections stay open, `connect --ca` names the check a
//! certificate failed, and a Redis whose certificate is not trusted is logged.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{PATIENCE, heartwire};
use heartwire_testkit::certs::{CertPair, TestCa, tls_connect};
use heartwire_testkit::redis_tls::TestRedisTls;

/// `heartwire serve` with its stderr lines on a channel.
struct Serving {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Serving {
    fn start(args: &[&str], files: &[&Path]) -> Self {
        let mut command = heartwire();
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        for file in files {
            command.arg(file);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("heartwire listening on ")
            .and_then(|rest| rest.split_once("://"))
            .map(|(_, addr)| addr.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// Waits for a stderr line that holds `text`; returns it.
    fn log_line(&self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no log line with {text:?}; seen {seen:#?}"),
            }
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn failed_start(args: &[&str], files: &[&Path]) -> String {
    let mut command = heartwire();
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args);
    for file in files {
        command.arg(file);
    }
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
    stderr
}

#[test]
fn a_missing_or_mismatched_pair_is_one_sentence_and_exit_1() {
    let ca = TestCa::new("heartwire cli start CA");
    let (one, two) = (ca.localhost(), ca.localhost());
    let missing = ca.path("nowhere.pem");
    let stderr = failed_start(
        &["--tls-cert"],
        &[&missing, Path::new("--tls-key"), &one.key],
    );
    assert!(
        stderr.starts_with("heartwire: cannot read the TLS certificate file")
            && stderr.contains("nowhere.pem"),
        "{stderr}"
    );
    let stderr = failed_start(
        &["--tls-cert"],
        &[&one.cert, Path::new("--tls-key"), &two.key],
    );
    assert!(
        stderr.contains("does not match the certificate"),
        "{stderr}"
    );
    let stderr = failed_start(&["--tls-cert"], &[&one.cert]);
    assert!(stderr.contains("tls-cert needs tls-key"), "{stderr}");
}

fn copy(from: &CertPair, to: &CertPair) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_loads_a_new_pair_and_keeps_the_old_one_when_the_new_is_bad() {
    let (old_ca, new_ca) = (
        TestCa::new("heartwire old CA"),
        TestCa::new("heartwire new CA"),
    );
    let (old, new) = (old_ca.localhost(), new_ca.localhost());
    let live = CertPair {
        cert: old_ca.path("live.pem"),
        key: old_ca.path("live.key"),
    };
    copy(&old, &live);
    // Only SIGHUP reloads here: the files are not watched within the test's time.
    let server = Serving::start(
        &["--tls-reload-check", "1h", "--tls-cert"],
        &[&live.cert, Path::new("--tls-key"), &live.key],
    );
    let addr = server.addr.parse().unwrap();
    let mut before = tls_connect(addr, &old_ca.cert).await.unwrap();

    std::fs::copy(&new.cert, &live.cert).unwrap();
    server.hangup();
    let line = server.log_line("stays in use");
    assert!(line.contains("does not match"), "{line}");
    tls_connect(addr, &old_ca.cert)
        .await
        .expect("the old certificate is still served");

    std::fs::copy(&new.key, &live.key).unwrap();
    server.hangup();
    server.log_line("TLS certificate loaded");
    tls_connect(addr, &new_ca.cert)
        .await
        .expect("the new certificate is served");

    // The connection made before both reloads still works.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    before
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, before.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
}

#[test]
fn connect_names_the_host_and_the_check_and_does_not_retry() {
    let ca = TestCa::new("heartwire connect CA");
    let expired = ca.issue(&["DNS:localhost"], -1);
    let server = Serving::start(
        &["--tls-cert"],
        &[&expired.cert, Path::new("--tls-key"), &expired.key],
    );
    let port = server.addr.rsplit_once(':').unwrap().1;
    let started = Instant::now();
    // stdin stays open: its end would close the client.
    let mut child = heartwire()
        .args(["connect", &format!("wss://localhost:{port}/ws"), "--ca"])
        .arg(&ca.cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("heartwire connect kept trying");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`localhost`") && stderr.contains("the validity check"),
        "{stderr}"
    );
    assert!(!stderr.contains("reconnecting"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
}

#[test]
fn a_redis_whose_certificate_is_not_trusted_is_logged() {
    let ca = TestCa::new("heartwire redis CA");
    let stranger = TestCa::new("heartwire stranger CA");
    let redis = TestRedisTls::start(&ca);
    let server = Serving::start(&["--redis", &redis.url(), "--redis-ca"], &[&stranger.cert]);
    let line = server.log_line("Redis");
    assert!(
        line.contains("UnknownIssuer") || line.contains("certificate"),
        "{line}"
    );
}

#[test]
fn sighup_without_tls_is_logged_not_fatal() {
    let server = Serving::start(&[], &[]);
    server.hangup();
    server.log_line("nothing to reload");
    let health = std::net::TcpStream::connect(&server.addr);
    assert!(health.is_ok(), "the server still listens");
}
