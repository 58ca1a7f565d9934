//! A status callback that was refused after its secret or signature was accepted, kept so
//! that an operator can see what the platform sent that callhook could not read.

use serde::{Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

use super::time::Timestamp;

/// Most bytes of a refused body kept.
pub const MAX_KEPT_BODY: usize = 64 * 1024;
/// Most characters of a refused request's `Content-Type` kept.
const MAX_CONTENT_TYPE: usize = 256;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedCallback {
    pub id: Uuid,
    #[serde(serialize_with = "super::time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    /// The status callhook answered: 400, 413 or 422.
    #[schema(example = 422)]
    pub status: u16,
    /// Why it was refused, as the answer's problem said.
    #[schema(example = "timestamp: must be an RFC 3339 date-time, e.g. 2022-05-31T06:40:45.475Z")]
    pub reason: String,
    pub content_type: Option<String>,
    /// The body as received (invalid UTF-8 replaced by U+FFFD), cut at 64 KiB.
    #[serde(serialize_with = "lossy")]
    #[schema(value_type = String)]
    pub body: Vec<u8>,
}

impl RejectedCallback {
    pub fn new(
        received_at: Timestamp,
        status: u16,
        reason: String,
        content_type: Option<&[u8]>,
        body: &[u8],
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            received_at,
            status,
            reason,
            content_type: content_type.map(|raw| {
                String::from_utf8_lossy(raw)
                    .chars()
                    .take(MAX_CONTENT_TYPE)
                    .collect()
            }),
            body: body[..body.len().min(MAX_KEPT_BODY)].to_vec(),
        }
    }
}

fn lossy<S: Serializer>(body: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&String::from_utf8_lossy(body))
}
