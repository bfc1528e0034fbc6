//! CORS for reads only: a page served from an origin named by `--cors-origin` may read
//! the API (`GET`, `HEAD`) from a browser; nothing else may, and no origin may change the
//! node through a browser.
//!
//! Written here rather than taken from `tower-http`'s `CorsLayer`: that layer only limits
//! the methods of preflighted requests, while a browser sends a "simple" `POST` without a
//! preflight and would let the page read its answer. Here the CORS headers are added to
//! `GET` and `HEAD` answers only, and a preflight for any other method is refused.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: &str = "600";

/// Wraps `router` with the CORS rule for `origins` (none: no CORS headers at all, and
/// preflights get the router's own answer, 405).
pub fn allow(router: Router, origins: &[String]) -> Router {
    if origins.is_empty() {
        return router;
    }
    let origins: std::sync::Arc<[String]> = origins.iter().cloned().collect();
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let origins = std::sync::Arc::clone(&origins);
            async move { cors(&origins, req, next).await }
        },
    ))
}

async fn cors(origins: &[String], req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| origins.iter().any(|a| a == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let method = req.method().clone();
    if method == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let wanted = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let read = wanted == "GET" || wanted == "HEAD";
        return match origin {
            Some(o) if read => (
                StatusCode::NO_CONTENT,
                [
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, o),
                    (
                        header::ACCESS_CONTROL_ALLOW_METHODS,
                        HeaderValue::from_static("GET, HEAD"),
                    ),
                    (
                        header::ACCESS_CONTROL_ALLOW_HEADERS,
                        HeaderValue::from_static("accept"),
                    ),
                    (
                        header::ACCESS_CONTROL_MAX_AGE,
                        HeaderValue::from_static(MAX_AGE),
                    ),
                    (header::VARY, HeaderValue::from_static("Origin")),
                ],
            )
                .into_response(),
            _ => (
                StatusCode::FORBIDDEN,
                [(header::VARY, HeaderValue::from_static("Origin"))],
            )
                .into_response(),
        };
    }
    let mut answer = next.run(req).await;
    let headers = answer.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = origin.filter(|_| method == Method::GET || method == Method::HEAD) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    answer
}
