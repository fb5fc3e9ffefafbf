//! `heartwire connect`: a terminal client and a tool for scripts. Lines from stdin go
//! out, channel data comes out on stdout; state changes, gaps (messages that will not
//! arrive), acknowledged and refused publishes, refused requests, token refreshes and
//! presence go to stderr (as JSON lines with `--json`, a gap as `{"state":"gap",...}`).
//! An error that ends the client is one sentence. The loop is [`session`].

mod session;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use heartwire_client::{ClientConfig, ClosedReason, Event, Incoming, TokenPlacement};
use heartwire_core::protocol::millis;
use heartwire_core::reconnect::{AUTH_FAILED, FORBIDDEN};
use heartwire_core::{BackoffConfig, Delay, DisconnectReason};
use serde_json::{Value, json};

pub(crate) use session::Reported;

/// Options of `heartwire connect`.
#[derive(clap::Args)]
pub(crate) struct ConnectArgs {
    /// The primary server's URL, e.g. ws://127.0.0.1:8080/ws
    url: String,
    /// A backup server's URL, tried in order when the primary fails; repeatable. The
    /// client returns to the primary once it answers again.
    #[arg(long = "backup", value_name = "URL")]
    backups: Vec<String>,
    /// Subscribe to this channel on a heartwire server, again after every reconnect;
    /// repeatable. Lines from stdin are published to the first one (to a server that
    /// is not heartwire, or without --sub, they go out as text). Lines read before the
    /// connection opens wait for it. Without --once, the end of stdin ends nothing:
    /// the client listens until Ctrl-C.
    #[arg(long = "sub", value_name = "CHANNEL")]
    subscriptions: Vec<String>,
    /// Publish every stdin line to the first --sub channel (not subscribed), wait
    /// until the server acknowledged each, then exit 0. A refused publish, a client
    /// that stops, or --timeout passing is one sentence and exit 1.
    #[arg(long)]
    once: bool,
    /// With --once: fail when not every line is acknowledged this long after the start
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "10s", requires = "once")]
    timeout: Duration,
    /// Report everything but channel data (states, gaps, acknowledgements, refusals,
    /// presence, the error that ends the command) on stderr as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Send a Ping after this much silence from the server; a heartwire server's hello
    /// replaces it with its own value
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "20s")]
    ping_interval: Duration,
    /// Consider the server dead when nothing arrives this long after a Ping; a
    /// heartwire server's hello replaces it with its own value
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "20s")]
    ping_timeout: Duration,
    /// The first reconnect waits a random time up to this; each further attempt
    /// doubles the window (full jitter)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "500ms")]
    reconnect_min: Duration,
    /// The largest reconnect window
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "20s")]
    reconnect_max: Duration,
    /// Wait exactly this long before every reconnect instead of the jittered windows of
    /// --reconnect-min and --reconnect-max
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    reconnect_fixed: Option<Duration>,
    /// Messages that may wait for a connection (lines read while none is open); one
    /// more is refused with a sentence
    #[arg(long, value_name = "N", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..))]
    outbox: u32,
    /// Stop after this many failed connection attempts in a row, the first one
    /// included (attempts count from 1; an open connection starts a new streak)
    /// [default: never stop]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: Option<u32>,
    /// Send this token as an `Authorization: Bearer` header on every attempt
    #[arg(
        long,
        env = "HEARTWIRE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        conflicts_with = "token_command"
    )]
    token: Option<String>,
    /// Run this shell command before every attempt and before the token expires; what
    /// it prints is the token (sent as with --token, and in a `refresh`)
    #[arg(long, value_name = "COMMAND")]
    token_command: Option<String>,
    /// Where the token goes in the handshake: an `Authorization: Bearer` header, a
    /// `token` query parameter (for servers and proxies that only see URLs), or both
    #[arg(long, value_enum, value_name = "WHERE", default_value = "header")]
    token_in: TokenIn,
    /// Trust only the CA certificates in this PEM file for wss:// (a private CA)
    /// [default: the platform's trusted roots]
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
}

/// Where `--token-in` puts the token.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TokenIn {
    Header,
    Query,
    Both,
}

impl From<TokenIn> for TokenPlacement {
    fn from(place: TokenIn) -> Self {
        match place {
            TokenIn::Header => Self::Header,
            TokenIn::Query => Self::Query,
            TokenIn::Both => Self::Both,
        }
    }
}

pub(crate) fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let mut config = config(&args)?;
    session_config(&args, &mut config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(session::run(config, session_options(&args)));
    // The stdin reader sits in a blocking read that only a new line would end.
    runtime.shutdown_background();
    result
}

