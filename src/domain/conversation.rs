//! The id AI Studio gives a conversation, which keys its outcome.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;

/// Longest `conversation_uuid` accepted; real ones are about 40 characters.
pub const MAX_CONVERSATION_UUID_LEN: usize = 200;

/// A `conversation_uuid` as stored: trimmed, 1–200 bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ConversationUuid(String);

impl ConversationUuid {
    /// The id in `raw`, or why no conversation can have it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > MAX_CONVERSATION_UUID_LEN {
            return Err(format!("must be at most {MAX_CONVERSATION_UUID_LEN} bytes"));
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(raw.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ConversationUuid {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConversationUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for ConversationUuid {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<str> for ConversationUuid {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}
