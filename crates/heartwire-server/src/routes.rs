//! The HTTP routes: WebSocket upgrades, health, metrics and the browser files.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use std::time::SystemTime;

use super::auth::Caller;
use super::connection;
use super::endpoint::Endpoint;
use super::endpoint::echo::Echo;
use super::endpoint::native::Native;
use super::endpoint::ws4redis::Ws4Redis;
use super::slot::Slot;
use super::state::ServerState;
use super::websocket::{Settings, Upgrade};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const HEARTWIRE_JS: &str = include_str!("../assets/heartwire.js");

/// Seconds a client refused at capacity is asked to wait.
const RETRY_AFTER_SECS: &str = "1";

pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
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
                    ],
                    HEARTWIRE_JS,
                )
            }),
        )
        .route("/ws", get(native))
        .route("/ws/{facility}", get(ws4redis))
        .route("/echo", get(echo))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn native(
    State(state): State<Arc<ServerState>>,
    caller: Caller,
    upgrade: Upgrade,
) -> Response {
    accept(state, caller, upgrade, Native::default()).await
}

async fn echo(State(state): State<Arc<ServerState>>, caller: Caller, upgrade: Upgrade) -> Response {
    accept(state, caller, upgrade, Echo).await
}

async fn ws4redis(
    State(state): State<Arc<ServerState>>,
    Path(facility): Path<String>,
    RawQuery(query): RawQuery,
    caller: Caller,
    upgrade: Upgrade,
) -> Response {
    match Ws4Redis::from_request(&facility, query.as_deref()) {
        Ok(endpoint) => accept(state, caller, upgrade, endpoint).await,
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

/// Upgrades to a WebSocket driven by `endpoint` for the identity of `caller`; refuses
/// with 503 when the server holds `max-connections` already or is shutting down.
///
/// A caller refused for its credentials is upgraded all the same, and sent one close
/// frame with the refusal's code and reason: browsers cannot read the status of a
/// failed handshake, but they see a close code. It never receives `hello` or data.
async fn accept<E: Endpoint>(
    state: Arc<ServerState>,
    caller: Caller,
    upgrade: Upgrade,
    endpoint: E,
) -> Response {
    let Some(slot) = Slot::reserve(&state) else {
        state.metrics.rejected_at_capacity.increment(1);
        let reason = if state.registry.is_draining() {
            "server shutting down; retry later"
        } else {
            "server at max-connections; retry later"
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
            reason,
        )
            .into_response();
    };
    let compression = state.config.compression;
    let settings = Settings {
        max_message_size: state.config.limits.max_message_size,
        compression_min_size: compression
            .compression
            .then_some(compression.compression_min_size),
    };
    match state.auth.identify(caller, SystemTime::now()).await {
        Ok(identity) => upgrade.on_upgrade(settings, move |socket| {
            connection::start(socket, endpoint, identity, slot)
        }),
        Err(refusal) => {
            state.metrics.refused(refusal.label());
            tracing::debug!(%refusal, "connection refused");
            let close_timeout = state.config.liveness.close_timeout;
            upgrade.on_upgrade(settings, move |socket| async move {
                socket
                    .close_at_once(refusal.close_code(), &refusal.close_reason(), close_timeout)
                    .await;
                // The slot is held until the refused socket is gone.
                drop(slot);
            })
        }
    }
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
