//! The server under test as a child process: started from a shell command, watched
//! through /proc (resident memory, CPU time), asked for heartwire's /metrics, killed.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The longest a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server.
pub(crate) struct ServerProcess {
    child: Child,
    pid: u32,
    port: u16,
}

impl ServerProcess {
    /// Runs `command` with `sh -c 'exec …'` (so the server is the child itself) and
    /// waits until 127.0.0.1:`port` accepts (after waiting for it to be free). The
    /// server's stderr is appended to `log`.
    pub(crate) async fn start(command: &str, port: u16, log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        // A server of an earlier scenario may still be dying on this port.
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            anyhow::ensure!(Instant::now() < deadline, "port {port} is still taken");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut child = Command::new("sh")
            .args(["-c", &format!("exec {command}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {command:?}"))?;
        let pid = child.id().context("the server exited at once")?;
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("{command:?} exited with {status}");
            }
            anyhow::ensure!(Instant::now() < deadline, "{command:?} never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self { child, pid, port })
    }

    /// Resident memory, in bytes.
    pub(crate) fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .context("no VmRSS in /proc/PID/status")?;
        Ok(kib * 1024)
    }

    /// CPU time used so far by the server's threads, from the scheduler's run time
    /// of each (`/proc/PID/task/*/schedstat`, in nanoseconds). utime and stime count
    /// whole clock ticks (10 ms), more than a short window of heartbeats takes, so they
    /// often measured none. A thread that ends takes its time with it; the servers
    /// measured keep their threads for the whole window.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        let mut nanos: u64 = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid))? {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
                continue;
            };
            nanos += stat
                .split_whitespace()
                .next()
                .and_then(|run| run.parse::<u64>().ok())
                .context("odd /proc/PID/task/TID/schedstat")?;
        }
        Ok(Duration::from_nanos(nanos))
    }

    /// The value of one line of heartwire's /metrics, e.g.
    /// `heartwire_disconnects_total{reason="ping_timeout"}`.
    pub(crate) async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .with_context(|| format!("no {series} in /metrics"))
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    pub(crate) async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
