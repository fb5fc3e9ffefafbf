//! The control API of `heartwire chaos proxy`, over HTTP/1.1:
//!
//! - `GET /fault`: the fault in force, as JSON with every default spelled out;
//! - `POST /fault` with a fault as the JSON body: switches to it at once and answers
//!   with it; a body that is not a valid fault gets HTTP 400 and a sentence saying why;
//! - `GET /connections`: the open connections, with their silence and byte counts.
//!
//! Any other path gets 404 with the list above. There is no authentication: the API
//! listens only on the address it is given, which should be a loopback or private one.

use std::future::Future;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::Error;
use crate::fault::Fault;
use crate::proxy::ProxyHandle;
use crate::traffic::ConnectionInfo;

/// The routes of the control API, acting on `proxy`.
pub fn router(proxy: ProxyHandle) -> Router {
    Router::new()
        .route("/fault", get(current_fault).post(switch_fault))
        .route("/connections", get(connections))
        .fallback(unknown_path)
        .with_state(proxy)
}

/// Serves the control API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    proxy: ProxyHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().map_err(Error::Control)?;
    axum::serve(listener, router(proxy))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Control)?;
    tracing::debug!(%addr, "control API stopped");
    Ok(())
}

async fn current_fault(State(proxy): State<ProxyHandle>) -> Json<Fault> {
    Json(proxy.fault())
}

async fn switch_fault(State(proxy): State<ProxyHandle>, body: Bytes) -> Response {
    match Fault::from_json(&body) {
        Ok(fault) => {
            tracing::info!(%fault, "fault switched");
            proxy.set(fault);
            Json(fault).into_response()
        }
        Err(err) => (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
    }
}

async fn connections(State(proxy): State<ProxyHandle>) -> Json<Vec<ConnectionInfo>> {
    Json(proxy.connections())
}

async fn unknown_path() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "no such path: the control API has GET /fault, POST /fault and GET /connections\n",
    )
}
