//! `heartwire chaos check URL`: puts a fault proxy in front of a heartwire server,
//! runs a scripted heartwire client through it, and judges what the server and the
//! path do under each fault.
//!
//! 1. A bare WebSocket to `URL` reads the server's `hello`: its ping interval and
//!    timeout are the bounds (a dead peer is noticed within their sum).
//! 2. A [`Proxy`] starts in this process, forwarding to the URL's host and port, and
//!    the [scripted client](scripted) connects through it, subscribed to a channel of
//!    its own on which it publishes a numbered stream.
//! 3. The scenarios run in turn ([`path`]: pings, latency, idle-cut; [`outage`]:
//!    blackhole, blackhole-up, reset, restart); each leaves the fault off and the
//!    client connected.
//! 4. The [verdict table](verdict) goes to stdout (JSON with `--json`); the exit
//!    status is non-zero when a verdict failed.
//!
//! Every wait is bounded by the server's ping interval and timeout, the options, and
//! the client's own timeouts, so the check ends.

mod outage;
mod path;
mod probe;
mod scripted;
mod verdict;

use std::net::SocketAddr;
use std::time::Duration;

use heartwire_client::ClientConfig;
use heartwire_core::{BackoffConfig, Delay};
use url::Url;

use crate::Error;
use crate::fault::Direction;
use crate::proxy::Proxy;
use probe::ServerInfo;
use scripted::Scripted;
use verdict::{Report, Row, show_time};

/// The scripted client's first retry comes within this.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The scripted client's longest wait between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// How long the hello of the server may take.
const HELLO_WITHIN: Duration = Duration::from_secs(10);

/// A scenario of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// A Ping is answered through the path, and the server pings a silent client.
    Pings,
    /// The path is slow: round trips, and no false death.
    Latency,
    /// The path stops both ways: the client must notice.
    Blackhole,
    /// The path stops from client to server: the server must notice.
    BlackholeUp,
    /// Both sockets are reset: the client comes back.
    Reset,
    /// The path closes quiet connections: the heartbeat must keep it busy.
    IdleCut,
    /// The server restarts (needs --restart-command).
    Restart,
}

impl Scenario {
    /// The name on the command line and in the table.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Scenario::Pings => "pings",
            Scenario::Latency => "latency",
            Scenario::Blackhole => "blackhole",
            Scenario::BlackholeUp => "blackhole-up",
            Scenario::Reset => "reset",
            Scenario::IdleCut => "idle-cut",
            Scenario::Restart => "restart",
        }
    }
}

/// Options of `heartwire chaos check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The heartwire server's native endpoint, e.g. ws://127.0.0.1:8080/ws
    url: String,
    /// The scenarios to run, comma-separated; they run in the order listed under
    /// possible values [default: all; restart only with --restart-command]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    scenarios: Vec<Scenario>,
    /// The idle cut to survive (nginx's proxy_read_timeout defaults to 60s, as AWS's
    /// load balancers' idle timeout)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "60s")]
    idle_cut: Duration,
    /// The delay the latency scenario adds each way
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "200ms")]
    latency: Duration,
    /// The most added at random to each delay of the latency scenario
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "50ms")]
    jitter: Duration,
    /// A shell command that restarts the server (run with sh -c; its output goes to
    /// stderr), e.g. "systemctl restart heartwire"
    #[arg(long, value_name = "CMD")]
    restart_command: Option<String>,
    /// How long the restart command plus the client's return may take
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "30s")]
    restart_within: Duration,
    /// Messages the scripted client publishes per second while streaming
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate: u32,
    /// How far past its bound a timing may land and still pass (timers and scheduling)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", default_value = "250ms")]
    tolerance: Duration,
    /// The channel the scripted client streams on [default: chaos-check:RANDOM]
    #[arg(long, value_name = "NAME")]
    channel: Option<String>,
    /// Send this token as an `Authorization: Bearer` header on every connection
    #[arg(
        long,
        env = "HEARTWIRE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Where the check's own proxy listens (the client connects there)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Print the verdicts as one JSON object instead of a table
    #[arg(long)]
    json: bool,
}