/// What the session changes in the client's config: it counts the attempts itself, and
/// with --once the first --sub only names where lines go.
fn session_config(args: &ConnectArgs, config: &mut ClientConfig) -> anyhow::Result<()> {
    config.backoff.max_attempts = None;
    config.report_acks = true;
    if args.once {
        if let Some(channel) = args.subscriptions.first() {
            heartwire_core::protocol::validate_channel(channel)?;
        }
        config.subscriptions.clear();
    }
    Ok(())
}

/// How the session reports and ends.
fn session_options(args: &ConnectArgs) -> session::Options {
    session::Options {
        json: args.json,
        mode: if args.once {
            session::Mode::Once(args.timeout)
        } else {
            session::Mode::Listen
        },
        max_attempts: args.max_attempts,
        channel: args.subscriptions.first().cloned(),
        outbox: args.outbox as usize,
    }
}

fn config(args: &ConnectArgs) -> anyhow::Result<ClientConfig> {
    let urls = std::iter::once(&args.url).chain(&args.backups);
    let mut config = ClientConfig::new(urls)?;
    config.ping_interval = args.ping_interval;
    config.ping_timeout = args.ping_timeout;
    anyhow::ensure!(
        args.reconnect_min <= args.reconnect_max,
        "--reconnect-min must not exceed --reconnect-max"
    );
    config.backoff = BackoffConfig {
        delay: match args.reconnect_fixed {
            Some(delay) => Delay::Fixed(delay),
            None => Delay::Exponential {
                base: args.reconnect_min,
                cap: args.reconnect_max,
            },
        },
        max_attempts: args.max_attempts,
        ..BackoffConfig::default()
    };
    config.outbox_capacity = args.outbox as usize;
    config.token_placement = args.token_in.into();
    config.subscriptions = args.subscriptions.clone();
    if let Some(ca) = &args.ca {
        config.tls_roots = heartwire_client::TlsRoots::from_pem_file(ca)?;
    }
    if let Some(token) = args.token.clone() {
        config.token = Some(std::sync::Arc::new(move || {
            let token = token.clone();
            Box::pin(async move { Some(token) })
        }));
    }
    if let Some(command) = args.token_command.clone() {
        config.token = Some(crate::token_command::provider(command));
    }
    Ok(config)
}

/// Why the client stopped, in one sentence; a refusal of the credentials or of the
/// connection says so first.
fn ending(reason: &ClosedReason) -> String {
    if let ClosedReason::DoNotComeBack(DisconnectReason::PeerClosed {
        code: Some(code),
        reason,
    }) = reason
    {
        let why = if reason.is_empty() {
            format!("close {code}")
        } else {
            format!("{reason} (close {code})")
        };
        match *code {
            AUTH_FAILED => return format!("the server refused the credentials: {why}"),
            FORBIDDEN => return format!("the server forbids this connection: {why}"),
            _ => {}
        }
    }
    reason.to_string()
}

/// A line as JSON when it is JSON, else as a string.
fn publishable(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.to_owned()))
}

