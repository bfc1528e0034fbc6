//! `GET /`: the dashboard, one self-contained page that polls the other endpoints.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub(super) async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("dashboard.html"),
    )
        .into_response()
}