/// What the scenarios share.
#[derive(Debug)]
pub(crate) struct Context {
    proxy: Proxy,
    client: Scripted,
    server: ServerInfo,
    settings: Settings,
}

#[derive(Debug)]
struct Settings {
    /// The URL through the proxy.
    proxied: Url,
    token: Option<String>,
    tolerance: Duration,
    latency: Duration,
    jitter: Duration,
    idle_cut: Duration,
    restart_within: Duration,
    connect_timeout: Duration,
}

impl Context {
    /// The server's bound for noticing a dead peer: ping interval plus timeout.
    fn heartbeat(&self) -> Duration {
        self.server.ping_interval + self.server.ping_timeout
    }

    /// The bound of a return after a clean cut: the first retry's longest wait, plus
    /// one ping timeout for the handshake.
    fn reconnect_bound(&self) -> Duration {
        BACKOFF_BASE + self.server.ping_timeout
    }

    /// How long to wait for the client to be back after any fault: an attempt that
    /// hung, the longest backoff, and one more attempt.
    fn reopen_within(&self) -> Duration {
        2 * self.settings.connect_timeout + BACKOFF_CAP + self.settings.tolerance
    }

    /// How long to wait for a stream's last messages once the client is back.
    fn settle_within(&self) -> Duration {
        self.heartbeat() + self.settings.tolerance
    }

    /// A failed row: the client did not come back in time.
    fn not_back(&self, scenario: &'static str) -> Row {
        let why = self.client.last_down().unwrap_or_else(|| "no event".into());
        Row::timing(
            scenario,
            "the client is connected",
            None,
            self.reopen_within(),
            Duration::ZERO,
        )
        .with_note(format!("not connected; last: {why}"))
    }
}

pub(crate) fn run(args: CheckArgs) -> Result<(), Error> {
    let runtime = tokio::runtime::Runtime::new().map_err(Error::Runtime)?;
    let report = runtime.block_on(check(&args))?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    match report.failed() {
        0 => Ok(()),
        failed => Err(Error::VerdictsFailed {
            failed,
            total: report.judged(),
        }),
    }
}

