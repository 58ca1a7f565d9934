//! Plain types and the rules that make them valid. Nothing here knows about HTTP or SQL.

pub mod call;
pub mod call_request;
pub mod callback;
pub mod campaign;
pub mod campaign_request;
pub mod conversation;
pub mod destination;
pub mod outcome;
pub mod page;
pub mod region;
pub mod rejected;
pub mod stats;
pub mod time;
pub mod webhook;
pub mod window;

use serde::Serialize;
use utoipa::ToSchema;

/// One reason a field of a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
