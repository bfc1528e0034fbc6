//! How the API answers: errors as one enum with one HTTP status each, store reads off the
//! node's lock, and the raw-bytes content negotiation. Shared by every resource module.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Why a request failed: each variant is one HTTP status, and the answer is always
/// `{"error": reason}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is malformed (a bad parameter, an undecodable body).
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such block, record or resource.
    #[error("{0}")]
    NotFound(String),
    /// 409: the block's parent is unknown (the node will sync).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 422: a block that breaks a rule, or a request that cannot be carried out.
    #[error("{0}")]
    Unprocessable(String),
    /// 500: the node failed (its store).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn bad_request(reason: impl std::fmt::Display) -> Response {
        ApiError::BadRequest(reason.to_string()).into_response()
    }
    pub(crate) fn not_found(reason: impl std::fmt::Display) -> Response {
        ApiError::NotFound(reason.to_string()).into_response()
    }
    pub(crate) fn internal(reason: impl std::fmt::Display) -> Response {
        ApiError::Internal(reason.to_string()).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<crate::ledger::AddError> for ApiError {
    fn from(e: crate::ledger::AddError) -> Self {
        use crate::chain::ValidationError as V;
        use crate::ledger::AddError as A;
        match e {
            A::Invalid(e @ V::Malformed(_)) => ApiError::BadRequest(e.to_string()),
            A::Invalid(e @ V::UnknownParent(_)) => ApiError::Conflict(e.to_string()),
            e @ (A::Invalid(_)
            | A::WitnessConflict { .. }
            | A::Known(_)
            | A::BelowFinal { .. }
            | A::ContradictsFinal) => ApiError::Unprocessable(e.to_string()),
            A::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Runs a store read on a blocking thread (after the core's lock is released): disk reads
/// never run on the async workers. A failure is a 500.
pub(super) async fn read_off_lock<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(e)),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// True if the client asked for raw bytes (`Accept: application/octet-stream`).
pub(super) fn wants_raw(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(crate::wire::RAW))
}
