//! The HTTP routes: WebSocket upgrades, the event stream, health, metrics and the
//! browser files.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use std::time::SystemTime;

use super::admission::{ClientAddr, retry_after_secs};
use super::auth::Caller;
use super::connection;
use super::endpoint::Endpoint;
use super::endpoint::echo::Echo;
use super::endpoint::native::Native;
use super::endpoint::ws4redis::Ws4Redis;
use super::slot::{NoSlot, Slot};
use super::state::ServerState;
use super::websocket::{Settings, Upgrade};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const HEARTWIRE_JS: &str = include_str!("../assets/heartwire.js");

/// Seconds a client refused at capacity is asked to wait at least (the spread of
/// `--shutdown-spread` comes on top).
const RETRY_AFTER_SECS: u64 = 1;

/// Seconds a client refused for its address's or user's connection count is asked
/// to wait at least: its own connections must end first.
const RETRY_AFTER_OWN_SECS: u64 = 10;

/// What the demo page may load and reach: the client library and its own inline
/// script and style (named by their hashes), its own server (the WebSocket on the
/// same origin), its icon; nothing of other origins, and no framing.
static PAGE_POLICY: LazyLock<String> = LazyLock::new(|| {
    let script = inline_hash(INDEX_HTML, "<script type=\"module\">", "</script>");
    let style = inline_hash(INDEX_HTML, "<style>", "</style>");
    format!(
        "default-src 'none'; script-src 'self' {script}; style-src {style}; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
});

/// The CSP source (`'sha256-…'`) of the text between `open` and `close` in `html`.
fn inline_hash(html: &str, open: &str, close: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let start = html.find(open).expect("the page has the element") + open.len();
    let length = html[start..].find(close).expect("the element is closed");
    let digest = sha2::Sha256::digest(&html.as_bytes()[start..start + length]);
    let hash = base64::engine::general_purpose::STANDARD.encode(digest);
    format!("'sha256-{hash}'")
}

pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY.as_str()),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        (header::X_FRAME_OPTIONS, "DENY"),
                        (header::REFERRER_POLICY, "no-referrer"),
                    ],
                    INDEX_HTML,
                )
            }),
        )
        .route(
            "/heartwire.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        // A library that pages of any origin may import; nothing else the
                        // server serves is readable across origins.
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    HEARTWIRE_JS,
                )
            }),
        )
        .route("/ws", get(native))
        .route("/ws/{facility}", get(ws4redis))
        .route("/echo", get(echo))
        .route("/sse", get(super::sse::open))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(super::api::router(state.clone()))
        .merge(super::admin::router())
        .with_state(state)
}

async fn native(
    State(state): State<Arc<ServerState>>,
    ClientAddr(address): ClientAddr,
    caller: Caller,
    upgrade: Upgrade,
) -> Response {
    accept(state, address, caller, upgrade, Native::default()).await
}

async fn echo(
    State(state): State<Arc<ServerState>>,
    ClientAddr(address): ClientAddr,
    caller: Caller,
    upgrade: Upgrade,
) -> Response {
    accept(state, address, caller, upgrade, Echo).await
}

