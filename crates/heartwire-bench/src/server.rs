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
    clock_ticks: f64,
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
        Ok(Self {
            child,
            pid,
            port,
            clock_ticks: clock_ticks_per_second().await,
        })
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

    /// User plus system CPU time used so far.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the command name, which ends with the last ')'.
        let rest = stat.rsplit_once(')').context("odd /proc/PID/stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line; the rest starts at field 3.
        let ticks: f64 = [11, 12]
            .iter()
            .map(|&i| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum();
        Ok(Duration::from_secs_f64(ticks / self.clock_ticks))
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

async fn clock_ticks_per_second() -> f64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().await;
    output
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}
