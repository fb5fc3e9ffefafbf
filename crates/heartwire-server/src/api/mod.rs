//! The server API for the application's backend: publish, broadcast, history,
//! presence, channels and info, as JSON over HTTP under `/api/` (docs/API.md).
//!
//! The API is off unless the server has a key (`--api-key`, `--api-key-file`); a
//! call sends it in the `X-API-Key` header ([`key`] compares it in constant time),
//! or comes from the admin page of a logged-in visitor (see [`crate::admin`]). An
//! address that sends wrong keys is slowed down ([`guesses`]).
//! The API acts as the server: it may publish on any channel, including those whose
//! rule says `publish = "server"`. Every error is an HTTP status with
//! `{"error":{"code":…,"message":…}}` ([`error`]).
//!
//! - [`body`]: the JSON body (at most `--max-message-size`) and query extractors;
//! - [`inbox`]: a mailbox of the call's own, where the broker answers;
//! - [`publish`]: `POST /api/publish` and `POST /api/broadcast`;
//! - [`history`]: `GET /api/history`;
//! - [`inspect`]: `GET /api/presence`, `/api/channels` and `/api/info`;
//! - [`manage`]: `POST /api/disconnect` and `/api/unsubscribe`, which reach every
//!   node through [`control`];
//! - [`nodes`]: each node's report of itself, for `/api/info`.

mod body;
mod control;
mod error;
mod guesses;
mod history;
mod inbox;
mod inspect;
pub(crate) mod key;
mod manage;
mod nodes;
mod publish;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use crate::admission::ClientAddr;
use crate::state::ServerState;
pub(crate) use control::Control;
pub(crate) use error::ApiError;
pub(crate) use guesses::{KeyGuesses, retry_after_secs};
pub(crate) use key::ApiKey;
pub(crate) use nodes::NodeReports;

/// The header that carries the key.
pub(crate) const KEY_HEADER: &str = "x-api-key";

/// The routes under `/api/`, behind the key.
pub(crate) fn router(state: Arc<ServerState>) -> Router<Arc<ServerState>> {
    Router::new()
        .route("/api/publish", post(publish::publish))
        .route("/api/broadcast", post(publish::broadcast))
        .route("/api/history", get(history::history))
        .route("/api/presence", get(inspect::presence))
        .route("/api/channels", get(inspect::channels))
        .route("/api/info", get(inspect::info))
        .route("/api/disconnect", post(manage::disconnect))
        .route("/api/unsubscribe", post(manage::unsubscribe))
        .route("/api/{*rest}", any(unknown))
        .route_layer(middleware::from_fn_with_state(state, require_key))
}

/// Lets a call through only with the key; 404 for every call while the API is off.
async fn require_key(
    State(state): State<Arc<ServerState>>,
    ClientAddr(address): ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = &state.api_key else {
        return ApiError::not_found("the server API is off: start the server with --api-key")
            .into_response();
    };
    if crate::admin::admin_page_request(&state, request.headers()) {
        return next.run(request).await;
    }
    let Some(presented) = request.headers().get(KEY_HEADER) else {
        state.metrics.api_refused.increment(1);
        return ApiError::unauthorized().into_response();
    };
    if let Err(wait) = state.key_guesses.take(address, Instant::now()) {
        state.metrics.api_refused.increment(1);
        return guesses::refusal(wait);
    }
    if key.matches(presented.as_bytes()) {
        state.key_guesses.give_back(address);
        next.run(request).await
    } else {
        state.metrics.api_refused.increment(1);
        ApiError::unauthorized().into_response()
    }
}

async fn unknown(request: Request) -> ApiError {
    ApiError::not_found(format!("no API call {}", request.uri().path()))
}