async fn ws4redis(
    State(state): State<Arc<ServerState>>,
    Path(facility): Path<String>,
    RawQuery(query): RawQuery,
    ClientAddr(address): ClientAddr,
    caller: Caller,
    upgrade: Upgrade,
) -> Response {
    match Ws4Redis::from_request(&facility, query.as_deref()) {
        Ok(endpoint) => accept(state, address, caller, upgrade, endpoint).await,
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

/// Upgrades to a WebSocket driven by `endpoint` for the identity of `caller`; refuses
/// with 503 when the server holds `max-connections` already, is overloaded or is
/// shutting down, and
/// with 429 when the caller's address or user holds its most.
///
/// A caller refused for its credentials is upgraded all the same, and sent one close
/// frame with the refusal's code and reason: browsers cannot read the status of a
/// failed handshake, but they see a close code. It never receives `hello` or data.
async fn accept<E: Endpoint>(
    state: Arc<ServerState>,
    address: std::net::IpAddr,
    caller: Caller,
    upgrade: Upgrade,
    endpoint: E,
) -> Response {
    let mut slot = match Slot::reserve(&state, address) {
        Ok(slot) => slot,
        Err(no_slot) => return refuse(&state, no_slot),
    };
    let compression = state.config.compression;
    let settings = Settings {
        max_message_size: state.config.limits.max_message_size,
        compression_min_size: compression
            .compression
            .then_some(compression.compression_min_size),
    };
    match state.auth.identify(caller, SystemTime::now()).await {
        Ok(identity) => {
            if let Some(identity) = &identity {
                if !slot.claim_user(&identity.user) {
                    state.metrics.refused("max_connections_per_user");
                    let reason = "this user holds max-connections-per-user connections already; close one, or retry later";
                    return too_many(&state, reason);
                }
            }
            upgrade.on_upgrade(settings, move |socket| {
                connection::start(socket, endpoint, identity, slot)
            })
        }
        Err(refusal) => {
            state.metrics.refused(refusal.label());
            tracing::debug!(%refusal, "connection refused");
            let close_timeout = state.config.liveness.close_timeout;
            upgrade.on_upgrade(settings, move |socket| {
                Box::pin(async move {
                    socket
                        .close_at_once(refusal.close_code(), &refusal.close_reason(), close_timeout)
                        .await;
                    // The slot is held until the refused socket is gone.
                    drop(slot);
                })
            })
        }
    }
}

/// The answer to an upgrade that got no slot.
pub(crate) fn refuse(state: &ServerState, no_slot: NoSlot) -> Response {
    let reason = match no_slot {
        NoSlot::Draining => "server shutting down; retry later",
        NoSlot::Full => "server at max-connections; retry later",
        NoSlot::Overloaded(signal) => {
            state.metrics.refused(signal.label());
            return unavailable(state, signal.reason());
        }
        NoSlot::AddressFull => {
            state.metrics.refused("max_connections_per_ip");
            return too_many(
                state,
                "this address holds max-connections-per-ip connections already; close one, or retry later",
            );
        }
    };
    state.metrics.rejected_at_capacity.increment(1);
    unavailable(state, reason)
}

/// HTTP 503 with a `Retry-After` spread over `--shutdown-spread`.
fn unavailable(state: &ServerState, reason: &'static str) -> Response {
    let wait = retry_after_secs(
        RETRY_AFTER_SECS,
        state.config.shutdown_spread,
        &mut rand::rng(),
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, wait.to_string())],
        reason,
    )
        .into_response()
}

/// HTTP 429 with `Retry-After`: the client's own connections are the limit.
pub(crate) fn too_many(state: &ServerState, reason: &'static str) -> Response {
    let wait = retry_after_secs(
        RETRY_AFTER_OWN_SECS,
        state.config.shutdown_spread,
        &mut rand::rng(),
    );
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, wait.to_string())],
        reason,
    )
        .into_response()
}

async fn healthz(State(state): State<Arc<ServerState>>) -> Response {
    // A node whose broker is down still serves its own connections, so it answers
    // 200 "degraded": a load balancer keeps it rather than moving every client.
    let health = state.broker.health();
    let (status, word) = if state.registry.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !health.up {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    let shards: Vec<_> = health
        .shards
        .iter()
        .map(|shard| {
            serde_json::json!({
                "name": shard.name,
                "master": shard.master,
                "up": shard.up,
                "reconnects": shard.reconnects,
                "failovers": shard.failovers,
                "channels": shard.channels,
            })
        })
        .collect();
    let body = serde_json::json!({
        "status": word,
        "version": env!("CARGO_PKG_VERSION"),
        "node": state.broker.node_id(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "broker": state.broker.name(),
        "broker_up": health.up,
        "broker_reconnects": health.reconnects,
        "broker_failovers": health.failovers,
        "broker_epochs_renewed": health.epochs_renewed,
        "broker_shards": shards,
        "connections": state.registry.len(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.render(&state.broker.health()),
    )
        .into_response()
}
