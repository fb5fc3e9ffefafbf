//! The loop of `heartwire connect`: stdin lines out, events to stdout and stderr, and
//! when the command ends.
//!
//! - Lines read before the first connection opens wait here: only then is it known
//!   whether they are publishes (a heartwire server and `--sub`) or text (any other
//!   server, or no `--sub`). Later lines wait in the client's outbox while it
//!   reconnects.
//! - Attempts count from 1 in each streak (a connection that opens ends the streak),
//!   and `--max-attempts N` stops after the N-th failed one.
//! - Without `--once` the end of stdin ends nothing: the client listens until it is
//!   interrupted (Ctrl-C closes it cleanly) or stops for good. With `--once` it ends
//!   when every line is acknowledged, and fails on a refusal or at `--timeout`.
//! - A fatal error is one sentence on stderr, or with `--json` the `closed` state line
//!   alone.

use std::time::Duration;

use anyhow::Context;
use heartwire_client::{self as client, ClientConfig, ClosedReason, Event};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{ending, publishable, report};

/// A fatal error already printed as the `closed` JSON state line: `main` prints nothing
/// more.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Reported(pub(crate) String);

/// How the command ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Listens until interrupted or stopped for good.
    Listen,
    /// Ends once every stdin line is acknowledged (or sent, when nothing acknowledges
    /// them); fails after this long.
    Once(Duration),
}

/// What the session needs besides the client's config.
pub(crate) struct Options {
    pub(crate) json: bool,
    pub(crate) mode: Mode,
    /// Failed attempts in a row after which the command stops.
    pub(crate) max_attempts: Option<u32>,
    /// Where lines are published on a heartwire server.
    pub(crate) channel: Option<String>,
    /// Lines that may wait for the first connection, as the client's outbox holds
    /// them afterwards.
    pub(crate) outbox: usize,
}

struct Session {
    client: client::Client,
    options: Options,
    /// The server of the latest attempt.
    url: String,
    /// Whether the server is heartwire; `None` until a connection opened.
    native: Option<bool>,
    /// Lines read before any connection opened.
    held: Vec<String>,
    /// Attempts in the current streak.
    attempts: u32,
    /// Publishes made, and how many of them the server acknowledged.
    published: usize,
    acknowledged: usize,
    stdin_open: bool,
    /// The session asked the client to close because its work is done.
    done: bool,
}

