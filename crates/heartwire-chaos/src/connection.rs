//! One proxied connection: its two flows, and the faults that end it as a whole.
//!
//! The connection ends when
//!
//! - both flows have finished (each end of stream was passed on): both sockets close;
//! - a flow broke (a peer reset, a write failed): both sockets are reset;
//! - a reset was switched on since it was accepted: both sockets are reset;
//! - an idle cut is on and no byte was read from either side for its `after_ms`
//!   (counted from the cut's start when that is later): both sockets close with a FIN,
//!   as nginx, AWS's load balancers and Cloudflare close a quiet connection;
//! - the proxy stops: both sockets close.
//!
//! A reset closes a socket with `SO_LINGER` 0, which makes the kernel send RST.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::fault::Flow;
use crate::pump::{self, Ended, FlowContext};
use crate::shaping::idle_deadline;
use crate::switch::{Birth, Setting};
use crate::traffic::Traffic;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// Close both sockets (FIN).
    Graceful,
    /// Reset both sockets (RST).
    Reset,
}

/// Forwards between `client` and `upstream` until the connection ends.
pub(crate) async fn run(
    mut client: TcpStream,
    mut upstream: TcpStream,
    mut setting: watch::Receiver<Setting>,
    birth: Birth,
    traffic: Arc<Traffic>,
    stop: CancellationToken,
) {
    let close = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let context = |flow| FlowContext {
            flow,
            birth,
            setting: setting.clone(),
            traffic: &traffic,
        };
        let mut up = std::pin::pin!(pump::run(context(Flow::Up), client_read, upstream_write));
        let mut down = std::pin::pin!(pump::run(context(Flow::Down), upstream_read, client_write));
        let (mut up_done, mut down_done) = (false, false);
        loop {
            if setting.borrow_and_update().resets_since(&birth) {
                break Close::Reset;
            }
            let idle_at = idle_deadline_now(&setting, &traffic);
            tokio::select! {
                ended = &mut up, if !up_done => match ended {
                    Ended::Finished => up_done = true,
                    Ended::Broken => break Close::Reset,
                },
                ended = &mut down, if !down_done => match ended {
                    Ended::Finished => down_done = true,
                    Ended::Broken => break Close::Reset,
                },
                changed = setting.changed() => if changed.is_err() {
                    break Close::Graceful;
                },
                () = sleep_until(idle_at) => {
                    // Bytes may have passed while this slept: the deadline moved on.
                    let now = Instant::now();
                    if idle_deadline_now(&setting, &traffic).is_some_and(|at| at <= now) {
                        tracing::debug!(peer = %traffic.peer(), "idle cut");
                        break Close::Graceful;
                    }
                }
                () = stop.cancelled() => break Close::Graceful,
            }
            if up_done && down_done {
                break Close::Graceful;
            }
        }
    };
    if close == Close::Reset {
        reset(&client);
        reset(&upstream);
    }
}

/// The idle deadline as it stands now.
fn idle_deadline_now(setting: &watch::Receiver<Setting>, traffic: &Traffic) -> Option<Instant> {
    let setting = setting.borrow();
    setting
        .fault
        .idle_cut()
        .map(|after| idle_deadline(traffic.last_byte_at(), setting.since, after))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Makes the coming close of `stream` send RST.
pub(crate) fn reset(stream: &TcpStream) {
    if let Err(err) = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%err, "cannot set SO_LINGER 0; the socket closes with FIN");
    }
}
