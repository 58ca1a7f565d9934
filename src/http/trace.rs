//! Request spans and request ids, bounded whatever a client sends.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, Method};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` propagated; longer ones are replaced by a generated id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The method as a log field or metric label: the ones HTTP defines, else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Whether a client's request id may be echoed and logged: 1 to 128 visible ASCII characters.
pub fn usable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(u8::is_ascii_graphic)
}

/// Removes a request id that is too long or not printable, so that one is generated instead.
pub async fn drop_unusable_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let usable = headers
        .get_all(&REQUEST_ID)
        .iter()
        .map(|v| usable_request_id(v.as_bytes()))
        .collect::<Vec<_>>();
    if usable.len() > 1 || usable.first() == Some(&false) {
        headers.remove(&REQUEST_ID);
    }
    request
}

/// The span of one request: method, matched route and request id. The path is not logged,
/// since the status URLs carry secrets in it.
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = method_label(request.method()),
        route,
        request_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_and_printable() {
        assert!(usable_request_id(b"a1b2-c3"));
        assert!(usable_request_id(&[b'x'; MAX_REQUEST_ID_LEN]));
        assert!(!usable_request_id(&[b'x'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!usable_request_id(b""));
        assert!(!usable_request_id(b"has space"));
        assert!(!usable_request_id("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }
}
