//! Bearer tokens for the /v1 API and the secret segment of the shared status URL, both
//! compared in constant time over their SHA-256 digests (so lengths do not leak either).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Secrets kept only as digests, compared in constant time. Shared, since the application
/// state that holds it is cloned for every request.
#[derive(Clone, Default)]
pub struct SecretSet {
    digests: std::sync::Arc<[[u8; 32]]>,
}

impl SecretSet {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        Self {
            digests: secrets
                .into_iter()
                .map(|s| digest(s.expose_secret()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `candidate` is one of the secrets; every secret is compared.
    pub fn contains(&self, candidate: &str) -> bool {
        let candidate = digest(candidate);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, d| {
                found | d.ct_eq(&candidate)
            })
            .into()
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Requires `Authorization: Bearer <token>` when API tokens are configured.
pub async fn require_bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.api_tokens.is_empty() {
        return Ok(next.run(request).await);
    }
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        None => Err(ApiError::Unauthorized(
            "missing bearer token: send Authorization: Bearer <token>",
        )),
        Some(token) if state.api_tokens.contains(token) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::Unauthorized("invalid bearer token")),
    }
}
