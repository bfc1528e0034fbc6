//! The dashboard: pages for people, every asset served from the binary.
//!
//! | path | page |
//! |---|---|
//! | `/` | overview: height, tip, records, mempool, peers, relays, disputes, refused blocks, live |
//! | `/relay/{id}` | a relay's curves over a range (`?range=hour\|day\|week` or `?from=&to=`) |
//! | `/explorer` | recent blocks, side branches, reorgs, search |
//! | `/block/{height or id}` | one block: header, miner, work, records with their values |
//! | `/reading/{relay}/{minute}` | one record with its inclusion proof, checked in the browser |
//!
//! Every page is the same shell (`ui/index.html`); `ui/app.js` draws the page its path
//! names from the JSON API, and loads the chart library (`ui/vendor`, uPlot, MIT) only on a
//! relay page. Nothing comes from another host (a substation may have no internet), and the
//! pages are read-only: the calls that change a node are admin calls, refused to any web
//! page ([`crate::admin`]). The headers forbid framing (no clickjacking) and any script
//! but the node's own.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Only the node's own scripts; inline styles for the chart library's sizing; no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

/// The assets under `/ui/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("ui/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("ui/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("ui/vendor/uPlot.min.css"),
    ),
    (
        "LICENSE-uPlot",
        "text/plain; charset=utf-8",
        include_str!("ui/vendor/LICENSE-uPlot"),
    ),
];

const SHELL: &str = include_str!("ui/index.html");

/// The version of a body: its hash, computed once per body (every body is compiled in).
fn etag(body: &'static str) -> String {
    type Tags = std::sync::Mutex<std::collections::HashMap<(usize, usize), String>>;
    static TAGS: std::sync::OnceLock<Tags> = std::sync::OnceLock::new();
    let compute = || {
        format!(
            "\"{}\"",
            hex::encode(&Sha256::digest(body.as_bytes())[..12])
        )
    };
    match TAGS.get_or_init(Default::default).lock() {
        Ok(mut tags) => tags
            .entry((body.as_ptr() as usize, body.len()))
            .or_insert_with(compute)
            .clone(),
        Err(_) => compute(),
    }
}

/// A page or asset with the dashboard's headers, or 304 if the browser holds this version.
fn serve(content_type: &str, body: &'static str, request: &HeaderMap) -> Response {
    // The body's hash as the version: a browser revalidates and gets 304 until the node's
    // binary changes, so an upgrade is never hidden behind a stale cache.
    let etag = etag(body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut answer = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = answer.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    answer
}

/// Every page: the shell, which draws the page its path names.
pub(super) async fn page(headers: HeaderMap) -> Response {
    serve("text/html; charset=utf-8", SHELL, &headers)
}

/// `GET /ui/{name}`: a script, a style sheet or a licence.
pub(super) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => serve(content_type, body, &headers),
        None => super::answer::ApiError::not_found(format!("no asset {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_version_is_not_sent_again() {
        let first = serve("text/plain", "body", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag.clone());
        assert_eq!(
            serve("text/plain", "body", &again).status(),
            StatusCode::NOT_MODIFIED
        );
        // Another body is another version.
        assert_eq!(
            serve("text/plain", "other", &again).status(),
            StatusCode::OK
        );
        assert!(first.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .is_ok_and(|v| v.contains("frame-ancestors 'none'")));
    }
}
