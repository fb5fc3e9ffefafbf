//! `GET /api/history`: the messages a channel keeps, read the way a resuming client
//! reads them.
//!
//! The broker has one way to read history, the one connections use: subscribe with a
//! position and receive what follows it. The call subscribes an inbox of its own for
//! a moment: once to learn the channel's epoch and latest `seq`, then from the asked
//! position (or the oldest kept, `--history-size` back), and unsubscribes when done.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use heartwire_core::protocol::{Position, validate_channel};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::body::QueryOf;
use super::error::ApiError;
use super::inbox::Inbox;
use crate::broker::{Broker, SubscribeRequest};
use crate::id::ConnectionId;
use crate::mailbox::Outbound;
use crate::publication::{Payload, Publication};
use crate::state::ServerState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    channel: String,
    /// Messages after this `seq` (0: all that are kept).
    #[serde(default)]
    since: u64,
    /// The epoch `since` counts in; another one answers `recovered: false`.
    #[serde(default)]
    epoch: Option<String>,
    /// At most this many messages.
    #[serde(default)]
    limit: Option<usize>,
    /// Newest first (with `limit`: the newest ones).
    #[serde(default)]
    reverse: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct History {
    channel: String,
    epoch: String,
    /// The channel's latest `seq`.
    seq: u64,
    /// Whether every message after `since` (in `epoch`) is here, before `limit`.
    recovered: bool,
    publications: Vec<Kept>,
}

#[derive(Debug, Serialize)]
struct Kept {
    seq: u64,
    data: Box<RawValue>,
}

impl Kept {
    fn of(message: &Publication) -> Self {
        let data = match &message.payload {
            Payload::Json(data) => data.clone(),
            Payload::Text(text) => {
                serde_json::value::to_raw_value(text).expect("a string always encodes as JSON")
            }
        };
        Self {
            seq: message.seq,
            data,
        }
    }
}

pub(crate) async fn history(
    State(state): State<Arc<ServerState>>,
    QueryOf(query): QueryOf<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    validate_channel(&query.channel).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let channel: Arc<str> = Arc::from(query.channel.as_str());
    let (epoch, latest, _) = read(&state, &channel, None, 4, |_| true).await?.0;
    let mut answer = History {
        channel: query.channel,
        epoch,
        seq: latest,
        recovered: true,
        publications: Vec::new(),
    };
    if query
        .epoch
        .as_ref()
        .is_some_and(|epoch| *epoch != answer.epoch)
        || query.since > latest
    {
        answer.recovered = false;
        return Ok(Json(answer));
    }
    let kept = state.config.retention.history_size as u64;
    let from = query.since.max(latest.saturating_sub(kept));
    if from < latest {
        let since = Position {
            epoch: answer.epoch.clone(),
            seq: from,
        };
        let capacity = state.config.retention.history_size + 8;
        let ((epoch, latest, recovered), messages) =
            read(&state, &channel, Some(since), capacity, |seq| seq > from).await?;
        answer.epoch = epoch;
        answer.seq = latest;
        answer.recovered = recovered == Some(true) && from == query.since;
        answer.publications = messages.iter().map(|message| Kept::of(message)).collect();
    }
    if query.reverse {
        answer.publications.reverse();
    }
    if let Some(limit) = query.limit {
        answer.publications.truncate(limit);
    }
    Ok(Json(answer))
}

/// The channel's position and whether it recovered `since`.
type Confirmed = (String, u64, Option<bool>);

/// Subscribes an inbox to `channel` (from `since`, when given), and reads the
/// confirmation and the recovered messages that `wanted` picks, up to the latest.
async fn read(
    state: &ServerState,
    channel: &Arc<str>,
    since: Option<Position>,
    capacity: usize,
    wanted: impl Fn(u64) -> bool,
) -> Result<(Confirmed, Vec<Arc<Publication>>), ApiError> {
    let inbox = Inbox::new(capacity);
    let mailbox = inbox.mailbox();
    let _subscribed = Subscribed {
        broker: state.broker.clone(),
        channel: channel.clone(),
        id: mailbox.id(),
    };
    let recovering = since.is_some();
    state.broker.subscribe(SubscribeRequest {
        channel: channel.clone(),
        subscriber: mailbox,
        with_retained: false,
        since,
        presence: false,
        user: None,
    });
    let (epoch, latest, recovered) = loop {
        if let Outbound::Subscribed {
            seq,
            epoch,
            recovered,
            ..
        } = inbox.next().await?
        {
            break (epoch.to_string(), seq, recovered);
        }
    };
    let mut messages = Vec::new();
    if recovering && recovered == Some(true) {
        // Recovered messages come first, in order, up to `latest`; live ones after.
        let mut last = 0;
        while last < latest {
            if let Outbound::Message(message) = inbox.next().await? {
                if message.seq == 0 {
                    continue;
                }
                last = message.seq;
                if wanted(message.seq) && message.seq <= latest {
                    messages.push(message);
                }
            }
        }
    }
    Ok(((epoch, latest, recovered), messages))
}

/// Unsubscribes the inbox when the call ends, however it ends.
struct Subscribed {
    broker: Arc<dyn Broker>,
    channel: Arc<str>,
    id: ConnectionId,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.broker.unsubscribe(&self.channel, self.id);
    }
}
