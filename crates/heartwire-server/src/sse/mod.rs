//! `/sse`: channel messages as Server-Sent Events, for clients that cannot open a
//! WebSocket (a proxy that strips upgrades, a page that only needs to listen).
//!
//! `GET /sse?channel=a&channel=b` answers `text/event-stream`. Before the stream
//! starts, the request is checked as a `/ws` upgrade is: its `Origin` and its
//! credentials ([`Caller`], then [`Auth::identify`](crate::auth)), and the
//! `subscribe` permission on every channel; a refusal is an HTTP status with a
//! sentence. The stream then carries:
//! - a `subscribed` event per channel (a `gap` event instead when history no longer
//!   covers the position the client resumes from), then every message as an event of
//!   the default type whose data is the `message` envelope of `/ws`;
//! - in each event's `id`, the position of every channel (`event_id`), which a
//!   browser sends back as `Last-Event-ID` when it reconnects: the stream resumes
//!   each channel exactly as a `subscribe` with `since` does;
//! - a comment every `--ping-interval` of silence, and the `retry:` field;
//! - at the end: `reconnect` at shutdown, `expired` when the token runs out.
//!
//! The stream takes a [`Slot`] like a WebSocket (`--max-connections`), its mailbox
//! has the same bound (`--outbound-queue`; a client that does not read is cut,
//! `watchdog`), and `/metrics` counts it as `endpoint="sse"`.

mod event;
mod event_id;
mod request;
mod stream;
mod watchdog;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;

use crate::admission::ClientAddr;
use crate::auth::{Caller, Identity, Refusal, expiry};
use crate::broker::SubscribeRequest;
use crate::endpoint::EndpointKind;
use crate::listener::{Cut, Unupgraded};
use crate::permissions::{self, Action};
use crate::routes;
use crate::slot::Slot;
use crate::state::ServerState;
use event_id::Positions;
use request::StreamRequest;
use stream::EventStream;

/// The header with which a browser's `EventSource` resumes.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// `GET /sse`: see the [module docs](self).
pub(crate) async fn open(
    State(server): State<Arc<ServerState>>,
    RawQuery(query): RawQuery,
    Extension(cut): Extension<Cut>,
    Extension(connection): Extension<Arc<Unupgraded>>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    caller: Caller,
) -> Response {
    let last_event_id = match headers.get(LAST_EVENT_ID).map(|value| value.to_str()) {
        Some(Err(_)) => return bad_request("Last-Event-ID is not ASCII text".into()),
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let max_channels = server.config.limits.max_subscriptions;
    let request = match StreamRequest::parse(query.as_deref(), last_event_id, max_channels) {
        Ok(request) => request,
        Err(reason) => return bad_request(reason),
    };
    let mut slot = match Slot::reserve(&server, address) {
        Ok(slot) => slot,
        Err(no_slot) => return routes::refuse(&server, no_slot),
    };
    let now = SystemTime::now();
    let identity = match server.auth.identify(caller, now).await {
        Ok(identity) => identity,
        Err(refusal) => {
            server.metrics.refused(refusal.label());
            tracing::debug!(%refusal, "event stream refused");
            return refusal_response(&refusal);
        }
    };
    if let Some(identity) = &identity {
        if !slot.claim_user(&identity.user) {
            server.metrics.refused("max_connections_per_user");
            return routes::too_many(
                &server,
                "this user holds max-connections-per-user connections already; close one, or retry later",
            );
        }
    }
    let channels = &server.config.channels;
    for channel in &request.channels {
        if let Err(forbidden) =
            permissions::check(channels, identity.as_deref(), Action::Subscribe, channel)
        {
            return refused(StatusCode::FORBIDDEN, &forbidden.reason, None);
        }
    }
    // Unlike a WebSocket, a stream cannot be sent a fresh token: it ends when its
    // token does, and the client opens it again with a new one.
    let expires_in = expiry::time_left(identity.as_deref(), Duration::ZERO, now);
    let user = identity
        .as_ref()
        .map(|identity| Arc::from(identity.user.as_str()));
    let mailbox = slot.open(EndpointKind::Sse, user).clone();
    // The slot counts the connection against --max-connections from now on.
    connection.stop_counting();
    let positions = subscribe(&server, &request, identity.as_deref(), &mailbox);
    let base = millis(server.config.sse.sse_retry);
    let retry_ms = rand::rng().random_range(base..=base.saturating_mul(2));
    let origin = headers.get(header::ORIGIN).cloned();
    let body = EventStream::new(
        slot,
        cut,
        mailbox,
        request.channels,
        positions,
        retry_ms,
        expires_in,
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            // The connection ends with the stream: an `EventSource` reconnects on a new
            // one, which a draining server no longer accepts (another node does), rather
            // than on this one, where it would be refused with a status it never retries.
            (header::CONNECTION, "close"),
            // Proxies such as nginx would otherwise buffer the stream.
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response();
    if let Some(origin) = origin {
        allow_reading_from(&mut response, origin);
    }
    response
}

/// Lets a page of `origin`, which passed the origin check, read the stream: unlike a
/// WebSocket, an `EventSource` of another origin needs CORS, with credentials for one
/// opened `withCredentials` (its cookies are what the connect hook reads).
fn allow_reading_from(response: &mut Response, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
}

/// Subscribes the stream's mailbox to each channel, from the position the client
/// resumes at when it may replay history (else it is told of a gap), and returns the
/// stream's starting positions.
fn subscribe(
    server: &ServerState,
    request: &StreamRequest,
    identity: Option<&Identity>,
    mailbox: &Arc<crate::mailbox::Mailbox>,
) -> Positions {
    let resume = request
        .resume
        .clone()
        .unwrap_or_else(|| Positions::none(request.channels.len()));
    let user = identity.map(|identity| Arc::from(identity.user.as_str()));
    for (index, channel) in request.channels.iter().enumerate() {
        let since = resume.get(index).map(|since| {
            match permissions::check(&server.config.channels, identity, Action::History, channel) {
                Ok(()) => since.clone(),
                Err(_) => SubscribeRequest::unreplayable(),
            }
        });
        server.broker.subscribe(SubscribeRequest {
            channel: channel.clone(),
            subscriber: mailbox.clone(),
            with_retained: false,
            since,
            presence: server.config.has_presence(channel),
            user: user.clone(),
        });
    }
    resume
}

fn millis(duration: Duration) -> u64 {
    heartwire_core::protocol::millis(duration)
}

fn bad_request(reason: String) -> Response {
    refused(StatusCode::BAD_REQUEST, &reason, None)
}

/// The HTTP answer to a refusal of credentials: 401 to sign in (again), 403 for an
/// identity that is not let in, 503 with `Retry-After` when they cannot be checked now.
fn refusal_response(refusal: &Refusal) -> Response {
    let reason = refusal.close_reason();
    match refusal {
        Refusal::Unauthorized(_) | Refusal::Expired(_) => {
            refused(StatusCode::UNAUTHORIZED, &reason, None)
        }
        Refusal::Forbidden(_) => refused(StatusCode::FORBIDDEN, &reason, None),
        Refusal::Unavailable { retry_after, .. } => {
            let seconds = retry_after.as_secs().max(1).to_string();
            refused(StatusCode::SERVICE_UNAVAILABLE, &reason, Some(&seconds))
        }
    }
}

/// A refusal with `status`, a sentence, and `Retry-After` when given.
fn refused(status: StatusCode, reason: &str, retry_after: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response();
    if let Some(seconds) = retry_after
        && let Ok(value) = seconds.parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
