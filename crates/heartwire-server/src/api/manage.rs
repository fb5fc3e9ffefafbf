//! `POST /api/disconnect` and `POST /api/unsubscribe`: end a user's connections or a
//! session, or their subscription to a channel, on every node (see [`control`]).
//!
//! A disconnected client reads the close code to decide what to do
//! (docs/PROTOCOL.md): 4403 (the default) means "do not come back", 1012 or 1013
//! with `retry after N ms` in the reason mean "come back after N ms", 4498 means
//! "come back with a fresh token", 1000 and other 4xxx codes mean "come back with
//! backoff".
//!
//! [`control`]: super::control

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use heartwire_core::protocol::{parse_session_name, validate_channel};
use serde::Deserialize;

use super::body::JsonBody;
use super::control::{Act, CONTROL_CHANNEL, Command};
use super::error::ApiError;
use super::publish::send;
use crate::registry::Target;
use crate::state::ServerState;

/// The close code of a disconnect that names none.
const DEFAULT_CODE: u16 = 4403;
/// The close reason of a disconnect that gives none.
const DEFAULT_REASON: &str = "disconnected by the server";
/// The most bytes RFC 6455 leaves for a close reason.
const MAX_REASON: usize = 123;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisconnectBody {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnsubscribeBody {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    session: Option<String>,
    channel: String,
}

pub(crate) async fn disconnect(
    State(state): State<Arc<ServerState>>,
    JsonBody(body): JsonBody<DisconnectBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let target = target(body.user, body.session)?;
    let code = body.code.unwrap_or(DEFAULT_CODE);
    if !matches!(code, 1000 | 1008 | 1012 | 1013 | 4000..=4999) {
        return Err(ApiError::bad_request(
            "code must be 1000, 1008, 1012, 1013 or 4000 to 4999",
        ));
    }
    let reason = body.reason.unwrap_or_else(|| DEFAULT_REASON.to_owned());
    if reason.len() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "reason must be at most {MAX_REASON} bytes"
        )));
    }
    command(&state, target, Act::Disconnect { code, reason }).await
}

pub(crate) async fn unsubscribe(
    State(state): State<Arc<ServerState>>,
    JsonBody(body): JsonBody<UnsubscribeBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let target = target(body.user, body.session)?;
    validate_channel(&body.channel).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let action = Act::Unsubscribe {
        channel: body.channel,
    };
    command(&state, target, action).await
}

fn target(user: Option<String>, session: Option<String>) -> Result<Target, ApiError> {
    match (user, session) {
        (Some(user), None) if !user.is_empty() => Ok(Target::User(user)),
        (None, Some(session)) => parse_session_name(&session)
            .map(Target::Session)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "session {session:?} is not a session id (16 hex digits, as in hello)"
                ))
            }),
        _ => Err(ApiError::bad_request("name either a user or a session")),
    }
}

/// Sends the command to every node; answers once the broker has it.
async fn command(
    state: &ServerState,
    target: Target,
    action: Act,
) -> Result<Json<serde_json::Value>, ApiError> {
    let command = Command { target, action };
    let data = serde_json::value::to_raw_value(&command).expect("a command encodes as JSON");
    send(state, Arc::from(CONTROL_CHANNEL), data, None, false).await?;
    Ok(Json(serde_json::json!({})))
}