/// Messages to stdout, state changes to stderr; `url` is the server of the latest
/// attempt.
fn report(event: &Event, url: &str, json: bool) {
    match event {
        Event::Message(message) => {
            let mut stdout = std::io::stdout().lock();
            let _ = match message {
                Incoming::Channel { data, .. } => match data {
                    Value::String(text) => writeln!(stdout, "{text}"),
                    other => writeln!(stdout, "{other}"),
                },
                Incoming::Text(text) => writeln!(stdout, "{text}"),
                Incoming::Binary(data) => writeln!(stdout, "<{} bytes of binary>", data.len()),
            };
            let _ = stdout.flush();
        }
        state if json => eprintln!("{}", state_json(state, url)),
        Event::Connecting { url, attempt } => eprintln!("connecting to {url} (attempt {attempt})"),
        Event::Open { url, session } => match session {
            Some(session) => eprintln!("open: {url} (session {session})"),
            None => eprintln!("open: {url}"),
        },
        Event::Reconnecting {
            attempt,
            delay,
            reason,
        } => eprintln!(
            "reconnecting in {} ms (attempt {attempt}): {reason}",
            delay.as_millis()
        ),
        Event::Gap {
            channel,
            from_seq,
            to_seq,
            reason,
        } => eprintln!("gap: {channel} messages {from_seq}..={to_seq} will not arrive ({reason})"),
        Event::Subscribed {
            channel,
            seq,
            recovered,
        } => match recovered {
            Some(true) => eprintln!("subscribed: {channel} at {seq}, missed messages follow"),
            Some(false) => eprintln!("subscribed: {channel} at {seq}, missed messages lost"),
            None => eprintln!("subscribed: {channel} at {seq}"),
        },
        Event::Error {
            code,
            reason,
            channel,
        } => match channel {
            Some(channel) => eprintln!("refused ({}) on {channel}: {reason}", code.as_str()),
            None => eprintln!("refused ({}): {reason}", code.as_str()),
        },
        Event::SubscriptionEnded { channel } => {
            eprintln!("unsubscribed: {channel}: the server ended the subscription");
        }
        Event::Published {
            id,
            channel,
            seq,
            duplicate,
        } => {
            let again = if *duplicate { " (a duplicate)" } else { "" };
            eprintln!("published: {id} on {channel} at {seq}{again}");
        }
        Event::PublishRefused {
            id,
            channel,
            code,
            reason,
        } => eprintln!(
            "refused ({}) publish {id} on {channel}: {reason}",
            code.as_str()
        ),
        Event::Refreshed { expires_in } => match expires_in {
            Some(left) => eprintln!("token refreshed: it expires in {} s", left.as_secs()),
            None => eprintln!("token refreshed: it does not expire"),
        },
        Event::Presence {
            channel, members, ..
        } => eprintln!("presence: {channel}: {}", members.join(", ")),
        Event::Join {
            channel,
            session,
            user,
        } => eprintln!("join: {channel}: {}", user.as_deref().unwrap_or(session)),
        Event::Leave {
            channel,
            session,
            user,
        } => eprintln!("leave: {channel}: {}", user.as_deref().unwrap_or(session)),
        Event::Closed { reason } => eprintln!("closed: {reason}"),
    }
}

/// A state change as one JSON object; `url` is the server of the latest attempt.
fn state_json(event: &Event, url: &str) -> Value {
    match event {
        Event::Connecting { attempt, .. } => {
            json!({"state": "connecting", "url": url, "attempt": attempt})
        }
        Event::Open { session, .. } => {
            json!({"state": "open", "url": url, "session": session})
        }
        Event::Reconnecting {
            attempt,
            delay,
            reason,
        } => json!({
            "state": "reconnecting",
            "url": url,
            "attempt": attempt,
            "delay_ms": millis(*delay),
            "reason": reason,
        }),
        Event::Gap {
            channel,
            from_seq,
            to_seq,
            reason,
        } => json!({
            "state": "gap",
            "url": url,
            "channel": channel,
            "from_seq": from_seq,
            "to_seq": to_seq,
            "reason": reason.code(),
        }),
        Event::Subscribed {
            channel,
            seq,
            recovered,
        } => json!({
            "state": "subscribed",
            "url": url,
            "channel": channel,
            "seq": seq,
            "recovered": recovered,
        }),
        Event::Closed { reason } => {
            json!({"state": "closed", "url": url, "reason": ending(reason)})
        }
        Event::Error {
            code,
            reason,
            channel,
        } => json!({
            "state": "error",
            "url": url,
            "code": code,
            "reason": reason,
            "channel": channel,
        }),
        Event::SubscriptionEnded { channel } => {
            json!({"state": "unsubscribed", "url": url, "channel": channel})
        }
        Event::Published {
            id,
            channel,
            seq,
            duplicate,
        } => json!({
            "state": "published",
            "url": url,
            "id": id,
            "channel": channel,
            "seq": seq,
            "duplicate": duplicate,
        }),
        Event::PublishRefused {
            id,
            channel,
            code,
            reason,
        } => json!({
            "state": "refused",
            "url": url,
            "id": id,
            "channel": channel,
            "code": code,
            "reason": reason,
        }),
        Event::Refreshed { expires_in } => json!({
            "state": "refreshed",
            "url": url,
            "expires_in_ms": expires_in.map(millis),
        }),
        Event::Presence {
            channel,
            members,
            users,
        } => json!({
            "state": "presence",
            "url": url,
            "channel": channel,
            "members": members,
            "users": users,
        }),
        Event::Join {
            channel,
            session,
            user,
        } => {
            json!({"state": "join", "url": url, "channel": channel, "session": session, "user": user})
        }
        Event::Leave {
            channel,
            session,
            user,
        } => {
            json!({"state": "leave", "url": url, "channel": channel, "session": session, "user": user})
        }
        Event::Message(_) => Value::Null,
    }
}
