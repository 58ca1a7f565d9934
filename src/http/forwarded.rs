//! The address a request reached callhook by, for building the status URL AI Studio calls back.

use axum::http::{HeaderMap, header};

use super::error::ApiError;

/// The base URL of the status URL AI Studio gets: `CALLHOOK_PUBLIC_URL`, or else the one this
/// request reached callhook by (`X-Forwarded-Proto` and `X-Forwarded-Host` from a proxy,
/// else `Host`), as web frameworks build absolute URLs.
pub fn status_base(public_url: Option<&str>, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(public_url) = public_url {
        return Ok(public_url.to_owned());
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match first("x-forwarded-proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    first("x-forwarded-host")
        .or_else(|| first(header::HOST.as_str()))
        .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
        .filter(|authority| !authority.as_str().contains('@'))
        .map(|authority| format!("{scheme}://{authority}"))
        .ok_or_else(|| {
            ApiError::Unavailable(
                "CALLHOOK_PUBLIC_URL is not set and the request has no Host header to build \
                 AI Studio's status URL from"
                    .into(),
            )
        })
}
