//! The API's extractors: a JSON body no larger than `--max-message-size`, and a
//! query string, each refused with an [`ApiError`] that says what is wrong.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::state::ServerState;

/// A JSON request body, read up to `--max-message-size` bytes (413 beyond, 400
/// when it is not the JSON the call takes).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Arc<ServerState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<ServerState>) -> Result<Self, ApiError> {
        let limit = state.config.limits.max_message_size;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(ApiError::too_large(limit));
        }
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|err| {
                let source = err.into_inner();
                if source.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::too_large(limit)
                } else {
                    ApiError::bad_request(format!("the body could not be read: {source}"))
                }
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|err| {
            ApiError::bad_request(format!("the body is not the JSON expected: {err}"))
        })
    }
}

/// A query string read into `T` (400 when it does not fit).
#[derive(Debug)]
pub(crate) struct QueryOf<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| QueryOf(query))
            .map_err(|rejection: QueryRejection| ApiError::bad_request(rejection.body_text()))
    }
}
