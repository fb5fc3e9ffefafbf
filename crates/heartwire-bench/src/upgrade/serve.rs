//! The `heartwire serve` processes of the upgrade scenario: started from this very
//! executable (the release build `bench/run` made), known to accept once they print
//! their address, stopped with SIGTERM, and watched until they exit.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One `heartwire serve` process.
pub(super) struct Serve {
    child: Child,
}

impl Serve {
    /// Runs `heartwire serve options…`, its stderr appended to `log`, and returns
    /// once it printed the address it listens on (a process that takes over prints it
    /// once it has committed the handover and accepts), within `patience`.
    pub(super) async fn start(
        options: &[String],
        log: &Path,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the heartwire executable")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .args(options)
            .env(
                "HEARTWIRE_LOG",
                std::env::var("HEARTWIRE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start heartwire serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(patience, BufReader::new(stdout).lines().next_line())
            .await
            .with_context(|| format!("heartwire serve printed no address within {patience:?}"))??
            .context("heartwire serve ended before printing its address")?;
        anyhow::ensure!(
            line.starts_with("heartwire listening on "),
            "heartwire serve printed {line:?}"
        );
        Ok(Self { child })
    }

    /// Sends SIGTERM: the process closes every connection with 1012 and a reconnect
    /// hint, and exits.
    pub(super) async fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.child.id().context("the server already exited")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        Ok(())
    }

    /// Waits at most `patience` for the process to exit.
    pub(super) async fn exited(&mut self, patience: Duration) -> anyhow::Result<ExitStatus> {
        tokio::time::timeout(patience, self.child.wait())
            .await
            .with_context(|| format!("heartwire serve did not exit within {patience:?}"))?
            .context("cannot wait for heartwire serve")
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(super) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
