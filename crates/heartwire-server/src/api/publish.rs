//! `POST /api/publish` and `POST /api/broadcast`: messages from the application's
//! backend, published as the server (`publish = "server"` channels included).
//!
//! Every API publish carries a publish id, so the broker answers with the message's
//! `seq` and epoch. The caller's `id` is that publish id (prefixed `api:`, so that it
//! never meets a client's): the same `id` within `--dedup-window` is not published
//! again, and the answer is the first `seq`, marked `"duplicate": true`.
//!
//! A publish to a django-websocket-redis channel (`broadcast:{facility}`, or a user's,
//! group's or session's) is also kept as the facility's last message for late
//! joiners, as django-websocket-redis's own publish does.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use futures_util::future::join_all;
use heartwire_core::ErrorCode;
use heartwire_core::protocol::{random_id, validate_channel};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::body::JsonBody;
use super::error::ApiError;
use super::inbox::Inbox;
use crate::broker::PublishRequest;
use crate::mailbox::Outbound;
use crate::permissions::identity_channels::owner_of;
use crate::publication::Payload;
use crate::state::ServerState;

/// The publisher of every API publish: its ids are its own, apart from every
/// client's (`user:…`, `addr:…`).
pub(crate) const API_PUBLISHER: &str = "$api";
/// Longest `id` a caller may give.
const MAX_ID_LEN: usize = 200;
/// Most channels of one broadcast.
const MAX_BROADCAST: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishBody {
    channel: String,
    data: Box<RawValue>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BroadcastBody {
    channels: Vec<String>,
    data: Box<RawValue>,
    #[serde(default)]
    id: Option<String>,
}

/// Where a message went.
#[derive(Debug, Serialize)]
pub(crate) struct Published {
    seq: u64,
    epoch: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

pub(crate) async fn publish(
    State(state): State<Arc<ServerState>>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Json<Published>, ApiError> {
    check_id(body.id.as_deref())?;
    publish_one(&state, body.channel, body.data, body.id.as_deref())
        .await
        .map(Json)
}

pub(crate) async fn broadcast(
    State(state): State<Arc<ServerState>>,
    JsonBody(body): JsonBody<BroadcastBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_id(body.id.as_deref())?;
    if body.channels.is_empty() || body.channels.len() > MAX_BROADCAST {
        return Err(ApiError::bad_request(format!(
            "channels must name 1 to {MAX_BROADCAST} channels"
        )));
    }
    let results = join_all(body.channels.into_iter().map(|channel| {
        let (state, data, id) = (&state, body.data.clone(), body.id.as_deref());
        async move {
            let outcome = publish_one(state, channel.clone(), data, id).await;
            match outcome {
                Ok(published) => serde_json::json!({
                    "channel": channel,
                    "seq": published.seq,
                    "epoch": published.epoch,
                    "duplicate": published.duplicate,
                }),
                Err(err) => serde_json::json!({ "channel": channel, "error": err.body() }),
            }
        }
    }))
    .await;
    Ok(Json(serde_json::json!({ "results": results })))
}

fn check_id(id: Option<&str>) -> Result<(), ApiError> {
    match id {
        Some(id) if id.is_empty() || id.len() > MAX_ID_LEN => Err(ApiError::bad_request(format!(
            "id must be 1 to {MAX_ID_LEN} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Publishes `data` on `channel` and waits for the broker's answer.
pub(crate) async fn publish_one(
    state: &ServerState,
    channel: String,
    data: Box<RawValue>,
    id: Option<&str>,
) -> Result<Published, ApiError> {
    validate_channel(&channel).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let retain = is_ws4redis(&channel);
    let published = send(state, Arc::from(channel), data, id, retain).await?;
    if !published.duplicate {
        state.metrics.api_publishes.increment(1);
    }
    Ok(published)
}

/// Publishes `data` on `channel` (a name the caller checked) and waits for the
/// broker's answer.
pub(crate) async fn send(
    state: &ServerState,
    channel: Arc<str>,
    data: Box<RawValue>,
    id: Option<&str>,
    retain: bool,
) -> Result<Published, ApiError> {
    let inbox = Inbox::new(4);
    let ack_id = format!("api:{}", id.map_or_else(random_id, str::to_owned));
    state.broker.publish(PublishRequest {
        retain,
        channel,
        payload: Payload::Json(data),
        origin: Some(inbox.mailbox()),
        ack_id: Some(ack_id),
        publisher: Arc::from(API_PUBLISHER),
    });
    // Only the answer to this publish comes to this inbox.
    match inbox.next().await? {
        Outbound::Ack {
            seq,
            epoch,
            duplicate,
            ..
        } => Ok(Published {
            seq,
            epoch: epoch.to_string(),
            duplicate,
        }),
        Outbound::Error {
            code: ErrorCode::Unavailable,
            reason,
            ..
        } => Err(ApiError::unavailable(reason)),
        Outbound::Error { reason, .. } => Err(ApiError::bad_request(reason)),
        other => Err(ApiError::unavailable(format!(
            "the broker answered a publish with {other:?}"
        ))),
    }
}

/// Whether django-websocket-redis sockets read `channel`, so that its last message is
/// kept for their late joiners.
fn is_ws4redis(channel: &str) -> bool {
    channel.starts_with("broadcast:") || owner_of(channel).is_some()
}