async fn check(args: &CheckArgs) -> Result<Report, Error> {
    let scenarios = scenarios(args)?;
    let (url, upstream) = target(&args.url)?;
    let (socket, server) = probe::open(&url, args.token.as_deref(), HELLO_WITHIN).await?;
    drop(socket);
    let proxy = Proxy::bind(args.listen, upstream).await?;
    let mut proxied = url.clone();
    let through = proxy.local_addr();
    // Neither fails on a ws:// URL with a host, which `target` made sure of.
    let _ = proxied.set_ip_host(through.ip());
    let _ = proxied.set_port(Some(through.port()));

    let connect_timeout = (2 * server.ping_timeout).max(Duration::from_secs(1));
    let mut config = ClientConfig::new([proxied.as_str()])?;
    config.ping_interval = server.ping_interval;
    config.ping_timeout = server.ping_timeout;
    config.connect_timeout = connect_timeout;
    config.backoff = BackoffConfig {
        delay: Delay::Exponential {
            base: BACKOFF_BASE,
            cap: BACKOFF_CAP,
        },
        // Every scenario starts from a healthy connection: each return is a first retry.
        reset_after: Duration::from_millis(1),
        ..BackoffConfig::default()
    };
    config.outbox_capacity = 1 << 16;
    config.event_capacity = 1 << 16;
    if let Some(token) = args.token.clone() {
        config.token = Some(std::sync::Arc::new(move || {
            let token = token.clone();
            Box::pin(async move { Some(token) })
        }));
    }
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| format!("chaos-check:{}", heartwire_core::protocol::random_id()));
    let client = Scripted::start(config, &channel, args.rate)?;
    let mut cx = Context {
        proxy,
        client,
        server,
        settings: Settings {
            proxied,
            token: args.token.clone(),
            tolerance: args.tolerance,
            latency: args.latency,
            jitter: args.jitter,
            idle_cut: args.idle_cut,
            restart_within: args.restart_within,
            connect_timeout,
        },
    };
    if !cx.client.wait_open(cx.reopen_within()).await {
        return Err(Error::Unreachable {
            url: args.url.clone(),
            reason: format!(
                "the check's client could not connect through its proxy: {}",
                cx.client.last_down().unwrap_or_else(|| "no answer".into())
            ),
        });
    }
    eprintln!(
        "checking {} ({}): {}, about {} unless a scenario fails",
        args.url,
        cx.server.name,
        scenarios
            .iter()
            .map(|scenario| scenario.name())
            .collect::<Vec<_>>()
            .join(", "),
        show_time(scenarios.iter().map(|s| expected_time(&cx, *s)).sum()),
    );
    let mut rows = Vec::new();
    for scenario in scenarios {
        eprintln!("running {}", scenario.name());
        if !cx.client.wait_open(cx.reopen_within()).await {
            rows.push(cx.not_back(scenario.name()));
            continue;
        }
        rows.extend(match scenario {
            Scenario::Pings => path::pings(&mut cx).await,
            Scenario::Latency => path::latency(&mut cx).await,
            Scenario::Blackhole => outage::blackhole(&mut cx, Direction::Both).await,
            Scenario::BlackholeUp => outage::blackhole(&mut cx, Direction::Up).await,
            Scenario::Reset => outage::reset(&mut cx).await,
            Scenario::IdleCut => path::idle_cut(&mut cx).await,
            Scenario::Restart => {
                let command = args.restart_command.as_deref().unwrap_or_default();
                outage::restart(&mut cx, command).await
            }
        });
    }
    cx.client.close();
    Ok(Report {
        url: args.url.clone(),
        server: cx.server,
        tolerance: args.tolerance,
        rows,
    })
}

/// The scenarios to run, in their fixed order.
fn scenarios(args: &CheckArgs) -> Result<Vec<Scenario>, Error> {
    use clap::ValueEnum;
    let mut chosen = if args.scenarios.is_empty() {
        Scenario::value_variants()
            .iter()
            .copied()
            .filter(|s| *s != Scenario::Restart || args.restart_command.is_some())
            .collect()
    } else {
        args.scenarios.clone()
    };
    chosen.sort();
    chosen.dedup();
    if chosen.contains(&Scenario::Restart) && args.restart_command.is_none() {
        return Err(Error::InvalidOption {
            option: "--scenarios",
            reason: "restart needs --restart-command, the command that restarts the server".into(),
        });
    }
    Ok(chosen)
}

/// The URL to check and the `host:port` the proxy forwards to.
fn target(text: &str) -> Result<(Url, String), Error> {
    let invalid = |reason: String| Error::InvalidOption {
        option: "URL",
        reason,
    };
    let url = Url::parse(text).map_err(|err| invalid(format!("{text:?} is not a URL: {err}")))?;
    if url.scheme() != "ws" {
        return Err(invalid(format!(
            "the scheme is `{}`; the check speaks ws:// only (for a wss:// deployment, check \
             a node's plain port behind the TLS terminator)",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| invalid(format!("{text:?} has no host")))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let upstream = format!("{host}:{port}");
    Ok((url, upstream))
}

/// How long a scenario takes when nothing fails.
fn expected_time(cx: &Context, scenario: Scenario) -> Duration {
    let settings = &cx.settings;
    let around = 2 * outage::STREAM_AROUND;
    match scenario {
        Scenario::Pings => cx.server.ping_interval,
        Scenario::Latency => {
            path::STREAM_UNDER_LATENCY + cx.heartbeat() + 2 * (settings.latency + settings.jitter)
        }
        Scenario::Blackhole | Scenario::BlackholeUp => around + cx.heartbeat(),
        Scenario::Reset => around,
        Scenario::IdleCut => settings.idle_cut + cx.server.ping_interval,
        Scenario::Restart => around,
    }
}
