//! The admin page at `/admin`: live charts of the node (connections by endpoint,
//! round trips, disconnects by reason, publishes and deliveries, the busiest
//! channels, each node's broker state) and a box to publish a test message
//! (docs/ADMIN.md).
//!
//! It is off with the server API (no `--api-key`: 404). A visitor logs in with the
//! API key and gets a cookie ([`sessions`]); the page is one HTML file with its
//! script, no build step, that polls `/metrics` and the server API. The API takes
//! the cookie instead of the key only from requests that carry the
//! `X-Heartwire-Admin` header, which a page of another site cannot send without
//! the server's consent, so the cookie cannot be used across sites.

pub(crate) mod sessions;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::admission::ClientAddr;
use crate::api::{self, ApiError};
use crate::state::ServerState;
pub(crate) use sessions::AdminSessions;
use sessions::OverTls;

const LOGIN_HTML: &str = include_str!("../../assets/admin-login.html");
const ADMIN_HTML: &str = include_str!("../../assets/admin.html");

/// The header that lets the admin page's cookie stand for the API key.
pub(crate) const ADMIN_HEADER: &str = "x-heartwire-admin";

/// The routes of the admin page.
pub(crate) fn router() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
}

/// Whether `headers` are those of the admin page of a logged-in visitor.
pub(crate) fn admin_page_request(state: &ServerState, headers: &HeaderMap) -> bool {
    headers.contains_key(ADMIN_HEADER) && state.admin_sessions.holds(headers, Instant::now())
}

async fn page(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    if state.api_key.is_none() {
        return off();
    }
    if state.admin_sessions.holds(&headers, Instant::now()) {
        html(StatusCode::OK, ADMIN_HTML.to_owned())
    } else {
        html(StatusCode::OK, login_page(""))
    }
}

#[derive(Debug, serde::Deserialize)]
struct Login {
    key: String,
}

async fn login(
    State(state): State<Arc<ServerState>>,
    ClientAddr(address): ClientAddr,
    request: Request,
) -> Response {
    let Some(api_key) = &state.api_key else {
        return off();
    };
    let now = Instant::now();
    if let Err(wait) = state.key_guesses.take(address, now) {
        state.metrics.api_refused.increment(1);
        let secs = api::retry_after_secs(wait);
        let mut page = html(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(&format!(
                "Too many wrong keys from this address: try again in {secs} s."
            )),
        );
        page.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return page;
    }
    let over_tls = request.extensions().get::<OverTls>().is_some();
    let Ok(Form(Login { key })) = Form::<Login>::from_request(request, &state).await else {
        state.key_guesses.give_back(address);
        return html(
            StatusCode::BAD_REQUEST,
            login_page("Send the form with a key."),
        );
    };
    if !api_key.matches(key.as_bytes()) {
        state.metrics.api_refused.increment(1);
        return html(
            StatusCode::UNAUTHORIZED,
            login_page("That is not the API key."),
        );
    }
    state.key_guesses.give_back(address);
    let token = state.admin_sessions.open(now);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, sessions::set_cookie(&token, over_tls)),
            (header::LOCATION, "/admin".to_owned()),
        ],
    )
        .into_response()
}

async fn logout(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let over_tls = request.extensions().get::<OverTls>().is_some();
    state.admin_sessions.close(request.headers());
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, sessions::clear_cookie(over_tls)),
            (header::LOCATION, "/admin".to_owned()),
        ],
    )
        .into_response()
}

fn off() -> Response {
    ApiError::not_found("the admin page is off: start the server with --api-key").into_response()
}

fn login_page(notice: &str) -> String {
    LOGIN_HTML.replace("{{notice}}", notice)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The page is never framed by another site (clickjacking).
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}
