//! The parent's end of the generator processes: it starts `heartwire bench hold`
//! children (each under the per-process socket cap, each from its own 127.0.0.x
//! sources), waits until their connections are open, and collects their counters.

use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::hold::WorkerLine;
use super::progress;
use super::wire::Target;

/// Source addresses each generator process spreads its connections over.
const SOURCES_PER_PROCESS: u8 = 4;

/// Generator processes holding connections to one server.
pub(crate) struct Fleet {
    workers: Vec<Worker>,
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

/// How the opening went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    /// The longest any process took to try all its connections (they open at the same
    /// time).
    pub(crate) secs: f64,
}

/// Heartbeats answered and connections lost, summed over the processes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) heartbeats: u64,
    pub(crate) disconnects: u64,
}

impl Fleet {
    /// Opens `total` connections in processes of at most `per_process`, each opening
    /// `concurrency` at a time; `first_source` is the first 127.0.0.x they use.
    pub(crate) async fn open(
        target: Target,
        total: usize,
        per_process: usize,
        first_source: u8,
        concurrency: usize,
    ) -> anyhow::Result<(Self, Opened)> {
        let mut workers = Vec::new();
        let mut left = total;
        let mut source = first_source;
        while left > 0 {
            let share = left.min(per_process.max(1));
            workers.push(Worker::spawn(&target, share, source, concurrency)?);
            left -= share;
            source = source.saturating_add(SOURCES_PER_PROCESS);
        }
        let bar = progress::bar(u64::try_from(total)?, "connecting");
        let mut opened = Opened {
            connected: 0,
            failed: 0,
            secs: 0.0,
        };
        let mut progress = vec![0; workers.len()];
        for (index, worker) in workers.iter_mut().enumerate() {
            loop {
                match worker.next_line().await? {
                    WorkerLine::Progress { connected } => {
                        progress[index] = connected;
                        bar.set_position(progress.iter().sum());
                    }
                    WorkerLine::Ready {
                        connected,
                        failed,
                        first_error,
                        secs,
                    } => {
                        opened.secs = opened.secs.max(secs);
                        progress[index] = connected;
                        bar.set_position(progress.iter().sum());
                        opened.connected += connected;
                        opened.failed += failed;
                        if let Some(error) = first_error {
                            eprintln!("bench: {failed} connections failed, e.g.: {error}");
                        }
                        break;
                    }
                    other => anyhow::bail!("unexpected worker line {other:?}"),
                }
            }
        }
        bar.finish_and_clear();
        Ok((Self { workers }, opened))
    }

    /// The counters of every process, now.
    pub(crate) async fn counters(&mut self) -> anyhow::Result<Counters> {
        let mut total = Counters::default();
        for worker in &mut self.workers {
            worker.order("report").await?;
            match worker.next_line().await? {
                WorkerLine::Counters {
                    heartbeats,
                    disconnects,
                } => {
                    total.heartbeats += heartbeats;
                    total.disconnects += disconnects;
                }
                other => anyhow::bail!("unexpected worker line {other:?}"),
            }
        }
        Ok(total)
    }

    /// Sends a Ping on every connection of every process; returns how many went out.
    pub(crate) async fn ping_all(&mut self) -> anyhow::Result<u64> {
        let mut total = 0;
        for worker in &mut self.workers {
            worker.order("ping").await?;
            match worker.next_line().await? {
                WorkerLine::Pinged { count } => total += count,
                other => anyhow::bail!("unexpected worker line {other:?}"),
            }
        }
        Ok(total)
    }

    /// The process ids, to freeze them.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    /// Ends every process, closing their connections.
    pub(crate) async fn close(mut self) {
        for worker in &mut self.workers {
            worker.stdin = None;
            let _ = worker.child.start_kill();
        }
        for worker in &mut self.workers {
            let _ = worker.child.wait().await;
        }
    }
}

impl Worker {
    fn spawn(
        target: &Target,
        connections: usize,
        first_source: u8,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the heartwire executable")?;
        let dialect = clap::ValueEnum::to_possible_value(&target.dialect)
            .context("every dialect has a name")?;
        let mut command = Command::new(exe);
        command.args(["bench", "hold", "--dialect", dialect.get_name()]);
        if let Some(tls) = &target.tls {
            command.arg("--tls-ca").arg(&tls.ca);
        }
        if let Some(token) = &target.token {
            command.arg("--token-file").arg(&token.file);
        }
        let mut child = command
            .args(["--port", &target.port.to_string()])
            .args(["--connections", &connections.to_string()])
            .args(["--first-source", &first_source.to_string()])
            .args(["--sources", &SOURCES_PER_PROCESS.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a generator process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn order(&mut self, order: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("worker closed")?;
        stdin.write_all(format!("{order}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    async fn next_line(&mut self) -> anyhow::Result<WorkerLine> {
        let line = self
            .lines
            .next_line()
            .await?
            .context("a generator process ended early")?;
        serde_json::from_str(&line).with_context(|| format!("bad worker line {line:?}"))
    }
}
