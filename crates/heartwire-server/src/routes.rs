//! The HTTP routes: WebSocket upgrades, health, metrics and the browser files.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::auth::Identity;
use super::connection;
use super::endpoint::Endpoint;
use super::endpoint::echo::Echo;
use super::endpoint::native::Native;
use super::endpoint::ws4redis::Ws4Redis;
use super::slot::Slot;
use super::state::ServerState;
use super::websocket::Upgrade;

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

async fn native(State(state): State<Arc<ServerState>>, upgrade: Upgrade) -> Response {
    accept(state, upgrade, Native::default(), None)
}

async fn echo(State(state): State<Arc<ServerState>>, upgrade: Upgrade) -> Response {
    accept(state, upgrade, Echo, None)
}

async fn ws4redis(
    State(state): State<Arc<ServerState>>,
    Path(facility): Path<String>,
    RawQuery(query): RawQuery,
    upgrade: Upgrade,
) -> Response {
    match Ws4Redis::from_request(&facility, query.as_deref()) {
        Ok(endpoint) => accept(state, upgrade, endpoint, None),
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

/// Upgrades to a WebSocket driven by `endpoint` for `identity` (`None`: anonymous),
/// or refuses with 503 when the server holds `max-connections` already or is
/// shutting down.
fn accept<E: Endpoint>(
    state: Arc<ServerState>,
    upgrade: Upgrade,
    endpoint: E,
    identity: Option<Box<Identity>>,
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
    upgrade.on_upgrade(state.config.limits.max_message_size, move |socket| {
        connection::start(socket, endpoint, identity, slot)
    })
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
    let body = serde_json::json!({
        "status": word,
        "broker": state.broker.name(),
        "broker_up": health.up,
        "broker_reconnects": health.reconnects,
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
        state.metrics.render(state.broker.health()),
    )
        .into_response()
}
