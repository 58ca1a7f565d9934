//! `GET /console`: the operator's console, a page embedded in the binary that reads the
//! `/v1` API from the browser with the operator's token. Nothing is loaded from other hosts;
//! the page needs no token, its data does.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Scripts, styles and requests from this origin only; no framing, no inline code.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The console page.
#[utoipa::path(
    get,
    path = "/console",
    tag = "ops",
    responses((status = 200, description = "The console (HTML)", content_type = "text/html")),
)]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// The console's script.
#[utoipa::path(
    get,
    path = "/console/app.js",
    tag = "ops",
    responses((status = 200, description = "The console's script", content_type = "text/javascript")),
)]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The console's style sheet.
#[utoipa::path(
    get,
    path = "/console/app.css",
    tag = "ops",
    responses((status = 200, description = "The console's style sheet", content_type = "text/css")),
)]
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
            // A new build serves its own page: the browser checks each time.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
