//! `redis-server` processes for the test kit's Redis topologies: a temporary
//! directory removed when dropped, free ports, `redis-cli` with a bound, bounded
//! waits, and the cut of a master from its replica that makes a fail-over lose
//! writes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// A directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("heartwire-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port; with `bus`, one whose cluster bus port (+10000) is free too.
pub(crate) fn free_port(bus: bool) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        if !bus {
            return port;
        }
        if port <= 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// How long one `redis-cli` call may take: a stopped server never answers.
pub(crate) const CLI_TIMEOUT: &str = "2";

/// How long writing the 16 MiB ballast may take.
const BALLAST_TIMEOUT: &str = "30";

/// Runs `redis-cli -p port args…` and returns its output (nothing when the server
/// does not answer within two seconds).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg(CLI_TIMEOUT)
        .arg("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run redis-cli ({err}); run scripts/test, which installs it")
        });
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `done` holds, checking every 50 ms, for at most `bound`; panics
/// with `what` after.
pub fn wait_until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Makes master `master` lose its replica `replica` (which is stopped): a ballast
/// larger than every buffer on the way fills the replica's output buffer, past a
/// small limit, so the master drops the replica. What the master writes from then
/// on is on no replica: a fail-over now loses it, as a real one loses what the
/// asynchronous replication had not carried yet. `ballast_key` must hash to the
/// master's slots in a cluster.
pub(crate) fn detach_replica(master: u16, replica: &Process, ballast_key: &str, dir: &Path) {
    redis_cli(
        master,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 256kb 0 0",
        ],
    );
    replica.signal("STOP");
    let ballast = dir.join("ballast");
    std::fs::write(&ballast, vec![b'x'; 16 << 20]).expect("a ballast file");
    // 16 MiB through redis-cli takes seconds on a busy machine; the bound is for a
    // master that stopped answering, not for a slow one.
    let status = Command::new("timeout")
        .args([
            BALLAST_TIMEOUT,
            "redis-cli",
            "-p",
            &master.to_string(),
            "-x",
            "SET",
            ballast_key,
        ])
        .stdin(std::fs::File::open(&ballast).expect("the ballast file"))
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(status.success(), "the ballast was written");
    wait_until("the master drops its replica", PATIENCE, || {
        redis_cli(master, &["INFO", "replication"]).contains("connected_slaves:0")
    });
}

/// One `redis-server` process.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Process {
    pub(crate) fn spawn(port: u16, args: &[String]) -> Self {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-server ({err}); run scripts/test, which installs it")
            });
        let process = Self {
            port,
            child: Some(child),
        };
        wait_until("redis-server answers PING", PATIENCE, || {
            redis_cli(port, &["ping"]).trim() == "PONG"
        });
        process
    }

    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the process runs").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Whether the process runs (it may be stopped).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too; wait reaps it.
        self.kill();
    }
}
