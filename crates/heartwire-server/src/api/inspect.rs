//! `GET /api/presence`, `/api/channels` and `/api/info`: who is on a channel, which
//! channels are in use, and how the node is doing.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use heartwire_core::protocol::{session_name, validate_channel};
use serde::Deserialize;

use super::body::QueryOf;
use super::error::ApiError;
use super::inbox::Inbox;
use crate::config::glob_matches;
use crate::mailbox::Outbound;
use crate::state::ServerState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresenceQuery {
    channel: String,
}

pub(crate) async fn presence(
    State(state): State<Arc<ServerState>>,
    QueryOf(query): QueryOf<PresenceQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let channel = query.channel;
    validate_channel(&channel).map_err(|err| ApiError::bad_request(err.to_string()))?;
    if !state.config.has_presence(&channel) {
        return Err(ApiError::not_found(format!(
            "{channel} has no presence: the server tracks the channels that match --presence"
        )));
    }
    let inbox = Inbox::new(4);
    state
        .broker
        .presence(Arc::from(channel.as_str()), inbox.mailbox());
    loop {
        if let Outbound::Presence { members, .. } = inbox.next().await? {
            let members: Vec<_> = members
                .iter()
                .map(|member| {
                    serde_json::json!({
                        "session": session_name(member.session),
                        "user": member.user.as_deref(),
                    })
                })
                .collect();
            return Ok(Json(
                serde_json::json!({ "channel": channel, "members": members }),
            ));
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelsQuery {
    /// A glob (`room:*`); every channel without it.
    #[serde(default)]
    pattern: Option<String>,
}

pub(crate) async fn channels(
    State(state): State<Arc<ServerState>>,
    QueryOf(query): QueryOf<ChannelsQuery>,
) -> Json<serde_json::Value> {
    let mut channels = state.broker.channels();
    // The server's own channels (`$…`) are no client's business.
    channels.retain(|(channel, _)| !channel.starts_with('$'));
    if let Some(pattern) = &query.pattern {
        channels.retain(|(channel, _)| glob_matches(pattern, channel));
    }
    channels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let channels: Vec<_> = channels
        .iter()
        .map(|(channel, subscribers)| {
            serde_json::json!({ "channel": &**channel, "subscribers": subscribers })
        })
        .collect();
    Json(serde_json::json!({ "channels": channels }))
}

pub(crate) async fn info(State(state): State<Arc<ServerState>>) -> Json<serde_json::Value> {
    let mut info = info_of(&state);
    info["nodes"] = serde_json::Value::Array(state.node_reports.current(info.clone()));
    Json(info)
}

/// The node's id, version, connections and broker state.
pub(crate) fn info_of(state: &ServerState) -> serde_json::Value {
    let health = state.broker.health();
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
    serde_json::json!({
        "node": state.node_reports.id,
        "version": env!("CARGO_PKG_VERSION"),
        "connections": state.registry.len(),
        "draining": state.registry.is_draining(),
        "broker": {
            "name": state.broker.name(),
            "up": health.up,
            "reconnects": health.reconnects,
            "failovers": health.failovers,
            "epochs_renewed": health.epochs_renewed,
            "shards": shards,
        },
    })
}
