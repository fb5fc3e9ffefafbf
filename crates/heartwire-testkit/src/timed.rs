//! Child processes whose output lines are stamped with the instant they arrived, for
//! tests that measure when a process noticed something (a client declaring its server
//! dead, a server logging a connection's end), and that stop, resume and kill them.
//!
//! A [`Watched`] process is killed when dropped (after the grace of
//! [`Watched::with_grace`] to end by itself once its stdin closes), and so is every
//! process of a group it named with [`Watched::also_kill_group`] (a browser it started
//! in a group of its own).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The lines one output stream of a child gave, each with when it arrived.
#[derive(Debug)]
pub struct TimedLines {
    name: String,
    arrived: Receiver<(Instant, String)>,
    /// Every line taken so far, for failure messages.
    seen: Vec<String>,
}

impl TimedLines {
    /// Reads `stream` line by line on a thread of its own; `name` appears in failures.
    pub fn new(name: &str, stream: impl Read + Send + 'static) -> Self {
        let (send, arrived) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if send.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Self {
            name: name.to_owned(),
            arrived,
            seen: Vec::new(),
        }
    }

    /// The first line from now on for which `matches` holds, and when it arrived; fails
    /// the test with every line seen when none came before `deadline`.
    pub fn wait_for(
        &mut self,
        what: &str,
        deadline: Instant,
        matches: impl Fn(&str) -> bool,
    ) -> (Instant, String) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.arrived.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return (at, line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: no {what} in time; its lines:\n{}",
                        self.name,
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: ended before {what}; its lines:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line that arrived before `deadline` passes, for counting after the fact.
    pub fn collect_until(&mut self, deadline: Instant) -> Vec<(Instant, String)> {
        let mut lines = Vec::new();
        while let Ok((at, line)) = self
            .arrived
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            lines.push((at, line));
        }
        lines
    }
}

/// Which output of the child is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Its standard output (its standard error is passed through).
    Stdout,
    /// Its standard error (its standard output is discarded).
    Stderr,
}

/// A running child whose `stream` is watched; killed when dropped.
#[derive(Debug)]
pub struct Watched {
    child: Child,
    /// What it printed.
    pub lines: TimedLines,
    group: Option<u32>,
    grace: Duration,
}

impl Watched {
    /// Starts `command` with stdin held open (a closed stdin ends some programs) and
    /// watches `stream`; `name` appears in failures.
    pub fn start(name: &str, mut command: Command, stream: Stream) -> Self {
        command.stdin(Stdio::piped());
        match stream {
            Stream::Stdout => command.stdout(Stdio::piped()).stderr(Stdio::inherit()),
            Stream::Stderr => command.stdout(Stdio::null()).stderr(Stdio::piped()),
        };
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        let lines = match stream {
            Stream::Stdout => TimedLines::new(name, child.stdout.take().expect("stdout")),
            Stream::Stderr => TimedLines::new(name, child.stderr.take().expect("stderr")),
        };
        Self {
            child,
            lines,
            group: None,
            grace: Duration::ZERO,
        }
    }

    /// When dropped, first close its stdin and give it `grace` to end by itself (to
    /// close a browser it started), before it is killed.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills process group `pgid` too when this is dropped.
    pub fn also_kill_group(&mut self, pgid: u32) {
        self.group = Some(pgid);
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`…) to the child.
    pub fn signal(&self, signal: &str) {
        signal_target(signal, &self.child.id().to_string());
    }

    /// Sends `signal` to every process of group `pgid`.
    pub fn signal_group(signal: &str, pgid: u32) {
        signal_target(signal, &format!("-{pgid}"));
    }

    /// Closes the child's stdin and gives it `grace` to exit on its own.
    pub fn finish(&mut self, grace: Duration) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.grace.is_zero() {
            self.finish(self.grace);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pgid) = self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn signal_target(signal: &str, target: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), "--", target])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {target} failed");
}