pub(crate) async fn run(config: ClientConfig, options: Options) -> anyhow::Result<()> {
    let (client, mut events) = client::connect(config)?;
    let deadline = match options.mode {
        Mode::Once(timeout) => Some(tokio::time::Instant::now() + timeout),
        Mode::Listen => None,
    };
    let mut session = Session {
        client,
        options,
        url: String::new(),
        native: None,
        held: Vec::new(),
        attempts: 0,
        published: 0,
        acknowledged: 0,
        stdin_open: true,
        done: false,
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut interruptible = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if session.stdin_open => {
                match line.context("cannot read stdin")? {
                    Some(line) => session.line(line)?,
                    None => session.stdin_open = false,
                }
                session.finish_once();
            }
            event = events.next() => {
                let Some(event) = event else { return Ok(()) };
                if let Some(end) = session.event(event)? {
                    return end;
                }
            }
            _ = &mut interrupted, if interruptible => {
                interruptible = false;
                session.client.close();
            }
            () = sleep_until(deadline) => {
                let timeout = match session.options.mode {
                    Mode::Once(timeout) => timeout,
                    Mode::Listen => Duration::ZERO,
                };
                let sentence = format!(
                    "timed out after {} ms: {} of {} publishes acknowledged{}",
                    timeout.as_millis(),
                    session.acknowledged,
                    session.published + session.held.len(),
                    if session.native.is_none() { ", no connection opened" } else { "" },
                );
                session.client.close();
                return Err(session.fatal(sentence));
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// A line from stdin: held until the server's kind is known, then a publish to a
    /// heartwire server with a channel, text otherwise.
    fn line(&mut self, line: String) -> anyhow::Result<()> {
        match (self.native, &self.options.channel) {
            (None, _) => {
                anyhow::ensure!(
                    self.held.len() < self.options.outbox,
                    "message not sent: the outbox is full ({} messages wait for a connection)",
                    self.options.outbox
                );
                self.held.push(line);
            }
            (Some(true), Some(channel)) => {
                self.client
                    .publish(channel, publishable(&line))
                    .context("message not sent")?;
                self.published += 1;
            }
            (Some(_), _) => self.client.send_text(line).context("message not sent")?,
        }
        Ok(())
    }

    /// With `--once`: closes the client once stdin ended and every line went out and,
    /// when published, was acknowledged.
    fn finish_once(&mut self) {
        if matches!(self.options.mode, Mode::Once(_))
            && !self.stdin_open
            && self.native.is_some()
            && self.acknowledged == self.published
            && !self.done
        {
            self.done = true;
            self.client.close();
        }
    }

    /// Reports an event; `Some` when the command ends with it.
    fn event(&mut self, event: Event) -> anyhow::Result<Option<anyhow::Result<()>>> {
        let event = match event {
            Event::Connecting { url, .. } => {
                self.attempts += 1;
                self.url = url.to_string();
                Event::Connecting {
                    url,
                    attempt: self.attempts,
                }
            }
            Event::Reconnecting { delay, reason, .. } => {
                if self
                    .options
                    .max_attempts
                    .is_some_and(|max| self.attempts >= max)
                {
                    self.client.close();
                    let gave_up = ClosedReason::GaveUp {
                        attempts: self.attempts,
                        last: reason,
                    };
                    return Ok(Some(Err(self.fatal(ending(&gave_up)))));
                }
                Event::Reconnecting {
                    attempt: self.attempts + 1,
                    delay,
                    reason,
                }
            }
            Event::Open { url, session } => {
                self.attempts = 0;
                self.url = url.to_string();
                self.native = Some(session.is_some());
                for line in std::mem::take(&mut self.held) {
                    self.line(line)?;
                }
                let open = Event::Open { url, session };
                report(&open, &self.url, self.options.json);
                self.finish_once();
                return Ok(None);
            }
            Event::Published { .. } => {
                self.acknowledged += 1;
                report(&event, &self.url, self.options.json);
                self.finish_once();
                return Ok(None);
            }
            Event::PublishRefused {
                id,
                channel,
                code,
                reason,
            } if matches!(self.options.mode, Mode::Once(_)) => {
                self.client.close();
                let sentence = format!(
                    "the server refused publish {id} on {channel} ({}): {reason}",
                    code.as_str()
                );
                return Ok(Some(Err(self.fatal(sentence))));
            }
            Event::Closed { reason } => return Ok(Some(self.closed(reason))),
            other => other,
        };
        report(&event, &self.url, self.options.json);
        Ok(None)
    }

    /// The client stopped for good.
    fn closed(&self, reason: ClosedReason) -> anyhow::Result<()> {
        let reason = match reason {
            // Attempts as this command counts them.
            ClosedReason::GaveUp { last, .. } => ClosedReason::GaveUp {
                attempts: self.attempts,
                last,
            },
            ClosedReason::ByCaller => {
                if matches!(self.options.mode, Mode::Once(_)) && !self.done {
                    let sentence = format!(
                        "interrupted: {} of {} publishes acknowledged",
                        self.acknowledged,
                        self.published + self.held.len()
                    );
                    return Err(self.fatal(sentence));
                }
                report(
                    &Event::Closed {
                        reason: ClosedReason::ByCaller,
                    },
                    &self.url,
                    self.options.json,
                );
                return Ok(());
            }
            other => other,
        };
        Err(self.fatal(ending(&reason)))
    }

    /// The error that ends the command, said once: as the `closed` state line with
    /// `--json`, else as the sentence `main` prints.
    fn fatal(&self, sentence: String) -> anyhow::Error {
        if self.options.json {
            let closed = json!({"state": "closed", "url": self.url, "reason": sentence});
            eprintln!("{closed}");
            Reported(sentence).into()
        } else {
            anyhow::anyhow!("{sentence}")
        }
    }
}
